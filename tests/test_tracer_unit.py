"""Tracer pieces that need no traced process: argument decoding and the log line."""

from __future__ import annotations

import ctypes
import errno
import json
import os
from ipaddress import ip_network

import pytest

from secfilt_runtime import kernel
from secfilt_runtime.policy.model import Policy
from secfilt_runtime.policy.syscalls import AUDIT_ARCH_I386, AUDIT_ARCH_X86_64
from secfilt_runtime.tracer import judge, log
from secfilt_runtime.tracer.allowed_mounts import AllowedMounts
from secfilt_runtime.tracer.memory import Memory, Unreadable


def test_int_arguments_are_the_low_half_signed() -> None:
    assert judge.s32(0xFFFFFFFF) == -1
    assert judge.s32(0xFFFFFFFF_FFFFFF9C) == -100  # AT_FDCWD as a 64-bit register
    assert judge.s32(0x1_00000002) == 2
    assert judge.s32(5) == 5


def test_calls_outside_the_table_pass_untouched() -> None:
    j = judge.Judge(Policy(read_only=True))
    # getpid on both entries: no memory is read (pid 0 would fail any read)
    assert j.judge(0, AUDIT_ARCH_X86_64, 39, [0] * 6).allowed
    assert j.judge(0, AUDIT_ARCH_I386, 20, [0] * 6).allowed


def test_unknown_architecture_is_refused() -> None:
    d = judge.Judge(Policy(read_only=True)).judge(0, 0xC00000B7, 56, [0] * 6)  # aarch64
    assert not d.allowed and d.errno == errno.ENOSYS


def test_hardening_by_registers() -> None:
    # with a log: without one the filter answers ERRNO itself, which outranks any TRACE, and
    # these calls never reach a tracer
    j = judge.Judge(Policy(read_only=True, log_path="/dev/null"))
    clone = 56
    assert j.judge(0, AUDIT_ARCH_X86_64, clone, [0x11, 0, 0, 0, 0, 0]).allowed
    d = j.judge(0, AUDIT_ARCH_X86_64, clone, [0x00800011, 0, 0, 0, 0, 0])
    assert not d.allowed and d.log
    seccomp = 317
    assert j.judge(0, AUDIT_ARCH_X86_64, seccomp, [1, 0, 0, 0, 0, 0]).allowed
    assert not j.judge(0, AUDIT_ARCH_X86_64, seccomp, [1, 8, 0, 0, 0, 0]).allowed
    # i386 registers are 32 bits: garbage in the upper half must not change the verdict
    assert not j.judge(0, AUDIT_ARCH_I386, 120, [0xFFFF_0000_0080_0011, 0, 0, 0, 0, 0]).allowed


def test_audit_mode_turns_policy_denials_into_logged_allows() -> None:
    j = judge.Judge(Policy(read_only=True, mode="audit"))
    d = j.judge(0, AUDIT_ARCH_X86_64, 161, [0] * 6)  # chroot
    assert d.allowed and d.log and d.rule == "read-only"
    # the mount family is refused: audit mode's Landlock domain refuses it anyway, and the log
    # must not say it went through
    d = j.judge(0, AUDIT_ARCH_X86_64, 165, [0] * 6)  # mount
    assert not d.allowed and d.log and d.rule == "read-only"
    # hardening is never audited away
    assert not j.judge(0, AUDIT_ARCH_X86_64, 101, [0] * 6).allowed  # ptrace


