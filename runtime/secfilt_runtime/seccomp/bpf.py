"""A classic BPF evaluator for seccomp programs: what the kernel would answer for one syscall.

Used before anything starts, to refuse a profile under which the container process could never
be executed (execve denied: the init would die with nothing left to report it), and by tests to
check compiled programs without running them. Covers the instruction set seccomp accepts.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

_INSN = struct.Struct("=HBBI")
_M32 = 0xFFFFFFFF

# SECCOMP_RET_* actions, most severe first (the kernel takes the most severe of all filters)
RET_ACTION_FULL = 0xFFFF0000
PRECEDENCE = (0x80000000, 0x00000000, 0x00030000, 0x00050000, 0x7FC00000, 0x7FF00000,
              0x7FFC0000, 0x7FFF0000)  # KILL_PROCESS, KILL_THREAD, TRAP, ERRNO, USER_NOTIF,
#                                         TRACE, LOG, ALLOW
DENYING = frozenset(PRECEDENCE[:4])


def seccomp_data(nr: int, arch: int, args: Sequence[int] = (0,) * 6, ip: int = 0) -> bytes:
    return struct.pack("=iIQ6Q", nr, arch, ip, *args)


def _alu(op: int, a: int, src: int) -> int:
    if op == 0x00:
        return a + src
    if op == 0x10:
        return a - src
    if op == 0x20:
        return a * src
    if op == 0x30:
        return a // src if src else 0
    if op == 0x40:
        return a | src
    if op == 0x50:
        return a & src
    if op == 0x60:
        return a << src if src < 32 else 0
    if op == 0x70:
        return a >> src if src < 32 else 0
    if op == 0x80:
        return -a
    if op == 0x90:
        return a % src if src else 0
    if op == 0xA0:
        return a ^ src
    raise ValueError(f"BPF: unsupported ALU operation {op:#x}")


def run(program: bytes, data: bytes) -> int:
    """The value the program returns for `data` (struct seccomp_data)."""
    insns = [_INSN.unpack_from(program, i) for i in range(0, len(program), 8)]
    a = x = 0
    mem = [0] * 16
    pc = 0
    while pc < len(insns):
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        if cls == 0x00:  # LD
            mode = code & 0xE0
            if mode == 0x20:
                a = struct.unpack_from("=I", data, k)[0]
            elif mode == 0x00:
                a = k
            elif mode == 0x60:
                a = mem[k]
            elif mode == 0x80:
                a = len(data)
            else:
                raise ValueError(f"BPF: unsupported load {code:#x}")
        elif cls == 0x01:  # LDX
            x = {0x00: k, 0x60: mem[k] if k < 16 else 0, 0x80: len(data)}[code & 0xE0]
        elif cls == 0x02:  # ST
            mem[k] = a
        elif cls == 0x03:  # STX
            mem[k] = x
        elif cls == 0x04:  # ALU
            src = x if code & 0x08 else k
            op = code & 0xF0
            a = _alu(code & 0xF0, a, src) & _M32
        elif cls == 0x05:  # JMP
            op = code & 0xF0
            if op == 0x00:
                pc += k
                continue
            src = x if code & 0x08 else k
            taken = {0x10: a == src, 0x20: a > src, 0x30: a >= src, 0x40: bool(a & src)}[op]
            pc += jt if taken else jf
        elif cls == 0x06:  # RET
            return a if code & 0x18 == 0x10 else k
        elif cls == 0x07:  # MISC
            if code & 0xF8 == 0x00:
                x = a
            else:
                a = x
    raise ValueError("BPF: program ran off its end")


def action(ret: int) -> int:
    return ret & RET_ACTION_FULL if ret & RET_ACTION_FULL != 0x80000000 else 0x80000000


def decide(programs: Sequence[bytes], data: bytes) -> int:
    """What the kernel returns with all `programs` loaded: the most severe of their answers
    (for equal actions, the data of the one loaded last)."""
    best = None
    for program in programs:
        ret = run(program, data)
        if best is None or PRECEDENCE.index(action(ret)) <= PRECEDENCE.index(action(best)):
            best = ret
    return 0x7FFF0000 if best is None else best
