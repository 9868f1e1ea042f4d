"""Keeping the kernel's cgroup-migration lock on its fast path while a container is set up.

Every move of a process into a cgroup (a cgroup.procs write) takes cgroup_threadgroup_rwsem
for writing. The first writer after an idle spell waits for an RCU grace period
(rcu_sync_enter: 5-17 ms measured on the dev VM); writers within about one grace period of the
last one find the fast path open and take ~0.07 ms. The runtime's move of the container's
process is on the critical path of `run`, `create` and `exec`, and comes late (after the
imports, the config and the fork). So as soon as a command knows it will make one, a thread
moves the runtime into the cgroup it is already in (a move that changes nothing) every few
milliseconds, until the real move is done or a deadline passes: the grace period then runs
while the command imports and parses, instead of after. It must start early: the kernel waits
for it holding cgroup_mutex, so the runtime's own mkdir of the container's cgroup waits too.

Best effort: any error (no cgroupfs, a cgroup2 type that refuses the write) ends the thread,
and the real move then waits as it would have.
"""

from __future__ import annotations

import _signal
import _thread
import os
import time

from . import cgroups

PERIOD_S = 0.004   # well inside one grace period, the window after the last writer
DEADLINE_S = 2.0   # a command that never makes its move stops warming anyway

_stop: list[bool] = []


def own_procs_file() -> str | None:
    """cgroup.procs of the cgroup this process is in, in the first hierarchy that shows it."""
    for d in cgroups.own_dirs_now().values():
        procs = os.path.join(d, "cgroup.procs")
        if os.path.exists(procs):
            return procs
    return None


def warm() -> None:
    """Start keeping the fast path open (once per process)."""
    if _stop:
        return
    _stop.append(False)
    procs = own_procs_file()
    if procs is None:
        return
    # born with every signal blocked: a signal sent to the runtime must reach its main thread,
    # which waits for them with all blocked (lifecycle), not end the process here
    old = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    try:
        _thread.start_new_thread(_keep_open, (procs, time.monotonic() + DEADLINE_S))
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, old)


def done() -> None:
    """The real move is made (Cgroup.add calls this): let the thread end."""
    if _stop:
        _stop[0] = True


def _keep_open(procs: str, deadline: float) -> None:
    try:
        fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        while not _stop[0] and time.monotonic() < deadline:
            os.write(fd, b"0")  # "0": the writer's own thread group, into its own cgroup
            time.sleep(PERIOD_S)
    except OSError:
        pass
    finally:
        os.close(fd)
