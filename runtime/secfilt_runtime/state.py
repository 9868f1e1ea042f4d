"""The state directory: one directory per container under --root, holding state.json.

Kept free of heavy imports: engines call `state`, `kill`, `start` and `delete` constantly.
A container's status is derived from facts (is the init alive, with the start time we recorded,
is its cgroup frozen) rather than trusted from the file, which may be stale after a crash.
"""

from __future__ import annotations

import errno
import fcntl
import os

from . import jsonio
from .errors import StateError

# typing costs ~5 ms to import and `state` needs none of it at run time (annotations are
# strings here); shutil (~4 ms with bz2 and lzma) only for a directory inside a state directory
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .cleanup import Opened

DEFAULT_ROOT = "/run/secfilt-runtime"
# tracer sockets whose path under --root would not fit in sun_path (see lifecycle)
SHORT_SOCKET_DIR = "/run/secfilt-runtime-sockets"
START_SOCKET = "start.sock"  # in the state directory: the created init waits there for start
OCI_VERSION = "1.3.0"
# what the pattern [A-Za-z0-9_+\-.]+ allowed (ASCII only), as a set: `re` costs ~5 ms to import
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+-.")


_MAX_ID = 255  # it names a directory under --root


def check_id(container_id: str) -> None:
    if not container_id or container_id in (".", "..") or not _ID_CHARS.issuperset(container_id):
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


def alive(pid: int, start_time: int) -> bool:
    """Is `pid` still the process that had `start_time` (not a zombie, not a reuse)?"""
    return pid > 0 and start_time > 0 and proc_start_time(pid) == start_time


def cgroup_frozen(cgroup: dict[str, Any]) -> bool:
    """The freezer's view, read directly: `state` must not pay for the cgroup manager."""
    paths = cgroup.get("paths") or {}
    try:
        if "freezer" in paths:
            with open(os.path.join(paths["freezer"], "freezer.state")) as f:
                return f.read().strip() == "FROZEN"
        if cgroup.get("version") == 2 and "unified" in paths:
            with open(os.path.join(paths["unified"], "cgroup.events")) as f:
                return "frozen 1" in f.read().splitlines()
    except OSError:
        pass
    return False


# State's fields after id and bundle, with their defaults (a fresh copy of a mutable one)
_FIELDS: dict[str, Any] = {
    "pid": 0,
    "status": "creating",  # as last recorded: creating, created, running
    "init_start_time": 0,
    "created": "",
    "annotations": {},
    "cgroup": {},
    "owner": "",
    "rootfs": "",
    "runtime_pid": 0,  # the create in progress
    "runtime_start_time": 0,
    "tracer_pid": 0,
    "tracer_start_time": 0,
    "tracer_socket": "",  # where exec asks the tracer to seize its processes
    "hooks": {},
    # the policy and linux.seccomp as create resolved them, and the init's capabilities and
    # rlimits (confinement.to_state): exec confines its processes by these, never by a
    # config.json edited since
    "confinement": {},
    "session_keyring": "",  # what exec's processes join ("": the caller's, --no-new-keyring)
}


