"""SCMP_ACT_NOTIFY: getting the listener fd from the container init to the seccomp agent.

runc has the init send the fd over a socket after loading the filter, which works only if the
profile allows those calls. Here the init makes no syscall at all after the load but execve:
it publishes the fd number in a page shared with the runtime (mapped before the fork) and spins
on that page; the runtime copies the descriptor out of the init with pidfd_getfd(2), says so in
the page, and the init goes on to execve, which closes its own copy (the kernel opens the
listener close-on-exec). The spin reads memory and the vDSO clock only.

The runtime then hands the fd to the agent as runc does: a connection to listenerPath, one
message with the fd in SCM_RIGHTS and the container process state as JSON (fields "ociVersion",
"fds" naming "seccompFd", "pid", "metadata", "state").
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import socket
import struct
import time

from .. import jsonio, kernel
from ..errors import ContainerError

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WAITING, _PUBLISHED, _TAKEN = 0, 1, 2
_LAYOUT = struct.Struct("=Bxxxi")  # state, fd
HANDOFF_SECONDS = 30.0
OCI_VERSION = "1.0.2"  # the version runc's agents read in this message
SECCOMP_FD_NAME = "seccompFd"


class Handoff:
    """A page shared by the runtime and the init: create it before forking. It is a memfd, so
    a runtime process that did not fork the init (`start` after `create`) can map the same
    page from a descriptor passed to it (`attach`)."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            fd = os.memfd_create("secfilt-seccomp-handoff", os.MFD_CLOEXEC)
            os.ftruncate(fd, mmap.PAGESIZE)
        self._fd = fd
        self._page = mmap.mmap(fd, mmap.PAGESIZE, flags=mmap.MAP_SHARED)

    @classmethod
    def attach(cls, fd: int) -> Handoff:
        """The page behind a descriptor received from the process holding it."""
        return cls(fd)

    def fileno(self) -> int:
        return self._fd

    # -- in the init, after the filters are loaded: no syscalls ------------------------------

    def publish_and_wait(self, fd: int, timeout: float = HANDOFF_SECONDS) -> bool:
        page = self._page
        _LAYOUT.pack_into(page, 0, _PUBLISHED, fd)
        deadline = time.monotonic() + timeout
        while page[0] != _TAKEN:
            if time.monotonic() > deadline:
                return False
        return True

    # -- in the runtime ------------------------------------------------------------------------

    def take(self, pid: int, watch_fd: int, timeout: float = HANDOFF_SECONDS) -> int | None:
        """Copy the init's listener fd into the runtime. None when the init reported something
        on `watch_fd` (its channel: an error, or end-of-file) instead of publishing."""
        deadline = time.monotonic() + timeout
        while self._page[0] != _PUBLISHED:
            if select.select([watch_fd], [], [], 0.001)[0]:
                return None
            if time.monotonic() > deadline:
                raise ContainerError("linux.seccomp: the container init did not hand over the "
                                     "seccomp listener")
        _, target = _LAYOUT.unpack_from(self._page, 0)
        pidfd = kernel.pidfd_open(pid)
        try:
            fd = kernel.pidfd_getfd(pidfd, target)
        except OSError as e:
            raise ContainerError(f"linux.seccomp: cannot take the seccomp listener from the "
                                 f"container init: {os.strerror(e.errno or 0)}") from None
        finally:
            os.close(pidfd)
        return fd

    def release(self) -> None:
        """Let the init go on to execve (its copy of the listener is no longer needed)."""
        self._page[0] = _TAKEN

    def close(self) -> None:
        """Unmap the page and close its memfd (once the listener is handed over, or the
        hand-over abandoned); closing again does nothing."""
        if self._fd < 0:
            return
        self._page.close()
        os.close(self._fd)
        self._fd = -1


def agent_message(state: dict[str, Any], pid: int, metadata: str | None) -> bytes:
    """What runc sends a seccomp agent (specs-go ContainerProcessState)."""
    doc: dict[str, Any] = {"ociVersion": OCI_VERSION, "fds": [SECCOMP_FD_NAME], "pid": pid,
                           "state": state}
    if metadata:
        doc["metadata"] = metadata
    return jsonio.dumps(doc).encode()


def send_to_agent(listener_path: str, fd: int, message: bytes) -> None:
    """Connect to the agent's socket and pass it the listener with the state message."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.settimeout(10)
            sock.connect(listener_path)
            socket.send_fds(sock, [message], [fd])
        except OSError as e:
            raise ContainerError(f"linux.seccomp.listenerPath ({listener_path}): cannot hand "
                                 f"the seccomp listener to the agent: "
                                 f"{e.strerror or e}") from None


def hand_to_agent(handoff: Handoff, listener_path: str, metadata: str | None, pid: int,
                  state: dict[str, Any], watch_fd: int) -> None:
    """In the runtime, after "start": take the listener from the init, give it to the agent,
    then let the init execute the process (as with runc, the agent holds the listener before
    the process runs). Returns quietly when the init failed first (its report is on
    watch_fd); raises when the agent cannot be reached (the init is never released). The
    page is closed in every case: it serves one hand-over."""
    try:
        fd = handoff.take(pid, watch_fd)
        if fd is None:
            return
        try:
            send_to_agent(listener_path, fd, agent_message(state, pid, metadata))
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
        handoff.release()
    finally:
        handoff.close()
