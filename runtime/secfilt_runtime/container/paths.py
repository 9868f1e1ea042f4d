"""Paths inside the container's root, resolved by the kernel so that no symlink escapes it.

openat2(RESOLVE_IN_ROOT) treats the root as "/" for every absolute symlink and every "..", and
the O_PATH handle it returns names the very inode that was checked: mounting onto
/proc/self/fd/N cannot be redirected afterwards by swapping a path component.
"""

from __future__ import annotations

import errno
import os
import stat

from .. import kernel
from ..cleanup import Opened

_IN_ROOT = kernel.RESOLVE_IN_ROOT | kernel.RESOLVE_NO_MAGICLINKS
_MAX_LINKS = 40  # the kernel's own limit on symlinks followed in one lookup (MAXSYMLINKS)


def clean(path: str) -> str:
    """`path` as an absolute, lexically normal container path ("//dev/./pts/" -> "/dev/pts")."""
    return "/" + "/".join(components(os.path.normpath("/" + path)))


def components(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]


def open_in_root(root_fd: int, path: str, flags: int = os.O_PATH, resolve: int = 0) -> int:
    """Open `path` as seen from inside the root; raises OSError (ENOENT, ELOOP, ...).
    `resolve`: more RESOLVE_* flags (RESOLVE_NO_SYMLINKS)."""
    rel = "/".join(components(path)) or "."
    return kernel.openat2(root_fd, rel, flags | os.O_CLOEXEC, resolve=_IN_ROOT | resolve)


def open_under(root: str, path: str, flags: int = os.O_PATH, resolve: int = 0) -> int:
    """open_in_root for a root given by its path."""
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return open_in_root(root_fd, path, flags, resolve)
    finally:
        os.close(root_fd)


def make_in_root(root_fd: int, path: str, want_dir: bool, mode: int = 0o755) -> int:
    """Open `path` inside the root, creating it (and missing parents, as directories) first.

    Returns an O_PATH descriptor. The walk goes one component at a time from the handle of the
    already resolved parent, never following a symlink by name: a link's target is read and
    walked in turn, from the root when absolute, with ".." stopping at the root. So a dangling
    link in the image (etc/resolv.conf -> ../run/...) is created inside the root, and nothing
    planted on the way can move the creation out of it.
    """
    try:
        return open_in_root(root_fd, path)
    except FileNotFoundError:
        pass
    stack = [os.dup(root_fd)]  # handles of the directories walked so far; [0] is the root
    try:
        todo = components(path)
        links = 0
        while todo:
            name = todo.pop(0)
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            parent = stack[-1]
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            except FileNotFoundError:
                if todo or want_dir:
                    try:  # lost a race: use the winner
                        os.mkdir(name, mode, dir_fd=parent)
                    except FileExistsError:
                        pass
                else:
                    try:
                        os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY
                                         | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=parent))
                    except FileExistsError:
                        pass
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                os.close(fd)
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(name, dir_fd=parent)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo = components(target) + todo
                continue
            if todo and not stat.S_ISDIR(os.fstat(fd).st_mode):
                os.close(fd)
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            stack.append(fd)
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)


def fd_path(fd: int) -> str:
    """A path naming exactly the inode behind `fd`, usable as a mount source or target."""
    return f"/proc/self/fd/{fd}"


opened = Opened  # `with opened(fd) as fd:` closes it when the block ends
