"""policy.filter.build: the policy's own seccomp filter, as data and compiled."""

from __future__ import annotations

import errno
from ipaddress import ip_network

import pytest

from secfilt_runtime.policy import filter as policy_filter
from secfilt_runtime.policy.model import Policy
from secfilt_runtime.policy.syscalls import BY_NAME, Group, names
from secfilt_runtime.seccomp.profile import Rule

TRACE, ERRNO, ALLOW = "SCMP_ACT_TRACE", "SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW"


def rules_for(profile, name: str) -> list[Rule]:  # noqa: ANN001
    return [r for r in profile.rules if name in r.names]


def actions_for(profile, name: str) -> set[str]:  # noqa: ANN001
    return {r.action.name for r in rules_for(profile, name)}


def test_empty_policy_is_an_empty_filter() -> None:
    profile = policy_filter.build(Policy())
    assert profile.default_action.name == ALLOW and profile.rules == ()


def test_read_only_denies_in_bpf_without_a_tracer() -> None:
    profile = policy_filter.build(Policy(read_only=True, errno=errno.EROFS))
    for name in names(Group.WRITE) + names(Group.MOUNT):
        assert actions_for(profile, name) == {ERRNO}, name
    assert all(r.action.errno == errno.EROFS for r in profile.rules
               if r.action.name == ERRNO and "clone3" not in r.names)
    # the only traced calls: those whose deciding operand is in memory
    traced = {n for r in profile.rules if r.action.name == TRACE for n in r.names}
    assert traced == {"openat2", "bind", "socketcall"}


def test_open_is_a_write_only_with_write_flags() -> None:
    profile = policy_filter.build(Policy(read_only=True))
    for name, index in (("open", 1), ("openat", 2)):
        rules = rules_for(profile, name)
        assert rules and all(r.args for r in rules), name
        conditions = {(a.index, a.value, a.op, a.value_two) for r in rules for a in r.args}
        assert conditions == {(index, 3, "SCMP_CMP_MASKED_EQ", 1),
                              (index, 3, "SCMP_CMP_MASKED_EQ", 2),
                              (index, 3, "SCMP_CMP_MASKED_EQ", 3),
                              (index, 0o100, "SCMP_CMP_MASKED_EQ", 0o100),
                              (index, 0o1000, "SCMP_CMP_MASKED_EQ", 0o1000)}


def test_allow_write_traces_for_a_path_judgment() -> None:
    profile = policy_filter.build(Policy(read_only=True, allow_write=("/tmp",)))
    for name in ("mkdir", "renameat2", "fchmod", "unlinkat", "setxattr", "utimensat"):
        assert actions_for(profile, name) == {TRACE}, name
    assert actions_for(profile, "mount") == {ERRNO}


def test_logging_sends_every_denial_to_the_tracer() -> None:
    for policy in (Policy(read_only=True, log_path="/x"),
                   Policy(read_only=True, mode="audit"),
                   Policy(mainstream_network_families=True, log_path="/x")):
        profile = policy_filter.build(policy)
        errnos = [r for r in profile.rules if r.action.name == ERRNO]
        # only clone3's ENOSYS stays in BPF: it is a fallback, not a denial
        assert [r.names for r in errnos] == [("clone3",)], policy


def test_destination_rules() -> None:
    profile = policy_filter.build(Policy(netmasks=(ip_network("10.0.0.0/8"),)))
    for name in ("connect", "sendmsg", "sendmmsg", "socketcall"):
        assert actions_for(profile, name) == {TRACE}, name
    (sendto,) = rules_for(profile, "sendto")
    assert [(a.index, a.value, a.op) for a in sendto.args] == [(4, 0, "SCMP_CMP_NE")]
    assert not rules_for(profile, "mkdir")  # no write restriction: nothing of it


def test_socket_families_in_bpf() -> None:
    profile = policy_filter.build(Policy(mainstream_network_families=True))
    denied = {a.value for r in rules_for(profile, "socket") for a in r.args
              if a.op == "SCMP_CMP_EQ"}
    assert denied == {0, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15}
    (above,) = [a for r in rules_for(profile, "socket") for a in r.args
                if a.op == "SCMP_CMP_GT"]
    assert above.value == 16


