"""The policy log: one JSON object per line for each denied call (or, in audit mode, each call
enforce mode would deny). Opened once, appended to with one write(2) per line (O_APPEND keeps
lines whole when several tracers share a file)."""

from __future__ import annotations

import errno
import os
import time

from .. import jsonio
from .judge import ARCH_NAMES, Decision

# annotations only (strings here): typing costs ~5 ms of every secfilt start
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC


class PolicyLog:
    def __init__(self, path: str, container_id: str | None) -> None:
        self.fd = os.open(path, _FLAGS | os.O_CREAT, 0o600)
        self.container_id = container_id

    def close(self) -> None:
        os.close(self.fd)

    def write(self, pid: int, tid: int, arch: int, decision: Decision, audit: bool) -> None:
        os.write(self.fd, line(self.container_id, pid, tid, arch, decision, audit).encode())


def cannot_open(path: str) -> str | None:
    """Why PolicyLog could not open `path` (strerror), or None: the tracer opens it after the
    fork, where a failure no longer names the setting, so callers check first. Nothing is
    created here, so a run refused later leaves no file behind."""
    try:
        if os.path.lexists(path):
            os.close(os.open(path, _FLAGS))
            return None
    except OSError as e:
        return e.strerror
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        return os.strerror(errno.ENOENT)
    if not os.access(parent, os.W_OK | os.X_OK):
        return os.strerror(errno.EACCES)
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
