"""The policy's own seccomp filter, as a Profile (default ALLOW): what BPF can decide alone it
decides (a reading open, a socket family, a forbidden call never stops in the tracer); what
needs a pointer read goes to the tracer with SECCOMP_RET_TRACE.

A denial the policy must log (a log path, or audit mode) cannot be an ERRNO in BPF: the tracer
would never see it. Then it is a TRACE too, whose data (the low 16 bits of the action) names the
refusal: JUDGE (0) is kept for the calls the tracer must judge by reading their memory; any other
value is one of REFUSALS, a call this filter has already refused, which the tracer refuses (in
audit mode allows, unless it is a hardening refusal) and logs with the rule and reason
`refusals(policy)` gives, never judging it (tracer.refusals). So the tracer needs no copy of
these rules: a refusal added here is logged as what it is. (The write calls under plain
read-only are the exception: logged, they go with JUDGE, so the log names the path; decide.write
refuses every one.) What a policy does not restrict costs nothing: an empty policy is an empty
filter.

Hardening, for every non-empty policy (what a process could do against ptrace+seccomp):
- ptrace: a process could trace an untraced child of its own and answer that child's TRACE
  stops itself, letting everything through;
- clone with CLONE_UNTRACED: the child would not be auto-attached, and every TRACE stop of an
  untraced task fails with ENOSYS... unless its parent traces it (ptrace is denied too);
- clone3: its flags live in a struct BPF cannot read; ENOSYS makes libc fall back to clone;
- seccomp(SET_MODE_FILTER, NEW_LISTENER): a user-notification filter of its own outranks our
  TRACE and would let its own listener answer the calls we judge (a plain filter can only add
  denials: the most severe action wins);
- process_vm_writev: rewriting a traced sibling's path buffer after the check;
- open_by_handle_at and io_uring: file and network operations the tracer never sees;
- ioctl TIOCSTI/TIOCLINUX: input pushed into a terminal shared with whoever started the
  sandbox runs after it, outside every rule;
- userfaultfd: a fault handler of its own would hold the tracer's read of a path buffer
  for as long as it likes (every other task of the container waits behind it); the call, and
  ioctl USERFAULTFD_IOC_NEW on /dev/userfaultfd (a read-open, never judged), which returns
  the same descriptor where the device can be opened (root, or a bundle exposing it).
personality() is left alone: on x86_64 the syscall ABI comes from the entry instruction, which
seccomp_data.arch reports, not from the persona.
"""

from __future__ import annotations

import errno as errno_mod
from _socket import AF_INET, AF_INET6

from ..records import record
from ..seccomp.profile import Action, ArgCondition, Profile, Rule
from . import decide
from .model import Policy
from .syscalls import (
    BY_NAME,
    CLONE_FILES,
    CLONE_NEWCGROUP,
    CLONE_NEWNS,
    CLONE_THREAD,
    CLONE_UNTRACED,
    O_ACCMODE,
    O_CREAT,
    O_TRUNC,
    ROUTING_SOCKOPTS,
    SECCOMP_FILTER_FLAG_NEW_LISTENER,
    SECCOMP_SET_MODE_FILTER,
    TTY_INJECTION,
    USERFAULTFD_IOC_NEW,
    Group,
    names,
)

ALLOW = Action("SCMP_ACT_ALLOW")
TRACE = Action("SCMP_ACT_TRACE", data=0)  # JUDGE (below): the tracer reads the call
NOTIFY = Action("SCMP_ACT_NOTIFY")
WAIT_KILLABLE_RECV = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
ENOSYS = Action("SCMP_ACT_ERRNO", errno=errno_mod.ENOSYS)
ARCHITECTURES = ("SCMP_ARCH_X86",)

EQ, NE, GT, MASKED_EQ = "SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"
# open flags that make an open a write: each is its own rule (the rules of a syscall are ORed)
OPEN_WRITE_CONDITIONS = ((O_ACCMODE, 1), (O_ACCMODE, 2), (O_ACCMODE, 3), (O_CREAT, O_CREAT),
                         (O_TRUNC, O_TRUNC))
SOCK_TYPES = range(16)  # socket()'s type & SOCK_TYPE_MASK
LOW32 = 0xFFFFFFFF  # int arguments: the kernel reads the low half of the register


