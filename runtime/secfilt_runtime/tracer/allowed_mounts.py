"""The mounts that lie wholly inside the allow-write paths: a change to a file on one of them
is allowed without naming the file.

policy.mounts gives every allow-write path a writable clone of its mounts, rooted at that path
(a container's init, secfilt's mount namespace of its own). A file on such a mount is reached
only through the mount's root, so it is at or below the path decide.write compares names with.
The kernel says which mount a file is on in one statx through /proc/TID/fd/N or /proc/TID/cwd,
where naming the file costs a readlink, a stat and a verifying openat2 in the task's root. A
file on any other mount is judged by its name as before: this only ever answers "allowed".

Where a name is not needed for the answer, none is read: a descriptor, and a relative name whose
parent the kernel finds on the same mount (RESOLVE_BENEATH | RESOLVE_NO_XDEV, no symlink) with
a last component that is not a symlink the call would follow.

Two differences from judging the name, both where the read-only mounts already allow the change
and Landlock has no say (metadata of a file on a writable clone): a file deleted after it was
opened, and a file the host moved out of the allow-write path while the sandbox held it open,
are allowed here where the name would be refused as unjudgeable.

Only unique mount ids (statx STATX_MNT_ID_UNIQUE, Linux 6.8): the short ones are reused once a
mount is gone. The ids are learnt at the first question, which comes after the sandbox's set-up:
its filter, the only source of stops, is loaded after its mounts.
"""

from __future__ import annotations

import os
import stat

from .. import kernel

_O_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_IN_ROOT = kernel.RESOLVE_IN_ROOT | kernel.RESOLVE_NO_SYMLINKS
_BENEATH = kernel.RESOLVE_BENEATH | kernel.RESOLVE_NO_SYMLINKS | kernel.RESOLVE_NO_XDEV
_AT_FDCWD = -100


class AllowedMounts:
    """One per tracer. `allow_write`: the policy's canonical paths, in the tasks' view."""

    def __init__(self, allow_write: tuple[str, ...], opener: kernel.Openat2) -> None:
        self._paths = allow_write
        self._openat2 = opener
        self._mount_of = kernel.MountOf()
        self._ids: frozenset[int] | None = None

    def learn(self, root_fd: int) -> frozenset[int]:
        """The unique ids of the mounts rooted at an allow-write path, seen from `root_fd`."""
        ids = set()
        for path in self._paths:
            fd = self._openat2(root_fd, os.fsencode(path), os.O_PATH, _IN_ROOT)
            if fd < 0:
                continue  # missing, or a symlink: policy.mounts made no clone of it either
            try:
                found = self._mount_of(fd, b"", kernel.AT_EMPTY_PATH)
            finally:
                os.close(fd)
            if found is not None and found[1]:
                ids.add(found[0])
        return frozenset(ids)

    def _known(self, root_fd: int) -> frozenset[int]:
        if self._ids is None:
            self._ids = self.learn(root_fd)
        return self._ids

    def holds(self, tid: int, dirfd: int, root_fd: int) -> bool:
        """Whether the file the tracee's descriptor `dirfd` (AT_FDCWD: its cwd) is on one of
        the mounts."""
        ids = self._known(root_fd)
        if not ids:
            return False
        found = self._mount_of(_AT_FDCWD, _link(tid, dirfd), 0)
        return found is not None and found[0] in ids

    def holds_beneath(self, tid: int, dirfd: int, path: bytes, follow: bool,
                      root_fd: int) -> bool:
        """Whether the relative `path`, from the tracee's `dirfd` (AT_FDCWD: its cwd), names
        something on one of the mounts, without `..`, a symlink on the way, or a last one
        the call follows."""
        ids = self._known(root_fd)
        if not ids:
            return False
        head, _, name = path.rpartition(b"/")
        if name in (b"", b".", b".."):
            return False
        link = _link(tid, dirfd)
        if not head:
            # a name in the directory itself is on the directory's mount (a mount point there
            # is the root of a mount below it): one statx, and an lstat if the call follows
            found = self._mount_of(_AT_FDCWD, link, 0)
            return found is not None and found[0] in ids and not (
                follow and _may_be_symlink(link + b"/" + name))
        try:
            base = os.open(link, _O_DIR)
        except OSError:
            return False
        try:
            found = self._mount_of(base, b"", kernel.AT_EMPTY_PATH)
            if found is None or found[0] not in ids:
                return False
            parent = self._openat2(base, head or b".", _O_DIR, _BENEATH)
        finally:
            os.close(base)
        if parent < 0:
            return False
        try:
            return not (follow and _may_be_symlink(name, parent))
        finally:
            os.close(parent)


def _may_be_symlink(name: bytes, dir_fd: int | None = None) -> bool:
    """Whether `name` is a symlink, or cannot be looked at (a missing name is not: the call
    creates it where the name says)."""
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False
    except OSError:
        return True


def _link(tid: int, dirfd: int) -> bytes:
    return (f"/proc/{tid}/cwd" if dirfd == _AT_FDCWD else f"/proc/{tid}/fd/{dirfd}").encode()
