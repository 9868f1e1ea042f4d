"""End to end: create / start / state / kill / delete / exec / pause / resume / ps / update as
engines call them, with runc's states, errors and process tree."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from attacks.harness import tracer_of

from conftest import REPO, needs_root

pytestmark = [needs_root, pytest.mark.e2e]


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def status(runtime, cid: str) -> str:
    r = runtime("state", cid)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["status"]


def create(runtime, *args: str, command: str = "create", **kw) -> subprocess.CompletedProcess:
    """`create` (or `exec --detach`) with files for stdio, as engines give it: the container
    keeps the caller's stdio, so pipes would stay open after the command returns."""
    out = runtime.state_root.parent / f"{command}-{time.monotonic_ns()}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{out}.out", "w+") as o, open(f"{out}.err", "w+") as e:
        p = subprocess.run(runtime.argv(command, *args), stdin=subprocess.DEVNULL, stdout=o,
                           stderr=e, env=runtime.env(), timeout=60, **kw)
        e.seek(0)
        p.stderr = e.read()
        p.stdout = f"{out}.out"
    return p


@contextlib.contextmanager
def container(runtime, bundle: Path, *, started: bool = True) -> Iterator[str]:
    """The test's container of `bundle`, created (and started), deleted with --force at the
    end whatever happened: its id."""
    r = create(runtime, "--bundle", str(bundle), runtime.cid)
    assert r.returncode == 0, r.stderr
    try:
        if started:
            r = runtime("start", runtime.cid)
            assert r.returncode == 0, r.stderr
        yield runtime.cid
    finally:
        assert runtime("delete", "--force", runtime.cid).returncode == 0


def created(runtime, make_bundle, args, cid=None, **changes):
    cid = cid or runtime.cid
    bundle = make_bundle(args, **changes)
    r = create(runtime, cid, "--bundle", str(bundle))  # options after the id
    assert r.returncode == 0, r.stderr
    return cid, bundle


def ppid_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])


# A stand-in for conmon / containerd's shim: a subreaper that calls create and start, then
# reaps the init itself, as engines do.
ENGINE = r"""
import ctypes, json, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
argv, pid_file = json.loads(sys.argv[1]), sys.argv[2]
subprocess.run(argv + ["create", "--bundle", sys.argv[3], "--pid-file", pid_file, sys.argv[4]],
               check=True)
pid = int(open(pid_file).read())
stat = open(f"/proc/{pid}/stat").read()
print("ppid", int(stat[stat.rindex(")") + 2:].split()[1]), "me", os.getpid(), flush=True)
subprocess.run(argv + ["start", sys.argv[4]], check=True)
_, status = os.waitpid(pid, 0)
print("exit", os.waitstatus_to_exitcode(status), flush=True)
"""


def test_create_start_the_engine_is_the_inits_parent_and_reaps_it(runtime, make_bundle,
                                                                   tmp_path):
    bundle = make_bundle(["sh", "-c", "exit 3"])
    pid_file = tmp_path / "init.pid"
    argv = runtime.argv()
    r = subprocess.run([sys.executable, "-c", ENGINE, json.dumps(argv), str(pid_file),
                        str(bundle), runtime.cid], capture_output=True, text=True,
                       env=runtime.env(), timeout=60)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    ppid, me = lines["ppid"].split(" me ")
    assert ppid == me  # create returned; its child, the init, went to the subreaper
    assert lines["exit"] == "3"  # and the engine reaped its exit status
    assert status(runtime, runtime.cid) == "stopped"
    assert runtime("delete", runtime.cid).returncode == 0