# SECCOMP_RET_TRACE data values. JUDGE: the tracer judges the call (its pointers must be read).
# The others: refused here, sent to the tracer only to be logged. Fixed numbers, the same under
# every policy (only the rule names resolve per policy: refusals()).
JUDGE = 0
(MOUNT_TREE, NEW_ROOT, MOUNT_NAMESPACE, CGROUP_MOUNTS, DETACH_PROGRAMS, CGROUP_NAMESPACE,
 SOURCE_ROUTE, SUPERVISED_SOCKETCALL, SOCKET_FAMILY, INET_SOCKET_TYPE, ESCAPE, UNTRACED_CHILD,
 OWN_LISTENER, TERMINAL_INJECTION, SHARED_DESCRIPTORS) = range(1, 16)
# whose rule a refusal enforces (resolved by refusals() to the name the log shows)
WRITES, DESTINATIONS, FAMILIES, INET_SOCKETS, HARDENING = (
    "writes", "destinations", "families", "inet-sockets", "hardening")
HARDENING_RULE = "sandbox-integrity"  # never let through, not even in audit mode
REFUSALS: dict[int, tuple[str, str]] = {
    MOUNT_TREE: (WRITES, "the mount tree cannot change under a write restriction"),
    NEW_ROOT: (WRITES, "a new root gives the policy's names other meanings"),
    MOUNT_NAMESPACE: (WRITES, "another mount namespace leaves the read-only mounts"),
    CGROUP_MOUNTS: (DESTINATIONS, "a mount could make the cgroup mounts writable again"),
    DETACH_PROGRAMS: (DESTINATIONS, "bpf could detach the destination programs"),
    CGROUP_NAMESPACE: (DESTINATIONS, "another cgroup namespace reaches other cgroups"),
    SOURCE_ROUTE: (DESTINATIONS, "source routing sends to its first hop, not the address"),
    SUPERVISED_SOCKETCALL: (DESTINATIONS,
                            "i386 socketcall: the supervisor performs x86_64 calls only"),
    SOCKET_FAMILY: (FAMILIES, "this socket family is not allowed"),
    INET_SOCKET_TYPE: (INET_SOCKETS, "this INET socket type bypasses the destination checks"),
    ESCAPE: (HARDENING, "the call would let the process escape the sandbox"),
    UNTRACED_CHILD: (HARDENING, "an untraced child would escape the tracer"),
    OWN_LISTENER: (HARDENING, "a listener of its own would answer the calls the tracer judges"),
    TERMINAL_INJECTION: (HARDENING, "terminal input injection reaches outside the sandbox"),
    SHARED_DESCRIPTORS: (DESTINATIONS, "a descriptor table shared outside the thread group "
                         "could swap a socket the supervisor checked"),
}


@record(frozen=True)
class Refusal:
    """What one data value means under a policy: the log's rule and reason."""

    rule: str
    reason: str
    hardening: bool  # refused in audit mode too


def refusals(policy: Policy) -> dict[int, Refusal]:
    """Data value -> the refusal it names under `policy` (the tracer's table)."""
    sockets = decide.socket_rules(policy)
    rules = {WRITES: decide.write_rule(policy), DESTINATIONS: decide.destination_rule(policy),
             FAMILIES: sockets.family_rule, INET_SOCKETS: sockets.inet_rule,
             HARDENING: HARDENING_RULE}
    # the mount family too in audit mode: its Landlock domain (policy.landlock, kept for the
    # ptrace scoping) refuses every mount call, so letting one through would log a lie
    return {data: Refusal(rules[whose], reason,
                          whose == HARDENING or data == MOUNT_TREE and policy.audit)
            for data, (whose, reason) in REFUSALS.items()}


def needs_tracer_for_denials(policy: Policy) -> bool:
    return policy.log_path is not None or policy.audit


def deny_action(policy: Policy, refusal: int) -> Action:
    """What a call BPF denies alone becomes: ERRNO, or, when the denial must be logged, TRACE
    with the data value naming `refusal` (one of REFUSALS)."""
    if needs_tracer_for_denials(policy):
        return Action("SCMP_ACT_TRACE", data=refusal)
    return Action("SCMP_ACT_ERRNO", errno=policy.errno)


