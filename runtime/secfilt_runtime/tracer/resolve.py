"""Path resolution as the kernel will do it, in the tracee's own view: inside its root
(/proc/TID/root), from its cwd (/proc/TID/cwd) or a dirfd (/proc/TID/fd/N), component by
component, following symlinks (the last one only when the call does), clamping `..` at the
root, and following procfs magic links (/proc/self/fd/N, /proc/self/cwd) to what they name.

The answer is a canonical absolute path in the container's view, the last component possibly
not existing yet (judged by its parent and name). Two outcomes besides a path:
- Fails(errno): the kernel would fail the call on its own (ENOENT in the middle, ENOTDIR,
  ELOOP): the tracer answers that errno, nothing could have changed;
- Unjudgeable: no canonical path could be established (a descriptor outside the root, a
  deleted file, a pipe): the call is denied under the policy's rule.
"""

from __future__ import annotations

import errno
import os
import stat
import sys

from .. import kernel
from ..records import record

MAX_SYMLINKS = 40
_O_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_DELETED = " (deleted)"
_PLAIN = kernel.RESOLVE_IN_ROOT | kernel.RESOLVE_NO_SYMLINKS
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


class Fails(Exception):
    def __init__(self, err: int, why: str) -> None:
        super().__init__(why)
        self.errno = err


class Unjudgeable(Exception):
    pass


class NotAFile(Exception):
    """A descriptor of a pipe, socket or anonymous inode: in no file system a policy protects,
    so writing to it (or reopening it through /proc/self/fd/N) changes none."""


# d_path of objects on the kernel's internal mounts: "pipe:[123]", "socket:[4]", "anon_inode:x"
_INTERNAL = ("pipe:", "socket:", "anon_inode:")


@record
class _Dir:
    parts: list[str]   # canonical components below the root
    fd: int


MAX_ROOTS = 256  # root descriptors kept open at most (tasks making judged calls)


def open_root(tid: int) -> int:
    """An O_PATH descriptor of the task's root directory (/proc/TID/root), as it is now."""
    try:
        return os.open(f"/proc/{tid}/root", _O_DIR)
    except OSError as e:
        raise Unjudgeable(f"root of task {tid}: {e.strerror}") from None


