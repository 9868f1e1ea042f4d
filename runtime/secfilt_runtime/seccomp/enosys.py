"""runc's -ENOSYS stub, so a profile behaves as it does under runc.

A profile lists the syscalls of the kernels its authors knew. A syscall newer than all of them
should look unimplemented (ENOSYS: libc then falls back, as glibc does from clone3 to clone),
not forbidden (the default action's EPERM would break the program). runc prepends a small
program that returns ENOSYS for numbers above the largest one the profile names, per listed
architecture, unless the default action lets calls through (ALLOW, LOG, TRACE). This module
builds an equivalent prefix; pure, the syscall numbers come from the caller.

Layout (every jump forward, all within the stub, so 8-bit offsets suffice):
    ld arch; jeq ARCH_i -> section_i ...; ja FILTER
    section: ld nr; [x86_64: jset X32_BIT -> x32 part]; jgt LAST -> ENOSYS; ja FILTER ...
    ENOSYS: ret ERRNO(ENOSYS)
    FILTER: (libseccomp's program)
"""

from __future__ import annotations

import errno
import struct

from ..records import record
from .profile import AUDIT_ARCH, Profile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_INSN = struct.Struct("=HBBI")
LD_W_ABS, JEQ, JGT, JSET, JA, RET = 0x20, 0x15, 0x25, 0x45, 0x05, 0x06
RET_ENOSYS = 0x00050000 | errno.ENOSYS
X32_BIT = 0x40000000
_OFF_NR, _OFF_ARCH = 0, 4
_PERMISSIVE = ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE")


def applies(profile: Profile) -> bool:
    d = profile.default_action
    return d.name not in _PERMISSIVE and not (d.name == "SCMP_ACT_ERRNO"
                                              and d.errno == errno.ENOSYS)


def last_syscalls(profile: Profile, resolve: Callable[[str, str], int]) -> dict[str, int]:
    """The largest syscall number the profile names, per listed architecture (as runc: only
    those in `architectures`; names unknown on an arch do not count; none found, no entry).
    resolve(arch, name) is the number, negative when unknown."""
    names = {n for r in profile.rules for n in r.names}
    out = {}
    for arch in profile.architectures:
        numbers = [nr for nr in (resolve(arch, n) for n in sorted(names)) if nr >= 0]
        if numbers and max(numbers) > 0:
            out[arch] = max(numbers)
    return out


@record
class _Jump:
    op: int
    k: int
    jt: str | None = None  # a label, or None for the next instruction
    jf: str | None = None


def stub(last: dict[str, int]) -> bytes:
    """The prefix program for `last` (from last_syscalls); b"" when it is empty."""
    if not last:
        return b""
    by_audit: dict[int, dict[str, int]] = {}
    for arch, nr in last.items():
        by_audit.setdefault(AUDIT_ARCH[arch if arch != "SCMP_ARCH_X32" else
                                       "SCMP_ARCH_X86_64"], {})[arch] = nr
    code: list[tuple[str | None, _Jump]] = [(None, _Jump(LD_W_ABS, _OFF_ARCH))]
    code += [(None, _Jump(JEQ, audit, jt=f"sec{audit}")) for audit in by_audit]
    code.append((None, _Jump(JA, 0, jt="FILTER")))
    for audit, per_arch in by_audit.items():
        section: list[_Jump] = [_Jump(LD_W_ABS, _OFF_NR)]
        if audit == AUDIT_ARCH["SCMP_ARCH_X86_64"]:
            native, x32 = per_arch.get("SCMP_ARCH_X86_64"), per_arch.get("SCMP_ARCH_X32")
            section.append(_Jump(JSET, X32_BIT, jt=f"x32{audit}"))
            if native is not None:
                section.append(_Jump(JGT, native, jt="ENOSYS"))
            section.append(_Jump(JA, 0, jt="FILTER"))
            code.append((f"sec{audit}", section[0]))
            code += [(None, j) for j in section[1:]]
            x32_part = ([_Jump(JGT, x32, jt="ENOSYS")] if x32 is not None else []) + [
                _Jump(JA, 0, jt="FILTER")]
            code.append((f"x32{audit}", x32_part[0]))
            code += [(None, j) for j in x32_part[1:]]
            continue
        (nr,) = per_arch.values()
        if audit in (AUDIT_ARCH["SCMP_ARCH_S390"], AUDIT_ARCH["SCMP_ARCH_S390X"]):
            # s390 multiplexes unknown large numbers onto setup(0): unimplemented too
            section.append(_Jump(JEQ, 0, jt="ENOSYS"))
        section += [_Jump(JGT, nr, jt="ENOSYS"), _Jump(JA, 0, jt="FILTER")]
        code.append((f"sec{audit}", section[0]))
        code += [(None, j) for j in section[1:]]
    code.append(("ENOSYS", _Jump(RET, RET_ENOSYS)))
    return _assemble(code)


def _assemble(code: list[tuple[str | None, _Jump]]) -> bytes:
    where = {label: i for i, (label, _) in enumerate(code) if label is not None}
    where["FILTER"] = len(code)
    out = bytearray()
    for i, (_, j) in enumerate(code):
        def rel(label: str | None, at: int = i) -> int:
            return 0 if label is None else where[label] - at - 1
        if j.op == JA:
            out += _INSN.pack(JA, 0, 0, rel(j.jt))
        elif j.op in (JEQ, JGT, JSET):
            jt, jf = rel(j.jt), rel(j.jf)
            if not (0 <= jt <= 255 and 0 <= jf <= 255):
                raise ValueError("seccomp ENOSYS stub: jump out of range")
            out += _INSN.pack(j.op, jt, jf, j.k)
        else:
            out += _INSN.pack(j.op, 0, 0, j.k)
    return bytes(out)