def build(policy: Policy, supervised: bool = False) -> Profile:
    """The policy's filter. `supervised`: the calls that carry a destination go to a seccomp
    user-notification supervisor that performs them itself (supervisor.py), instead of the
    tracer, whose check the kernel's second read of the sockaddr would race."""
    if policy.is_empty:
        return Profile(default_action=ALLOW)
    supervised = supervised and policy.restricts_destinations
    rules: list[Rule] = []
    if policy.restricts_writes:
        rules += write_rules(policy)
    if policy.restricts_destinations:
        rules += destination_rules(policy, NOTIFY if supervised else TRACE)
    # libseccomp turns a rule on connect/sendto/... into socketcall rules that test the
    # socketcall's own registers against the direct call's conditions (sendto's a4 != 0 would
    # read a register socketcall ignores): every i386 socketcall goes to the tracer instead;
    # supervised, refused (the supervisor performs x86_64 calls only)
    rules.append(Rule(("socketcall",),
                      deny_action(policy, SUPERVISED_SOCKETCALL) if supervised else TRACE))
    if supervised:
        rules.append(shared_descriptors_rule(policy))
    rules += socket_rules(policy)
    rules += hardening_rules(policy)
    rules += setns_rules(policy)
    # killable only: a signal must not interrupt a call the supervisor is performing (it would
    # be restarted, and performed twice)
    flags = (WAIT_KILLABLE_RECV,) if supervised else ()
    return Profile(default_action=ALLOW, rules=tuple(rules), architectures=ARCHITECTURES,
                   flags=flags)


def write_rules(policy: Policy) -> list[Rule]:
    # allow-write needs the path judged; plain read-only denies every change without looking,
    # unless the refusal is logged: then the tracer reads the path too, for the log to name
    # what was refused (decide.write refuses every path under plain read-only)
    judged = TRACE if policy.allow_write or needs_tracer_for_denials(policy) else \
        Action("SCMP_ACT_ERRNO", errno=policy.errno)
    rules = [Rule(tuple(n for n in names(Group.WRITE) if BY_NAME[n].only_if is None), judged)]
    for nr_name, flags_index in (("open", 1), ("openat", 2)):
        rules += [Rule((nr_name,), judged, (ArgCondition(flags_index, mask, MASKED_EQ, value),))
                  for mask, value in OPEN_WRITE_CONDITIONS]
    # chattr through any descriptor
    # ioctl's request is an unsigned int: the kernel drops the upper half, so must the rule
    rules += [Rule(("ioctl",), judged, (ArgCondition(1, LOW32, MASKED_EQ, request),))
              for request in BY_NAME["ioctl"].only_if[1]]  # type: ignore[index]
    rules.append(Rule(names(Group.MOUNT), deny_action(policy, MOUNT_TREE)))
    # a new root gives the policy's names other meanings: the tracer judges a name in the
    # process's root, the rules are written for the one it started with
    rules.append(Rule(("chroot",), deny_action(policy, NEW_ROOT)))
    # openat2's flags and bind's address family are in memory: only the tracer can tell
    rules.append(Rule(("openat2", "bind"), TRACE))
    return rules


def destination_rules(policy: Policy, judged: Action = TRACE) -> list[Rule]:
    return [
        Rule(("connect", "sendmsg", "sendmmsg"), judged),
        # sendto without an address goes where the socket was connected: judged at connect
        Rule(("sendto",), judged, (ArgCondition(4, 0, NE),)),
        # source routing sends to the route's first hop, whatever the sockaddr says; the same
        # options in a sendmsg control message are for the tracer, which reads them
        *(Rule(("setsockopt",), deny_action(policy, SOURCE_ROUTE),
               (ArgCondition(1, LOW32, MASKED_EQ, level), ArgCondition(2, LOW32, MASKED_EQ, name)))
          for level, name in ROUTING_SOCKOPTS),
        # the kernel's half of these rules is a cgroup's sock_addr programs (cgroup_net):
        # a process with the privilege must neither detach them (bpf) nor leave their cgroup
        # (another cgroup namespace, where cgroup.procs of the root could be in reach)
        Rule(("bpf",), deny_action(policy, DETACH_PROGRAMS)),
        # nor make a cgroup mount writable again (seal_cgroup_mounts), nor mount one anew
        *(() if policy.restricts_writes else
          (Rule(names(Group.MOUNT), deny_action(policy, CGROUP_MOUNTS)),)),
    ]