def test_calls_outside_the_table_as_the_filter_decides_them() -> None:
    # chroot, setns and bpf reach the tracer only as a logged refusal (or a stop of the
    # process's own filter): refused under the rules whose filter refuses them
    x86, i386 = AUDIT_ARCH_X86_64, AUDIT_ARCH_I386
    chroot, setns, bpf = (161, 61), (308, 346), (321, 357)
    writes = judge.Judge(Policy(read_only=True, log_path="/dev/null"))
    network = judge.Judge(Policy(no_outbound_network=True, log_path="/dev/null"))
    newns, newcgroup = 0x00020000, 0x02000000
    for arch, i in ((x86, 0), (i386, 1)):
        d = writes.judge(0, arch, chroot[i], [0] * 6)
        assert not d.allowed and d.log and d.syscall == "chroot" and d.rule == "read-only"
        assert not writes.judge(0, arch, setns[i], [3, 0, 0, 0, 0, 0]).allowed
        assert not writes.judge(0, arch, setns[i], [3, newns, 0, 0, 0, 0]).allowed
        assert writes.judge(0, arch, setns[i], [3, newcgroup, 0, 0, 0, 0]).allowed
        assert writes.judge(0, arch, bpf[i], [0] * 6).allowed
        assert network.judge(0, arch, chroot[i], [0] * 6).allowed
        d = network.judge(0, arch, bpf[i], [0] * 6)
        assert not d.allowed and d.rule == "no-outbound-network"
        assert not network.judge(0, arch, setns[i], [3, newcgroup, 0, 0, 0, 0]).allowed
        assert not network.judge(0, arch, setns[i], [3, 0, 0, 0, 0, 0]).allowed
        assert network.judge(0, arch, setns[i], [3, newns, 0, 0, 0, 0]).allowed
    # the upper half of an i386 register is not the kernel's
    assert not writes.judge(0, i386, setns[1], [3, 0xFFFF_0000_0000_0000, 0, 0, 0, 0]).allowed
    mount = 165
    assert not network.judge(0, x86, mount, [0] * 6).allowed
    assert judge.Judge(Policy(mainstream_network_families=True)).judge(
        0, x86, mount, [0] * 6).allowed


def test_unreadable_memory_is_efault() -> None:
    mem = Memory()
    for addr in (0, 1, 2**64 - 2):
        try:
            mem.string(os.getpid(), addr, "path")
        except Unreadable as e:
            assert e.errno == errno.EFAULT
        else:
            raise AssertionError(f"read {addr:#x}")
    data = b"hello\0"
    buf = ctypes.create_string_buffer(data)
    assert mem.string(os.getpid(), ctypes.addressof(buf), "path") == b"hello"


