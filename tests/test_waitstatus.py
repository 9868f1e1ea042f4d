"""waitstatus.exit_code on the statuses of real children: exit codes pass through, a signal
becomes 128 + its number (the shell's convention, which `run` and `secfilt` both follow)."""

from __future__ import annotations

import os
import signal

import pytest

from secfilt_runtime.waitstatus import exit_code


def status_of(child_does) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            child_does()
        finally:
            os._exit(99)  # not reached unless child_does returned
    _, status = os.waitpid(pid, 0)
    return status


@pytest.mark.parametrize("code", [0, 1, 7, 128, 255])
def test_exit_codes_pass_through(code):
    assert exit_code(status_of(lambda: os._exit(code))) == code


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV])
def test_a_signal_is_128_plus_its_number(sig):
    def die():
        signal.signal(signal.SIGSEGV, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), sig)

    assert exit_code(status_of(die)) == 128 + sig