def test_created_state_waits_for_start(runtime, make_bundle, tmp_path):
    marker = tmp_path / "ran"
    cid, bundle = created(runtime, make_bundle, ["sh", "-c", "echo ran > /tmp/m; sleep 30"])
    state = json.loads(runtime("state", cid).stdout)
    assert state["status"] == "created"
    assert state["bundle"] == str(bundle) and state["id"] == cid and state["pid"] > 0
    # the user process has not started: the init is still our Python, not sh
    assert b"python" in Path(f"/proc/{state['pid']}/cmdline").read_bytes()
    assert not marker.exists()
    assert runtime("start", cid).returncode == 0
    assert status(runtime, cid) == "running"
    r = runtime("start", cid)
    assert r.returncode == 1 and "cannot start an already running container" in r.stderr
    assert runtime("kill", cid, "KILL").returncode == 0
    wait_for(lambda: status(runtime, cid) == "stopped", what="stopped")
    r = runtime("kill", cid, "9")
    assert r.returncode == 1 and "container not running" in r.stderr
    r = runtime("start", cid)
    assert r.returncode == 1 and "cannot start a container that has stopped" in r.stderr
    assert runtime("delete", cid).returncode == 0
    r = runtime("state", cid)
    assert r.returncode == 1 and f"container {cid} does not exist" in r.stderr


def test_delete_refuses_a_running_container_unless_forced(runtime, make_bundle):
    cid, _ = created(runtime, make_bundle, ["sleep", "30"])
    assert runtime("start", cid).returncode == 0
    pid = json.loads(runtime("state", cid).stdout)["pid"]
    r = runtime("delete", cid)
    assert r.returncode == 1
    assert f"cannot delete container {cid} that is not stopped: running" in r.stderr
    assert os.path.exists(f"/proc/{pid}")
    assert runtime("delete", "--force", cid).returncode == 0
    assert not Path(f"/proc/{pid}/stat").exists() or " Z " in Path(f"/proc/{pid}/stat")\
        .read_text()


def test_delete_of_a_created_container_kills_its_init(runtime, make_bundle):
    cid, _ = created(runtime, make_bundle, ["true"])
    pid = json.loads(runtime("state", cid).stdout)["pid"]
    assert runtime("delete", cid).returncode == 0  # runc deletes a created container
    wait_for(lambda: not Path(f"/proc/{pid}").exists()
             or " Z " in Path(f"/proc/{pid}/stat").read_text(), what="init gone")


def test_kill_all_and_signal_by_name(runtime, make_bundle):
    # no pid namespace: the processes are not protected as an init is
    cid, _ = created(runtime, make_bundle, ["sh", "-c", "sleep 30 & sleep 30"],
                     linux={"namespaces": [{"type": t} for t in ("ipc", "uts", "mount")]})
    assert runtime("start", cid).returncode == 0
    wait_for(lambda: len(json.loads(runtime("ps", "--format", "json", cid).stdout)) == 2,
             what="two processes")
    assert runtime("kill", "--all", cid, "SIGTERM").returncode == 0
    wait_for(lambda: json.loads(runtime("ps", "--format", "json", cid).stdout) == [],
             what="all gone")
    assert status(runtime, cid) == "stopped"
    assert runtime("delete", cid).returncode == 0


def test_exec_joins_the_container(runtime, make_bundle):
    cid, _ = created(runtime, make_bundle, ["sleep", "30"], hostname="inside",
                     linux={"namespaces": [{"type": t} for t in
                                           ("pid", "network", "ipc", "uts", "mount")]})
    assert runtime("start", cid).returncode == 0
    r = runtime("exec", "--env", "X=1", cid, "sh", "-c",
                "echo $X $(hostname) $$; cat /proc/1/cmdline | tr '\\0' ' '; exit 7")
    assert r.returncode == 7, r.stderr
    first, second = r.stdout.splitlines()
    x, host, pid = first.split()
    assert (x, host) == ("1", "inside")
    assert int(pid) > 1  # in the container's pid namespace, not its init
    assert second.strip() == "sleep 30"
    r = runtime("exec", "--user", "1000:1000", "--cwd", "/tmp", cid, "sh", "-c", "id -u; pwd")
    assert r.stdout.split() == ["1000", "/tmp"], r.stderr
    runtime("delete", "--force", cid)


