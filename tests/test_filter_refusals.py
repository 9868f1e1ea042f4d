"""The data values of the filter's logged refusals (policy.filter: REFUSALS, refusals()) and the
tracer's reading of them (tracer.refusals): pure, no traced process.

With a log or in audit mode, every outright refusal of the filter is a TRACE whose data names
it; 0 is kept for the calls the tracer must judge. The tracer takes a data value only where a
refusal rule of the filter covers the call, since the newest filter's data is what the kernel
reports and the process may load a TRACE filter of its own.
"""

from __future__ import annotations

import errno
from ipaddress import ip_network

import pytest

from secfilt_runtime.policy import filter as policy_filter
from secfilt_runtime.policy.model import Policy
from secfilt_runtime.policy.syscalls import AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, BY_NAME
from secfilt_runtime.records import replace
from secfilt_runtime.tracer import judge
from secfilt_runtime.tracer.refusals import Refusals

NETMASK = (ip_network("127.0.0.0/8"),)
POLICIES = (
    Policy(read_only=True),
    Policy(read_only=True, allow_write=("/w",)),
    Policy(no_outbound_network=True),
    Policy(netmasks=NETMASK, ports=(80,)),
    Policy(mainstream_network_families=True),
    Policy(read_only=True, allow_write=("/w",), no_outbound_network=True,
           mainstream_network_families=True),
)


def logged(policy: Policy, **extra: object) -> Policy:
    return replace(policy, **extra)


LOGGED = tuple(logged(p, **extra) for p in POLICIES
               for extra in ({"log_path": "/dev/null", "errno": errno.EROFS}, {"mode": "audit"}))
CHROOT, SETNS, PTRACE, CLONE, MOUNT, IOCTL, GETPID = 161, 308, 101, 56, 165, 16, 39
SOCKETCALL_I386 = 102
TIOCSTI = 0x5412


def judged_names(rule_names: tuple[str, ...]) -> bool:
    """Names the judge reads (the table, and i386 socketcall's argument block)."""
    return all(n in BY_NAME or n == "socketcall" for n in rule_names)


@pytest.mark.parametrize("supervised", [False, True])
@pytest.mark.parametrize("policy", LOGGED, ids=repr)
def test_every_logged_refusal_names_its_meaning(policy: Policy, supervised: bool) -> None:
    table = policy_filter.refusals(policy)
    for rule in policy_filter.build(policy, supervised).rules:
        action = rule.action
        assert action.name != "SCMP_ACT_ALLOW", rule
        if action.name == "SCMP_ACT_TRACE" and action.data == policy_filter.JUDGE:
            assert judged_names(rule.names), rule
        elif action.name == "SCMP_ACT_TRACE":
            assert action.data in table, rule
        elif action.name == "SCMP_ACT_ERRNO":
            # the one ERRNO kept under a log: clone3's ENOSYS, libc's cue to use clone
            assert rule.names == ("clone3",) and action.errno == errno.ENOSYS, rule
        else:
            assert supervised and action.name == "SCMP_ACT_NOTIFY", rule


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
def test_without_a_log_refusals_stay_errno(policy: Policy) -> None:
    for rule in policy_filter.build(policy, supervised=True).rules:
        assert not (rule.action.name == "SCMP_ACT_TRACE" and rule.action.data), rule


def test_no_two_meanings_share_a_value() -> None:
    values = list(policy_filter.REFUSALS)
    assert policy_filter.JUDGE not in values
    assert all(0 < v <= 0xFFFF for v in values)  # SECCOMP_RET_DATA keeps 16 bits
    assert len(set(policy_filter.REFUSALS.values())) == len(values)
    for policy in LOGGED:
        table = policy_filter.refusals(policy)
        assert set(table) == set(values)
        meanings = [(r.rule, r.reason) for r in table.values()]
        assert len(set(meanings)) == len(meanings)


def test_hardening_refusals_are_named_so() -> None:
    table = policy_filter.refusals(LOGGED[0])
    hardening = {v for v, r in table.items() if r.hardening}
    assert hardening == {policy_filter.ESCAPE, policy_filter.UNTRACED_CHILD,
                         policy_filter.OWN_LISTENER, policy_filter.TERMINAL_INJECTION}
    assert all(table[v].rule == policy_filter.HARDENING_RULE for v in hardening)
    assert all(r.rule != policy_filter.HARDENING_RULE
               for v, r in table.items() if v not in hardening)


def test_rule_names_are_the_policy_s() -> None:
    writes = policy_filter.refusals(LOGGED[0])
    assert writes[policy_filter.NEW_ROOT].rule == "read-only"
    network = policy_filter.refusals(logged(Policy(no_outbound_network=True), log_path="/x"))
    assert network[policy_filter.DETACH_PROGRAMS].rule == "no-outbound-network"
    families = policy_filter.refusals(logged(Policy(mainstream_network_families=True),
                                             log_path="/x"))
    assert families[policy_filter.SOCKET_FAMILY].rule == "mainstream-network-families"


@pytest.mark.parametrize("supervised", [False, True])
@pytest.mark.parametrize("policy", LOGGED, ids=repr)
def test_the_tracer_recognises_every_refusal(policy: Policy, supervised: bool) -> None:
    # a refused call the tracer could not find (no numbers for it) would be judged instead
    Refusals(policy, supervised)


