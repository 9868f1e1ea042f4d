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
# pread's offset is signed; no user address reaches this far (x86_64 user space ends at 2**56)
_PREAD_LIMIT = 1 << 63
_PAGE = os.sysconf("SC_PAGE_SIZE")
MAX_OPEN = 256  # /proc/TID/mem descriptors kept open at most (tasks making judged calls)
# a path's first read: nearly every path fits, and a pread of 256 bytes costs ~0.8 us less
# here than one of a page (the bytes object allocated and copied)
FIRST_READ = 256


class Unreadable(Exception):
    """The call is answered with `errno` (EFAULT, ENAMETOOLONG) without reaching the kernel."""

    def __init__(self, err: int, what: str) -> None:
        super().__init__(f"{what}: {os.strerror(err)}")
        self.errno = err


class Memory:
    """One reader per tracer. Each task's /proc/TID/mem is opened at its first judged call and
    kept: a pread on it costs a third of a process_vm_readv, which looks the task up and checks
    ptrace access on every call. The descriptor is bound to the address space the task had
    when it was opened, so forget() must be called when the task execs (a new address space)
    or exits (its id may be reused); the tracer does both from the events it is sent.
    When the file cannot be opened, process_vm_readv serves the read (a task without a
    readable address space: EFAULT)."""

    def __init__(self) -> None:
        self._reader = kernel.RemoteReader(128 * 1024 + PATH_MAX)
        self._mem: dict[int, int] = {}  # tid -> /proc/TID/mem, oldest first

    def forget(self, tid: int) -> None:
        fd = self._mem.pop(tid, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for fd in self._mem.values():
            os.close(fd)
        self._mem.clear()

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
        # FIRST_READ bytes first, within the page (one page is one page to pin in the tracee):
        # nearly every path ends there; the rest of PATH_MAX only when no NUL came
        first = min(FIRST_READ, _PAGE - addr % _PAGE)  # the limit is on a page boundary
        got = self._read(pid, addr, first)
        end = got.find(b"\0")
        if end >= 0:
            return got[:end]
        if len(got) == first and first < PATH_MAX and addr + first < _ADDRESS_LIMIT:
            got += self._read(pid, addr + first,
                              min(PATH_MAX - first, _ADDRESS_LIMIT - addr - first))
            end = got.find(b"\0")
            if end >= 0:
                return got[:end]
        if len(got) >= PATH_MAX:
            raise Unreadable(errno.ENAMETOOLONG, what)
        raise Unreadable(errno.EFAULT, what)

    def _read(self, pid: int, addr: int, length: int) -> bytes:
        if addr + length <= _PREAD_LIMIT:
            fd = self._mem.get(pid)
            if fd is None:
                fd = self._open(pid)
            if fd is not None:
                try:
                    return os.pread(fd, length, addr)
                except OSError as e:
                    # EIO: the first page is not mapped (a later one: a short read instead)
                    if e.errno != errno.EIO:
                        raise
                    return b""
        try:
            n = self._reader.read(pid, addr, length)
            return ctypes.string_at(self._reader.buf, n)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOSYS):
                raise
        return b""

    def _open(self, pid: int) -> int | None:
        try:
            fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None  # gone, or not ours to read: process_vm_readv answers
        if len(self._mem) >= MAX_OPEN:
            os.close(self._mem.pop(next(iter(self._mem))))
        self._mem[pid] = fd
        return fd
