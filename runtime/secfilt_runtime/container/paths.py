"""Paths inside the container's root, resolved by the kernel so that no symlink escapes it.

openat2(RESOLVE_IN_ROOT) treats the root as "/" for every absolute symlink and every "..", and
the O_PATH handle it returns names the very inode that was checked: mounting onto
/proc/self/fd/N cannot be redirected afterwards by swapping a path component.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .. import kernel

_IN_ROOT = kernel.RESOLVE_IN_ROOT | kernel.RESOLVE_NO_MAGICLINKS


def components(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]


def open_in_root(root_fd: int, path: str, flags: int = os.O_PATH) -> int:
    """Open `path` as seen from inside the root; raises OSError (ENOENT, ELOOP, ...)."""
    rel = "/".join(components(path)) or "."
    return kernel.openat2(root_fd, rel, flags | os.O_CLOEXEC, resolve=_IN_ROOT)


def make_in_root(root_fd: int, path: str, want_dir: bool, mode: int = 0o755) -> int:
    """Open `path` inside the root, creating it (and missing parents, as directories) first.

    Returns an O_PATH descriptor. Each missing component is created relative to the handle of
    its already resolved parent, so a symlink planted on the way cannot move the creation out
    of the root.
    """
    parts = components(path)
    with contextlib.suppress(FileNotFoundError):
        return open_in_root(root_fd, path)
    parent = os.dup(root_fd)
    try:
        for i, name in enumerate(parts):
            prefix = "/".join(parts[: i + 1])
            try:
                fd = open_in_root(root_fd, prefix)
            except FileNotFoundError:
                if i == len(parts) - 1 and not want_dir:
                    os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                                     | os.O_CLOEXEC, 0o644, dir_fd=parent))
                else:
                    os.mkdir(name, mode, dir_fd=parent)
                fd = open_in_root(root_fd, prefix)
            os.close(parent)
            parent = fd
        return parent
    except BaseException:
        os.close(parent)
        raise


def fd_path(fd: int) -> str:
    """A path naming exactly the inode behind `fd`, usable as a mount source or target."""
    return f"/proc/self/fd/{fd}"


@contextlib.contextmanager
def opened(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)
