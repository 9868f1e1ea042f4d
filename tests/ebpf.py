"""A small interpreter for the eBPF subset policy.cgroup_net emits, run on a bpf_sock_addr
context built the way the kernel converts a sockaddr: lets the tests compare the kernel
program's verdict with decide.destination on thousands of addresses without a kernel."""

from __future__ import annotations

import struct
import sys
from ipaddress import IPv4Address, IPv6Address

from secfilt_runtime.policy import cgroup_net as cn

MASK32, MASK64 = (1 << 32) - 1, (1 << 64) - 1


def context(address: IPv4Address | IPv6Address, port: int) -> bytes:
    """bpf_sock_addr as a load sees it: user_ip4 / user_ip6 are the sockaddr's bytes,
    user_port its network-order 16 bits zero-extended."""
    ctx = bytearray(72)
    if address.version == 4:
        ctx[4:8] = address.packed
    else:
        ctx[8:24] = address.packed
    ctx[24:26] = port.to_bytes(2, "big")
    return bytes(ctx)


def run(program: cn.Program, ctx: bytes, limit: int = 10_000) -> int:
    insns = program.assemble()
    regs = [0] * 11
    pc = 0
    for _ in range(limit):
        insn, off = insns[pc]
        code, dst, src = insn.code, insn.dst, insn.src
        imm64 = (insn.imm - (1 << 32) if insn.imm >= 1 << 31 else insn.imm) & MASK64
        pc += 1
        if code == cn.LDX_MEM_W:
            assert src == cn.R_CTX, "only the context is ever read"
            regs[dst] = int.from_bytes(ctx[off:off + 4], sys.byteorder)
        elif code == cn.ALU32_AND_K:
            regs[dst] = regs[dst] & insn.imm & MASK32
        elif code == cn.MOV64_X:
            regs[dst] = regs[src]
        elif code == cn.MOV64_K:
            regs[dst] = imm64
        elif code == cn.JMP32_JEQ_K:
            if regs[dst] & MASK32 == insn.imm & MASK32:
                pc += off
        elif code == cn.JMP32_JNE_K:
            if regs[dst] & MASK32 != insn.imm & MASK32:
                pc += off
        elif code == cn.JA:
            pc += off
        elif code == cn.EXIT:
            return regs[0]
        else:
            raise AssertionError(f"opcode {code:#x} is not in the subset")
    raise AssertionError("the program did not exit")


def encoded_matches(program: cn.Program) -> bool:
    """The bytes the kernel gets say what assemble() says (8 bytes per instruction)."""
    raw = program.encode()
    for i, (insn, off) in enumerate(program.assemble()):
        code, regs, o, imm = struct.unpack_from("<BBhi", raw, 8 * i)
        if (code, regs & 0xF, regs >> 4, o, imm & MASK32) != (insn.code, insn.dst, insn.src,
                                                              off, insn.imm):
            return False
    return len(raw) == 8 * len(program.assemble())
