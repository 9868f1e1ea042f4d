"""ops._wait_gone: how delete waits for the init and the tracer to exit. A pidfd wakes it at
the exit of any process, our child or not; a pid now naming another process is not waited
for; a process that stays is given up on at the timeout."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

from secfilt_runtime import ops
from secfilt_runtime.state import proc_start_time


@contextlib.contextmanager
def sleeper() -> Iterator[tuple[subprocess.Popen, int]]:
    """A child of ours and its start time; killed and reaped at the end."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        start = proc_start_time(child.pid)
        assert start is not None
        yield child, start
    finally:
        child.kill()
        child.wait()


def test_a_process_that_is_not_our_child():
    """The background sleep is the shell's child, reparented away when the shell exits."""
    out = subprocess.run(["sh", "-c", "sleep 0.3 >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True).stdout
    pid = int(out)
    start = proc_start_time(pid)
    assert start is not None and os.getppid() != pid
    t0 = time.monotonic()
    assert ops._wait_gone(pid, start, timeout=10)
    assert 0.1 < time.monotonic() - t0 < 5
    assert proc_start_time(pid) != start


def test_our_child_counts_as_gone_at_its_exit_before_it_is_reaped():
    with sleeper() as (child, start):
        timer = threading.Timer(0.2, child.send_signal, (signal.SIGKILL,))
        timer.start()
        try:
            assert ops._wait_gone(child.pid, start, timeout=10)
            assert child.returncode is None  # a zombie still: no reap was needed to see it
        finally:
            timer.cancel()


def test_gives_up_at_the_timeout():
    with sleeper() as (child, start):
        t0 = time.monotonic()
        assert not ops._wait_gone(child.pid, start, timeout=0.3)
        assert 0.25 < time.monotonic() - t0 < 3
        assert child.poll() is None


def test_another_process_under_the_pid_is_not_waited_for():
    with sleeper() as (child, start):
        t0 = time.monotonic()
        assert ops._wait_gone(child.pid, start + 1, timeout=10)  # not the one we recorded
        assert time.monotonic() - t0 < 1
        assert ops._wait_gone(0, 0) and ops._wait_gone(-1, 0)


def test_the_fallback_without_pidfd_sees_the_same():
    """Where pidfd_open is missing, /proc is polled: the same answers."""
    with sleeper() as (child, start):
        assert not ops._poll_gone(child.pid, start, 0.1)
        child.kill()
        assert ops._poll_gone(child.pid, start, 10)
