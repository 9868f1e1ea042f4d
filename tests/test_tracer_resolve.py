"""tracer.resolve against this very process (its root is "/", its cwd and fds are ours): the
kernel's resolution rules on a real tree, without a traced child."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from secfilt_runtime import kernel
from secfilt_runtime.tracer.resolve import (
    Fails,
    NotAFile,
    Resolver,
    Unjudgeable,
    is_plain_absolute,
    plain,
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "file").write_text("x")
    (tmp_path / "abs").symlink_to(tmp_path / "a" / "b")
    (tmp_path / "rel").symlink_to("a/b")
    (tmp_path / "dangling").symlink_to(tmp_path / "a" / "new")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    return tmp_path.resolve()


def resolve(path: str | Path, follow: bool = True, base: str = "/") -> str:
    with Resolver(os.getpid()) as res:
        return res.resolve(os.fsencode(str(path)), base, follow)


def test_plain_and_missing_last_component(tree: Path) -> None:
    assert resolve(tree / "a" / "file") == f"{tree}/a/file"
    assert resolve(tree / "a" / "missing") == f"{tree}/a/missing"
    assert resolve(f"{tree}//a/./b/") == f"{tree}/a/b"


def test_symlinks_followed_only_when_asked(tree: Path) -> None:
    assert resolve(tree / "abs" / "x") == f"{tree}/a/b/x"
    assert resolve(tree / "rel" / "x") == f"{tree}/a/b/x"
    assert resolve(tree / "abs") == f"{tree}/a/b"
    assert resolve(tree / "abs", follow=False) == f"{tree}/abs"
    # a dangling link is followed to the name it would create
    assert resolve(tree / "dangling") == f"{tree}/a/new"
    assert resolve(tree / "dangling", follow=False) == f"{tree}/dangling"
    # a trailing slash follows even when the call would not
    assert resolve(f"{tree}/abs/", follow=False) == f"{tree}/a/b"


def test_dotdot_is_physical_and_stops_at_the_root(tree: Path) -> None:
    # through a symlink, ".." is the parent of the target, not of the link's name
    assert resolve(f"{tree}/abs/../file") == f"{tree}/a/file"
    assert resolve("/../../..") == "/"
    assert resolve(f"/../..{tree}/a") == f"{tree}/a"


def test_relative_to_a_base(tree: Path) -> None:
    assert resolve("b/../file", base=f"{tree}/a") == f"{tree}/a/file"
    assert resolve("../rel/y", base=f"{tree}/a") == f"{tree}/a/b/y"


def test_failures_the_kernel_would_give(tree: Path) -> None:
    for path, err in ((tree / "nope" / "x", errno.ENOENT),
                      (tree / "a" / "file" / "x", errno.ENOTDIR),
                      (tree / "loop" / "x", errno.ELOOP), ("", errno.ENOENT)):
        with pytest.raises(Fails) as e:
            resolve(path)
        assert e.value.errno == err, path


def test_proc_magic_links_name_what_they_point_to(tree: Path) -> None:
    fd = os.open(tree / "a" / "file", os.O_RDONLY)
    try:
        assert resolve(f"/proc/self/fd/{fd}") == f"{tree}/a/file"
        assert resolve(f"/proc/thread-self/fd/{fd}") == f"{tree}/a/file"
        assert resolve(f"/dev/fd/{fd}") == f"{tree}/a/file"
        # not followed: the procfs entry itself
        assert resolve(f"/proc/self/fd/{fd}", follow=False) == f"/proc/{os.getpid()}/fd/{fd}"
        with Resolver(os.getpid()) as res:
            assert res.fd_path(fd) == f"{tree}/a/file"
    finally:
        os.close(fd)


def test_descriptors_that_are_not_files(tree: Path) -> None:
    r, w = os.pipe()
    try:
        with Resolver(os.getpid()) as res, pytest.raises(NotAFile):
            res.fd_path(w)
        with pytest.raises(NotAFile):
            resolve(f"/proc/self/fd/{w}")
        with Resolver(os.getpid()) as res, pytest.raises(Fails):
            res.fd_path(9999)
    finally:
        os.close(r)
        os.close(w)


def test_deleted_files_cannot_be_judged(tree: Path) -> None:
    fd = os.open(tree / "a" / "gone", os.O_CREAT | os.O_WRONLY)
    os.unlink(tree / "a" / "gone")
    try:
        with Resolver(os.getpid()) as res, pytest.raises(Unjudgeable):
            res.fd_path(fd)
    finally:
        os.close(fd)


def test_plain_absolute_form() -> None:
    assert is_plain_absolute(b"/a/b") and is_plain_absolute(b"/a")
    for path in (b"a/b", b"/a//b", b"/a/./b", b"/a/../b", b"/a/", b"/", b"", b"/a/.hidden"):
        assert not is_plain_absolute(path), path


def test_plain_paths_in_one_or_two_syscalls(tree: Path) -> None:
    opener = kernel.Openat2()
    root = os.open("/", os.O_PATH | os.O_DIRECTORY)
    try:
        def at(path: Path | str, follow: bool = True) -> str | None:
            return plain(opener, root, os.fsencode(str(path)), follow)

        assert at(tree / "a" / "file") == f"{tree}/a/file"
        assert at(tree / "a" / "new") == f"{tree}/a/new"  # judged by its parent
        # a symlink anywhere, a missing parent, a file as a directory: another path decides
        assert at(tree / "abs" / "x") is None and at(tree / "rel") is None
        assert at(tree / "nope" / "x") is None and at(tree / "a" / "file" / "x") is None
        # a last symlink not followed is the object itself
        assert at(tree / "abs", follow=False) == f"{tree}/abs"
        assert at(tree / "dangling", follow=False) == f"{tree}/dangling"
        assert at(tree / "dangling") is None
    finally:
        os.close(root)
