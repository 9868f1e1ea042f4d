"""Which layer enforces each rule of the secfilter policy on a machine with a given Landlock ABI:
the table that `secfilt-runtime features` and `check` print, and docs/security.md explains.

The layers, strongest first:
- "kernel": the kernel itself, with nothing of ours in the path (PTRACE_O_EXITKILL, a
  SECCOMP_RET_TRACE without a tracer failing with ENOSYS);
- "Landlock": the kernel checks the inode the call really uses: no race;
- "read-only mounts": in a container, and under secfilt in a mount namespace of its own (root,
  or a user namespace: policy.mounts), every mount is read-only except the allow-write
  paths: the kernel refuses any change there, metadata included, with no race;
- "BPF": the seccomp filter decides on integer arguments (syscall number, flags, family):
  no race, because registers cannot change under it;
- "tracer": the ptrace tracer reads a pointer argument (a path, a sockaddr) from the process's
  memory, decides, and lets the kernel read it again: a race for another thread or process
  sharing that memory, the cwd or a symlink (race_free is False);
- "not enforced": nothing stops it; docs/security.md says why and what it means.

Pure: no probing here, the caller passes the ABI it found (policy.landlock.abi()). The rows
about the sandbox itself are read off the filter policy.filter really builds, so a hardening
rule that goes missing shows up here as "not enforced".
"""

from __future__ import annotations

from functools import cache

from ..records import asdict, record
from . import filter as policy_filter
from .model import Policy
from .syscalls import USERFAULTFD_IOC_NEW

KERNEL, LANDLOCK, BPF, TRACER, NOTHING = "kernel", "Landlock", "BPF", "tracer", "not enforced"
# eBPF programs on the sandbox's cgroup (policy.cgroup_net): the kernel judges the address it
# uses; containers, and secfilt when its caller may attach them (root)
CGROUP_BPF = "cgroup BPF"
# where no cgroup program can be attached (secfilt run by a user): a seccomp user-notification
# supervisor performs each destination-carrying call itself, on its own copy of the arguments
SUPERVISOR = "supervisor"
# every mount read-only, allow-write cloned writable on top (policy.mounts): containers, and
# secfilt where its caller can have a mount namespace
MOUNTS = "read-only mounts"
RACE_FREE_LAYERS = frozenset({KERNEL, LANDLOCK, BPF, MOUNTS, CGROUP_BPF, SUPERVISOR})


@record(frozen=True)
class LayerRow:
    rule: str                 # the policy rule, as its flag/annotation suffix ("allow-write")
    covers: str               # what of the rule this row is about
    layers: tuple[str, ...]   # who enforces it, strongest first
    note: str = ""

    @property
    def race_free(self) -> bool:
        """Enforced by at least one layer that reads nothing the process can change after."""
        return any(layer in RACE_FREE_LAYERS for layer in self.layers)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "layers": list(self.layers), "race_free": self.race_free}


TIOCSTI, TIOCLINUX = 0x5412, 0x541C


def _landlock(abi: int, needed: int, *rest: str) -> tuple[str, ...]:
    return (LANDLOCK, *rest) if abi >= needed else rest


WRITE_POLICY = Policy(read_only=True, allow_write=("/w",))
NETWORK_POLICY = Policy(no_outbound_network=True)


@cache
def _filtered(policy: Policy) -> frozenset[tuple[str, int | None]]:
    """(syscall, ioctl request or None) that the policy's filter does not simply allow."""
    names: set[tuple[str, int | None]] = set()
    for rule in policy_filter.build(policy).rules:
        if rule.action.name == "SCMP_ACT_ALLOW":
            continue
        # the request an ioctl rule matches: EQ compares `value`, MASKED_EQ `value_two`
        request = next((a.value_two if a.op == "SCMP_CMP_MASKED_EQ" else a.value
                        for a in rule.args if a.index == 1), None)
        names |= {(n, request if n == "ioctl" else None) for n in rule.names}
    return frozenset(names)


def _bpf_if(*calls: str | tuple[str, int],
            policies: tuple[Policy, ...] = (WRITE_POLICY, NETWORK_POLICY)) -> tuple[str, ...]:
    """BPF when the filters of `policies` all refuse or trace every one of `calls`, else not
    enforced."""
    wanted = {c if isinstance(c, tuple) else (c, None) for c in calls}
    return (BPF,) if all(wanted <= _filtered(p) for p in policies) else (NOTHING,)


@cache
def _shared_descriptors_refused() -> tuple[str, ...]:
    """BPF when the supervised filter holds the clone rule that keeps descriptor tables
    within thread groups (clone itself is filtered for CLONE_UNTRACED anyway: the rule, not
    the name, is what counts)."""
    rule = policy_filter.shared_descriptors_rule(NETWORK_POLICY)
    return (BPF,) if rule in policy_filter.build(NETWORK_POLICY, supervised=True).rules \
        else (NOTHING,)


