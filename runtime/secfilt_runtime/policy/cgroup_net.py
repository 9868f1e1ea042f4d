"""The policy's destination rules as cgroup sock_addr eBPF programs: the kernel runs them on the
address it is about to use, after copying it from the process, so a thread rewriting the
sockaddr after the tracer's check changes nothing (the race the tracer alone loses).

Four programs, one per sock_addr hook: BPF_CGROUP_INET4_CONNECT and INET6_CONNECT (every TCP and UDP
connect, TCP Fast Open's sendto included: tcp_sendmsg_fastopen runs the connect hook) and
UDP4_SENDMSG and UDP6_SENDMSG (every datagram sent with an address). They are attached to a
cgroup2 directory with BPF_F_ALLOW_MULTI and bind every socket created by a process in that
cgroup or below it: the container's cgroup, or the one `secfilt` makes for its command. A
program returns 1 (go on) or 0 (the call fails with EPERM).

The decision is decide.destination's, in the same order, on the same data:
no-outbound-network (loopback, or a nameserver on port 53), then allowed-netmask, then
allowed-port; an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is judged as IPv4. The tests run
these programs in tests/ebpf.py's interpreter against decide.destination, and in the kernel.

A fifth program, on BPF_CGROUP_INET_EGRESS, drops packets whose IP header routes them through
another host first (build_egress): the hooks above see only the address a packet is sent to.

What these hooks do not see, and the policy therefore refuses in its seccomp filter while a
destination rule is set (decide.socket_rules): ICMP echo sockets (ping_v4_sendmsg has no hook),
UDP-Lite (no connect hook), raw and packet sockets, SCTP, MPTCP.
"""

from __future__ import annotations

import errno
import os
import struct
import sys
from ipaddress import IPv4Network, IPv6Network

from ..errors import warn
from ..records import record
from .decide import DNS_PORT
from .model import Policy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

# include/uapi/linux/bpf.h: enum bpf_attach_type
INET4_CONNECT, INET6_CONNECT, UDP4_SENDMSG, UDP6_SENDMSG = 10, 11, 14, 15
HOOKS = {INET4_CONNECT: 4, INET6_CONNECT: 6, UDP4_SENDMSG: 4, UDP6_SENDMSG: 6}
HOOK_NAMES = {INET4_CONNECT: "connect4", INET6_CONNECT: "connect6",
              UDP4_SENDMSG: "sendmsg4", UDP6_SENDMSG: "sendmsg6"}
LICENSE = "Apache-2.0"  # no GPL-only helper is called

# struct bpf_sock_addr: the offsets the programs read
CTX_USER_IP4 = 4
CTX_USER_IP6 = 8     # four 32-bit words
CTX_USER_PORT = 24

# eBPF opcodes (class | op | source)
LDX_MEM_W = 0x61     # BPF_LDX | BPF_MEM | BPF_W
ALU32_AND_K = 0x54   # BPF_ALU | BPF_AND | BPF_K
MOV64_X = 0xBF       # BPF_ALU64 | BPF_MOV | BPF_X
MOV64_K = 0xB7       # BPF_ALU64 | BPF_MOV | BPF_K
JMP32_JEQ_K = 0x16   # BPF_JMP32 | BPF_JEQ | BPF_K: compares the low 32 bits, no sign extension
JMP32_JNE_K = 0x56   # BPF_JMP32 | BPF_JNE | BPF_K
JA = 0x05            # BPF_JMP | BPF_JA
EXIT = 0x95          # BPF_JMP | BPF_EXIT

ALU64_ADD_K = 0x07    # BPF_ALU64 | BPF_ADD | BPF_K
LDX_MEM_B = 0x71     # BPF_LDX | BPF_MEM | BPF_B
JGT_X = 0x2D         # BPF_JMP | BPF_JGT | BPF_X (64-bit: packet pointers)

# struct __sk_buff
SKB_PROTOCOL, SKB_DATA, SKB_DATA_END = 16, 76, 80
INET_EGRESS = 1      # enum bpf_attach_type: BPF_CGROUP_INET_EGRESS
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
# IPv6 extension headers that may carry or precede a routing header
IPV6_ROUTING_CAPABLE = (0, 43, 60)   # hop-by-hop, routing, destination options