def test_exec_detach_pid_file_and_ps(runtime, make_bundle, tmp_path):
    cid, _ = created(runtime, make_bundle, ["sleep", "30"])
    assert runtime("start", cid).returncode == 0
    pid_file = tmp_path / "exec.pid"
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["sleep", "20"], "cwd": "/",
                                   "env": ["PATH=/bin:/usr/bin"], "user": {"uid": 0, "gid": 0}}))
    r = create(runtime, "--pid-file", str(pid_file), "--process", str(process), "--detach", cid,
               command="exec")
    assert r.returncode == 0, r.stderr
    pid = int(pid_file.read_text())
    assert pid in json.loads(runtime("ps", "--format", "json", cid).stdout)
    assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x0020\x00"
    runtime("delete", "--force", cid)
    assert not Path(f"/proc/{pid}").exists() or " Z " in Path(f"/proc/{pid}/stat").read_text()


def test_exec_refused_in_stopped_and_paused_containers(runtime, make_bundle):
    cid, _ = created(runtime, make_bundle, ["sleep", "30"])
    assert runtime("start", cid).returncode == 0
    assert runtime("pause", cid).returncode == 0
    assert status(runtime, cid) == "paused"
    r = runtime("exec", cid, "true")
    assert r.returncode == 1 and "cannot exec in a paused container" in r.stderr
    r = runtime("resume", cid)
    assert r.returncode == 0, r.stderr
    assert status(runtime, cid) == "running"
    r = runtime("resume", cid)
    assert r.returncode == 1 and "container not paused" in r.stderr
    runtime("kill", cid, "9")
    wait_for(lambda: status(runtime, cid) == "stopped", what="stopped")
    r = runtime("exec", cid, "true")
    assert r.returncode == 1 and "cannot exec in a stopped container" in r.stderr
    assert runtime("delete", cid).returncode == 0


def test_bad_process_file_names_the_field(runtime, make_bundle, tmp_path):
    cid, _ = created(runtime, make_bundle, ["sleep", "30"])
    assert runtime("start", cid).returncode == 0
    process = tmp_path / "p.json"
    process.write_text(json.dumps({"args": [], "cwd": "/"}))
    r = runtime("exec", "--process", str(process), cid)
    assert r.returncode == 1 and "process.args" in r.stderr
    runtime("delete", "--force", cid)


def test_update_resources(runtime, make_bundle, tmp_path):
    cid, _ = created(runtime, make_bundle, ["sleep", "30"],
                     linux={"resources": {"pids": {"limit": 50}}})
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"pids": {"limit": 77}}))
    r = runtime("update", "--resources", str(res), cid)
    assert r.returncode == 0, r.stderr
    state = json.loads((runtime.state_root / cid / "state.json").read_text())
    assert Path(state["cgroup"]["paths"]["pids"], "pids.max").read_text().strip() == "77"
    r = runtime("update", "--resources", "-", cid, input='{"pids": {"limit": 88}}')
    assert r.returncode == 0, r.stderr
    assert Path(state["cgroup"]["paths"]["pids"], "pids.max").read_text().strip() == "88"
    runtime("delete", "--force", cid)


def test_update_reads_bounded_regular_files(runtime, make_bundle, tmp_path):
    """--resources /dev/zero read until memory ran out; a config.json turned into a FIFO after
    create hung update for ever: both are errors now, naming the file."""
    cid, bundle = created(runtime, make_bundle, ["sleep", "30"])
    r = runtime("update", "--resources", "/dev/zero", cid, timeout=30)
    assert r.returncode != 0 and "--resources /dev/zero: larger than" in r.stderr, r.stderr
    config = bundle / "config.json"
    config.unlink()
    os.mkfifo(config)
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"pids": {"limit": 77}}))
    r = runtime("update", "--resources", str(res), cid, timeout=30)
    assert r.returncode != 0 and "config.json: cannot read" in r.stderr, r.stderr
    assert "not a regular file" in r.stderr, r.stderr
    runtime("delete", "--force", cid)


