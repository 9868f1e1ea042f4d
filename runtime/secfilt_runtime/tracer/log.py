"""The policy log: one JSON object per line for each denied call (or, in audit mode, each call
enforce mode would deny). Opened once, appended to with one write(2) per line (O_APPEND keeps
lines whole when several tracers share a file).

The file is opened by the tracer, as the runtime's user (root), often where the sandbox may
write (a log beside the work it refuses, in an allow-write volume), and again at every run. So
no symlink is followed on the way to it (one planted there would have the tracer append to a
host file the policy protects, or create one anywhere), and only a regular file is written
(a device node planted there would take the lines raw). Only the opener's own descriptors
(/dev/stderr, /proc/self/fd/N), which no sandbox can swap, are opened as named.
"""

from __future__ import annotations

import errno
import os
import stat
import time

from .. import jsonio, kernel
from .judge import ARCH_NAMES, Decision

# annotations only (strings here): typing costs ~5 ms of every secfilt start
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
_NO_SYMLINKS = kernel.RESOLVE_NO_SYMLINKS
NOT_A_FILE = "not a regular file"
THROUGH_A_SYMLINK = "a symlink on the way to it (name the file itself)"


def _own_descriptor(path: str) -> bool:
    """/dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N or /proc/PID/fd/N (no `re`: its
    imports would cost every secfilt start ~4 ms)."""
    if path in ("/dev/stdout", "/dev/stderr"):
        return True
    parts = path.split("/")
    if len(parts) == 4 and parts[:2] == ["", "dev"] and parts[2] == "fd":
        return parts[3].isdigit()
    return len(parts) == 5 and parts[:2] == ["", "proc"] and parts[3] == "fd" and (
        parts[2] == "self" or parts[2].isdigit()) and parts[4].isdigit()


def open_log(path: str) -> int:
    """A descriptor to append to `path`, created 0600 if missing (raises OSError)."""
    if _own_descriptor(path):
        return os.open(path, _FLAGS)
    try:
        return kernel.openat2(-100, path, _FLAGS | os.O_CREAT | os.O_EXCL, 0o600, _NO_SYMLINKS)
    except FileExistsError:
        pass
    # there: looked at through a path descriptor, reopened for writing only when a regular
    # file (the same inode: no swap between the look and the open)
    where = kernel.openat2(-100, path, os.O_PATH, 0, _NO_SYMLINKS)
    try:
        if not stat.S_ISREG(os.fstat(where).st_mode):
            raise OSError(errno.EINVAL, NOT_A_FILE)
        return os.open(f"/proc/self/fd/{where}", _FLAGS)
    finally:
        os.close(where)


class PolicyLog:
    def __init__(self, path: str, container_id: str | None) -> None:
        self.fd = open_log(path)
        self.container_id = container_id

    def close(self) -> None:
        os.close(self.fd)

    def write(self, pid: int, tid: int, arch: int, decision: Decision, audit: bool) -> None:
        os.write(self.fd, line(self.container_id, pid, tid, arch, decision, audit).encode())


def refusal(path: str, source: str) -> str | None:
    """The error refusing `path` as the log the setting `source` names, or None: the tracer
    opens it after the fork, where its error names neither, so callers (secfilt --log, a
    container's org.secfilter.log) check first, before anything is created."""
    why = cannot_open(path)
    return None if why is None else f"{source}: cannot open {path}: {why}"


def cannot_open(path: str) -> str | None:
    """Why open_log could not open `path`, or None. Nothing is created here, so a run refused
    later leaves no file behind."""
    if not os.path.isabs(path):
        return "not an absolute path"
    try:
        if _own_descriptor(path):
            os.close(os.open(path, _FLAGS))
            return None
        try:
            os.close(kernel.openat2(-100, path, os.O_PATH, 0, _NO_SYMLINKS))
        except FileNotFoundError:
            parent = kernel.openat2(-100, os.path.dirname(path), os.O_PATH | os.O_DIRECTORY,
                                    0, _NO_SYMLINKS)
            try:
                if not os.access(f"/proc/self/fd/{parent}", os.W_OK | os.X_OK):
                    return os.strerror(errno.EACCES)
            finally:
                os.close(parent)
            return None
        os.close(open_log(path))
    except OSError as e:
        if e.errno == errno.ELOOP:
            return THROUGH_A_SYMLINK
        return NOT_A_FILE if e.strerror == NOT_A_FILE else os.strerror(e.errno)
    return None


def line(container_id: str | None, pid: int, tid: int, arch: int, decision: Decision,
         audit: bool) -> str:
    now = time.time()
    record: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        + f".{int(now % 1 * 1e6):06d}Z",
        "container": container_id,
        "pid": pid,
        "tid": tid,
        "arch": ARCH_NAMES.get(arch, hex(arch)),
        "syscall": decision.syscall,
        "args": decision.details,
        "rule": decision.rule,
        "reason": decision.reason,
        "action": "audit" if audit and decision.allowed else "deny",
        "errno": None if decision.allowed else decision.errno,
    }
    return jsonio.dumps(record, separators=(",", ":")) + "\n"