def shared_descriptors_rule(policy: Policy) -> Rule:
    """The supervisor lets the kernel run a call it need not perform (a unix socket's) only
    while the caller is the one task of its thread group: nothing else can then change the
    caller's descriptor table before the kernel looks the descriptor up again. That holds only
    if a descriptor table is never shared beyond a thread group: clone with CLONE_FILES and
    without CLONE_THREAD is refused (clone3, whose flags BPF cannot read, is ENOSYS anyway)."""
    return Rule(("clone",), deny_action(policy, SHARED_DESCRIPTORS),
                (ArgCondition(0, CLONE_FILES | CLONE_THREAD, MASKED_EQ, CLONE_FILES),))


def setns_rules(policy: Policy) -> list[Rule]:
    """Joining another mount namespace would reach mounts that are not read-only (the
    container's, or secfilt's, read-only view: policy.mounts); another cgroup namespace, the
    cgroup.procs of cgroups outside the one holding the destination programs. nstype 0 (any
    type: a pidfd or an fd of unknown type) is refused with them."""
    kinds = ((CLONE_NEWNS,) if policy.restricts_writes else ()) + \
        ((CLONE_NEWCGROUP,) if policy.restricts_destinations else ())
    if not kinds:
        return []
    why = {CLONE_NEWNS: MOUNT_NAMESPACE, CLONE_NEWCGROUP: CGROUP_NAMESPACE}
    return [Rule(("setns",), deny_action(policy, why[kinds[0]]),
                 (ArgCondition(1, LOW32, MASKED_EQ, 0),)),
            *(Rule(("setns",), deny_action(policy, why[kind]),
                   (ArgCondition(1, kind, MASKED_EQ, kind),))
              for kind in kinds)]


def socket_rules(policy: Policy) -> list[Rule]:
    allowed = decide.socket_rules(policy)
    deny = deny_action(policy, SOCKET_FAMILY)
    rules: list[Rule] = []
    if allowed.families is not None:
        top = max(allowed.families)
        # socket()'s family is an int: one equality per refused family up to the largest
        # allowed, then everything above it (a 64-bit compare, so stray high bits are refused)
        rules += [Rule(("socket",), deny, (ArgCondition(0, family, EQ),))
                  for family in range(top) if family not in allowed.families]
        rules.append(Rule(("socket",), deny, (ArgCondition(0, top, GT),)))
    inet = [f for f in (AF_INET, AF_INET6)
            if allowed.families is None or f in allowed.families]
    if allowed.inet_types is not None:
        rules += [Rule(("socket",), deny_action(policy, INET_SOCKET_TYPE),
                       (ArgCondition(0, family, EQ), ArgCondition(1, 0xF, MASKED_EQ, type_)))
                  for family in inet for type_ in SOCK_TYPES if type_ not in allowed.inet_types]
    if allowed.inet_protocols is not None:
        # protocol 0 (the default) is what nearly every program passes: decided here; any
        # other protocol number is judged by the tracer against decide.socket_family
        rules += [Rule(("socket",), TRACE, (ArgCondition(0, family, EQ),
                                            ArgCondition(2, 0, NE)))
                  for family in inet]
    return rules


def hardening_rules(policy: Policy) -> list[Rule]:
    return [
        Rule(("ptrace", "process_vm_writev", "open_by_handle_at", "io_uring_setup",
              "io_uring_enter", "io_uring_register", "userfaultfd"), deny_action(policy, ESCAPE)),
        Rule(("clone",), deny_action(policy, UNTRACED_CHILD),
             (ArgCondition(0, CLONE_UNTRACED, MASKED_EQ, CLONE_UNTRACED),)),
        # an ERRNO whatever the policy logs: libc falls back to clone, a normal event
        Rule(("clone3",), ENOSYS),
        # the userfaultfd call's descriptor, from the device
        Rule(("ioctl",), deny_action(policy, ESCAPE),
             (ArgCondition(1, LOW32, MASKED_EQ, USERFAULTFD_IOC_NEW),)),
        # input pushed into a terminal shared with the starter runs outside the sandbox
        *(Rule(("ioctl",), deny_action(policy, TERMINAL_INJECTION),
               (ArgCondition(1, LOW32, MASKED_EQ, request),))
          for request in TTY_INJECTION),
        Rule(("seccomp",), deny_action(policy, OWN_LISTENER), (
            ArgCondition(0, LOW32, MASKED_EQ, SECCOMP_SET_MODE_FILTER),
            ArgCondition(1, SECCOMP_FILTER_FLAG_NEW_LISTENER, MASKED_EQ,
                         SECCOMP_FILTER_FLAG_NEW_LISTENER))),
    ]
