"""The state directory: one directory per container under --root, holding state.json.

Kept free of heavy imports: engines call `state`, `kill`, `start` and `delete` constantly.
A container's status is derived from facts (is the init alive, with the start time we recorded,
is its cgroup frozen) rather than trusted from the file, which may be stale after a crash.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import StateError

DEFAULT_ROOT = "/run/secfilt-runtime"
OCI_VERSION = "1.3.0"
_ID_RE = re.compile(r"[A-Za-z0-9_+\-.]+")


_MAX_ID = 255  # it names a directory under --root


def check_id(container_id: str) -> None:
    if not container_id or container_id in (".", "..") or not _ID_RE.fullmatch(container_id):
        raise StateError(
            f"invalid container id {container_id!r}: use letters, digits, '_', '+', '-' and '.'"
        )
    if len(container_id) > _MAX_ID:
        raise StateError(f"invalid container id: longer than {_MAX_ID} characters")


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: tells a live init from a new process that reused its pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: split after the last ')'
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":
        return None  # a zombie has exited; only its status is left to reap
    return int(fields[19])


@dataclass
class State:
    id: str
    bundle: str
    pid: int = 0
    status: str = "creating"
    init_start_time: int = 0
    created: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    cgroup: dict[str, Any] = field(default_factory=dict)
    owner: str = ""

    def live_status(self) -> str:
        """What the container's status is now, from the kernel's view of its init."""
        if self.status in ("creating", "stopped") or self.pid <= 0:
            return self.status
        if proc_start_time(self.pid) != self.init_start_time:
            return "stopped"
        return self.status

    def to_oci(self) -> dict[str, Any]:
        status = self.live_status()
        doc: dict[str, Any] = {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": status,
            "bundle": self.bundle,
        }
        if status in ("created", "running", "paused"):
            doc["pid"] = self.pid
        if self.annotations:
            doc["annotations"] = self.annotations
        # runc's extra fields, which engines read
        doc["rootfs"] = os.path.join(self.bundle, "rootfs")
        doc["created"] = self.created
        doc["owner"] = self.owner
        return doc


class StateStore:
    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = root

    def _dir(self, container_id: str) -> str:
        check_id(container_id)
        return os.path.join(self.root, container_id)

    @contextlib.contextmanager
    def reserve(self, container_id: str) -> Iterator[str]:
        """Create the container's directory exclusively; remove it if the block fails."""
        path = self._dir(container_id)
        try:
            os.makedirs(self.root, mode=0o711, exist_ok=True)
            os.mkdir(path, 0o711)
        except FileExistsError:
            if not os.path.isdir(self.root):
                raise StateError(f"--root {self.root}: not a directory") from None
            raise StateError(f"container with id {container_id} already exists") from None
        except OSError as e:
            raise StateError(f"--root {self.root}: cannot create {path}: {e.strerror}") from None
        try:
            yield path
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise

    def save(self, state: State) -> None:
        """Write state.json atomically: a reader sees the old or the new file, never half."""
        path = self._dir(state.id)
        tmp = os.path.join(path, ".state.json.tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(state), f)
        os.rename(tmp, os.path.join(path, "state.json"))

    def load(self, container_id: str) -> State:
        path = os.path.join(self._dir(container_id), "state.json")
        try:
            with open(path) as f:
                return State(**json.load(f))
        except FileNotFoundError:
            raise StateError(f"container {container_id} does not exist") from None

    def remove(self, container_id: str) -> None:
        shutil.rmtree(self._dir(container_id), ignore_errors=True)

    def ids(self) -> list[str]:
        try:
            return sorted(
                e.name for e in os.scandir(self.root)
                if e.is_dir() and os.path.exists(os.path.join(e.path, "state.json"))
            )
        except FileNotFoundError:
            return []

    @contextlib.contextmanager
    def locked(self, container_id: str) -> Iterator[None]:
        """Serialise lifecycle operations on one container (flock on its directory)."""
        try:
            fd = os.open(self._dir(container_id), os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            if e.errno == errno.ENOENT:
                raise StateError(f"container {container_id} does not exist") from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