def test_concurrent_starts_start_once(runtime, make_bundle):
    cid, _ = created(runtime, make_bundle, ["sleep", "30"])
    procs = [runtime.popen("start", cid) for _ in range(4)]
    codes = [p.wait(timeout=30) for p in procs]
    errors = [p.stderr.read() for p in procs]
    for p in procs:
        p.stdin.close()
        p.stdout.close()
        p.stderr.close()
    assert sorted(codes) == [0, 1, 1, 1], errors
    assert status(runtime, cid) == "running"
    runtime("delete", "--force", cid)


def test_preserve_fds(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["sh", "-c", "echo through-fd-3 >&3"])
    out = tmp_path / "fd3"
    with open(out, "w") as f:
        p = create(runtime, "--preserve-fds", "1", "--bundle", str(bundle), runtime.cid,
                   pass_fds=(3,), preexec_fn=lambda: os.dup2(f.fileno(), 3))
    assert p.returncode == 0, p.stderr
    assert runtime("start", runtime.cid).returncode == 0
    wait_for(lambda: status(runtime, runtime.cid) == "stopped", what="stopped")
    assert out.read_text() == "through-fd-3\n"
    runtime("delete", runtime.cid)


def test_console_socket_gets_the_pty_master(runtime, make_bundle, tmp_path):
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    got: dict = {}

    def accept() -> None:
        conn, _ = server.accept()
        msg, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        got["name"], got["fd"] = msg, fds[0]
        conn.close()

    t = threading.Thread(target=accept)
    t.start()
    bundle = make_bundle(["sh", "-c", "tty; echo on-the-pty"], process={"terminal": True})
    r = create(runtime, "--console-socket", path, "--bundle", str(bundle), runtime.cid)
    t.join(timeout=10)
    server.close()
    assert r.returncode == 0, r.stderr
    assert runtime("start", runtime.cid).returncode == 0
    output = b""
    try:
        while chunk := os.read(got["fd"], 4096):
            output += chunk
    except OSError:  # EIO: the last holder of the slave has gone
        pass
    os.close(got["fd"])
    assert b"/dev/pts/" in output and b"on-the-pty" in output
    runtime("delete", "--force", runtime.cid)


def test_terminal_without_console_socket_is_refused(runtime, make_bundle):
    bundle = make_bundle(["true"], process={"terminal": True})
    r = create(runtime, "--bundle", str(bundle), runtime.cid)
    assert r.returncode == 1 and "--console-socket" in r.stderr


def test_a_crashed_create_is_cleaned_by_delete(runtime, make_bundle, tmp_path):
    """kill -9 create while a hook holds it: state says stopped, delete removes all."""
    hook = tmp_path / "hook.sh"
    # the state on its stdin names the init (state.json says pid 0 until create saves again)
    hook.write_text(f"#!/bin/sh\ncat > {tmp_path / 'hook-state.json'}\n"
                    f"echo $PPID > {tmp_path / 'create.pid'}\nsleep 30\n")
    hook.chmod(0o755)
    bundle = make_bundle(["true"], hooks={"createRuntime": [{"path": str(hook)}]})
    p = subprocess.Popen(runtime.argv("create", "--bundle", str(bundle), runtime.cid),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=runtime.env())
    create_pid = int(wait_for(lambda: (tmp_path / "create.pid").exists()
                              and (tmp_path / "create.pid").read_text().strip(), what="hook"))
    assert create_pid == p.pid
    assert status(runtime, runtime.cid) == "creating"
    init = json.loads((tmp_path / "hook-state.json").read_text())["pid"]
    assert init > 1 and Path(f"/proc/{init}").exists()
    p.kill()
    p.wait()
    assert status(runtime, runtime.cid) == "stopped"
    r = runtime("delete", runtime.cid)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: not Path(f"/proc/{init}").exists()
             or " Z " in Path(f"/proc/{init}/stat").read_text(), what="init gone")
    subprocess.run(["pkill", "-f", f"^/bin/sh {hook}"], check=False)  # our own hook


