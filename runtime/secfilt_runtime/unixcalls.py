"""A unix-socket call performed by the supervisor for another process, meaning what it would
have meant to that process: a path address is looked up from the caller's root or working
directory, and the descriptors an SCM_RIGHTS message passes are the caller's.

The supervisor performs such a call instead of letting the kernel run it when another task
shares the caller's descriptor table (supervisor.py): the kernel would look the descriptor up
again, and find whatever that task put there."""

from __future__ import annotations

import os
import struct
from array import array

from . import kernel
from .policy.sockaddr import control_message_spans

AF_UNIX = 1
SOL_SOCKET, SCM_RIGHTS = 1, 1
_FAMILY = struct.Struct("=H")


def named(address: bytes) -> bool:
    """Is this a unix address naming a path (not abstract, not unnamed)?"""
    return (len(address) > _FAMILY.size and _FAMILY.unpack_from(address)[0] == AF_UNIX
            and address[_FAMILY.size] != 0)


def from_callers_place(pid: int, address: bytes) -> bytes:
    """`address`, for the calling thread to use as `pid` would: the thread's working directory
    becomes the caller's root (an absolute path) or working directory (a relative one), seen
    through /proc/PID (its mount namespace too), and the path is made relative to it. The
    thread must be one of the supervisor's workers: it leaves the process's shared file-system
    context for one of its own (the process's working directory never moves).

    What resolves differently: a symlink on the path to an absolute target is followed from
    the supervisor's root, `..` can climb above the caller's root, and /proc/self met
    anywhere but at the start of the path is the supervisor's."""
    path = _own_proc_links(address[_FAMILY.size:].split(b"\0", 1)[0], pid)
    kernel.unshare(kernel.CLONE_FS)  # raises rather than move the whole process's directory
    where = os.open(f"/proc/{pid}/{'root' if path.startswith(b'/') else 'cwd'}",
                    os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fchdir(where)
    finally:
        os.close(where)
    return address[:_FAMILY.size] + (path.lstrip(b"/") or b".") + b"\0"


def _own_proc_links(path: bytes, pid: int) -> bytes:
    """/proc/self and /proc/thread-self name whoever looks them up: the caller's, not ours
    (systemd reaches a long socket path as /proc/self/fd/DIRFD/NAME)."""
    for link in (b"/proc/self", b"/proc/thread-self"):
        if path == link or path.startswith(link + b"/"):
            return b"/proc/%d" % pid + path[len(link):]
    return path


class PassedDescriptors:
    """The control messages with the caller's SCM_RIGHTS descriptors replaced by duplicates of
    ours (the same open files); the duplicates close with this object."""

    def __init__(self, pidfd: int, control: bytes) -> None:
        self.taken: list[int] = []
        self.control = control
        spans = control_message_spans(control)
        if not spans or not any(level == SOL_SOCKET and type_ == SCM_RIGHTS
                                for level, type_, _, _ in spans):
            return
        out = bytearray(control)
        try:
            for level, type_, start, end in spans:
                if level != SOL_SOCKET or type_ != SCM_RIGHTS:
                    continue
                theirs = array("i", control[start:start + (end - start) // 4 * 4])
                ours = array("i", (self._take(pidfd, fd) for fd in theirs))
                out[start:start + len(ours) * 4] = ours.tobytes()
        except BaseException:
            self.close()
            raise
        self.control = bytes(out)

    def _take(self, pidfd: int, fd: int) -> int:
        dup = kernel.pidfd_getfd(pidfd, fd)  # EBADF for a number it has not: the kernel's too
        self.taken.append(dup)
        return dup

    def close(self) -> None:
        for fd in self.taken:
            os.close(fd)
        self.taken.clear()

    def __enter__(self) -> PassedDescriptors:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
