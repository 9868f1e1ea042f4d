"""One SECCOMP_RET_TRACE stop -> allow, or deny with an errno: decoded by the architecture the
registers report, looked up in policy.syscalls, judged by policy.decide.

A stop the filter makes only to log a refusal of its own (a nonzero data value, confirmed by
tracer.refusals) is not judged: refused with the policy's errno and the rule and reason
policy.filter gives it. What is judged here is what the filter sends with data 0 (JUDGE): calls
whose pointer arguments decide (paths, sockaddrs, open_how, msghdr, i386 socketcall's argument
block), and stops only the process's own filter asked for, by number.

Outcomes:
- allowed;
- denied by a policy rule (logged; in audit mode allowed and logged);
- answered with the errno the kernel itself would give (EFAULT for a pointer that cannot be
  read, ENOENT for a missing directory, EEXIST for a name a creating call finds taken, EINVAL
  for an address length the kernel refuses): nothing could change, nothing to log.
"""

from __future__ import annotations

import errno
import struct
from _socket import AF_UNIX  # socket.py would add ~5 ms (selectors, enum)

from .. import kernel
from ..policy import decide, sockaddr, syscalls
from ..policy.filter import HARDENING_RULE
from ..policy.model import Policy
from ..policy.syscalls import AUDIT_ARCH_I386, Group, PathArg, Syscall
from ..records import field, record
from .allowed_mounts import AllowedMounts
from .memory import Memory, Unreadable
from .refusals import Covered, Refusals
from .resolve import Fails, NotAFile, Resolver, Roots, Unjudgeable, is_plain_absolute, plain

# annotations only (strings here): typing costs ~5 ms of every secfilt start
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SOCKADDR_MAX = 128  # sizeof(struct sockaddr_storage)
UIO_MAXIOV = 1024   # sendmmsg handles at most this many messages
CONTROL_MAX = 128 * 1024  # above net.core.optmem_max the kernel answers ENOBUFS anyway
RESOLVE_IN_ROOT = 0x10
ARCH_NAMES = {syscalls.AUDIT_ARCH_X86_64: "x86_64", AUDIT_ARCH_I386: "i386"}
MEMO_MAX = 4096  # remembered verdicts per kind; forgotten all at once when full


@record
class Decision:
    allowed: bool
    errno: int = 0
    rule: str = ""
    reason: str = ""
    log: bool = False                      # a policy denial (or would-be denial in audit)
    syscall: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    # an allowed i386 socketcall made into the direct call it stands for: (i386 number, the
    # six arguments as judged), put in the registers (tracer.loop)
    direct: tuple[int, tuple[int, ...]] | None = None


ALLOWED = Decision(True)


def _dirfd(arg: PathArg, args: list[int]) -> int:
    """The directory a relative operand starts from: its dirfd argument, else the cwd."""
    return s32(args[arg.dirfd]) if arg.dirfd is not None else syscalls.AT_FDCWD


def _names_dirfd(arg: PathArg, args: list[int], raw: bytes | None) -> bool:
    """Whether the operand is its dirfd itself: utimensat's NULL, "" with AT_EMPTY_PATH."""
    return raw is None or not raw and bool(arg.empty_bit) and arg.flags is not None \
        and bool(s32(args[arg.flags]) & arg.empty_bit)


def _direct(entry: Syscall, args: list[int]) -> tuple[int, tuple[int, ...]]:
    """An allowed socketcall as the direct i386 call (its number, the arguments judged). Left
    as it is, the kernel would read the argument block from memory again after the stop, where
    another thread may have rewritten it (a family or type the filter refuses for the direct
    call, a protocol, a socket): the registers cannot change under it, and seccomp checks the
    new call against every filter again."""
    return syscalls.NUMBERS[entry.name][1], tuple(args)


