"""The container's pseudo-terminal, made in the init when process.terminal is true.

The pty comes from the container's own devpts instance (/dev/ptmx after pivot_root), so the
terminal belongs to the container; the runtime gets the master end over the sync channel.
"""

from __future__ import annotations

import fcntl
import os
import termios

from ..errors import ContainerError

_TIOCSPTLCK = 0x40045431  # _IOW('T', 0x31, int)
_TIOCGPTPEER = 0x5441  # _IO('T', 0x41): open the peer of a master without a path lookup


def open_pty(uid: int) -> tuple[int, int]:
    """(master, slave) of a new pty of the container's devpts; the slave belongs to `uid`."""
    try:
        master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise ContainerError(
            f"process.terminal: cannot open /dev/ptmx ({e.strerror}); the config needs a "
            "devpts mount at /dev/pts"
        ) from None
    fcntl.ioctl(master, _TIOCSPTLCK, b"\0\0\0\0")
    slave = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    try:  # uid may be unmapped; the process then sees nobody
        os.fchown(slave, uid, -1)
    except OSError:
        pass
    return master, slave


def make_controlling(slave: int) -> None:
    """Make the slave the session's controlling terminal and the process's stdio."""
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
