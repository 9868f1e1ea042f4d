#!/usr/bin/env python3
"""The floor of this design: a tracer that only resumes.

    null_tracer.py [--sleep] SYSCALL[,SYSCALL...] -- command [args...]

The command runs with a seccomp filter returning SECCOMP_RET_TRACE for the named syscalls (ALLOW
for the rest) under a Python tracer that resumes every stop without looking at it. What
secfilt's tracer costs on top of this is the price of judging the call; what this costs on top
of the bare call is the price of SECCOMP_RET_TRACE + ptrace + a Python event loop.

It waits for events as secfilt's tracer does (tracer/loop.py): after a seccomp stop that came
quickly it polls waitpid(WNOHANG) for up to 50 us before sleeping, which on an idle VM saves the
cross-CPU wake-up of a sleeping tracer (~100 us of a ~130 us stop here). Without that the floor
would be the wake-up, not the design. --sleep: never poll (the floor of a plain ptrace loop).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

PTRACE_CONT = 7
PTRACE_SEIZE = 0x4206
PTRACE_O_TRACESECCOMP = 0x80
PTRACE_O_TRACEFORK = 0x02
PTRACE_O_TRACEVFORK = 0x04
PTRACE_O_TRACECLONE = 0x08
PTRACE_O_EXITKILL = 0x100000
PTRACE_EVENT_STOP = 128
PTRACE_EVENT_SECCOMP = 7
WALL = 0x40000000
SPIN_S = 50e-6        # the same as secfilt's tracer (tracer/loop.py)
SPIN_AGAIN_S = 250e-6

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long


def ptrace(request: int, pid: int, addr: int = 0, data: int = 0) -> None:
    if libc.ptrace(request, pid, addr, data) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"ptrace({request:#x}, {pid}): {os.strerror(err)}")


def child(names: list[str], argv: list[str], go: int) -> None:
    import pyseccomp  # only the tracee side compiles a filter; the loop below is what is timed

    os.read(go, 1)
    flt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for name in names:
        flt.add_rule(pyseccomp.TRACE(0), name)
    flt.load()  # sets no_new_privs itself
    os.execvp(argv[0], argv)


def main() -> int:
    args = sys.argv[1:]
    poll = args[:1] != ["--sleep"]
    if not poll:
        args = args[1:]
    if "--" not in args[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    names = args[0].split(",")
    argv = args[args.index("--") + 1:]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        try:
            child(names, argv, r)
        finally:
            os._exit(127)
    os.close(r)
    opts = (PTRACE_O_TRACESECCOMP | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK
            | PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL)
    ptrace(PTRACE_SEIZE, pid, 0, opts)
    os.write(w, b"g")
    os.close(w)
    status_of_child = 0
    live = 1
    spin = False
    clock = time.perf_counter
    while live:
        try:
            tid = 0
            if spin:
                until = clock() + SPIN_S
                while not tid and clock() < until:
                    tid, status = os.waitpid(-1, WALL | os.WNOHANG)
                    if not tid:
                        os.sched_yield()
            quick = bool(tid)
            if not tid:
                slept = clock()
                tid, status = os.waitpid(-1, WALL)
                quick = clock() - slept < SPIN_AGAIN_S
        except ChildProcessError:
            break
        spin = poll and quick and status >> 16 == PTRACE_EVENT_SECCOMP
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            if tid == pid:
                status_of_child = status
            live -= 1
            continue
        sig = os.WSTOPSIG(status)
        event = status >> 16
        if event in (1, 2, 3):  # fork, vfork, clone: a new tracee to count
            live += 1
            sig = 0
        elif event or sig == signal.SIGTRAP:  # seccomp/exec/stop events carry no signal
            sig = 0
        libc.ptrace(PTRACE_CONT, tid, 0, sig)
    if os.WIFSIGNALED(status_of_child):
        return 128 + os.WTERMSIG(status_of_child)
    return os.WEXITSTATUS(status_of_child)


if __name__ == "__main__":
    sys.exit(main())
