"""Resolving and creating paths inside a root: no symlink may lead out of it. Works on
temporary directories; no container needed."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from secfilt_runtime.container import paths


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root\n")
    return r


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    o = tmp_path / "outside"
    o.mkdir()
    return o


@pytest.fixture
def root_fd(root: Path):
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def real(fd: int) -> str:
    return os.readlink(paths.fd_path(fd))


def test_plain_path(root, root_fd):
    with paths.opened(paths.open_in_root(root_fd, "/etc/passwd")) as fd:
        assert real(fd) == str(root / "etc" / "passwd")


def test_absolute_symlink_is_resolved_inside_the_root(root, root_fd, outside):
    (outside / "secret").write_text("host\n")
    os.symlink(str(outside), root / "evil")
    with pytest.raises(FileNotFoundError):
        paths.open_in_root(root_fd, "/evil/secret")
    # an absolute link to /etc means the root's /etc
    os.symlink("/etc", root / "etc-link")
    with paths.opened(paths.open_in_root(root_fd, "/etc-link/passwd")) as fd:
        assert real(fd) == str(root / "etc" / "passwd")


def test_dotdot_cannot_climb_above_the_root(root, root_fd):
    os.symlink("../../../../../../../../etc", root / "up")
    with paths.opened(paths.open_in_root(root_fd, "/up/passwd")) as fd:
        assert real(fd) == str(root / "etc" / "passwd")
    with paths.opened(paths.open_in_root(root_fd, "/../../etc/passwd")) as fd:
        assert real(fd) == str(root / "etc" / "passwd")


def test_make_creates_missing_directories_inside(root, root_fd):
    with paths.opened(paths.make_in_root(root_fd, "/a/b/c", want_dir=True)) as fd:
        assert real(fd) == str(root / "a" / "b" / "c")
    assert (root / "a" / "b" / "c").is_dir()


def test_make_creates_a_file_when_asked(root, root_fd):
    with paths.opened(paths.make_in_root(root_fd, "/x/file", want_dir=False)) as fd:
        assert real(fd) == str(root / "x" / "file")
    assert (root / "x" / "file").is_file()


def test_make_through_an_escaping_symlink_stays_inside(root, root_fd, outside):
    os.symlink(str(outside), root / "evil")
    os.symlink("../../../../.." + str(outside), root / "evil2")
    for link in ("/evil/sub", "/evil2/sub"):
        try:
            fd = paths.make_in_root(root_fd, link, want_dir=True)
        except OSError:
            continue  # refusing is fine; creating outside is not
        with paths.opened(fd):
            assert real(fd).startswith(str(root) + "/")
    assert list(outside.iterdir()) == []


def test_make_of_an_existing_file_returns_it(root, root_fd):
    with paths.opened(paths.make_in_root(root_fd, "/etc/passwd", want_dir=False)) as fd:
        assert real(fd) == str(root / "etc" / "passwd")


def test_a_component_that_is_a_file_fails(root_fd):
    with pytest.raises(NotADirectoryError):
        paths.make_in_root(root_fd, "/etc/passwd/x", want_dir=True)


def test_make_dirs_through_a_link_stays_inside(root, root_fd, outside):
    os.symlink(str(outside), root / "evil")
    with paths.opened(paths.make_in_root(root_fd, "/evil/deep/er", want_dir=True)) as fd:
        assert real(fd) == str(root / str(outside).lstrip("/") / "deep" / "er")
    assert list(outside.iterdir()) == []


def test_make_through_a_dangling_link_creates_its_target_inside(root, root_fd):
    os.symlink("../run/sub/resolv.conf", root / "etc" / "resolv.conf")
    with paths.opened(paths.make_in_root(root_fd, "/etc/resolv.conf", want_dir=False)) as fd:
        assert real(fd) == str(root / "run" / "sub" / "resolv.conf")
    assert (root / "run" / "sub" / "resolv.conf").is_file()


def test_make_with_a_symlink_loop_is_eloop(root, root_fd):
    os.symlink("/loop2", root / "loop1")
    os.symlink("/loop1", root / "loop2")
    with pytest.raises(OSError) as e:
        paths.make_in_root(root_fd, "/loop1/x", want_dir=True)
    assert e.value.errno == errno.ELOOP


@pytest.mark.parametrize(("raw", "clean"), [
    ("/dev/pts", "/dev/pts"), ("//dev/./pts/", "/dev/pts"), ("dev", "/dev"), ("/", "/"),
    ("", "/"), ("/a/../../b", "/b"),
])
def test_clean(raw, clean):
    assert paths.clean(raw) == clean