def test_hardening_is_in_every_non_empty_policy() -> None:
    for policy in (Policy(read_only=True), Policy(no_outbound_network=True),
                   Policy(mainstream_network_families=True)):
        profile = policy_filter.build(policy)
        for name in ("ptrace", "process_vm_writev", "open_by_handle_at", "io_uring_setup",
                     "io_uring_enter", "io_uring_register", "userfaultfd", "clone",
                     "seccomp"):
            assert rules_for(profile, name), (policy, name)
        (clone3,) = rules_for(profile, "clone3")
        assert clone3.action.errno == errno.ENOSYS


def test_int_arguments_ignore_the_upper_half() -> None:
    # the kernel reads ioctl's request and seccomp's op as 32-bit: a rule comparing 64 bits
    # would be passed by setting high bits
    profile = policy_filter.build(Policy(read_only=True))
    for name in ("ioctl", "seccomp"):
        for rule in rules_for(profile, name):
            assert all(a.op == "SCMP_CMP_MASKED_EQ" and a.value in (0xFFFFFFFF, 8)
                       for a in rule.args), name
    assert BY_NAME["ioctl"].only_if is not None


@pytest.mark.parametrize("policy", [
    Policy(read_only=True), Policy(read_only=True, allow_write=("/tmp",), log_path="/l"),
    Policy(no_outbound_network=True, mainstream_network_families=True, ports=(53,)),
    Policy(netmasks=(ip_network("2001:db8::/32"),), mode="audit")])
def test_compiles_for_both_architectures(policy: Policy) -> None:
    compiler = pytest.importorskip("secfilt_runtime.seccomp.compiler")
    compiled = compiler.compile_profile(policy_filter.build(policy), with_pfc=True)
    assert compiled.bpf and len(compiled.bpf) % 8 == 0
    assert "arch x86_64" in compiled.pfc and "arch x86 " in compiled.pfc
    # i386 socketcall is traced whole, never on conditions libseccomp carried over wrongly
    x86 = compiled.pfc.split("arch x86 ", 1)[1]
    block = x86.split('"socketcall" (102)', 1)[1].split("# filter for syscall", 1)[0]
    assert "if ($a" not in block and "TRACE" in block


def test_source_routing_options_are_denied_in_bpf() -> None:
    profile = policy_filter.build(Policy(no_outbound_network=True))
    pairs = {tuple(a.value_two for a in r.args) for r in rules_for(profile, "setsockopt")}
    assert pairs == {(0, 4), (41, 57), (41, 5), (41, 6), (41, 9)}
    assert actions_for(profile, "setsockopt") == {ERRNO}
    assert not rules_for(policy_filter.build(Policy(read_only=True)), "setsockopt")


def test_terminal_injection_is_denied_in_every_policy() -> None:
    for policy in (Policy(read_only=True), Policy(no_outbound_network=True)):
        requests = {a.value_two for r in rules_for(policy_filter.build(policy), "ioctl")
                    for a in r.args if r.action.name == ERRNO}
        assert {0x5412, 0x541C} <= requests


SETNS, BPF_NR, CONNECT, SOCKETCALL_I386 = 308, 321, 42, 102
RET_ERRNO, RET_USER_NOTIF, RET_TRACE, RET_ALLOW = 0x00050000, 0x7FC00000, 0x7FF00000, 0x7FFF0000
AUDIT_ARCH_X86_64, AUDIT_ARCH_I386 = 0xC000003E, 0x40000003
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWNET = 0x20000, 0x2000000, 0x40000000


def run_filter(policy: Policy, nr: int, args: tuple[int, ...] = (0,) * 6,
               arch: int = AUDIT_ARCH_X86_64, supervised: bool = False) -> int:
    """The action the compiled policy filter returns (the kernel's program, evaluated)."""
    from secfilt_runtime.seccomp import bpf, prepare

    filters = prepare(None, policy, cache_dir=None, supervised=supervised)
    return bpf.action(bpf.decide([p.bpf for p in filters.programs],
                                 bpf.seccomp_data(nr, arch, args)))


