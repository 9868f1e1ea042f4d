"""Reading a stopped tracee's memory: strings bounded by PATH_MAX, structs, socket addresses.

A pointer that cannot be read is answered EFAULT by the caller, never allowed: the kernel would
read the same address a moment later, and a racing thread could map it in between.
"""

from __future__ import annotations

import ctypes
import errno
import os

from .. import kernel

PATH_MAX = 4096
_ADDRESS_LIMIT = 1 << 64


class Unreadable(Exception):
    """The call is answered with `errno` (EFAULT, ENAMETOOLONG) without reaching the kernel."""

    def __init__(self, err: int, what: str) -> None:
        super().__init__(f"{what}: {os.strerror(err)}")
        self.errno = err


class Memory:
    """One reader per tracer: a single reused buffer, process_vm_readv first, /proc/PID/mem
    when the kernel refuses it (a tracee without a readable mm: the fallback says EFAULT)."""

    def __init__(self) -> None:
        self._reader = kernel.RemoteReader(128 * 1024 + PATH_MAX)

    def read(self, pid: int, addr: int, length: int, what: str) -> bytes:
        """Exactly `length` bytes at `addr`, or Unreadable(EFAULT)."""
        if length == 0:
            return b""
        if addr == 0 or length < 0 or addr + length > _ADDRESS_LIMIT:
            raise Unreadable(errno.EFAULT, what)
        got = self._read(pid, addr, length)
        if len(got) < length:
            raise Unreadable(errno.EFAULT, what)
        return got

    def string(self, pid: int, addr: int, what: str) -> bytes:
        """The NUL-terminated string at `addr`, as the kernel's getname would read it."""
        if addr == 0 or addr >= _ADDRESS_LIMIT:
            raise Unreadable(errno.EFAULT, what)
        got = self._read(pid, addr, min(PATH_MAX, _ADDRESS_LIMIT - addr))
        end = got.find(b"\0")
        if end >= 0:
            return got[:end]
        if len(got) >= PATH_MAX:
            raise Unreadable(errno.ENAMETOOLONG, what)
        raise Unreadable(errno.EFAULT, what)

    def _read(self, pid: int, addr: int, length: int) -> bytes:
        try:
            n = self._reader.read(pid, addr, length)
            return ctypes.string_at(self._reader.buf, n)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOSYS):
                raise
        try:
            with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
                return os.pread(mem.fileno(), length, addr)
        except OSError:
            return b""