# registers: r1 the context; the address in R_IP4 or R_W0..R_W3; the port in R_PORT
R0, R_CTX, R_W0, R_W1, R_W2, R_W3, R_IP4, R_PORT, R_TMP = 0, 1, 2, 3, 4, 5, 6, 7, 8

# what decide.is_loopback allows (ipaddress's is_loopback): a destination rule never refuses it
LOOPBACK = (IPv4Network("127.0.0.0/8"), IPv6Network("::1/128"))


@record(frozen=True)
class Insn:
    code: int
    dst: int = 0
    src: int = 0
    off: int | str = 0   # a label name for jumps until assembled
    imm: int = 0         # unsigned 32-bit here; packed as the s32 the kernel wants

    def encode(self, off: int) -> bytes:
        imm = self.imm - (1 << 32) if self.imm >= 1 << 31 else self.imm
        return struct.pack("<BBhi", self.code, (self.src << 4) | self.dst, off, imm)


class Program:
    """Instructions and labels; assemble() resolves jumps to labels into offsets."""

    def __init__(self) -> None:
        self.items: list[Insn | str] = []

    def label(self, name: str) -> None:
        self.items.append(name)

    def emit(self, insn: Insn) -> None:
        self.items.append(insn)

    def assemble(self) -> list[tuple[Insn, int]]:
        """(instruction, jump offset) for every instruction reachable from the first: the
        verifier refuses unreachable ones, which an always-true match (0.0.0.0/0) leaves."""
        insns = self._reachable()
        where: dict[str, int] = {}
        index = 0
        for item in self.items:
            if isinstance(item, str):
                where[item] = index
            elif id(item) in insns:
                index += 1
        out: list[tuple[Insn, int]] = []
        for item in self.items:
            if isinstance(item, Insn) and id(item) in insns:
                off = item.off if isinstance(item.off, int) else where[item.off] - len(out) - 1
                out.append((item, off))
        return out

    def _reachable(self) -> set[int]:
        code: list[Insn] = []
        at: dict[str, int] = {}
        for item in self.items:
            if isinstance(item, str):
                at[item] = len(code)
            else:
                code.append(item)
        seen: set[int] = set()
        todo = [0]
        while todo:
            pc = todo.pop()
            if pc in seen or pc >= len(code):
                continue
            seen.add(pc)
            insn = code[pc]
            target = at[insn.off] if isinstance(insn.off, str) else pc + 1 + insn.off
            if insn.code == EXIT:
                continue
            if insn.code == JA:
                todo.append(target)
            elif insn.code in (JMP32_JEQ_K, JMP32_JNE_K):
                todo += [pc + 1, target]
            else:
                todo.append(pc + 1)
        return {id(code[pc]) for pc in seen}

    def encode(self) -> bytes:
        return b"".join(insn.encode(off) for insn, off in self.assemble())


def word(data: bytes) -> int:
    """Four bytes as the 32-bit value a BPF_W load of them yields on this machine."""
    return int.from_bytes(data, sys.byteorder)


def port_value(port: int) -> int:
    """A port as a load of bpf_sock_addr.user_port yields it (network order in 16 bits)."""
    return int.from_bytes(port.to_bytes(2, "big"), sys.byteorder)