IOCTL, IOCTL_I386, USERFAULTFD_IOC_NEW = 16, 54, 0xAA00  # _IO(0xAA, 0x00)


def test_userfaultfd_from_the_device_is_refused_in_every_policy() -> None:
    # /dev/userfaultfd's USERFAULTFD_IOC_NEW makes the descriptor the userfaultfd call would;
    # the request is an unsigned int: high bits set in the register must not pass
    for policy in (Policy(read_only=True), Policy(no_outbound_network=True),
                   Policy(mainstream_network_families=True)):
        assert run_filter(policy, IOCTL, (3, USERFAULTFD_IOC_NEW, 0, 0, 0, 0)) == RET_ERRNO
        assert run_filter(policy, IOCTL, (3, USERFAULTFD_IOC_NEW | 1 << 40, 0, 0, 0, 0)) \
            == RET_ERRNO
        assert run_filter(policy, IOCTL_I386, (3, USERFAULTFD_IOC_NEW, 0, 0, 0, 0),
                          arch=AUDIT_ARCH_I386) == RET_ERRNO
        assert run_filter(policy, IOCTL, (3, 0xAA01, 0, 0, 0, 0)) == RET_ALLOW
    # logged, it goes to the tracer, which refuses it as hardening (audit mode too), whatever
    # data value the stop reports
    from secfilt_runtime.tracer.refusals import Refusals

    audit = Policy(read_only=True, mode="audit")
    assert run_filter(audit, IOCTL, (3, USERFAULTFD_IOC_NEW, 0, 0, 0, 0)) == RET_TRACE
    covered = Refusals(audit).find(AUDIT_ARCH_X86_64, IOCTL, [3, USERFAULTFD_IOC_NEW, 0, 0, 0, 0],
                                   data=policy_filter.JUDGE)
    assert covered is not None and covered.refusal.hardening


@pytest.mark.parametrize(("policy", "refused", "allowed"), [
    # writes: another mount namespace would reach writable mounts
    (Policy(read_only=True), (0, CLONE_NEWNS, CLONE_NEWNS | CLONE_NEWNET), (CLONE_NEWNET,
                                                                           CLONE_NEWCGROUP)),
    # destinations: another cgroup namespace could reach the cgroups above the programs
    (Policy(no_outbound_network=True), (0, CLONE_NEWCGROUP), (CLONE_NEWNS, CLONE_NEWNET)),
])
def test_setns_out_of_the_sandbox_is_refused(policy: Policy, refused: tuple[int, ...],
                                             allowed: tuple[int, ...]) -> None:
    for nstype in refused:
        assert run_filter(policy, SETNS, (3, nstype, 0, 0, 0, 0)) == RET_ERRNO, hex(nstype)
        # the kernel reads nstype as an int: high bits must not slip past
        assert run_filter(policy, SETNS, (3, nstype | 1 << 40, 0, 0, 0, 0)) == RET_ERRNO
    for nstype in allowed:
        assert run_filter(policy, SETNS, (3, nstype, 0, 0, 0, 0)) == RET_ALLOW, hex(nstype)


def test_bpf_is_refused_under_destination_rules() -> None:
    assert run_filter(Policy(no_outbound_network=True), BPF_NR) == RET_ERRNO
    assert run_filter(Policy(read_only=True), BPF_NR) == RET_ALLOW


def test_supervised_destinations_go_to_the_listener() -> None:
    policy = Policy(no_outbound_network=True)
    assert run_filter(policy, CONNECT, supervised=True) == RET_USER_NOTIF
    assert run_filter(policy, CONNECT) == RET_TRACE
    # i386 socketcall carries its arguments in memory: refused, not judged, when supervised
    assert run_filter(policy, SOCKETCALL_I386, (3, 0, 0, 0, 0, 0), arch=AUDIT_ARCH_I386,
                      supervised=True) == RET_ERRNO


def test_chroot_is_refused_under_write_rules() -> None:
    CHROOT = 161
    assert run_filter(Policy(read_only=True), CHROOT) == RET_ERRNO
    assert run_filter(Policy(read_only=True, allow_write=("/w",)), CHROOT) == RET_ERRNO
    assert run_filter(Policy(no_outbound_network=True), CHROOT) == RET_ALLOW