def _two_pages_second_unmapped() -> tuple[int, int]:
    """An anonymous mapping of two pages whose second page is unmapped again: (address of
    the first, page size). The caller unmaps the first."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    page = os.sysconf("SC_PAGE_SIZE")
    base = libc.mmap(None, 2 * page, 3, 0x22, -1, 0)  # PROT_READ|WRITE, PRIVATE|ANONYMOUS
    assert base not in (None, ctypes.c_void_p(-1).value)
    assert libc.munmap(base + page, page) == 0
    return base, page


def test_strings_end_where_the_kernel_would_end_them() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    base, page = _two_pages_second_unmapped()
    mem = Memory()
    try:
        ctypes.memset(base, ord("a"), page)
        # NUL on the last byte of the mapping: read whole, nothing beyond is needed
        ctypes.memmove(base + page - 4, b"xyz\0", 4)
        assert mem.string(os.getpid(), base + page - 4, "path") == b"xyz"
        # no NUL before the unmapped page: EFAULT, as getname would fail; unless PATH_MAX
        # bytes came first (the whole page here): then the name is too long
        ctypes.memset(base + page - 1, ord("a"), 1)
        for start, err in ((base + page - 10, errno.EFAULT), (base, errno.ENAMETOOLONG)):
            try:
                mem.string(os.getpid(), start, "path")
            except Unreadable as e:
                assert e.errno == err
            else:
                raise AssertionError("read past the mapping")
    finally:
        libc.munmap(base, page)
    # a string that crosses a page boundary is read whole; PATH_MAX bytes without a NUL are
    # ENAMETOOLONG
    buf = ctypes.create_string_buffer(3 * page)
    start = (ctypes.addressof(buf) // page + 1) * page - 5
    ctypes.memmove(start, b"/cross/boundary\0", 16)
    assert mem.string(os.getpid(), start, "path") == b"/cross/boundary"
    ctypes.memset(start, ord("b"), 4096)
    try:
        mem.string(os.getpid(), start, "path")
    except Unreadable as e:
        assert e.errno == errno.ENAMETOOLONG
    else:
        raise AssertionError("a string of PATH_MAX bytes")


def test_log_line_is_one_json_object() -> None:
    d = judge.Decision(False, errno.EPERM, "allow-write", "outside", True, "openat",
                       {"path": "/etc/\udcff", "flags": 65})
    text = log.line("c1", 10, 11, AUDIT_ARCH_I386, d, audit=False)
    assert text.endswith("\n") and text.count("\n") == 1
    rec = json.loads(text)
    assert rec["container"] == "c1" and rec["pid"] == 10 and rec["tid"] == 11
    assert rec["arch"] == "i386" and rec["syscall"] == "openat"
    assert rec["action"] == "deny" and rec["errno"] == errno.EPERM
    assert rec["args"]["flags"] == 65


def test_address_lengths_the_kernel_refuses() -> None:
    j = judge.Judge(Policy(no_outbound_network=True))
    connect = 42
    for length in (129, 0xFFFFFFFF, 1 << 40 | 200):  # too long, -1, upper half + too long
        d = j.judge(0, AUDIT_ARCH_X86_64, connect, [3, 0x1000, length, 0, 0, 0])
        assert not d.allowed and d.errno == errno.EINVAL, length
    # a pointer the tracer cannot read is never let through
    d = j.judge(os.getpid(), AUDIT_ARCH_X86_64, connect, [3, 8, 16, 0, 0, 0])
    assert not d.allowed and d.errno == errno.EFAULT


def test_supervised_judge_refuses_every_i386_socketcall() -> None:
    """Supervised (no cgroup programs), the filter refuses i386 socketcall; with a log that
    refusal is a TRACE stop, and judging the sockaddr here would race its rewrite. The judge
    refuses without reading the call's memory (pid 0: any read would fail)."""
    policy = Policy(no_outbound_network=True, netmasks=(ip_network("127.0.0.0/8"),),
                    log_path="/dev/null")
    connect = [3, 0, 0, 0, 0, 0]  # SYS_CONNECT, arguments at address 0
    d = judge.Judge(policy, supervised=True).judge(0, AUDIT_ARCH_I386, 102, connect)
    assert not d.allowed and d.log and d.syscall == "socketcall"
    assert d.errno == policy.errno and "supervisor" in d.reason
    # not supervised (a cgroup program holds the destinations): judged as before, and its
    # unreadable arguments are refused for that reason instead
    d = judge.Judge(policy).judge(0, AUDIT_ARCH_I386, 102, connect)
    assert not d.allowed and "supervisor" not in d.reason
    # a policy without destination rules has no supervisor: socketcall is judged (here its
    # unreadable arguments refuse it), not refused for the supervisor's sake
    d = judge.Judge(Policy(read_only=True), supervised=True).judge(0, AUDIT_ARCH_I386, 102,
                                                                   connect)
    assert "supervisor" not in d.reason


def test_allowed_mounts_answer_by_the_mount_a_file_is_on() -> None:
    """/proc stands in for an allow-write path with a mount of its own (policy.mounts' clone):
    what is on that mount is inside, whatever its name; anything else is left to the name."""
    root = os.open("/", os.O_PATH | os.O_DIRECTORY)
    opener = kernel.Openat2()
    me = os.getpid()
    fds = [os.open(p, os.O_RDONLY | os.O_CLOEXEC)
           for p in ("/proc/self/status", "/etc/hostname", "/proc")]
    try:
        mounts = AllowedMounts(("/proc",), opener)
        if not mounts.learn(root):
            pytest.skip("no unique mount ids (Linux 6.8)")
        # not a mount's root (a pid directory), and a symlink: no mount is wholly inside
        assert AllowedMounts(("/proc/1", "/proc/self"), opener).learn(root) == frozenset()
        on_proc, elsewhere, proc_dir = fds
        assert mounts.holds(me, on_proc, root)
        assert not mounts.holds(me, elsewhere, root)
        assert not mounts.holds(me, 999_999, root)  # no such descriptor
        assert mounts.holds_beneath(me, proc_dir, b"1/status", True, root)
        assert mounts.holds_beneath(me, proc_dir, b"new-name", True, root)  # to be created
        for name in (b"self/status",   # a symlink on the way
                     b"self",          # a last symlink the call follows
                     b"../etc/passwd", b"1/..", b"1/", b"sys/../../etc"):
            assert not mounts.holds_beneath(me, proc_dir, name, True, root), name
        assert mounts.holds_beneath(me, proc_dir, b"self", False, root)  # the link itself
        assert AllowedMounts((), opener).learn(root) == frozenset()
    finally:
        for fd in (*fds, root):
            os.close(fd)
