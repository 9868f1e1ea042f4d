"""lifecycle._report_of_exited_init: when the tracer could not be spawned (it is spawned while
the init sets up), an init that has exited meanwhile has the real story in its report; an init
that lives does not, and the tracer's own error stands."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from secfilt_runtime import lifecycle
from secfilt_runtime.sync import Channel


class NoOomCgroup:
    def oom_kills(self) -> int:
        return 0


def fork_init(body: Callable[[Channel], None]) -> tuple[Channel, lifecycle.Child]:
    """A child playing the init: runs body with its end of the channel, then exits."""
    ours, theirs = Channel.pair()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            ours.close()
            body(theirs)
        finally:
            os._exit(1)
    theirs.close()
    return ours, lifecycle.Child(pid)


def wait_exited(child: lifecycle.Child) -> None:
    """Until the child is a zombie, as an init the tracer could not seize is (not reaped)."""
    deadline = time.monotonic() + 10
    while os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def report(ours: Channel, child: lifecycle.Child) -> str | None:
    return lifecycle._report_of_exited_init(ours, child, NoOomCgroup(), None)  # type: ignore[arg-type]


def test_an_init_that_lives_has_no_report_and_its_messages_stay_unread():
    ours, child = fork_init(lambda chan: (chan.send("ready"), time.sleep(30)))
    try:
        assert report(ours, child) is None
        assert ours.expect("ready", "the init")["type"] == "ready"
    finally:
        child.kill_and_reap()
        ours.close()


def test_an_exited_init_is_heard_past_its_earlier_messages():
    def fail(chan: Channel) -> None:
        r, w = os.pipe()
        chan.send("pty", fds=[r])  # a descriptor passed before the error is not leaked
        chan.send("error", message='process.args[0]: executable file "/x": No such file')
    ours, child = fork_init(fail)
    try:
        wait_exited(child)
        fds = len(os.listdir("/proc/self/fd"))
        assert report(ours, child) == 'process.args[0]: executable file "/x": No such file'
        assert len(os.listdir("/proc/self/fd")) == fds
    finally:
        child.kill_and_reap()
        ours.close()


def test_an_init_that_exited_without_a_report_says_so():
    ours, child = fork_init(lambda chan: None)
    try:
        wait_exited(child)
        message = report(ours, child)
        assert message is not None and "exited during setup without a report" in message
    finally:
        child.kill_and_reap()
        ours.close()