def test_a_create_killed_right_after_reserving_leaves_a_valid_state(runtime, make_bundle):
    """A create killed between reserve and its next save: reserve's state.json is all there
    is. It said bundle "", rootfs "rootfs" and created "", so `state` printed a document the
    state schema refuses (and that Go's time.Time, in containerd's go-runc, cannot parse)."""
    from secfilt_runtime import schema

    bundle = make_bundle(["true"])
    killed = (
        "import os, sys\n"
        "from secfilt_runtime import cli, state\n"
        "reserve = state.StateStore.reserve\n"
        "def reserve_and_die(self, *a, **kw):\n"
        "    reserve(self, *a, **kw)\n"
        "    os._exit(9)\n"
        "state.StateStore.reserve = reserve_and_die\n"
        "cli.main(sys.argv[1:])\n"
    )
    p = subprocess.run([sys.executable, "-c", killed, "--root", str(runtime.state_root),
                        "create", "--bundle", str(bundle), runtime.cid],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       env=runtime.env(), timeout=60)
    assert p.returncode == 9, p.stderr
    r = runtime("state", runtime.cid)
    deleted = runtime("delete", runtime.cid)
    assert deleted.returncode == 0, deleted.stderr
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    schema.validate_state(doc)
    assert (doc["status"], doc["bundle"], doc["rootfs"]) == \
        ("stopped", str(bundle), str(json.loads((bundle / "config.json").read_text())
                                     ["root"]["path"]))
    assert doc["created"] and doc["owner"] == "root"


def test_features_and_spec_validate(runtime, tmp_path):
    from secfilt_runtime import schema

    r = runtime("features")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    schema.validate_features(doc)
    assert "org.secfilter." in doc["potentiallyUnsafeConfigAnnotations"]
    assert "SCMP_ACT_TRACE" in doc["linux"]["seccomp"]["actions"]
    assert "org.secfilter.read-only" in doc["annotations"]
    for rootless in (False, True):
        d = tmp_path / f"spec{rootless}"
        d.mkdir()
        r = subprocess.run(runtime.argv("spec", *(["--rootless"] if rootless else [])),
                           cwd=d, env=runtime.env(), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        schema.validate_config(json.loads((d / "config.json").read_text()), "config.json")
    r = subprocess.run(runtime.argv("spec", "--bundle", str(tmp_path / "specFalse")),
                       env=runtime.env(), capture_output=True, text=True)
    assert r.returncode == 1 and "already exists" in r.stderr


def test_list_formats(runtime, make_bundle):
    cid, bundle = created(runtime, make_bundle, ["true"])
    table = runtime("list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"]
    assert table[1].split()[0] == cid and table[1].split()[2] == "created"
    doc = json.loads(runtime("list", "--format", "json").stdout)
    assert [(d["id"], d["status"], d["bundle"]) for d in doc] == [(cid, "created", str(bundle))]
    runtime("delete", cid)


def test_hot_path_on_a_real_container_imports_nothing_heavy(runtime, make_bundle):
    cid, _ = created(runtime, make_bundle, ["sleep", "30"])
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'runtime')!r})\n"
        "from secfilt_runtime import cli\n"
        f"root, cid = {str(runtime.state_root)!r}, {cid!r}\n"
        "for argv in (['start', cid], ['state', cid], ['kill', cid, 'KILL'],\n"
        "             ['delete', '--force', cid]):\n"
        "    assert cli.dispatch(['--root', root, *argv]) == 0, argv\n"
        "heavy = ('typer', 'click', 'pydantic', 'jsonschema', 'pyseccomp')\n"
        # a container without hooks does not pay for the hooks module either, nor any
        # command here for config.json's dataclasses (spec: ~15 ms of import)
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
        "             or m in ('secfilt_runtime.hooks', 'secfilt_runtime.spec')))\n"
    )
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