def remove_tree(path: str, keep: str | None = None) -> None:
    """shutil.rmtree(path, ignore_errors=True) for a state directory, which holds files and
    sockets of ours: those are unlinked through a descriptor of the directory (a symlink in
    their place is unlinked, never followed); a directory found there goes to rmtree, which
    the common case then does not import. Errors are ignored: what is left stays (`keep`,
    an entry's name, too)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return  # gone already, or not a directory: rmtree would not remove it either
    try:
        with os.scandir(fd) as entries:
            names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries
                     if e.name != keep]
        for name, is_dir in names:
            if is_dir:
                import shutil

                shutil.rmtree(name, ignore_errors=True, dir_fd=fd)
            else:
                try:
                    os.unlink(name, dir_fd=fd)
                except OSError:
                    pass
    except OSError:
        pass
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        pass


class State:
    """runc's libcontainer state, as state.json. Written first at reserve time ("creating",
    with the pid of the runtime doing the create) so a crashed create can be deleted.

    A plain class rather than a dataclass: `state` is the engines' hot path, and importing
    dataclasses (it pulls in inspect) costs more than the rest of the command.
    """

    __slots__ = ("id", "bundle", *_FIELDS)
    id: str
    bundle: str
    pid: int
    status: str
    init_start_time: int
    created: str
    annotations: dict[str, str]
    cgroup: dict[str, Any]
    owner: str
    rootfs: str
    runtime_pid: int
    runtime_start_time: int
    tracer_pid: int
    tracer_start_time: int
    tracer_socket: str
    hooks: dict[str, Any]
    confinement: dict[str, Any]
    session_keyring: str

    def __init__(self, id: str, bundle: str, **fields: Any) -> None:  # noqa: A002 - runc's name
        unknown = sorted(set(fields) - set(_FIELDS))
        if unknown:
            raise TypeError(f"State: unknown fields {unknown}")
        self.id = id
        self.bundle = bundle
        for name, default in _FIELDS.items():
            value = fields.get(name, default)
            setattr(self, name, dict(value) if value is default and isinstance(value, dict)
                    else value)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "bundle": self.bundle,
                **{name: getattr(self, name) for name in _FIELDS}}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> State:
        """Fields this runtime does not know (a newer one wrote them) are left out."""
        return cls(doc["id"], doc["bundle"],
                   **{k: v for k, v in doc.items() if k in _FIELDS})

    def live_status(self) -> str:
        """What the container's status is now, from the kernel's view of its processes."""
        if self.status == "creating":
            if alive(self.runtime_pid, self.runtime_start_time):
                return "creating"
            return "stopped"  # the create died: only delete is left
        if self.status == "stopped" or not alive(self.pid, self.init_start_time):
            return "stopped"
        if cgroup_frozen(self.cgroup):
            return "paused"
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
        doc["rootfs"] = self.rootfs or os.path.join(self.bundle, "rootfs")
        doc["created"] = self.created
        doc["owner"] = self.owner
        return doc


class StateStore:
    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = root

    def _dir(self, container_id: str) -> str:
        check_id(container_id)
        return os.path.join(self.root, container_id)

    def path(self, container_id: str) -> str:
        """The container's state directory."""
        return self._dir(container_id)

    def reserve(self, container_id: str, **fields: Any) -> Reserved:
        """Create the container's directory exclusively, with a first state.json ("creating",
        naming this process, with `fields`: bundle, created, owner, rootfs, which `state`
        prints should the create die before its next save); `with` it: removed if the block
        fails.

        The directory's lock is held until that state.json is written: a `delete` that finds
        the directory without one (it waits for the lock) knows its create died first, with
        nothing else made, and removes it."""
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
        me = os.getpid()
        first = State(container_id, fields.pop("bundle", ""), status="creating",
                      runtime_pid=me, runtime_start_time=proc_start_time(me) or 0, **fields)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released (closed) before any child is forked
                _write_state(fd, first)
            finally:
                os.close(fd)
        except FileNotFoundError:
            # a delete took the directory before our lock: it is gone, and so is this create
            raise StateError(f"container {container_id} was deleted while it was "
                             "being created") from None
        except BaseException:
            remove_tree(path)
            raise
        return Reserved(path)

    def save(self, state: State) -> None:
        """Write state.json atomically: a reader sees the old or the new file, never half."""
        fd = os.open(self._dir(state.id), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _write_state(fd, state)
        finally:
            os.close(fd)

    def has_state_file(self, container_id: str) -> bool:
        return os.path.exists(os.path.join(self._dir(container_id), "state.json"))

    def load(self, container_id: str) -> State:
        path = os.path.join(self._dir(container_id), "state.json")
        try:
            with open(path) as f:
                doc = jsonio.loads(f.read())
        except FileNotFoundError:
            raise StateError(f"container {container_id} does not exist") from None
        except ValueError as e:  # not UTF-8, not JSON
            raise StateError(f"{path}: unreadable state: {e}") from None
        try:
            return State.from_dict(doc)
        except (KeyError, TypeError, AttributeError) as e:
            raise StateError(f"{path}: unreadable state: not a state document "
                             f"({type(e).__name__}: {e})") from None

    def remove(self, container_id: str) -> None:
        remove_tree(self._dir(container_id))

    def remove_stateless(self, container_id: str) -> bool:
        """Remove a container directory found without state.json (what a create killed before
        its first state left), never a state.json: one there now is a create's that wrote it
        meanwhile, and stays (False: the container is to be deleted as any other, or its init
        and cgroup would live on out of every command's reach)."""
        path = self._dir(container_id)
        remove_tree(path, keep="state.json")
        return not os.path.exists(os.path.join(path, "state.json"))

    def ids(self) -> list[str]:
        try:
            return sorted(
                e.name for e in os.scandir(self.root)
                if e.is_dir() and os.path.exists(os.path.join(e.path, "state.json"))
            )
        except FileNotFoundError:
            return []

    def locked(self, container_id: str) -> Opened:
        """Serialise lifecycle operations on one container (flock on its directory), for the
        `with` block this is used in."""
        from .cleanup import Opened  # here: `state`, the engines' hot path, takes no lock

        try:
            fd = os.open(self._dir(container_id), os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            if e.errno == errno.ENOENT:
                raise StateError(f"container {container_id} does not exist") from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return Opened(fd)  # closing the directory releases the lock


def _write_state(dirfd: int, state: State) -> None:
    """state.json written atomically in the directory `dirfd` (a removed one: ENOENT)."""
    tmp = os.open(".state.json.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                  0o666, dir_fd=dirfd)
    with open(tmp, "w") as f:
        f.write(jsonio.dumps(state.to_dict()))
    os.rename(".state.json.tmp", "state.json", src_dir_fd=dirfd, dst_dir_fd=dirfd)


class Reserved:
    """A container directory just created: removed if the `with` block fails."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            remove_tree(self.path)