class _Builder:
    def __init__(self, policy: Policy) -> None:
        self.p = Program()
        self.policy = policy
        self.n = 0

    def fresh(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def jump(self, target: str) -> None:
        self.p.emit(Insn(JA, off=target))

    def if_masked(self, reg: int, mask: int, value: int, target: str) -> None:
        """Jump to target when reg & mask == value (32-bit)."""
        if mask == 0:
            self.jump(target)
            return
        if mask == 0xFFFFFFFF:
            self.p.emit(Insn(JMP32_JEQ_K, dst=reg, off=target, imm=value))
            return
        self.p.emit(Insn(MOV64_X, dst=R_TMP, src=reg))
        self.p.emit(Insn(ALU32_AND_K, dst=R_TMP, imm=mask))
        self.p.emit(Insn(JMP32_JEQ_K, dst=R_TMP, off=target, imm=value))

    def unless_masked(self, reg: int, mask: int, value: int, target: str) -> None:
        """Jump to target when reg & mask != value (32-bit)."""
        if mask == 0:
            return
        if mask != 0xFFFFFFFF:
            self.p.emit(Insn(MOV64_X, dst=R_TMP, src=reg))
            self.p.emit(Insn(ALU32_AND_K, dst=R_TMP, imm=mask))
            reg = R_TMP
        self.p.emit(Insn(JMP32_JNE_K, dst=reg, off=target, imm=value))

    def if_in(self, net: IPv4Network | IPv6Network, target: str, port: int | None = None
              ) -> None:
        """Jump to target when the address (R_IP4, or R_W0..R_W3) is in net (and the port is
        `port` when given); fall through otherwise."""
        skip = self.fresh("not_in")
        if port is not None:
            self.p.emit(Insn(JMP32_JNE_K, dst=R_PORT, off=skip, imm=port_value(port)))
        if net.version == 4:
            self.if_masked(R_IP4, word(net.netmask.packed), word(net.network_address.packed),
                           target)
        else:
            addr, mask = net.network_address.packed, net.netmask.packed
            for i, reg in enumerate((R_W0, R_W1, R_W2, R_W3)):
                self.unless_masked(reg, word(mask[4 * i:4 * i + 4]),
                                   word(addr[4 * i:4 * i + 4]), skip)
            self.jump(target)
        self.p.label(skip)

    def verdicts(self) -> None:
        # a verdict no jump reaches is dropped by Program.assemble
        for name, value in (("allow", 1), ("deny", 0)):
            self.p.label(name)
            self.p.emit(Insn(MOV64_K, dst=R0, imm=value))
            self.p.emit(Insn(EXIT))

    def check(self, version: int) -> None:
        """The decision for an address in R_IP4 (version 4) or R_W0..R_W3 (6)."""
        policy = self.policy
        suffix = str(version)

        def of_version(nets: Iterable[IPv4Network | IPv6Network]) -> list:
            return [n for n in nets if n.version == version]

        if policy.no_outbound_network:
            for net in of_version(LOOPBACK):
                self.if_in(net, "netmask" + suffix)
            for net in of_version(policy.nameservers):
                self.if_in(net, "netmask" + suffix, port=DNS_PORT)
            self.jump("deny")
        self.p.label("netmask" + suffix)
        if policy.netmasks:
            for net in of_version(policy.netmasks):
                self.if_in(net, "ports")
            self.jump("deny")
        else:
            self.jump("ports")


def build(policy: Policy, family: int) -> Program:
    """The program for the hooks of `family` (4: connect4/sendmsg4, 6: connect6/sendmsg6)."""
    b = _Builder(policy)
    b.p.emit(Insn(LDX_MEM_W, dst=R_PORT, src=R_CTX, off=CTX_USER_PORT))
    if family == 6:
        for i, reg in enumerate((R_W0, R_W1, R_W2, R_W3)):
            b.p.emit(Insn(LDX_MEM_W, dst=reg, src=R_CTX, off=CTX_USER_IP6 + 4 * i))
        # ::ffff:a.b.c.d is judged as a.b.c.d, as decide does (the kernel sends IPv4)
        b.p.emit(Insn(JMP32_JNE_K, dst=R_W0, off="v6", imm=0))
        b.p.emit(Insn(JMP32_JNE_K, dst=R_W1, off="v6", imm=0))
        b.p.emit(Insn(JMP32_JNE_K, dst=R_W2, off="v6", imm=word(b"\0\0\xff\xff")))
        b.p.emit(Insn(MOV64_X, dst=R_IP4, src=R_W3))
        b.jump("v4")
        b.p.label("v6")
        b.check(6)
    else:
        b.p.emit(Insn(LDX_MEM_W, dst=R_IP4, src=R_CTX, off=CTX_USER_IP4))
    b.p.label("v4")
    b.check(4)
    b.p.label("ports")
    for port in policy.ports:
        b.p.emit(Insn(JMP32_JEQ_K, dst=R_PORT, off="allow", imm=port_value(port)))
    b.jump("deny" if policy.ports else "allow")
    b.verdicts()
    return b.p


def build_egress() -> Program:
    """The cgroup_skb egress program: drops every packet whose IP header routes it through a
    host other than its destination (IPv4 options, which hold source routes; IPv6 hop-by-hop,
    destination options and routing headers). The sock_addr hooks judge the address a packet is
    sent to; a source route sends it to the route's first hop, and the tracer's check of a
    sendmsg control message carrying one (IP_RETOPTS) races a thread rewriting it. Policy-free:
    under any destination rule no such header may leave."""
    b = _Builder(Policy())
    p = b.p
    r_data, r_end, r_proto, r_ptr = 2, 3, 4, 5
    p.emit(Insn(LDX_MEM_W, dst=r_data, src=R_CTX, off=SKB_DATA))
    p.emit(Insn(LDX_MEM_W, dst=r_end, src=R_CTX, off=SKB_DATA_END))
    p.emit(Insn(LDX_MEM_W, dst=r_proto, src=R_CTX, off=SKB_PROTOCOL))
    p.emit(Insn(JMP32_JEQ_K, dst=r_proto, off="ipv4", imm=port_value(ETH_P_IP)))
    p.emit(Insn(JMP32_JEQ_K, dst=r_proto, off="ipv6", imm=port_value(ETH_P_IPV6)))
    b.jump("allow")
    for label, offset in (("ipv4", 0), ("ipv6", 6)):
        p.label(label)
        # the verifier admits a packet read only behind a check against data_end
        p.emit(Insn(MOV64_X, dst=r_ptr, src=r_data))
        p.emit(Insn(ALU64_ADD_K, dst=r_ptr, imm=offset + 1))
        p.emit(Insn(JGT_X, dst=r_ptr, src=r_end, off="deny"))
        p.emit(Insn(LDX_MEM_B, dst=R0, src=r_data, off=offset))
        if label == "ipv4":
            p.emit(Insn(ALU32_AND_K, dst=R0, imm=0x0F))  # IHL: 5 words without options
            p.emit(Insn(JMP32_JNE_K, dst=R0, off="deny", imm=5))
        else:
            for header in IPV6_ROUTING_CAPABLE:  # the fixed header's next-header field
                p.emit(Insn(JMP32_JEQ_K, dst=R0, off="deny", imm=header))
        b.jump("allow")
    b.verdicts()
    return p


def applies(policy: Policy) -> bool:
    return policy.restricts_destinations and not policy.audit


def attach(cgroup_dir: str, policy: Policy) -> None:
    """Load the policy's programs and attach them to the cgroup2 directory `cgroup_dir`, for
    every socket its processes (and their descendants' cgroups) create from now on. They stay
    until the directory is removed. Raises OSError naming the hook."""
    from .. import kernel

    programs = {family: build(policy, family).encode() for family in (4, 6)}
    loads = [(kernel.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, hook, programs[family],
              f"secfilt_{HOOK_NAMES[hook]}") for hook, family in HOOKS.items()]
    loads.append((kernel.BPF_PROG_TYPE_CGROUP_SKB, INET_EGRESS, build_egress().encode(),
                  "secfilt_egress"))
    target = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for prog_type, hook, code, name in loads:
            prog = kernel.bpf_prog_load(prog_type, hook, code, LICENSE, name)
            try:
                kernel.bpf_prog_attach(target, prog, hook, kernel.BPF_F_ALLOW_MULTI)
            finally:
                os.close(prog)
    finally:
        os.close(target)


def available() -> bool:
    """Can this process load and attach cgroup programs? (root on a kernel with cgroup BPF;
    probed by loading the smallest program, not by guessing from the uid)"""
    from .. import kernel

    try:
        fd = kernel.bpf_prog_load(kernel.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, INET4_CONNECT,
                                  build(Policy(), 4).encode(), LICENSE, "secfilt_probe")
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EACCES, errno.ENOSYS, errno.EINVAL):
            raise
        return False
    os.close(fd)
    return True


