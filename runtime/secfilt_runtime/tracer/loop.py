"""The tracer's event loop: it owns waitpid(-1, __WALL) for every task it traces.

Tasks are seized with PTRACE_SEIZE and options that make every fork, vfork, clone and thread
auto-attached, every SECCOMP_RET_TRACE stop reported, and the tracees
killed if the tracer dies (EXITKILL: fail closed). Stops:
- seccomp stop: judged, or refused as the filter's data says (tracer.refusals); a denial sets
  orig_rax = -1 (skip) and rax = -errno in one SETREGS;
- group-stop (SIGSTOP, SIGTSTP, ...): PTRACE_LISTEN, so the task stays stopped as it should;
- signal-delivery-stop: the signal is re-injected;
- other ptrace events (the auto-attach stop of a new task, fork/clone events): resumed;
- syscall-exit-stop: only after an i386 socketcall made into its direct call (judge.Decision
  .direct), whose arguments took registers that int 0x80 otherwise preserves: they are put
  back, the call's result kept.
Exit statuses are collected here too, and reach the real parent unchanged.
"""

from __future__ import annotations

import _signal
import os
import struct
import time

from .. import kernel
from ..policy.model import Policy
from .judge import Judge
from .log import PolicyLog

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# No PTRACE_O_TRACEEXEC: nothing the tracer keeps depends on the address space (tracer.memory
# reads the one the task has at each stop) and an exec keeps the root (tracer.resolve.Roots),
# so an exec stop would only cost a round trip per process started. Under PTRACE_SEIZE, which
# auto-attached tasks inherit, an exec then sends no SIGTRAP either.
# TRACESYSGOOD: the one syscall stop the tracer asks for (the exit of a rewritten call) is
# then told from a SIGTRAP the process got, and PTRACE_GET_SYSCALL_INFO describes it.
OPTIONS = (kernel.PTRACE_O_TRACESECCOMP | kernel.PTRACE_O_TRACEFORK
           | kernel.PTRACE_O_TRACEVFORK | kernel.PTRACE_O_TRACECLONE
           | kernel.PTRACE_O_EXITKILL | kernel.PTRACE_O_TRACESYSGOOD)
_SYSCALL_STOP = _signal.SIGTRAP | 0x80
_GROUP_STOP_SIGNALS = frozenset({_signal.SIGSTOP, _signal.SIGTSTP, _signal.SIGTTIN,
                                 _signal.SIGTTOU})
_NEW_TASK_EVENTS = frozenset({kernel.PTRACE_EVENT_FORK, kernel.PTRACE_EVENT_VFORK,
                              kernel.PTRACE_EVENT_CLONE})
_SKIP = (1 << 64) - 1  # orig_rax = -1
# kernel.SyscallInfo's fields up to the seccomp member's ret_data (SECCOMP_RET_TRACE's data:
# policy.filter's JUDGE or one of its logged refusals), decoded in one call (a ctypes field
# read each costs about as much as this whole unpack)
_INFO = struct.Struct("<B3xIQQQ6QI")
# Polling before sleeping. A tracer asleep in waitpid is woken by its tracee's stop; on an idle
# VM that wake-up crosses CPUs through a halted vCPU (~50-100 us here, more than judging the
# call), and the scheduler places the two on different CPUs whatever the tracer's affinity
# (pinning the tracer alone was measured: no gain). So after a seccomp stop that came quickly,
# the tracer polls (WNOHANG, yielding its CPU to anything runnable) up to SPIN_S for the next
# event before it sleeps. A wait that slept longer than SPIN_AGAIN_S, or any other event (fork,
# exec, exit: polling through them was measured to slow a fork-heavy shell by ~10%), turns
# polling off until the next quick seccomp stop: sporadic calls cost no polling, a burst of
# judged calls at most one SPIN_S.
SPIN_S = 50e-6
SPIN_AGAIN_S = 250e-6