def test_the_compiled_filter_carries_the_data() -> None:
    from secfilt_runtime.seccomp import bpf, prepare

    policy = LOGGED[0]
    programs = [p.bpf for p in prepare(None, policy, cache_dir=None).programs]
    for arch, nr in ((AUDIT_ARCH_X86_64, CHROOT), (AUDIT_ARCH_I386, 61)):
        ret = bpf.decide(programs, bpf.seccomp_data(nr, arch))
        assert ret == 0x7FF00000 | policy_filter.NEW_ROOT, hex(ret)


# --- the judge: data as the filter sent it, and as the process's own filter could forge it ---


def test_a_refusal_is_logged_with_its_rule_and_not_judged() -> None:
    policy = logged(Policy(read_only=True, allow_write=("/w",)), log_path="/dev/null",
                    errno=errno.EROFS)
    j = judge.Judge(policy)
    d = j.judge(0, AUDIT_ARCH_X86_64, CHROOT, [0] * 6, policy_filter.NEW_ROOT)
    assert (d.allowed, d.errno, d.log, d.syscall, d.rule) == (
        False, errno.EROFS, True, "chroot", "read-only")
    assert d.reason == policy_filter.REFUSALS[policy_filter.NEW_ROOT][1]
    d = j.judge(0, AUDIT_ARCH_I386, 54, [3, 0xFFFF_0000_0000_0000 | TIOCSTI, 0, 0, 0, 0],
                policy_filter.TERMINAL_INJECTION)
    assert not d.allowed and d.rule == policy_filter.HARDENING_RULE
    assert d.details == {"request": TIOCSTI}


def test_forged_data_cannot_turn_a_refusal_into_a_judged_call() -> None:
    # data 0 ("judge it") from an own filter, for calls ours refused: refused all the same
    j = judge.Judge(logged(Policy(read_only=True), log_path="/dev/null"))
    for nr, args in ((CHROOT, [0] * 6), (SETNS, [3, 0, 0, 0, 0, 0]), (MOUNT, [0] * 6),
                     (CLONE, [0x00800011, 0, 0, 0, 0, 0])):
        d = j.judge(0, AUDIT_ARCH_X86_64, nr, args, policy_filter.JUDGE)
        assert not d.allowed and d.log, nr
        assert not j.judge(0, AUDIT_ARCH_X86_64, nr, args, 0x1234).allowed, nr


def test_forged_data_cannot_let_hardening_through_in_audit_mode() -> None:
    j = judge.Judge(logged(Policy(read_only=True), mode="audit"))
    for forged in (policy_filter.MOUNT_TREE, policy_filter.NEW_ROOT, policy_filter.JUDGE):
        d = j.judge(0, AUDIT_ARCH_X86_64, PTRACE, [0] * 6, forged)
        assert not d.allowed and d.rule == policy_filter.HARDENING_RULE, forged
        d = j.judge(0, AUDIT_ARCH_X86_64, IOCTL, [0, TIOCSTI, 0, 0, 0, 0], forged)
        assert not d.allowed and d.rule == policy_filter.HARDENING_RULE, forged
    # what audit mode does let through: a refusal that is not a hardening one (chroot)...
    d = j.judge(0, AUDIT_ARCH_X86_64, 161, [0] * 6, policy_filter.NEW_ROOT)
    assert d.allowed and d.log and d.rule == "read-only"
    # ...but not the mount family, which audit mode's Landlock domain refuses anyway
    d = j.judge(0, AUDIT_ARCH_X86_64, MOUNT, [0] * 6, policy_filter.MOUNT_TREE)
    assert not d.allowed and d.log and d.rule == "read-only"


def test_forged_data_on_a_call_no_rule_refuses_is_judged_by_number() -> None:
    j = judge.Judge(logged(Policy(read_only=True), log_path="/dev/null"))
    for forged in (policy_filter.NEW_ROOT, policy_filter.ESCAPE, 0xFFFF):
        assert j.judge(0, AUDIT_ARCH_X86_64, GETPID, [0] * 6, forged).allowed
        # clone without CLONE_UNTRACED: no rule of ours covers it
        assert j.judge(0, AUDIT_ARCH_X86_64, CLONE, [0x11, 0, 0, 0, 0, 0], forged).allowed


def test_supervised_i386_socketcall_is_refused_whatever_the_data() -> None:
    """Supervised, the filter refuses i386 socketcall (the supervisor performs x86_64 calls
    only); with a log the refusal is a TRACE stop. Judging the sockaddr instead would race its
    rewrite with no cgroup program behind: refused without reading memory (pid 0)."""
    policy = logged(Policy(no_outbound_network=True, netmasks=NETMASK), log_path="/dev/null")
    connect = [3, 0, 0, 0, 0, 0]
    for data in (policy_filter.SUPERVISED_SOCKETCALL, policy_filter.JUDGE):
        d = judge.Judge(policy, supervised=True).judge(0, AUDIT_ARCH_I386, SOCKETCALL_I386,
                                                       connect, data)
        assert not d.allowed and d.syscall == "socketcall" and "supervisor" in d.reason