def enforcement_layers(landlock_abi: int | None, cgroup_bpf: bool = False,
                       secfilt_mounts: str | None = None) -> list[LayerRow]:
    """The table for a kernel whose Landlock ABI is `landlock_abi` (None or 0: no Landlock),
    where the caller can (cgroup_bpf) or cannot attach cgroup sock_addr programs, and gets
    secfilt's read-only mounts through `secfilt_mounts` (policy.mounts.available(): ROOT,
    USERNS, or None when this user cannot have them)."""
    abi = landlock_abi or 0
    # without Landlock's ptrace scoping the process reaches the host's writable mounts through
    # another process's /proc/PID/root, or (root) setns into its mount namespace
    host_mounts = (MOUNTS,) if secfilt_mounts and abi else ()
    host_note = (f"a {secfilt_mounts} of its own, every mount read-only but the allow-write "
                 "paths" if host_mounts else
                 "no Landlock: the host's writable mounts stay in reach through other "
                 "processes' /proc/PID/root; " if secfilt_mounts else
                 "no mount namespace for this user (unprivileged user namespaces refused): ")
    if not host_mounts:
        host_note += "a path rewritten between the check and the call wins"
    # destinations: cgroup programs beside the tracer; without them (secfilt run by a user)
    # the supervisor alone, since the tracer's check would race the kernel's second read
    cg = (CGROUP_BPF, TRACER) if cgroup_bpf else (SUPERVISOR,)
    cg_note = ("; cgroup connect4/6 and sendmsg4/6 programs judge the address the kernel uses"
               if cgroup_bpf else "; no cgroup BPF for this caller (not root): the supervisor "
               "performs the call on its own copy of the address")
    no_landlock = "" if abi else "; without Landlock the tracer alone judges it, with a race"
    return [
        # --- the file system ---------------------------------------------------------------
        LayerRow("read-only", "every change to a file system, when no allow-write is given",
                 (BPF, *_landlock(abi, 1)),
                 "refused on the call's number and open flags, without reading a path "
                 "(openat2's flags are in memory: the tracer reads them)"),
        LayerRow("allow-write", "open an existing file for writing",
                 _landlock(abi, 1, TRACER), "LANDLOCK_ACCESS_FS_WRITE_FILE" + no_landlock),
        LayerRow("allow-write", "truncate (truncate, ftruncate, open with O_TRUNC)",
                 _landlock(abi, 3, TRACER),
                 "LANDLOCK_ACCESS_FS_TRUNCATE (ABI 3)" + ("" if abi >= 3 else
                                                          "; below ABI 3 the tracer alone")),
        LayerRow("allow-write",
                 "create files, directories, device nodes, fifos, sockets, symlinks",
                 _landlock(abi, 1, TRACER), "LANDLOCK_ACCESS_FS_MAKE_*" + no_landlock),
        LayerRow("allow-write", "remove files and directories",
                 _landlock(abi, 1, TRACER), "LANDLOCK_ACCESS_FS_REMOVE_*" + no_landlock),
        LayerRow("allow-write", "rename and hard-link",
                 _landlock(abi, 1, TRACER),
                 "LANDLOCK_ACCESS_FS_REFER (ABI 2): a link or rename never widens access"
                 + ("" if abi >= 2 else "; ABI 1 refuses every rename or link across "
                    "directories")),
        LayerRow("allow-write", "chmod, chown, utimes, chattr, xattrs in a container",
                 (MOUNTS, TRACER),
                 "Landlock has no right for metadata; the container's read-only mounts do"),
        LayerRow("allow-write", "chmod, chown, utimes, chattr, xattrs under secfilt",
                 (*host_mounts, TRACER), host_note),
        LayerRow("read-only", "files the kernel writes on the process's behalf (core dumps)",
                 _landlock(abi, 1) or (NOTHING,),
                 "no system call names the core file; Landlock checks its creation"),
        LayerRow("allow-write", "a new root (chroot) under which a forbidden file carries an "
                 "allowed name", _bpf_if("chroot", policies=(WRITE_POLICY,)),
                 "chroot refused; the read-only mounts hold as well"),
        LayerRow("read-only",
                 "mount tree, acct, swapon, quotactl (whole-system changes)",
                 (BPF, *_landlock(abi, 1)), "refused outright; a Landlock domain cannot mount"),
        # --- the network -------------------------------------------------------------------
        LayerRow("no-outbound-network",
                 "destination of connect, sendto, sendmsg, sendmmsg (IPv4, IPv6, IPv4-mapped)",
                 cg, "the sockaddr is in memory" + cg_note),
        LayerRow("allowed-netmask", "destination address, as for no-outbound-network",
                 cg, "as for no-outbound-network"),
        LayerRow("allowed-port", "destination port of a TCP connect",
                 (*_landlock(abi, 4), *cg), "LANDLOCK_ACCESS_NET_CONNECT_TCP (ABI 4)"
                 + ("" if abi >= 4 or cgroup_bpf else "; below ABI 4 the tracer alone")),
        LayerRow("allowed-port", "destination port of a datagram (UDP)", cg,
                 "Landlock has no UDP rule" + cg_note),
        LayerRow("allow-resolv", "the nameservers of /etc/resolv.conf on port 53",
                 cg, "read once when the policy is resolved"),
        LayerRow("no-outbound-network",
                 "sockets that bypass the address checks (raw, packet, SCTP, MPTCP, ICMP echo, "
                 "UDP-Lite, ...)",
                 (BPF,), "socket()'s family, type and protocol are integers"),
        LayerRow("no-outbound-network",
                 "leaving the cgroup that holds the programs, or detaching them",
                 _bpf_if("bpf", "setns", "mount", policies=(NETWORK_POLICY,)),
                 "bpf, setns into a cgroup namespace and the mount family refused; the "
                 "sandbox's cgroup mounts are read-only and its cgroup namespace is rooted at "
                 "its cgroup"),
        LayerRow("no-outbound-network",
                 "IP options that route through other hosts (IP_OPTIONS source route, "
                 "IPV6_RTHDR)", _bpf_if("setsockopt", policies=(NETWORK_POLICY,)),
                 "the first hop of a source route is the packet's real destination"),
        LayerRow("no-outbound-network",
                 "the same routes as sendmsg control messages (IP_RETOPTS, IPV6_RTHDR)",
                 cg, ("a cgroup egress program drops packets with IPv4 options or IPv6 "
                      "routing-capable headers" if cgroup_bpf else
                      "the supervisor judges its own copy of the control messages")),
        *(() if cgroup_bpf else (LayerRow(
            "no-outbound-network",
            "another socket put under the descriptor number of a call the supervisor checked "
            "(a task sharing the descriptor table)",
            (SUPERVISOR, *_shared_descriptors_refused()),
            "the kernel runs a call on a unix socket itself only for the one thread of its "
            "group; a descriptor table shared beyond a thread group (clone CLONE_FILES) is "
            "refused"),)),
        LayerRow("mainstream-network-families", "socket families other than unix, inet, "
                 "inet6, netlink", (BPF,), ""),
        # --- the sandbox itself (every non-empty policy) ------------------------------------
        LayerRow("*", "children the tracer would not see (CLONE_UNTRACED, clone3)",
                 _bpf_if("clone", "clone3"),
                 "clone's flags are a register; clone3 fails with ENOSYS and libc falls back"),
        LayerRow("*", "an own seccomp listener (SECCOMP_RET_USER_NOTIF outranks TRACE)",
                 _bpf_if("seccomp"),
                 "seccomp(SET_MODE_FILTER) with FLAG_NEW_LISTENER is refused; other own "
                 "filters can only deny more"),
        LayerRow("*", "ptrace, process_vm_writev (the tracer or a sibling rewritten)",
                 (*_bpf_if("ptrace", "process_vm_writev"), *_landlock(abi, 1)),
                 "every non-empty policy, audit mode included, gets a Landlock domain, whose "
                 "ptrace scoping also keeps the process from anything outside it"),
        LayerRow("*", "io_uring, open_by_handle_at (operations seccomp never sees)",
                 _bpf_if("io_uring_setup", "io_uring_enter", "open_by_handle_at"),
                 "refused outright"),
        LayerRow("*", "a fault handler of its own holding the tracer's read of a buffer "
                 "(userfaultfd, and /dev/userfaultfd's USERFAULTFD_IOC_NEW ioctl)",
                 _bpf_if("userfaultfd", ("ioctl", USERFAULTFD_IOC_NEW)),
                 "refused outright: the tracer would sleep on the page as long as the handler "
                 "holds it"),
        LayerRow("*", "input pushed into the terminal (TIOCSTI, TIOCLINUX)",
                 _bpf_if(("ioctl", TIOCSTI), ("ioctl", TIOCLINUX)),
                 "the shell that started the sandbox would run it, outside every rule"),
        LayerRow("*", "the tracer's memory and descriptors (/proc/TRACER/mem, pidfd_getfd), "
                 "which secfilt's tracer shares a pid namespace and uid with",
                 _landlock(abi, 1) or (NOTHING,),
                 "Landlock's ptrace scoping, even for root and in audit mode (whose domain "
                 "restricts no access); without Landlock a root process reaches its tracer"),
        LayerRow("*", "the i386 entry (int 0x80)", (BPF, TRACER),
                 "every rule is also compiled for SCMP_ARCH_X86; the tracer decodes by arch"),
        LayerRow("*", "the x32 entry", (BPF,),
                 "libseccomp's x86_64 filter refuses x32 numbers (this kernel may lack x32)"),
        LayerRow("*", "the tracer killed or gone", (KERNEL,),
                 "PTRACE_O_EXITKILL kills the process; a TRACE stop without a tracer fails "
                 "with ENOSYS"),
    ]


def format_table(rows: list[LayerRow]) -> str:
    """The rows as aligned text: rule, layers (marked where only the racy tracer holds the
    rule), what they cover."""
    width = max(len(r.rule) for r in rows)
    lines = []
    for r in rows:
        racy = not r.race_free and NOTHING not in r.layers
        layers = " + ".join(r.layers) + (" (racy)" if racy else "")
        lines.append(f"{r.rule:<{width}}  {layers:<28}  {r.covers}")
    return "\n".join(lines)
