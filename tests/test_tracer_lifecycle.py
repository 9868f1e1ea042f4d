"""The tracer's life: a detached tracer (spawn) and `add`, fail-closed when it dies, the
hardening that keeps a process from escaping it, and what BPF decides with no tracer at all."""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

import pytest
from test_tracer_harness import (
    HAVE_GCC,
    log_records,
    read_lines,
    run_filtered_only,
    run_traced,
    start,
)

from secfilt_runtime import tracer
from secfilt_runtime.errors import ContainerError
from secfilt_runtime.policy.model import Policy

pytestmark = pytest.mark.skipif(not HAVE_GCC, reason="needs gcc to build the helper")
EPERM = f"ERR {errno.EPERM}"


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def test_spawned_tracer_serves_and_exits_when_alone(helper: str, tmp_path: Path) -> None:
    policy = Policy(read_only=True, allow_write=(str(tmp_path / "ok"),))
    (tmp_path / "ok").mkdir()
    pid, release, out = start(policy, [helper, "mkdir", f"{tmp_path}/no", "mkdir",
                                       f"{tmp_path}/ok/yes"])
    tracer_pid = tracer.spawn(pid, policy, container_id="c", log_path=None,
                              control_socket=None)
    assert tracer_pid not in (os.getpid(), pid)
    release()
    lines = read_lines(out)
    _, status = os.waitpid(pid, 0)  # the real parent still reaps its child
    assert os.waitstatus_to_exitcode(status) == 0
    assert lines == [f"mkdir {EPERM}", "mkdir OK"]
    assert _gone(tracer_pid)
    with open(f"/proc/{os.getpid()}/status") as f:
        assert "TracerPid:\t0" in f.read()


