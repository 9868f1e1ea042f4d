"""What the start-up paths import: `run` (with and without a policy), `secfilt`, `state`.

Each standard module costs milliseconds to import on the project's VM (issue 7): these tests
fail when someone puts a heavy import back on a path that does not use it. The lists say what
each path must not load; a module moves off a list only with a reason the path needs it.
"""

from __future__ import annotations

import datetime
import io
import site
import socket
import subprocess
import sys
import tempfile
import traceback

import pytest
from test_lifecycle import created

from secfilt_runtime import errors, records, state
from secfilt_runtime import log as log_mod

from conftest import REPO, Runtime, needs_root


def test_utc_now_is_written_as_datetime_writes_it(monkeypatch) -> None:
    """The timestamp of state.json's "created" and of the log, formatted without datetime."""
    for ns in (1_764_403_511_261_866_123,  # microseconds truncated, as datetime.now does
               1_764_403_511_000_000_000,  # an exact second: no fraction at all
               1_764_403_511_000_000_999,
               1_764_403_511_000_001_000,
               946_684_799_999_999_999):
        monkeypatch.setattr(log_mod.time, "time_ns", lambda ns=ns: ns)
        seconds, micros = divmod(ns // 1000, 1_000_000)
        expected = datetime.datetime.fromtimestamp(seconds, datetime.UTC).replace(
            microsecond=micros).isoformat()
        assert log_mod.utc_now() == expected


def test_remove_tree_removes_what_rmtree_would_and_follows_no_link(tmp_path) -> None:
    """state.remove_tree stands in for shutil.rmtree(ignore_errors=True) on state directories."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    victim = tmp_path / "state" / "c1"
    victim.mkdir(parents=True)
    (victim / "state.json").write_text("{}")
    (victim / "link").symlink_to(outside)
    (victim / "file-link").symlink_to(outside / "keep")
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.bind(str(victim / "start.sock"))
    (victim / "sub" / "deeper").mkdir(parents=True)
    (victim / "sub" / "deeper" / "f").write_text("x")
    (victim / "sub" / "link").symlink_to(outside)
    state.remove_tree(str(victim))
    assert not victim.exists() and not victim.is_symlink()
    assert (outside / "keep").read_text() == "x"

    state.remove_tree(str(victim))  # gone already: nothing to do, no error
    linked = tmp_path / "state" / "c2"
    linked.symlink_to(outside)
    state.remove_tree(str(linked))  # a link to a directory is not a tree to remove (as rmtree)
    assert linked.is_symlink() and (outside / "keep").exists()


def test_str_methods_match_as_the_regular_expressions_they_replace() -> None:
    """state.check_id, schema.format_path and mountinfo.unescape without `re`."""
    import itertools
    import re

    from secfilt_runtime import schema
    from secfilt_runtime.container import mountinfo

    container_id = re.compile(r"[A-Za-z0-9_+\-.]+")
    identifier = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
    escape = re.compile(r"\\([0-7]{3})")
    alphabet = ["a", "Z", "_", "0", "7", "1", "4", "9", "+", "-", ".", "\n", "\\", " ", "é",
                "\u0661"]
    for n in range(5):
        for chars in itertools.product(alphabet, repeat=n):
            text = "".join(chars)
            valid = text not in ("", ".", "..") and bool(container_id.fullmatch(text))
            try:
                state.check_id(text)
                assert valid, text
            except errors.StateError:
                assert not valid, text
            assert schema._is_identifier(text) == bool(identifier.match(text)), text
            assert mountinfo.unescape(text) == escape.sub(lambda m: chr(int(m.group(1), 8)),
                                                          text), text


def test_warn_prints_the_bare_line_logging_printed(capsys) -> None:
    errors.warn("Landlock is not available: the tracer alone judges writes and ports")
    assert capsys.readouterr().err == (
        "Landlock is not available: the tracer alone judges writes and ports\n")


def test_warn_survives_a_stderr_that_cannot_be_written(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stderr", None)
    errors.warn("nowhere to go")
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    errors.warn("nowhere to go")


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_the_init_words_an_internal_error_as_traceback_does() -> None:
    """The init (container.confine) reports an unexpected exception without the traceback
    module."""
    from secfilt_runtime.container import confine

    for exc in (ValueError("bad value"), KeyError("process"), AssertionError(),
                records.FrozenRecordError("frozen"), _Unprintable()):
        expected = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        assert confine._exception_only(exc) == expected


# --- what each path imports ------------------------------------------------------------------

# Never needed by a warm start of any path below; each measured at milliseconds here.
NEVER = frozenset({
    "logging",      # errors.warn (with threading, weakref, string: ~7 ms)
    "traceback",    # container.init words its errors itself (linecache, tokenize: ~5 ms)
    "linecache", "tokenize", "textwrap",
    "datetime",     # log.utc_now (~3 ms)
    "shutil",       # state.remove_tree (with bz2, lzma, fnmatch: ~4 ms)
    "bz2", "lzma",
    "base64",       # binascii
    "dataclasses", "inspect",  # records (~35 ms)
    "hashlib",      # _sha256 (OpenSSL: ~12 ms)
    "subprocess", "ctypes.util",
    "importlib.resources",  # schema files are read only when validating for real
    "json",         # jsonio: _json without json.decoder/encoder (~12 ms with re and enum)
    "re", "enum",   # state, schema and mountinfo match with str methods
    "signal",       # _signal, and signals for names (its IntEnums: ~6 ms with enum)
    # warm: the verdict and filter caches stand in for these
    "jsonschema", "referencing", "pyseccomp", "seccomp", "typer", "click", "pydantic",
    "secfilt_runtime.hooks", "secfilt_runtime.seccomp.compiler",
})
# a container without a policy, seccomp profile or terminal
RUN = NEVER | {
    "typing",       # names under TYPE_CHECKING = False only (~5 ms)
    "socket", "selectors", "array",  # sync uses _socket (~5 ms)
    "ipaddress", "threading", "termios",
    # cleanup.py and try/except stand in for contextlib, which loads functools and collections
    # (~6 ms); an annotation's collections.abc is imported under TYPE_CHECKING only
    "contextlib", "functools", "collections",
    "secfilt_runtime.policy.parse", "secfilt_runtime.tracer",
    "secfilt_runtime.policy.cgroup_net", "secfilt_runtime.console",
    "secfilt_runtime.container.terminal", "secfilt_runtime.seccomp.cache",
}
# under a read-only policy the tracer runs; its control server (threading, socket) only in the
# forked tracer of a container. ipaddress (~3 ms with functools) only where a rule names an
# address: a netmask, allow-resolv, or a destination to judge
RUN_READ_ONLY = NEVER | {
    "typing", "socket", "selectors", "array",
    "ipaddress", "contextlib", "functools", "collections",
    "secfilt_runtime.policy.cgroup_net",  # no destination rules
    "secfilt_runtime.supervisor", "secfilt_runtime.console", "termios",
}
SECFILT_READ_ONLY = RUN_READ_ONLY | {
    "threading", "secfilt_runtime.tracer.control",
    "secfilt_runtime.lifecycle", "secfilt_runtime.spec", "secfilt_runtime.schema",
    "secfilt_runtime.state",
}
STATE = NEVER | RUN | {
    "ctypes", "_socket", "select", "struct",
    "secfilt_runtime.kernel", "secfilt_runtime.spec", "secfilt_runtime.container.cgroups",
}
# delete needs the cgroup manager (to kill and remove), not ctypes (~5 ms): only creating a
# cgroup asks the filesystem's magic number
DELETE = NEVER | RUN | {
    "ctypes", "_socket", "secfilt_runtime.kernel", "secfilt_runtime.spec",
}

RUNTIME_DIR = str(REPO / "runtime")


def imported_by(code: str, *args: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules `code` imports beyond a bare interpreter, run as the launcher runs the
    commands (python -I -S, the package and site-packages put on sys.path by hand)."""
    with tempfile.NamedTemporaryFile("r") as out:
        prologue = (
            "import sys\n"
            "bare = set(sys.modules)\n"
            f"sys.path[:0] = [{RUNTIME_DIR!r}, *{site.getsitepackages()!r}]\n"
            f"out = {out.name!r}\n"
        )
        epilogue = (
            "\nwith open(out, 'w') as f:\n"
            "    f.write(' '.join(sorted(set(sys.modules) - bare)))\n"
        )
        r = subprocess.run([sys.executable, "-I", "-S", "-c", prologue + code + epilogue,
                            *args], capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r.stderr
        return set(out.read().split())


def _heavy(imported: set[str], forbidden: frozenset[str] | set[str]) -> list[str]:
    return sorted(m for m in imported
                  if m in forbidden or m.split(".")[0] in forbidden & NEVER)


RUN_TWICE = (
    "from secfilt_runtime import cli\n"
    "code = cli.dispatch(['--root', sys.argv[1], 'run', '--bundle', sys.argv[2], sys.argv[3]])\n"
    "assert code == 0, code\n"
)

# what `runc spec` writes that BASE_CONFIG lacks, so the run path sees the usual settings
RUNC_SPEC_EXTRAS = {
    "process": {"rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": True},
    "linux": {"maskedPaths": ["/proc/kcore", "/sys/firmware"],
              "readonlyPaths": ["/proc/bus", "/proc/sys"]},
}


def _warm_run_imports(runtime: Runtime, bundle) -> set[str]:
    """The imports of the second run of `bundle` (the first fills the caches)."""
    seen = set()
    for i in range(2):
        seen = imported_by(RUN_TWICE, str(runtime.state_root), str(bundle), f"{runtime.cid}-{i}")
    return seen


@needs_root
@pytest.mark.e2e
def test_run_without_a_policy_imports_only_what_it_uses(runtime: Runtime, make_bundle) -> None:
    imported = _warm_run_imports(runtime, make_bundle(["true"], **RUNC_SPEC_EXTRAS))
    assert "secfilt_runtime.lifecycle" in imported  # the check saw the run path
    assert _heavy(imported, RUN) == []


@needs_root
@pytest.mark.e2e
def test_run_under_a_read_only_policy_imports_only_what_it_uses(runtime: Runtime,
                                                                 make_bundle) -> None:
    bundle = make_bundle(["true"], annotations={"org.secfilter.read-only": "true"},
                         **RUNC_SPEC_EXTRAS)
    imported = _warm_run_imports(runtime, bundle)
    assert {"secfilt_runtime.tracer", "secfilt_runtime.policy.landlock"} <= imported
    assert _heavy(imported, RUN_READ_ONLY) == []


@needs_root
def test_secfilt_read_only_imports_only_what_it_uses() -> None:
    code = (
        "from secfilt_runtime import secfilt_cli\n"
        "try:\n"
        "    secfilt_cli.main(['--read-only=1', 'true'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
    )
    imported_by(code)  # the filter cache (/var/cache/secfilt) is warm the second time
    imported = imported_by(code)
    assert "secfilt_runtime.tracer" in imported
    assert _heavy(imported, SECFILT_READ_ONLY) == []


@needs_root
@pytest.mark.e2e
def test_state_imports_only_what_it_uses(runtime: Runtime, make_bundle) -> None:
    cid, _ = created(runtime, make_bundle, ["true"])
    try:
        imported = imported_by(
            "from secfilt_runtime import cli\n"
            "assert cli.dispatch(['--root', sys.argv[1], 'state', sys.argv[2]]) == 0\n",
            str(runtime.state_root), cid)
    finally:
        runtime("delete", "--force", cid)
    assert "secfilt_runtime.state" in imported
    assert _heavy(imported, STATE) == []


@needs_root
@pytest.mark.e2e
def test_delete_imports_only_what_it_uses(runtime: Runtime, make_bundle) -> None:
    cid, _ = created(runtime, make_bundle, ["sleep", "30"])
    imported = imported_by(
        "from secfilt_runtime import cli\n"
        "assert cli.dispatch(['--root', sys.argv[1], 'delete', '--force', sys.argv[2]]) == 0\n",
        str(runtime.state_root), cid)
    assert "secfilt_runtime.container.cgroups" in imported  # the check saw the delete path
    assert _heavy(imported, DELETE) == []
