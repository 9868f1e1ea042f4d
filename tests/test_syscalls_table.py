"""policy.syscalls: the table both the filter and the tracer read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from secfilt_runtime.policy import syscalls
from secfilt_runtime.policy.syscalls import (
    AUDIT_ARCH_I386,
    AUDIT_ARCH_X86_64,
    BY_ARCH,
    BY_NAME,
    NUMBERS,
    Follow,
    Group,
)

UNISTD = {
    AUDIT_ARCH_X86_64: Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    AUDIT_ARCH_I386: Path("/usr/include/x86_64-linux-gnu/asm/unistd_32.h"),
}


def _header(path: Path) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)", path.read_text())}


@pytest.mark.parametrize("arch,column", [(AUDIT_ARCH_X86_64, 0), (AUDIT_ARCH_I386, 1)])
def test_numbers_match_the_kernel_headers(arch: int, column: int) -> None:
    if not UNISTD[arch].exists():
        pytest.skip("kernel headers not installed")
    header = _header(UNISTD[arch])
    checked = 0
    for name, numbers in NUMBERS.items():
        nr = numbers[column]
        if name in header:
            assert nr == header[name], name
            checked += 1
        elif nr is not None:
            # newer than the installed headers: must not collide with a known call
            assert nr not in header.values(), name
    assert checked > 60


def test_numbers_match_libseccomp_where_it_knows_them() -> None:
    pyseccomp = pytest.importorskip("pyseccomp")
    for name, (x64, _i386) in NUMBERS.items():
        nr = pyseccomp.resolve_syscall(pyseccomp.Arch.X86_64, name)
        if nr >= 0:
            assert nr == x64, name


def test_every_argument_index_is_a_register() -> None:
    for entry in BY_NAME.values():
        indexes = [i for arg in entry.paths for i in (arg.path, arg.dirfd, arg.flags)
                   if i is not None]
        indexes += [i for i in (entry.fd, entry.open_flags, entry.how, entry.msghdr)
                    if i is not None]
        indexes += list(entry.sockaddr or ()) + list(entry.mmsghdr or ())
        assert all(0 <= i < 6 for i in indexes), entry.name


def test_lookup_by_architecture() -> None:
    assert BY_ARCH[AUDIT_ARCH_X86_64][2].name == "open"
    assert BY_ARCH[AUDIT_ARCH_I386][5].name == "open"
    # socketcall is decoded before the table: its sub-call names the row
    assert syscalls.SOCKETCALL_NR_I386 == 102 and 102 not in BY_ARCH[AUDIT_ARCH_I386]
    # x86_64 open (2) is i386 fork: the numbers must never be mixed
    assert 2 not in BY_ARCH[AUDIT_ARCH_I386]


def test_two_path_calls_have_both_operands() -> None:
    for name in ("rename", "renameat", "renameat2", "link", "linkat"):
        assert len(BY_NAME[name].paths) == 2, name
    for name in ("rename", "renameat2", "unlink", "unlinkat", "rmdir", "lchown", "symlink"):
        assert all(a.follow is Follow.NO for a in BY_NAME[name].paths), name


def test_every_write_call_has_an_operand() -> None:
    for entry in BY_NAME.values():
        if entry.group in (Group.WRITE, Group.OPEN):
            assert entry.paths or entry.fd is not None, entry.name


@pytest.mark.parametrize("flags,write", [
    (0, False), (0o2000000 | 0o4000, False), (1, True), (2, True), (3, True),
    (0o100, True), (0o1000, True), (0o20200000 | 2, True)])
def test_open_is_write(flags: int, write: bool) -> None:
    assert syscalls.open_is_write(flags) is write


def test_follows() -> None:
    fchownat = BY_NAME["fchownat"].paths[0]
    assert syscalls.follows(fchownat, 0)
    assert not syscalls.follows(fchownat, syscalls.AT_SYMLINK_NOFOLLOW)
    linkat_old = BY_NAME["linkat"].paths[0]
    assert not syscalls.follows(linkat_old, 0)
    assert syscalls.follows(linkat_old, syscalls.AT_SYMLINK_FOLLOW)
    assert syscalls.open_creates_exclusive(0o300)
    assert not syscalls.open_creates_exclusive(0o100)


def test_socketcall_subcalls_map_to_direct_calls() -> None:
    for call, name in syscalls.SOCKETCALL.items():
        assert name in BY_NAME
        assert 3 <= syscalls.SOCKETCALL_NARGS[call] <= 6