def test_spawned_tracer_is_detached(helper: str, tmp_path: Path) -> None:
    policy = Policy(read_only=True)
    pid, release, out = start(policy, [helper, "sleep", "1"])
    tracer_pid = tracer.spawn(pid, policy, container_id="c", log_path=None,
                              control_socket=str(tmp_path / "ctl"))
    try:
        with open(f"/proc/{tracer_pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        assert int(fields[3]) != os.getsid(0)  # a session of its own: no terminal signals
        assert int(fields[1]) != os.getpid()  # not our child
        # stdio on /dev/null: it holds no engine pipe open
        assert sorted(os.listdir(f"/proc/{tracer_pid}/fd"))[:3] == ["0", "1", "2"]
        assert os.readlink(f"/proc/{tracer_pid}/fd/1") == "/dev/null"
        assert os.readlink(f"/proc/{tracer_pid}/cwd") == "/"
        assert oct(os.stat(tmp_path / "ctl").st_mode & 0o777) == "0o600"
    finally:
        release()
        read_lines(out)
        os.waitpid(pid, 0)
    assert _gone(tracer_pid)


def test_add_seizes_another_process(helper: str, tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    policy = Policy(read_only=True, log_path=log)
    ctl = str(tmp_path / "ctl")
    first, release1, out1 = start(policy, [helper, "sleep", "2"])
    tracer_pid = tracer.spawn(first, policy, container_id="c", log_path=log, control_socket=ctl)
    release1()
    second, release2, out2 = start(policy, [helper, "mkdir", f"{tmp_path}/exec-made"])
    tracer.add(ctl, second)
    release2()
    assert read_lines(out2) == [f"mkdir {EPERM}"]
    os.waitpid(second, 0)
    read_lines(out1)
    os.waitpid(first, 0)
    assert not (tmp_path / "exec-made").exists()
    assert [r["args"]["path"] for r in log_records(log)] == [f"{tmp_path}/exec-made"]
    assert _gone(tracer_pid)


def test_add_refuses_bad_requests(tmp_path: Path) -> None:
    with pytest.raises(ContainerError, match="tracer at"):
        tracer.add(str(tmp_path / "no-such-socket"), 1)


def test_tracer_killed_takes_the_tracee_with_it(helper: str, tmp_path: Path) -> None:
    policy = Policy(read_only=True, allow_write=(str(tmp_path),))
    pid, release, out = start(policy, [helper, "sleep", "2", "open_w", f"{tmp_path}/after"])
    tracer_pid = tracer.spawn(pid, policy, container_id="c", log_path=None,
                              control_socket=None)
    release()
    time.sleep(0.3)
    os.kill(tracer_pid, signal.SIGKILL)
    read_lines(out)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert not (tmp_path / "after").exists()


def test_hardening_against_the_tracer(helper: str, tmp_path: Path) -> None:
    out = run_traced(Policy(read_only=True, allow_write=(str(tmp_path),)), [
        helper, "ptrace", "clone3", "io_uring", "listener", "untraced_clone",
        f"{tmp_path}/untraced"])
    assert out.answer("ptrace") == EPERM
    assert out.answer("clone3") == f"ERR {errno.ENOSYS}"
    assert out.answer("io_uring") == EPERM
    assert out.answer("listener") == EPERM
    assert out.answer("untraced_clone") == EPERM
    assert not (tmp_path / "untraced").exists()


def test_hardening_stays_in_audit_mode(helper: str, tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    out = run_traced(Policy(read_only=True, mode="audit", log_path=log),
                     [helper, "ptrace", "io_uring"], log_path=log)
    assert out.answer("ptrace") == EPERM and out.answer("io_uring") == EPERM


def test_bpf_decides_alone_without_a_tracer(helper: str, tmp_path: Path) -> None:
    # no tracer attached: any call that went to TRACE would fail with ENOSYS
    out = run_filtered_only(Policy(read_only=True, mainstream_network_families=True), [
        helper, "open_r", "/etc/passwd", "open_w", f"{tmp_path}/x", "mkdir", f"{tmp_path}/d",
        "socket", "2", "2", "socket", "17", "3", "int80_getpid"])
    assert out.answer("open_r") == "OK"
    assert out.answer("open_w") == EPERM and out.answer("mkdir") == EPERM
    assert out.answer("socket", 0) == "OK" and out.answer("socket", 1) == EPERM
    assert out.answer("int80_getpid") == "OK"
    assert os.listdir(tmp_path) == []


def test_traced_call_without_tracer_fails_closed(helper: str, tmp_path: Path) -> None:
    out = run_filtered_only(Policy(read_only=True, allow_write=(str(tmp_path),),
                                   no_outbound_network=True),
                            [helper, "open_w", f"{tmp_path}/x", "open_r", "/etc/passwd",
                             "socket", "2", "2"])
    assert out.answer("open_w") == f"ERR {errno.ENOSYS}"
    # what BPF can decide never needs the tracer, even when the policy has one
    assert out.answer("open_r") == "OK" and out.answer("socket") == "OK"
    assert os.listdir(tmp_path) == []


def test_null_tracer_resumes_everything(helper: str, tmp_path: Path) -> None:
    from test_tracer_harness import start as start_child

    from secfilt_runtime.tracer import null

    policy = Policy(read_only=True, allow_write=("/nowhere",))
    pid, release, out = start_child(policy, [helper, "open_w", f"{tmp_path}/x"])
    status = null.trace_child(pid, release=release)
    assert os.waitstatus_to_exitcode(status) == 0
    assert read_lines(out) == ["open_w OK"]


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_group_stop_and_signals_reach_the_tracee(helper: str) -> None:
    import threading

    policy = Policy(read_only=True)
    pid, release, out = start(policy, [helper, "sleep", "1", "open_r", "/etc/passwd"])
    seen: dict[str, str] = {}

    def poke() -> None:
        time.sleep(0.3)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.3)
        seen["stopped"] = _state(pid)  # stays stopped: the tracer did PTRACE_LISTEN
        os.kill(pid, signal.SIGCONT)

    t = threading.Thread(target=poke)
    t.start()
    status = tracer.trace_child(pid, policy, container_id="c", log_path=None, release=release)
    t.join()
    assert seen["stopped"] in ("T", "t")
    assert os.waitstatus_to_exitcode(status) == 0
    assert read_lines(out) == ["open_r OK"]


def test_exit_status_by_signal_is_unchanged(helper: str) -> None:
    import threading

    policy = Policy(read_only=True)
    pid, release, out = start(policy, [helper, "sleep", "5"])
    threading.Timer(0.3, os.kill, (pid, signal.SIGUSR1)).start()
    status = tracer.trace_child(pid, policy, container_id="c", log_path=None, release=release)
    read_lines(out)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGUSR1



def test_tracer_is_undumpable_while_serving(helper: str) -> None:
    # a tracee of the tracer's own uid could otherwise write the tracer's memory through
    # /proc/PID/mem or take its descriptors with pidfd_getfd
    import threading

    from secfilt_runtime import kernel

    policy = Policy(read_only=True)
    pid, release, out = start(policy, [helper, "sleep", "1"])
    seen: list[int] = []
    threading.Timer(0.4, lambda: seen.append(kernel.prctl(3))).start()  # PR_GET_DUMPABLE
    before = kernel.prctl(3)
    tracer.trace_child(pid, policy, container_id="c", log_path=None, release=release)
    read_lines(out)
    assert seen == [0]
    assert kernel.prctl(3) == before == 1


def test_a_filter_of_its_own_cannot_steer_the_tracer(helper: str, tmp_path: Path) -> None:
    # its TRACE data outranks ours on equal actions: the tracer must judge by the registers
    out = run_traced(Policy(read_only=True, allow_write=(str(tmp_path / "ok"),)), [
        helper, "own_filter", "mkdir", f"{tmp_path}/no", "mkdir", f"{tmp_path}/ok",
        "open_r", "/etc/passwd"])
    assert out.answer("own_filter") == "OK"
    assert out.answer("mkdir", 0) == EPERM and out.answer("mkdir", 1) == "OK"
    assert out.answer("open_r") == "OK"
    assert sorted(os.listdir(tmp_path)) == ["ok"]


def test_terminal_injection_is_refused(helper: str) -> None:
    # stdin is whatever the test runner has: without the policy the call reaches the tty layer
    out = run_traced(Policy(read_only=True), [helper, "tiocsti"])
    assert out.answer("tiocsti") == EPERM
