#!/usr/bin/env python3
"""The floor of this design: a tracer that only resumes.

    null_tracer.py SYSCALL[,SYSCALL...] -- command [args...]

The command runs with a seccomp filter returning SECCOMP_RET_TRACE for the named syscalls (ALLOW
for the rest) under a Python tracer that resumes every stop without looking at it. What
secfilt's tracer costs on top of this is the price of judging the call; what this costs on top
of the bare call is the price of SECCOMP_RET_TRACE + ptrace + a Python event loop.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PTRACE_CONT = 7
PTRACE_SEIZE = 0x4206
PTRACE_O_TRACESECCOMP = 0x80
PTRACE_O_TRACEFORK = 0x02
PTRACE_O_TRACEVFORK = 0x04
PTRACE_O_TRACECLONE = 0x08
PTRACE_O_EXITKILL = 0x100000
PTRACE_EVENT_STOP = 128
WALL = 0x40000000

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
    if "--" not in sys.argv[2:]:
        print(__doc__, file=sys.stderr)
        return 2
    names = sys.argv[1].split(",")
    argv = sys.argv[sys.argv.index("--") + 1:]
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
    while live:
        try:
            tid, status = os.waitpid(-1, WALL)
        except ChildProcessError:
            break
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
