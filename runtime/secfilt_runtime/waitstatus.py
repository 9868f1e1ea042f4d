"""A wait status as a command's exit code. Alone in its module: `secfilt` and `run` both need
it, and `secfilt` must not pay for importing the runtime's lifecycle."""

from __future__ import annotations

import os


def exit_code(wait_status: int) -> int:
    """The shell's convention: the exit code, or 128 + the signal that killed the process."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)