POLICY = {"annotations": {"org.secfilter.read-only": "true"}}


def test_one_tracer_serves_the_init_and_exec(runtime, make_bundle, tmp_path):
    cid, _ = created(runtime, make_bundle, ["sleep", "30"], **POLICY)
    state = json.loads((runtime.state_root / cid / "state.json").read_text())
    tracer = state["tracer_pid"]
    assert tracer > 0 and tracer_of(state["pid"]) == tracer  # seized before start
    assert runtime("start", cid).returncode == 0
    # exec'd processes are seized by the same tracer before they load their filters, and
    # the policy holds for them (an exec that escaped the tracer would write here)
    r = runtime("exec", cid, "sh", "-c", "echo x > /tmp/escape; echo rc=$?")
    assert "rc=1" in r.stdout, (r.stdout, r.stderr)
    pid_file = tmp_path / "exec.pid"
    r = create(runtime, "--detach", "--pid-file", str(pid_file), cid, "sleep", "20",
               command="exec")
    assert r.returncode == 0, r.stderr
    assert tracer_of(int(pid_file.read_text())) == tracer
    assert runtime("delete", "--force", cid).returncode == 0
    wait_for(lambda: not Path(f"/proc/{tracer}").exists()
             or " Z " in Path(f"/proc/{tracer}/stat").read_text(), what="tracer gone")


def test_a_killed_tracer_takes_the_container_down(runtime, make_bundle):
    cid, _ = created(runtime, make_bundle, ["sleep", "30"], **POLICY)
    assert runtime("start", cid).returncode == 0
    state = json.loads((runtime.state_root / cid / "state.json").read_text())
    os.kill(state["tracer_pid"], 9)  # started by this test's create
    wait_for(lambda: status(runtime, cid) == "stopped", what="container down")
    assert runtime("delete", cid).returncode == 0  # the fixture checks nothing is left


def test_exec_tty_is_wired_to_the_caller(runtime, make_bundle):
    import pty

    cid, _ = created(runtime, make_bundle, ["sleep", "30"])
    assert runtime("start", cid).returncode == 0
    master, slave = pty.openpty()
    p = subprocess.Popen(runtime.argv("exec", "--tty", cid, "sh", "-c", "tty; echo done"),
                         stdin=slave, stdout=slave, stderr=slave, env=runtime.env())
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 20
    while b"done" not in output and time.monotonic() < deadline:
        try:
            output += os.read(master, 4096)
        except OSError:
            break
    assert p.wait(timeout=20) == 0
    os.close(master)
    assert b"/dev/pts/0" in output, output  # the container's own devpts
    runtime("delete", "--force", cid)


def test_policy_container_under_a_long_root(runtime, make_bundle):
    """containerd's root plus a 64-character id: the tracer's socket path would not fit."""
    from conftest import Runtime

    long_rt = Runtime(runtime.state_root / ("r" * 60), cid=runtime.cid + "x" * 40)
    bundle = make_bundle(["sleep", "30"], **POLICY)
    r = create(long_rt, "--bundle", str(bundle), long_rt.cid)
    assert r.returncode == 0, r.stderr
    state = json.loads((long_rt.state_root / long_rt.cid / "state.json").read_text())
    sock = state["tracer_socket"]
    assert len(sock) < 108 and Path(sock).is_socket()
    assert long_rt("start", long_rt.cid).returncode == 0
    r = long_rt("exec", long_rt.cid, "sh", "-c", "echo x > /tmp/escape; echo rc=$?")
    assert "rc=1" in r.stdout, (r.stdout, r.stderr)
    assert long_rt("delete", "--force", long_rt.cid).returncode == 0
    assert not Path(sock).exists()
    leftovers = {p.name for p in long_rt.state_root.iterdir()}
    assert leftovers <= {"seccomp-cache", "validation-cache"}  # caches outlive containers
    shutil.rmtree(runtime.state_root)  # the other runtime's root and create's output
