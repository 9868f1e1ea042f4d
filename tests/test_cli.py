"""The runc command line: argv parsing (pure), signal names, and the hot path's imports."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from secfilt_runtime import cli, ops
from secfilt_runtime.errors import StateError

from conftest import REPO

CREATE_FLAGS = cli.COMMANDS["create"][0]
EXEC_FLAGS = cli.COMMANDS["exec"][0]


def test_options_may_follow_the_container_id():
    p = cli.parse_flags(["c1", "--bundle", "/b", "--pid-file=/p"], CREATE_FLAGS)
    assert p.args == ["c1"]
    assert p.opts == {"bundle": "/b", "pid_file": "/p"}


def test_podman_create_line():
    p = cli.parse_flags(["--bundle", "/b", "--pid-file", "/p", "--console-socket", "/s",
                         "--no-new-keyring", "--no-pivot", "c1"], CREATE_FLAGS)
    assert p.args == ["c1"]
    assert p.opts["console_socket"] == "/s" and p.opts["no_pivot"] is True


def test_exec_command_keeps_its_own_options():
    p = cli.parse_flags(["-e", "A=1", "--env", "B=2", "c1", "sh", "-c", "ls --all", "-e"],
                        EXEC_FLAGS, stop_after=1)
    assert p.args == ["c1", "sh", "-c", "ls --all", "-e"]
    assert p.opts["env"] == ["A=1", "B=2"]


def test_globals_stop_at_the_command():
    p = cli.parse_flags(["--root", "/r", "--log-format", "json", "kill", "--all", "c1", "9"],
                        cli.GLOBAL, interspersed=False)
    assert p.opts == {"root": "/r", "log_format": "json"}
    assert p.args == ["kill", "--all", "c1", "9"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--nope", "c1"], "No such option: --nope"),
    (["c1", "--bundle"], "Option --bundle requires an argument"),
    (["--no-pivot=maybe", "c1"], "not a boolean"),
])
def test_bad_flags_are_named(argv, message):
    with pytest.raises(cli.UsageError, match=message):
        cli.parse_flags(argv, CREATE_FLAGS)


@pytest.mark.parametrize(("text", "number"), [
    ("9", 9), ("KILL", 9), ("SIGKILL", 9), ("term", 15), ("SIGRTMIN+1", signal.SIGRTMIN + 1),
])
def test_signal_forms(text, number):
    assert ops.parse_signal(text) == number


@pytest.mark.parametrize("text", ["0", "65", "SIGNOPE", "-9", "SIGRTMIN+99"])
def test_bad_signals(text):
    with pytest.raises(StateError, match="invalid signal"):
        ops.parse_signal(text)


def _cli(*args: str, root) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "secfilt_runtime", "--root", str(root), *args],
                          capture_output=True, text=True, env={"PYTHONPATH": str(REPO / "runtime"),
                                                               "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("command", [["state"], ["start"], ["kill"], ["delete"], ["ps"],
                                     ["pause"], ["resume"], ["exec"]])
def test_unknown_id_does_not_exist(command, tmp_path):
    r = _cli(*command, "no-such-id", *(["true"] if command == ["exec"] else []), root=tmp_path)
    assert r.returncode == 1
    assert "container no-such-id does not exist" in r.stderr


def test_json_log_ends_with_the_error(tmp_path):
    log = tmp_path / "log.json"
    r = _cli("--log", str(log), "--log-format", "json", "kill", "gone", "9", root=tmp_path)
    assert r.returncode == 1
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["level"] == "error" and "does not exist" in last["msg"]


def test_unknown_command_and_usage(tmp_path):
    r = _cli("checkpoint", "x", root=tmp_path)
    assert r.returncode == 2 and "No such command" in r.stderr  # podman probes checkpoint
    assert _cli("--version", root=tmp_path).stdout.startswith("secfilt-runtime version")


def test_hot_commands_import_nothing_heavy(tmp_path):
    """state, kill, start and delete (on an unknown id: the same imports up to the state
    lookup) load neither typer, pydantic, jsonschema nor libseccomp's binding."""
    code = (
        "import sys\n"
        "from secfilt_runtime import cli\n"
        f"root = {str(tmp_path)!r}\n"
        "for argv in (['state', 'x'], ['kill', 'x', '9'], ['start', 'x'], ['delete', 'x'],\n"
        "             ['delete', '--force', 'x']):\n"
        "    try:\n"
        "        cli.dispatch(['--root', root, *argv])\n"
        "    except Exception:\n"
        "        pass\n"
        "heavy = ('typer', 'click', 'pydantic', 'jsonschema', 'pyseccomp', 'seccomp')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    r = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, "
                        f"{str(REPO / 'runtime')!r})\n" + code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