class Roots:
    """Each task's root directory, opened at its first judged call and kept: reopening
    /proc/TID/root costs a path walk and a close at every stop.

    Kept only where the root cannot change under the tracer without a stop it sees. The root
    changes by chroot(2), pivot_root(2) and setns(2) into a mount namespace, on any thread
    sharing the task's fs_struct, with no stop of that task: under write rules the policy's
    filter refuses all three for every task of the sandbox (policy.filter: write_rules,
    setns_rules), in BPF, or with a log as a TRACE stop that stays stopped until the tracer
    refuses it (tracer.refusals: the stop's data names the refusal). Not in audit mode, where
    those calls run: the root is opened afresh at every stop. unshare(CLONE_NEWNS) and
    clone(CLONE_NEWNS) move the root into a copy of the mount tree, which mounts could make
    differ: the mount family is refused under the same rules, so the copy stays what the kept
    root shows (mounts propagated from outside reach the copy as they reach the original:
    unshare keeps peers and masters).
    A task's id is forgotten when it exits (another task may get it). An exec keeps the root;
    the id a thread loses when it execs (it takes its leader's) is never reported, and may
    come back as another task of the sandbox, whose root is the same for the reasons above."""

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}  # tid -> root, oldest first

    def get(self, tid: int) -> int:
        fd = self._fds.get(tid)
        if fd is None:
            fd = open_root(tid)
            if len(self._fds) >= MAX_ROOTS:
                os.close(self._fds.pop(next(iter(self._fds))))
            self._fds[tid] = fd
        return fd

    def forget(self, tid: int) -> None:
        fd = self._fds.pop(tid, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def is_plain_absolute(path: bytes) -> bool:
    """Whether `path` is absolute and written as the kernel would print it: no empty, "." or
    ".." component, no trailing slash ("/." also refuses names starting with a dot: they take
    the longer way)."""
    return path.startswith(b"/") and not path.endswith(b"/") and b"//" not in path \
        and b"/." not in path


def plain(opener: kernel.Openat2, root_fd: int, path: bytes, follow: bool) -> str | None:
    """The commonest case in one or two syscalls: `path` (absolute, no empty, "." or ".."
    component, no trailing slash) names no symlink. The kernel walks it inside the root
    refusing every symlink (RESOLVE_NO_SYMLINKS: ordinary and magic ones, so no name is read
    in the tracer's view, procfs's included); when it gets through, the components as written
    are the canonical path. A last component that does not exist is judged by its parent,
    which must then open the same way. None when another path must decide (a symlink, any
    other error)."""
    # O_NOFOLLOW: a last symlink is the object itself (opened as O_PATH, not refused)
    fd = opener(root_fd, path, os.O_PATH if follow else os.O_PATH | os.O_NOFOLLOW, _PLAIN)
    if fd == -errno.ENOENT:
        fd = opener(root_fd, path[:path.rindex(b"/")] or b"/", _O_DIR, _PLAIN)
    if fd < 0:
        return None
    os.close(fd)
    return path.decode(_FS_ENCODING, _FS_ERRORS)  # os.fsdecode, without its type checks


class Resolver:
    """Resolution for one stopped task; close() releases its descriptors.

    `root_fd`: the task's root kept by a Roots (not closed here); without it the root is
    opened for this stop alone."""

    __slots__ = ("tid", "_fds", "_openat2", "root_fd", "_root_prefix")

    def __init__(self, tid: int, opener: kernel.Openat2 | None = None,
                 root_fd: int | None = None) -> None:
        self.tid = tid
        self._fds: list[int] = []
        self._openat2 = opener or kernel.Openat2()
        self.root_fd = root_fd if root_fd is not None else self._keep(open_root(tid))
        self._root_prefix: str | None = None

    @property
    def root_prefix(self) -> str:
        """Where the root is in the tracer's view: asked only by the slow paths (a readlink
        of /proc/self/fd/N costs as much as the rest of a plain path's resolution)."""
        if self._root_prefix is None:
            self._root_prefix = os.readlink(f"/proc/self/fd/{self.root_fd}")
        return self._root_prefix

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> Resolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _keep(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    # --- starting points ------------------------------------------------------------------

    def cwd(self) -> str:
        return self.of_magic(f"/proc/{self.tid}/cwd")

    def fd_path(self, fd: int) -> str:
        """The canonical path of the tracee's descriptor `fd`."""
        if fd < 0:
            raise Fails(errno.EBADF, f"descriptor {fd}")
        return self.of_magic(f"/proc/{self.tid}/fd/{fd}")

    def of_magic(self, link: str) -> str:
        """The canonical path of what /proc/TID/cwd or /proc/TID/fd/N leads to. The link is
        read twice (its d_path, then the inode it leads to) instead of opened and read through
        a descriptor of ours: two syscalls fewer. A descriptor swapped in between makes the
        two disagree, which _verified refuses; it never judges one file by another's name."""
        try:
            shown = os.readlink(link)
            parts = self._parts_shown(shown)
            st = os.stat(link)
        except FileNotFoundError:
            raise Fails(errno.EBADF, f"{link} does not exist") from None
        except OSError as e:
            raise Unjudgeable(f"{link}: {e.strerror}") from None
        return "/" + "/".join(self._verified(shown, parts, st))

    def _canonical(self, fd: int) -> list[str]:
        """The components of the file open as `fd`, checked to name that very inode."""
        shown = os.readlink(f"/proc/self/fd/{fd}")
        return self._verified(shown, self._parts_shown(shown), os.fstat(fd))

    def _parts_shown(self, shown: str) -> list[str]:
        """The components below the root of a d_path in the tracer's view."""
        if shown.startswith(_INTERNAL):
            raise NotAFile(shown)
        if not shown.startswith("/") or shown.endswith(_DELETED):
            raise Unjudgeable(f"{shown!r} is not a path in the container")
        prefix = self.root_prefix.rstrip("/")
        if prefix and shown != prefix and not shown.startswith(prefix + "/"):
            raise Unjudgeable(f"{shown} is outside the root {self.root_prefix}")
        return [p for p in shown[len(prefix):].split("/") if p]

    def _verified(self, shown: str, parts: list[str], st: os.stat_result) -> list[str]:
        """`parts`, once they name the inode `st` inside the tracee's root: d_path is the
        tracer's view, and a name there may lead elsewhere in the tracee's."""
        check = self._openat2(self.root_fd, os.fsencode("/" + "/".join(parts)), os.O_PATH,
                              _PLAIN)
        if check < 0:
            raise Unjudgeable(f"{shown}: {os.strerror(-check)}")
        try:
            a = os.fstat(check)
        finally:
            os.close(check)
        if (a.st_dev, a.st_ino) != (st.st_dev, st.st_ino):
            raise Unjudgeable(f"{shown} does not name the same file inside the root")
        return parts

    def exists(self, canonical: str) -> bool:
        """Whether a canonical path names something (a symlink counts), inside the root."""
        head, _, name = canonical.rpartition("/")
        try:
            d = self._open_dir(head or "/")
            os.stat(name or ".", dir_fd=d.fd, follow_symlinks=False)
        except (OSError, Unjudgeable):
            return False
        return True

    # --- the walk -------------------------------------------------------------------------

    def resolve(self, path: bytes, base: str, follow: bool, root: str = "/") -> str:
        """Resolve `path` (relative paths from the canonical directory `base`). `root` is
        where "/" and ".." stop: the tracee's root, or openat2's dirfd under RESOLVE_IN_ROOT."""
        if not path:
            raise Fails(errno.ENOENT, "empty path")
        if root == "/":
            plain = self._plain(path, base, follow)
            if plain is not None:
                return plain
        if root == "/" and b"self" not in path:
            fast = self._fast(path, base, follow)
            if fast is not None:
                return fast
        text = os.fsdecode(path)
        must_be_dir = text.endswith("/")
        todo = [p for p in text.split("/") if p not in ("", ".")]
        todo.reverse()  # a stack: symlink targets are pushed in front
        top = self._open_dir(root)
        cur = top if text.startswith("/") else self._open_dir(base)
        links = 0
        while todo:
            name = todo.pop()
            if name == "..":
                if len(cur.parts) > len(top.parts):
                    cur = self._open_parts(cur.parts[:-1])
                continue
            last = not any(p not in ("", ".") for p in todo)
            try:
                st = os.stat(name, dir_fd=cur.fd, follow_symlinks=False)
            except FileNotFoundError:
                if last:
                    return _join(cur.parts + [name])
                raise Fails(errno.ENOENT, f"{_join(cur.parts + [name])} does not exist") from None
            except NotADirectoryError:
                raise Fails(errno.ENOTDIR, _join(cur.parts)) from None
            if stat.S_ISLNK(st.st_mode) and (not last or follow or must_be_dir):
                links += 1
                if links > MAX_SYMLINKS:
                    raise Fails(errno.ELOOP, f"too many symlinks at {_join(cur.parts + [name])}")
                try:
                    cur, target = self._symlink(cur, name)
                except NotAFile:
                    if last:
                        raise
                    raise Fails(errno.ENOTDIR, f"{name} is not a directory") from None
                if target is not None:
                    todo.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
                    if target.startswith("/"):
                        cur = top
                elif last:
                    return _join(cur.parts)
                continue
            if last:
                return _join(cur.parts + [name])
            if not stat.S_ISDIR(st.st_mode):
                raise Fails(errno.ENOTDIR, f"{_join(cur.parts + [name])} is not a directory")
            cur = _Dir(cur.parts + [name], self._keep(
                os.open(name, _O_DIR | os.O_NOFOLLOW, dir_fd=cur.fd)))
        return _join(cur.parts)

    def _plain(self, path: bytes, base: str, follow: bool) -> str | None:
        """plain() of `path` made absolute from `base`, "." and empty parts dropped."""
        if path.endswith(b"/"):
            return None
        if not is_plain_absolute(path):
            parts = [p for p in path.split(b"/") if p and p != b"."]
            if not parts or b".." in parts:
                return None
            if not path.startswith(b"/"):
                parts = [os.fsencode(p) for p in base.split("/") if p] + parts
            path = b"/" + b"/".join(parts)
        return plain(self._openat2, self.root_fd, path, follow)

    def _fast(self, path: bytes, base: str, follow: bool) -> str | None:
        """The common case in a few syscalls: the kernel resolves the parent inside the root
        (openat2 RESOLVE_IN_ROOT, no magic links), the last component is looked at here.
        None when the slow walk must decide (procfs, a symlink to follow, any error)."""
        text = os.fsdecode(path)
        if text.endswith("/"):
            return None
        full = text if text.startswith("/") else base.rstrip("/") + "/" + text
        head, _, name = full.rpartition("/")
        if name in ("", ".", ".."):
            return None
        try:
            fd = kernel.openat2(self.root_fd, head or "/", _O_DIR,
                                resolve=kernel.RESOLVE_IN_ROOT | kernel.RESOLVE_NO_MAGICLINKS)
        except OSError:
            return None
        try:
            # procfs names depend on who looks (self, fd/N): the walk handles them
            if _on_procfs(fd):
                return None
            parts = self._parts_of(fd)
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return _join(parts + [name])
            except OSError:
                return None
            if follow and stat.S_ISLNK(st.st_mode):
                return None
            return _join(parts + [name])
        except Unjudgeable:
            return None
        finally:
            os.close(fd)

    def _parts_of(self, fd: int) -> list[str]:
        """Components of a directory this resolver opened inside the root (trusted: it was
        reached from the root, so d_path names it relative to the root's own view)."""
        shown = os.readlink(f"/proc/self/fd/{fd}")
        prefix = self.root_prefix.rstrip("/")
        if not shown.startswith("/") or shown.endswith(_DELETED) or (
                prefix and shown != prefix and not shown.startswith(prefix + "/")):
            raise Unjudgeable(f"{shown!r} is not below the root {self.root_prefix}")
        return [p for p in shown[len(prefix):].split("/") if p]

    def _root(self) -> _Dir:
        return _Dir([], self.root_fd)

    def _open_dir(self, canonical: str) -> _Dir:
        return self._open_parts([p for p in canonical.split("/") if p])

    def _open_parts(self, parts: list[str]) -> _Dir:
        if not parts:
            return self._root()
        try:
            fd = kernel.openat2(self.root_fd, "/" + "/".join(parts), _O_DIR,
                                resolve=kernel.RESOLVE_IN_ROOT | kernel.RESOLVE_NO_SYMLINKS)
        except OSError as e:
            raise Unjudgeable(f"{_join(parts)}: {e.strerror}") from None
        return _Dir(list(parts), self._keep(fd))

    def _symlink(self, cur: _Dir, name: str) -> tuple[_Dir, str | None]:
        """Follow the symlink `name` in `cur`: (directory to go on from, target text), or for
        a procfs magic link (dir of the file it names, None) after the kernel followed it."""
        # asked afresh here (not the per-device memo): a magic link taken for an ordinary one
        # would be read in the tracer's view
        on_procfs = kernel.statfs_type(f"/proc/self/fd/{cur.fd}") == kernel.PROC_SUPER_MAGIC
        if on_procfs and name in ("self", "thread-self") and os.stat(cur.fd).st_ino == 1:
            # the procfs root's self links name the reader: never read them, the tracer is
            # another reader (outside a container's pid namespace it is nobody there: ENOENT)
            return cur, self._self_target(cur.fd, name)
        try:
            target = os.readlink(name, dir_fd=cur.fd)
        except OSError as e:
            raise Unjudgeable(f"{_join(cur.parts + [name])}: {e.strerror}") from None
        if not on_procfs:
            return cur, target
        if not target.startswith("/") and ":" not in target:
            return cur, target  # an ordinary procfs symlink (mounts -> self/mounts)
        try:
            fd = self._keep(os.open(name, os.O_PATH | os.O_CLOEXEC, dir_fd=cur.fd))
        except OSError as e:
            raise Unjudgeable(f"{_join(cur.parts + [name])}: {e.strerror}") from None
        return _Dir(self._canonical(fd), fd), None

    def _self_target(self, proc_fd: int, name: str) -> str:
        """What the procfs root's `name` ("self" or "thread-self") says to the tracee: "TGID"
        or "TGID/task/TID", its numbers in that procfs's pid namespace. The tracer knows
        them at every level from its own down (NStgid, NSpid) but not which level the procfs
        is at (a container's is the tracee's innermost, unless the tracee made a pid
        namespace of its own), so each is tried, innermost first, and taken only when that
        entry of the procfs is the tracee's thread group: its pid namespace is the tracee's,
        where its number is the tracee's (unique there). Read through one descriptor of the
        entry, so both answers are about one task."""
        tid = self.tid
        try:
            tgids, tids = _ns_ids(_read_status(f"/proc/{tid}/status"))
            ns = os.stat(f"/proc/{tid}/ns/pid")
        except OSError as e:
            raise Unjudgeable(f"pid namespace of task {tid}: {e.strerror}") from None
        for tgid, thread in zip(reversed(tgids), reversed(tids), strict=True):
            if _is_group(proc_fd, tgid, (ns.st_dev, ns.st_ino), tgids[-1]):
                return str(tgid) if name == "self" else f"{tgid}/task/{thread}"
        raise Unjudgeable(f"/proc/{name}: task {tid} has no entry in that procfs")


def _is_group(proc_fd: int, n: int, ns: tuple[int, int], inner_tgid: int) -> bool:
    """Whether the procfs entry `n` is the thread group whose pid namespace is `ns` and whose
    id there is `inner_tgid`."""
    try:
        fd = os.open(str(n), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=proc_fd)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise Unjudgeable(f"/proc/{n}: {e.strerror}") from None
    try:
        st = os.stat("ns/pid", dir_fd=fd)
        if (st.st_dev, st.st_ino) != ns:
            return False
        return _ns_ids(_read_status("status", fd))[0][-1] == inner_tgid
    except (FileNotFoundError, PermissionError):
        # gone, a leader that exited before its threads, or a task the tracer may not inspect
        # (the tracee is not one: its own pid namespace was read above, by the same check)
        return False
    except OSError as e:
        raise Unjudgeable(f"/proc/{n}: {e.strerror}") from None
    finally:
        os.close(fd)


_PROCFS_BY_DEV: dict[int, bool] = {}


def _on_procfs(fd: int) -> bool:
    """Whether `fd` is on a procfs, remembered per device for the fast path only. A device
    number freed by an unmount and reused by a procfs could be misjudged; the fast path runs
    with RESOLVE_NO_MAGICLINKS, so the only procfs names it could then read in the tracer's
    view are non-magic entries of a pid directory, all below the same mount as the tracee's."""
    dev = os.fstat(fd).st_dev
    known = _PROCFS_BY_DEV.get(dev)
    if known is None:
        known = kernel.statfs_type(f"/proc/self/fd/{fd}") == kernel.PROC_SUPER_MAGIC
        if len(_PROCFS_BY_DEV) > 4096:
            _PROCFS_BY_DEV.clear()
        _PROCFS_BY_DEV[dev] = known
    return known


def _join(parts: list[str]) -> str:
    return "/" + "/".join(parts)


def _ns_ids(status: str) -> tuple[list[int], list[int]]:
    """A task's tgid and tid in each pid namespace from the reader's down to its own, from
    its status file."""
    tgids: list[int] = []
    pids: list[int] = []
    for line in status.splitlines():
        if line.startswith("NStgid:"):
            tgids = [int(n) for n in line.split()[1:]]
        elif line.startswith("NSpid:"):
            pids = [int(n) for n in line.split()[1:]]
    if not tgids or len(tgids) != len(pids):
        raise Unjudgeable("no NStgid/NSpid in a task's status")
    return tgids, pids


def _read_status(name: str, dir_fd: int | None = None) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        return os.read(fd, 1 << 16).decode()
    finally:
        os.close(fd)