def s32(value: int) -> int:
    """An int argument as the kernel reads it: the low half of the register, signed."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


class Judge:
    def __init__(self, policy: Policy, *, supervised: bool = False) -> None:
        self.policy = policy
        # the filter's own refusals, as built for this tracer's processes: `supervised` (the
        # destination calls go to a user-notification supervisor) changes which those are
        refusals = Refusals(policy, supervised)
        # None where no refusal of the filter reaches the tracer (no log, not audit mode): the
        # commonest case skips the lookup at every stop
        self._refusal_of = refusals.find if refusals else None
        self.memory = Memory()
        self._rule = decide.write_rule(policy)
        self._openat2 = kernel.Openat2()
        # roots kept between stops only where the filter refuses every call that changes one
        self._roots = Roots() if policy.restricts_writes and not policy.audit else None
        # a file on a mount rooted at an allow-write path needs no name (allowed_mounts); not
        # in audit mode, where a chroot could give the file another name in the task's view
        self._mounts = AllowedMounts(policy.allow_write, self._openat2) \
            if self._roots is not None and policy.allow_write else None
        # decide.write and decide.destination are pure functions of the (frozen) policy and
        # their argument: a verdict once computed holds for the tracer's life. Only the
        # verdicts are kept; what the path or address names is looked up at every stop.
        self._writes: dict[str, decide.Verdict] = {}
        self._destinations: dict[tuple[bytes, str], decide.Verdict] = {}
        # asked at every stop: read once (the policy is frozen)
        self._restricts_writes = policy.restricts_writes
        self._restricts_destinations = policy.restricts_destinations

    def close(self) -> None:
        if self._roots is not None:
            self._roots.close()

    def forget(self, tid: int) -> None:
        """`tid` exited: its id may come back as another task's."""
        if self._roots is not None:
            self._roots.forget(tid)

    @property
    def keeps_roots(self) -> bool:
        """Whether each task's root is kept between stops (resolve.Roots says when it may)."""
        return self._roots is not None

    def _resolver(self, tid: int) -> Resolver:
        roots = self._roots
        return Resolver(tid, self._openat2, roots.get(tid) if roots is not None else None)

    def _write_verdict(self, path: str) -> decide.Verdict:
        verdict = self._writes.get(path)
        if verdict is None:
            verdict = decide.write(self.policy, path)
            if len(self._writes) >= MEMO_MAX:
                self._writes.clear()
            self._writes[path] = verdict
        return verdict

    def judge(self, tid: int, arch: int, nr: int, args: list[int], data: int = 0) -> Decision:
        """`data`: the stop's SECCOMP_RET_TRACE data (policy.filter: JUDGE or a refusal)."""
        table = syscalls.BY_ARCH.get(arch)
        if table is None:
            # the filter only admits the architectures in the table; anything else is foreign
            return Decision(False, errno.ENOSYS, HARDENING_RULE, f"architecture {arch:#x}",
                            True)
        compat = arch == AUDIT_ARCH_I386
        if compat:
            args = [a & 0xFFFFFFFF for a in args]
        refused = self._refusal_of(arch, nr, args, data) if self._refusal_of else None
        if refused is not None:
            decision = self._refused(refused, args)
            # a hardening refusal holds in audit mode too, and so does one the kernel makes
            # there anyway (policy.filter.refusals)
            return decision if refused.refusal.hardening else self._audited(decision)
        entry = table.get(nr)
        socketcall = False
        try:
            if compat and nr == syscalls.SOCKETCALL_NR_I386:
                entry, args = self._socketcall(tid, args)
                socketcall = entry is not None
            if entry is None:
                # no rule of the policy is about this call: a stop of the process's own filter
                return ALLOWED
            decision = self._dispatch(tid, entry, args, compat)
        except Unreadable as e:
            decision = Decision(False, e.errno, reason=str(e))
        except Fails as e:
            decision = Decision(False, e.errno, reason=str(e))
        if decision is ALLOWED:
            # shared: never annotated
            return Decision(True, direct=_direct(entry, args)) if socketcall \
                else decision  # type: ignore[arg-type]
        if entry is not None:  # None: socketcall's argument block could not be read
            decision.syscall = entry.name
        decision = self._audited(decision)
        if socketcall and decision.allowed:
            decision.direct = _direct(entry, args)  # type: ignore[arg-type]
        return decision

    def failed(self, arch: int, nr: int, error: Exception) -> Decision:
        """The refusal of a call the tracer failed to judge (an error of its own): never let
        through, audit mode included, and logged with what went wrong."""
        entry = syscalls.BY_ARCH.get(arch, {}).get(nr)
        return Decision(False, self.policy.errno, HARDENING_RULE,
                        f"the tracer failed: {type(error).__name__}: {error}", True,
                        entry.name if entry is not None else str(nr))

    def _refused(self, refused: Covered, args: list[int]) -> Decision:
        """An outright refusal of the filter, sent here only to be logged."""
        return Decision(False, self.policy.errno, refused.refusal.rule, refused.refusal.reason,
                        True, refused.name, refused.details(args))

    def _audited(self, decision: Decision) -> Decision:
        """Audit mode lets a logged refusal through, but never a hardening one."""
        if decision.log and not decision.allowed and self.policy.audit \
                and decision.rule != HARDENING_RULE:
            decision.allowed = True
        return decision

    def _socketcall(self, tid: int, args: list[int]) -> tuple[Syscall | None, list[int]]:
        call = args[0]
        name = syscalls.SOCKETCALL.get(call)
        if name is None:
            return None, args
        n = syscalls.SOCKETCALL_NARGS[call]
        raw = self.memory.read(tid, args[1], 4 * n, "socketcall arguments")
        return syscalls.BY_NAME[name], list(struct.unpack(f"<{n}I", raw)) + [0] * (6 - n)

    def _dispatch(self, tid: int, entry: Syscall, args: list[int], compat: bool) -> Decision:
        group = entry.group
        if group is Group.HARDEN or group is Group.MOUNT:
            # whatever these groups refuse the filter refuses outright (tracer.refusals): a
            # stop that reaches this point is one the process's own filter asked for
            return ALLOWED
        # socket and setsockopt reach this point from i386 socketcall too, whose arguments
        # are in memory where BPF cannot see them: they are decided here
        if group is Group.SOCKET:
            verdict = decide.socket_family(self.policy, s32(args[0]), s32(args[1]),
                                           s32(args[2]))
            return self._verdict(verdict, {"family": s32(args[0]), "type": s32(args[1]),
                                           "protocol": s32(args[2])})
        if group is Group.NET:
            return self._net(tid, entry, args, compat)
        if not self._restricts_writes:
            return ALLOWED
        if group is Group.BIND:
            return self._bind(tid, args)
        if entry.only_if is not None and args[entry.only_if[0]] & 0xFFFFFFFF \
                not in entry.only_if[1]:
            return ALLOWED
        if group is Group.OPEN:
            return self._open(tid, entry, args)
        return self._write(tid, entry, args)

    # --- verdicts -------------------------------------------------------------------------

    def _verdict(self, verdict: decide.Verdict, details: dict[str, Any]) -> Decision:
        if verdict.allowed:
            return ALLOWED
        return Decision(False, self.policy.errno, verdict.rule, verdict.reason, True,
                        details=details)

    # --- file system ----------------------------------------------------------------------

    def _open(self, tid: int, entry: Syscall, args: list[int]) -> Decision:
        in_root = False
        if entry.how is not None:
            size = args[entry.how + 1]
            if size < 24:
                return Decision(False, errno.EINVAL, reason="open_how too small")
            flags, _mode, resolve_flags = struct.unpack(
                "<QQQ", self.memory.read(tid, args[entry.how], 24, "open_how"))
            in_root = bool(resolve_flags & RESOLVE_IN_ROOT)
        else:
            flags = s32(args[entry.open_flags])  # type: ignore[index]
        if not syscalls.open_is_write(flags):
            return ALLOWED
        exclusive = syscalls.open_creates_exclusive(flags)
        follow = not flags & syscalls.O_NOFOLLOW and not exclusive
        arg = entry.paths[0]
        try:
            raw = self._operand_bytes(tid, arg, args)
            if not in_root and self._quick_allowed(tid, arg, raw, follow, args):
                return ALLOWED
            with self._resolver(tid) as res:
                path = self._path_operand(res, arg, args, raw, follow, in_root)
                verdict = self._write_verdict(path)
                if verdict.allowed:
                    return ALLOWED
                if exclusive and res.exists(path):
                    return Decision(False, errno.EEXIST, reason=f"{path} exists")
        except Unjudgeable as e:
            return Decision(False, self.policy.errno, self._rule, f"cannot judge: {e}", True)
        except NotAFile:
            return ALLOWED
        return self._verdict(verdict, {"path": path, "flags": flags})

    def _write(self, tid: int, entry: Syscall, args: list[int]) -> Decision:
        details: dict[str, Any] = {}
        try:
            if entry.fd is not None:
                fd = s32(args[entry.fd])
                if self._fd_on_allowed_mount(tid, fd):
                    return ALLOWED
                with self._resolver(tid) as res:
                    path = res.fd_path(fd)
                details["fd"], details["path"] = fd, path
                return self._verdict(self._write_verdict(path), details)
            # every name read first, as the kernel copies them all before it looks one up
            operands = [(arg, self._operand_bytes(tid, arg, args), syscalls.follows(
                arg, s32(args[arg.flags]) if arg.flags is not None else 0))
                for arg in entry.paths]
            # a refused pair is logged with both names: only a single name is taken quickly
            if len(operands) == 1 and self._quick_allowed(tid, *operands[0], args):
                return ALLOWED
            with self._resolver(tid) as res:
                for i, (arg, raw, follow) in enumerate(operands):
                    path = self._path_operand(res, arg, args, raw, follow)
                    details["path" if i == 0 else f"path{i + 1}"] = path
                    verdict = self._write_verdict(path)
                    if not verdict.allowed:
                        if arg.creates and res.exists(path):
                            return Decision(False, errno.EEXIST, reason=f"{path} exists")
                        return self._verdict(verdict, details)
        except Unjudgeable as e:
            return Decision(False, self.policy.errno, self._rule, f"cannot judge: {e}", True,
                            details=details)
        except NotAFile:
            # a pipe's or socket's mode, owner or times: no file system changes
            return ALLOWED if len(entry.paths) < 2 else Decision(
                False, errno.EXDEV, reason="a pipe or socket cannot be linked or renamed")
        return ALLOWED

    def _operand_bytes(self, tid: int, arg: PathArg, args: list[int]) -> bytes | None:
        """The path an operand points to (raises Unreadable); None for utimensat's NULL, which
        names the dirfd itself."""
        ptr = args[arg.path]
        if ptr == 0 and arg.null_is_fd:
            return None
        return self.memory.string(tid, ptr, "path")

    def _quick_allowed(self, tid: int, arg: PathArg, raw: bytes | None, follow: bool,
                       args: list[int]) -> bool:
        """Whether the commonest operands are allowed, judged without a Resolver with the
        task's kept root (raises Unjudgeable): an absolute path naming no symlink, by its
        name; the dirfd itself, or a relative path from it, by the mount it is on
        (allowed_mounts). False leaves the decision to _path_operand, whose answer may be the
        same."""
        roots = self._roots
        if roots is None:
            return False
        if raw is not None and raw.startswith(b"/"):
            if not is_plain_absolute(raw):
                return False
            path = plain(self._openat2, roots.get(tid), raw, follow)
            return path is not None and self._write_verdict(path).allowed
        mounts = self._mounts
        if mounts is None:
            return False
        dirfd = _dirfd(arg, args)
        if _names_dirfd(arg, args, raw):
            return mounts.holds(tid, dirfd, roots.get(tid))
        return bool(raw) and mounts.holds_beneath(tid, dirfd, raw, follow,  # type: ignore[arg-type]
                                                  roots.get(tid))

    def _fd_on_allowed_mount(self, tid: int, fd: int) -> bool:
        return fd >= 0 and self._mounts is not None and self._mounts.holds(
            tid, fd, self._roots.get(tid))  # type: ignore[union-attr]

    def _path_operand(self, res: Resolver, arg: PathArg, args: list[int], raw: bytes | None,
                      follow: bool, in_root: bool = False) -> str:
        """The canonical path an operand names, `raw` its bytes (_operand_bytes; raises
        Fails, Unjudgeable)."""
        if raw is not None and raw.startswith(b"/") and not in_root:
            # the kernel ignores the dirfd of an absolute path, even a bad one
            return res.resolve(raw, "/", follow)
        dirfd = _dirfd(arg, args)
        if _names_dirfd(arg, args, raw):
            return res.fd_path(dirfd) if dirfd != syscalls.AT_FDCWD else res.cwd()
        base = res.cwd() if dirfd == syscalls.AT_FDCWD else res.fd_path(dirfd)
        if in_root:
            # openat2 RESOLVE_IN_ROOT: the dirfd is the root, "/" and ".." stop there
            return res.resolve(raw, base, follow, root=base)
        return res.resolve(raw, base, follow)

    def _bind(self, tid: int, args: list[int]) -> Decision:
        length = s32(args[2])
        if length < 0 or length > SOCKADDR_MAX:
            return Decision(False, errno.EINVAL, reason=f"address length {length}")
        raw = self.memory.read(tid, args[1], length, "address")
        if len(raw) < 3 or struct.unpack_from("=H", raw)[0] != AF_UNIX or raw[2] == 0:
            return ALLOWED  # not a path: an INET port, an abstract or autobind unix name
        name = raw[2:].split(b"\0", 1)[0]
        try:
            with self._resolver(tid) as res:
                path = res.resolve(name, res.cwd(), follow=False)
                verdict = self._write_verdict(path)
                if not verdict.allowed and res.exists(path):
                    return Decision(False, errno.EADDRINUSE, reason=f"{path} exists")
        except Unjudgeable as e:
            return Decision(False, self.policy.errno, self._rule, f"cannot judge: {e}", True)
        return self._verdict(verdict, {"path": path})

    # --- network --------------------------------------------------------------------------

    def _net(self, tid: int, entry: Syscall, args: list[int], compat: bool) -> Decision:
        if not self._restricts_destinations:
            return ALLOWED
        if entry.sockaddr is not None:
            ptr, length = args[entry.sockaddr[0]], s32(args[entry.sockaddr[1]])
            if ptr == 0:
                return ALLOWED  # sendto without an address: where connect() went
            if length < 0 or length > SOCKADDR_MAX:
                return Decision(False, errno.EINVAL, reason=f"address length {length}")
            call = "connect" if entry.name == "connect" else "send"
            return self._destination(tid, ptr, length, call)
        if entry.sockopt is not None:
            option = (s32(args[entry.sockopt[0]]), s32(args[entry.sockopt[1]]))
            if option in syscalls.ROUTING_SOCKOPTS:
                return Decision(False, self.policy.errno, decide.destination_rule(self.policy),
                                "source routing sends to its first hop, not the address",
                                True, details={"level": option[0], "option": option[1]})
            return ALLOWED
        if entry.msghdr is not None:
            return self._msghdr(tid, args[entry.msghdr], compat)
        vec, count = args[entry.mmsghdr[0]], min(args[entry.mmsghdr[1]] & 0xFFFFFFFF,  # type: ignore[index]
                                                  UIO_MAXIOV)
        size = 32 if compat else 64
        for i in range(count):
            decision = self._msghdr(tid, vec + i * size, compat)
            if not decision.allowed or decision.errno:
                return decision
        return ALLOWED

    def _msghdr(self, tid: int, addr: int, compat: bool) -> Decision:
        if compat:
            name, namelen, _iov, _iovlen, control, controllen = struct.unpack(
                "<IiIIII", self.memory.read(tid, addr, 24, "msghdr"))
        else:
            name, namelen, _iov, _iovlen, control, controllen = struct.unpack(
                "<Qi4xQQQQ", self.memory.read(tid, addr, 48, "msghdr"))
        if namelen < 0:
            return Decision(False, errno.EINVAL, reason="negative msg_namelen")
        if controllen and control:
            routed = self._routing_cmsg(tid, control, controllen, compat)
            if routed is not None:
                return routed
        if name == 0 or namelen == 0:
            return ALLOWED
        return self._destination(tid, name, min(namelen, SOCKADDR_MAX), "send")

    def _routing_cmsg(self, tid: int, control: int, length: int, compat: bool
                      ) -> Decision | None:
        """A control message that source-routes the datagram (IP_RETOPTS, IPV6_RTHDR), walked
        as the kernel's __scm_send / CMSG_NXTHDR walk it."""
        if length > CONTROL_MAX:
            return Decision(False, errno.ENOBUFS, reason=f"control data of {length} bytes")
        data = self.memory.read(tid, control, length, "control messages")
        messages = sockaddr.control_messages(data, compat)
        if messages is None:
            return Decision(False, errno.EINVAL, reason="malformed control message")
        for level, type_ in messages:
            if (level, type_) in syscalls.ROUTING_CMSGS:
                return Decision(False, self.policy.errno, decide.destination_rule(self.policy),
                                "a source route sends to its first hop, not the address",
                                True, details={"level": level, "cmsg": type_})
        return None

    def _destination(self, tid: int, ptr: int, length: int, call: str) -> Decision:
        raw = self.memory.read(tid, ptr, length, "address")
        # parse() reads only these bytes (length is their count): they are the whole input
        key = (raw, call)
        verdict = self._destinations.get(key)
        if verdict is None:
            verdict = decide.destination(self.policy,
                                         sockaddr.parse(raw, length, call))  # type: ignore[arg-type]
            if len(self._destinations) >= MEMO_MAX:
                self._destinations.clear()
            self._destinations[key] = verdict
        if verdict.allowed:
            return ALLOWED
        dest = sockaddr.parse(raw, length, call)  # type: ignore[arg-type]
        details: dict[str, Any] = {"family": dest.family}
        if dest.address is not None:
            details["address"], details["port"] = str(dest.address), dest.port
        return self._verdict(verdict, details)