class CommandCgroup:
    """A cgroup2 directory of its own for `secfilt`'s command, holding the programs: the host
    has no container cgroup to put them on. Made below the caller's own cgroup2 directory;
    the command joins it, then gets a cgroup namespace rooted there and a mount namespace whose
    cgroup mounts are read-only, so it cannot write itself into another cgroup (a way out from
    under the programs), even as root."""

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def make(cls, policy: Policy) -> CommandCgroup | None:
        """The cgroup with the programs attached, or None when this caller cannot have one
        (not root, no cgroup2, no cgroup BPF): the supervisor then holds the destination
        rules. No probe first: the mkdir or the load itself says whether it may."""
        if not applies(policy):
            return None
        base = own_cgroup2_dir()
        if base is None:
            return None  # no cgroup2 here
        remove_stale(base)
        path = os.path.join(base, f"secfilt-{os.getpid()}")
        try:
            os.mkdir(path, 0o755)
        except OSError:  # a read-only or foreign cgroup2 (inside a container, say)
            return None
        group = cls(path)
        try:
            attach(path, policy)
        except OSError as e:
            group.remove()
            if e.errno not in (errno.EPERM, errno.EACCES, errno.ENOSYS, errno.EINVAL):
                raise
            return None  # no cgroup BPF for this caller
        except BaseException:
            group.remove()
            raise
        return group

    def fork_into(self) -> int | None:
        """fork(2) with the child in the cgroup from its first instruction (clone3
        CLONE_INTO_CGROUP; the child must still enter()). None where that cannot be done: the
        caller forks and the child join()s. Only while this process has one thread (the raw
        clone skips the at-fork handlers that make a fork of several threads safe)."""
        from .. import kernel

        try:
            if len(os.listdir("/proc/self/task")) != 1:
                return None
            fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None  # no /proc to count threads by, or the cgroup is gone
        try:
            return kernel.clone_into_cgroup(fd)
        except OSError:
            return None  # no clone3 (ENOSYS), or a cgroup it refuses
        finally:
            os.close(fd)

    def join(self) -> None:
        """Move the calling process into the cgroup, then enter()."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
        self.enter()

    def enter(self) -> None:
        """In the cgroup: root the calling process's cgroup namespace there and give it a
        mount namespace whose cgroup mounts are read-only (seal_cgroup_mounts)."""
        from .. import kernel

        kernel.unshare(kernel.CLONE_NEWCGROUP | kernel.CLONE_NEWNS)
        # nothing of ours propagates to the host; the host's later mounts still reach us
        kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_SLAVE)
        from . import mounts

        mounts.seal_cgroup_mounts()

    def remove(self, timeout: float = 3.0) -> None:
        """Kill what is left in it and remove it (the programs go with it)."""
        import time

        try:
            with open(os.path.join(self.path, "cgroup.kill"), "w") as f:
                f.write("1")
        except OSError:
            pass  # gone already, or a kernel before 5.14: the tracer's EXITKILL did it
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    warn(f"cannot remove {self.path}: {e.strerror}")
                    return
                time.sleep(0.01)


STALE_AFTER_S = 60.0


def remove_stale(base: str) -> None:
    """Remove what a secfilt killed with SIGKILL left in `base`: an empty secfilt-PID cgroup
    (its programs go with it) whose PID is no process any more and that is older than a
    minute. A live PID, even one reused by another process, keeps its cgroup, and so does a
    young one: its owner may be between the mkdir and the fork (one in another pid namespace
    has a PID this /proc does not show)."""
    import time

    try:
        names = os.listdir(base)
    except OSError:
        return
    now = time.time()
    for name in names:
        pid = name.removeprefix("secfilt-")
        if pid == name or not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
            continue
        path = os.path.join(base, name)
        try:
            if now - os.stat(path).st_mtime < STALE_AFTER_S:
                continue
            os.rmdir(path)  # EBUSY while any process is in it
        except OSError:
            continue


def own_cgroup2_dir() -> str | None:
    """The calling process's directory in the cgroup2 hierarchy, None without one (or when no
    mount of it shows that directory)."""
    from ..container import cgroups

    return cgroups.own_dirs_now().get(cgroups.UNIFIED)
