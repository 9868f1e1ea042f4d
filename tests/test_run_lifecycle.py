"""End to end: `run` passes stdio through, forwards signals, propagates the exit status, writes
the pid file and the state entry while the container runs, and removes them after."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import REPO, needs_root

pytestmark = [needs_root, pytest.mark.e2e]


def test_sample_bundle_runs(runtime, rootfs, tmp_path):
    bundle = tmp_path / "busybox"
    bundle.mkdir()
    config = json.loads((REPO / "bundles/busybox/config.json").read_text())
    config["root"]["path"] = str(rootfs)
    (bundle / "config.json").write_text(json.dumps(config))
    r = runtime("run", str(bundle))  # the short form: the id is derived from the directory
    assert r.returncode == 0, r.stderr
    assert "hello from busybox, pid 1, as uid=0(root)" in r.stdout


def test_host_readonly_sample_bundle(runtime, tmp_path):
    config = json.loads((REPO / "bundles/host-readonly/config.json").read_text())
    bundle = tmp_path / "hostro"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(config))
    r = runtime.run(bundle)
    assert r.returncode == 0, r.stderr
    assert "written" in r.stdout
    assert "Read-only file system" in r.stdout


def test_exit_code_propagates(runtime, make_bundle):
    r = runtime.run(make_bundle(["sh", "-c", "exit 42"]))
    assert r.returncode == 42, r.stderr


def test_death_by_signal_is_128_plus_signal(runtime, make_bundle):
    # without a pid namespace the process is not an init, so it can die of its own signal
    namespaces = [{"type": t} for t in ("ipc", "uts", "mount")]
    bundle = make_bundle(["sh", "-c", "kill -TERM $$"], linux={"namespaces": namespaces})
    r = runtime.run(bundle)
    assert r.returncode == 128 + signal.SIGTERM, r.stderr


def test_stdio_passes_through(runtime, make_bundle):
    r = runtime.run(make_bundle(["sh", "-c", "cat; echo to-stderr >&2"]), input="from stdin\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "from stdin\n"
    assert "to-stderr" in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP, signal.SIGINT])
def test_signals_are_forwarded(runtime, make_bundle, sig):
    name = signal.Signals(sig).name[3:]
    script = f'trap "echo got {name}; exit 7" {name}; echo ready; while :; do sleep 0.05; done'
    proc = runtime.popen("run", "--bundle", str(make_bundle(["sh", "-c", script])), "t1")
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert out == f"got {name}\n", err
    assert proc.returncode == 7


def test_pid_file_and_state_while_running(runtime, make_bundle, tmp_path):
    pid_file = tmp_path / "init.pid"
    bundle = make_bundle(["sh", "-c", "echo ready; read line"])
    proc = runtime.popen("run", "--pid-file", str(pid_file), "--bundle", str(bundle), "t1")
    try:
        assert proc.stdout.readline() == "ready\n"
        pid = int(pid_file.read_text())
        # the pid is the host's view of the container's init, which is pid 1 inside
        with open(f"/proc/{pid}/status") as f:
            nspid = next(line for line in f if line.startswith("NSpid:")).split()
        assert nspid[1:] == [str(pid), "1"]
        state = json.loads((runtime.state_root / "t1" / "state.json").read_text())
        assert state["pid"] == pid and state["status"] == "running"
        assert state["bundle"] == str(bundle)
        proc.communicate("\n", timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert not pid_file.exists()


def test_the_run_does_not_leave_processes(runtime, make_bundle):
    # a background child survives its parent inside the container: the pid namespace ends it
    marker = f"secfilt-marker-{os.getpid()}"
    r = runtime.run(make_bundle(["sh", "-c", f"(exec -a {marker} sleep 1000 &) ; exit 0"]))
    assert r.returncode == 0, r.stderr
    time.sleep(0.2)
    leftover = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert leftover.stdout == ""


def test_processes_outside_a_pid_namespace_are_killed_through_the_cgroup(runtime, make_bundle):
    marker = f"secfilt-marker2-{os.getpid()}"
    namespaces = [{"type": t} for t in ("ipc", "uts", "mount")]
    bundle = make_bundle(["sh", "-c", f"(exec -a {marker} sleep 1000 &) ; exit 0"],
                         linux={"namespaces": namespaces})
    r = runtime.run(bundle)
    assert r.returncode == 0, r.stderr
    time.sleep(0.2)
    leftover = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert leftover.stdout == ""


def test_duplicate_id_is_refused(runtime, make_bundle):
    bundle = make_bundle(["sh", "-c", "echo ready; read line"])
    first = runtime.popen("run", "--bundle", str(bundle), "t1")
    try:
        assert first.stdout.readline() == "ready\n"
        second = runtime.run(bundle, "t1")
        assert second.returncode != 0
        assert "container with id t1 already exists" in second.stderr
        first.communicate("\n", timeout=30)
    finally:
        first.kill()
    assert first.returncode == 0


@pytest.mark.parametrize("bad_id", ["../escape", "a/b", "..", "sp ace"])
def test_invalid_id_is_refused(runtime, make_bundle, bad_id):
    r = runtime.run(make_bundle(), bad_id)
    assert r.returncode != 0
    assert "invalid container id" in r.stderr


def test_json_log_gets_the_error(runtime, make_bundle, tmp_path):
    log = tmp_path / "rt.log"
    bundle = make_bundle(["/no/such/program"])
    r = runtime("--log", str(log), "--log-format", "json", "run", "--bundle", str(bundle), "t1")
    assert r.returncode != 0
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["level"] == "error"
    assert "/no/such/program" in last["msg"]


def test_terminal_gives_the_process_a_pty_of_the_container(runtime, make_bundle):
    script = "tty; [ -t 0 ] && [ -t 1 ] && echo stdio-is-tty; read line; echo got:$line"
    bundle = make_bundle(["sh", "-c", script], process={"terminal": True})
    r = runtime.run(bundle, input="typed\n")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.replace("\r", "").splitlines()  # the pty also echoes what was typed
    assert "/dev/pts/0" in lines  # the container's own devpts instance
    assert "stdio-is-tty" in lines
    assert "got:typed" in lines


def test_terminal_without_devpts_fails_cleanly(runtime, make_bundle):
    bundle = make_bundle(process={"terminal": True})
    config = json.loads((bundle / "config.json").read_text())
    config["mounts"] = [m for m in config["mounts"] if m["destination"] != "/dev/pts"]
    (bundle / "config.json").write_text(json.dumps(config))
    r = runtime.run(bundle)
    assert r.returncode != 0
    assert "process.terminal: cannot open /dev/ptmx" in r.stderr


def test_sigterm_during_setup_stops_it_and_leaves_nothing(runtime, make_bundle):
    # thousands of mounts make the setup last long enough to be interrupted in the middle
    bundle = make_bundle(["true"])
    config = json.loads((bundle / "config.json").read_text())
    config["mounts"] += [{"destination": f"/tmp/m{i}", "type": "tmpfs", "source": "tmpfs"}
                         for i in range(3000)]
    (bundle / "config.json").write_text(json.dumps(config))
    proc = runtime.popen("run", "--bundle", str(bundle), "t1")
    try:
        deadline = time.monotonic() + 30
        while not (runtime.state_root / "t1").exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert "setup interrupted by SIGTERM; nothing was started" in err


def test_terminal_output_reader_going_away_does_not_hang_the_container(runtime, make_bundle):
    bundle = make_bundle(["sh", "-c", "yes | head -c 2000000; echo done >&2"],
                         process={"terminal": True})
    proc = runtime.popen("run", "--bundle", str(bundle), "t1")
    try:
        assert proc.stdout.read(10)
        proc.stdout.close()  # like `| head -c 10`: our reader is gone
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0


def test_debug_text_log(runtime, make_bundle, tmp_path):
    log = tmp_path / "rt.log"
    r = runtime("--debug", "--log", str(log), "run", "--bundle", str(make_bundle()), "t1")
    assert r.returncode == 0, r.stderr
    lines = log.read_text().splitlines()
    assert any("level=debug" in line and "init is pid" in line for line in lines)
    assert all(line.startswith('time="') for line in lines)


def test_no_debug_lines_without_debug(runtime, make_bundle, tmp_path):
    log = tmp_path / "rt.log"
    r = runtime("--log", str(log), "run", "--bundle", str(make_bundle()), "t1")
    assert r.returncode == 0, r.stderr
    assert "level=debug" not in (log.read_text() if log.exists() else "")