class Tracer:
    def __init__(self, policy: Policy | None, *, container_id: str | None,
                 log_path: str | None, supervised: bool = False) -> None:
        # policy None: the null tracer (resume every stop), for measurements
        self.judge = Judge(policy, supervised=supervised) if policy is not None else None
        self.audit = policy.audit if policy is not None else False
        self.log = PolicyLog(log_path, container_id) if log_path and policy else None
        # ids seen and not yet reported gone; a thread that execs takes its leader's id with no
        # report for its own, which then stays here until waitpid finds no tracee (ECHILD)
        self.tasks: set[int] = set()
        self.statuses: dict[int, int] = {}   # exit statuses of the pids someone asked for
        self.watch: set[int] = set()
        self.pending: Callable[[], None] | None = None  # run when a wait is interrupted
        # tasks resumed to the exit of a rewritten call -> their registers (orig_rax, rbx, rcx,
        # rdx, rsi, rdi, rbp) as the process had them
        self.restores: dict[int, tuple[int, ...]] = {}
        self._info = kernel.SyscallInfo()
        self._stop = kernel.PtraceStop(self._info)
        self._regs = kernel.UserRegs()

    def seize(self, pid: int) -> None:
        kernel.ptrace_seize(pid, OPTIONS)
        self.tasks.add(pid)

    def run(self) -> None:
        """Serve until no traced task is left."""
        spin = False
        clock = time.perf_counter
        try:
            while self.tasks:
                try:
                    pid = 0
                    if spin:
                        until = clock() + SPIN_S
                        while not pid and clock() < until:
                            pid, status = os.waitpid(-1, kernel.WALL | os.WNOHANG)
                            if not pid:
                                os.sched_yield()
                    quick = bool(pid)
                    if not pid:
                        slept = clock()
                        pid, status = kernel.wait_any(kernel.WALL)
                        quick = clock() - slept < SPIN_AGAIN_S
                except InterruptedError:
                    spin = False
                    if self.pending is not None:
                        self.pending()
                    continue
                except ChildProcessError:
                    break
                spin = quick and status >> 16 == kernel.PTRACE_EVENT_SECCOMP
                self._event(pid, status)
        finally:
            if self.judge is not None:
                self.judge.close()

    def _event(self, pid: int, status: int) -> None:
        try:
            if status >> 16 == kernel.PTRACE_EVENT_SECCOMP:
                # the commonest event first (the status of a stop by construction)
                self.tasks.add(pid)
                if self._seccomp(pid):
                    kernel.ptrace_syscall(pid)
                else:
                    self._stop.cont(pid)
            else:
                self._other_event(pid, status)
        except ProcessLookupError:
            pass  # killed while stopped (SIGKILL): its exit is reported next
        except OSError:
            # a stop that cannot be served is never resumed as if allowed: the task goes
            try:
                os.kill(pid, _signal.SIGKILL)
            except OSError:
                pass

    def _other_event(self, pid: int, status: int) -> None:
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self.tasks.discard(pid)
            self.restores.pop(pid, None)
            if self.judge is not None:
                self.judge.forget(pid)  # its id may come back as another task's
            if pid in self.watch:
                self.statuses[pid] = status
            return
        if not os.WIFSTOPPED(status):
            return
        self.tasks.add(pid)  # a new task may report before its parent's fork event
        sig = os.WSTOPSIG(status)
        event = status >> 16
        if pid in self.restores:
            if not (sig == _SYSCALL_STOP and not event and self._restored(pid)):
                # resumed to the exit of a rewritten call, it stopped elsewhere (no kernel
                # this runs on orders the stops so): its registers are not its own
                os.kill(pid, _signal.SIGKILL)
            return  # _restored resumed it: a second resume could pass its next stop unjudged
        if sig == _SYSCALL_STOP and not event:
            kernel.ptrace_cont(pid, 0)  # a syscall stop nobody asked for: not a signal
            return
        if event in _NEW_TASK_EVENTS:
            self.tasks.add(kernel.ptrace_geteventmsg(pid))
            kernel.ptrace_cont(pid, 0)
        elif event == kernel.PTRACE_EVENT_STOP:
            if sig in _GROUP_STOP_SIGNALS:
                kernel.ptrace_listen(pid)
            else:
                kernel.ptrace_cont(pid, 0)
        elif event:
            kernel.ptrace_cont(pid, 0)
        else:
            kernel.ptrace_cont(pid, sig)  # signal-delivery-stop: deliver it

    def _restored(self, pid: int) -> bool:
        """At the syscall-exit-stop of a rewritten call: the process's registers back (the
        result in rax kept; orig_rax too, so that a call the kernel restarts after a signal is
        the socketcall again, judged again), and resumed. False for any other stop."""
        self._stop.syscall_info(pid)
        if self._info.op != kernel.PTRACE_SYSCALL_INFO_EXIT:
            return False
        regs = self._regs
        kernel.ptrace_getregs(pid, regs)
        (regs.orig_rax, regs.rbx, regs.rcx, regs.rdx, regs.rsi, regs.rdi,
         regs.rbp) = self.restores.pop(pid)
        kernel.ptrace_setregs(pid, regs)
        kernel.ptrace_cont(pid, 0)
        return True

    def _seccomp(self, tid: int) -> bool:
        """Serve the stop; True when the call was rewritten (resume it to its exit)."""
        if self.judge is None:
            return False
        self._stop.syscall_info(tid)
        op, arch, _ip, _sp, nr, *args, data = _INFO.unpack_from(self._info)
        try:
            if op != kernel.PTRACE_SYSCALL_INFO_SECCOMP:
                raise ValueError(f"stop of kind {op} at a seccomp event")
            decision = self.judge.judge(tid, arch, nr, args, data)
        except ProcessLookupError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever went wrong, never let the call through
            # refused as any other refusal is (the policy's errno, a log line): a refusal that
            # shows nowhere is one nobody can find the cause of
            decision = self.judge.failed(arch, nr, e)
        if decision.log and self.log is not None:
            self.log.write(tgid_of(tid), tid, arch, decision, self.audit)
        if not decision.allowed:
            regs = self._regs
            kernel.ptrace_getregs(tid, regs)
            regs.orig_rax = _SKIP
            regs.rax = (-decision.errno) & _SKIP
            kernel.ptrace_setregs(tid, regs)
        elif decision.direct is not None:
            # the i386 entry reads its arguments from ebx, ecx, edx, esi, edi, ebp
            regs = self._regs
            kernel.ptrace_getregs(tid, regs)
            self.restores[tid] = (regs.orig_rax, regs.rbx, regs.rcx, regs.rdx, regs.rsi,
                                  regs.rdi, regs.rbp)
            regs.orig_rax, values = decision.direct
            regs.rbx, regs.rcx, regs.rdx, regs.rsi, regs.rdi, regs.rbp = values
            kernel.ptrace_setregs(tid, regs)
            return True
        return False


def tgid_of(tid: int) -> int:
    """The process a thread belongs to (the thread itself when /proc no longer shows it)."""
    try:
        with open(f"/proc/{tid}/status") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return tid
