"""The ptrace tracer that serves the policy's SECCOMP_RET_TRACE stops.

- trace_child: in the caller, which is pid's parent (`run` in the foreground, tests);
- spawn: a detached tracer process for a container (not the init's parent: engines are);
- add: asks a spawned tracer to seize one more process (`exec`).

Either way pid must wait until it is seized before it loads its filters: a TRACE stop with no
tracer attached fails the call with ENOSYS, and a task not yet seized would not be followed.
"""

from __future__ import annotations

import _signal
import os

from .. import kernel
from ..errors import ContainerError
from ..policy.model import Policy
from .loop import Tracer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["add", "spawn", "trace_child"]
PR_GET_DUMPABLE = 3


def trace_child(pid: int, policy: Policy, *, container_id: str | None, log_path: str | None,
                release: Callable[[], None] | None = None, supervised: bool = False) -> int:
    """Seize `pid` (the caller's child), call `release` (the child may go on: load its
    filters, exec), serve it and all its descendants until none is left; pid's wait status.

    The loop reaps with waitpid(-1): the caller should have no other children to wait for.
    """
    tracer = Tracer(policy, container_id=container_id, log_path=log_path,
                    supervised=supervised)
    tracer.watch.add(pid)
    # undumpable while serving: a tracee of the same uid could otherwise write the tracer's
    # memory through /proc/PID/mem or take its descriptors with pidfd_getfd
    dumpable = kernel.prctl(PR_GET_DUMPABLE)
    kernel.prctl(kernel.PR_SET_DUMPABLE, 0)
    try:
        tracer.seize(pid)
        if release is not None:
            release()
        tracer.run()
    finally:
        kernel.prctl(kernel.PR_SET_DUMPABLE, dumpable)
        if tracer.log is not None:
            tracer.log.close()
    if pid not in tracer.statuses:
        raise ContainerError(f"tracer: the exit status of {pid} was not collected")
    return tracer.statuses[pid]


def spawn(pid: int, policy: Policy, *, container_id: str, log_path: str | None,
          control_socket: str | None) -> int:
    """Fork a detached tracer that seizes `pid`; its pid once `pid` is seized."""
    r, w = os.pipe2(os.O_CLOEXEC)
    first = os.fork()
    if first == 0:  # pragma: no cover - runs in the forked children
        code = 1
        try:
            os.close(r)
            os.setsid()
            if os.fork() == 0:
                code = _tracer_main(pid, policy, container_id, log_path, control_socket, w)
            else:
                code = 0
        except BaseException as e:  # noqa: BLE001 - reported to the caller through the pipe
            _report(w, f"error {e}")
        finally:
            os._exit(code)
    os.close(w)
    os.waitpid(first, 0)
    with os.fdopen(r, "rb") as f:
        answer = f.read().decode(errors="replace")
    if not answer.startswith("ok "):
        raise ContainerError(f"tracer for {container_id}: "
                             f"{answer.removeprefix('error ') or 'exited before seizing'}")
    return int(answer.split()[1])


def add(control_socket: str, pid: int) -> None:
    """Ask the tracer listening on `control_socket` to seize `pid`; returns once seized."""
    from .control import request_add  # only the engines' exec path needs it

    request_add(control_socket, pid)


def _report(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode())
    except OSError:
        pass


def _tracer_main(pid: int, policy: Policy, container_id: str, log_path: str | None,
                 control_socket: str | None, report: int) -> int:  # pragma: no cover
    # undumpable: the container's processes must not ptrace or read the tracer
    kernel.prctl(kernel.PR_SET_DUMPABLE, 0)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    for sig in (_signal.SIGCHLD, _signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGPIPE):
        _signal.signal(sig, _signal.SIG_DFL)
    os.chdir("/")  # hold no bundle or state directory busy
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    # nothing of the runtime's (engine pipes, state locks) stays open in a long-lived process
    kernel.close_range(3, report - 1)
    kernel.close_range(report + 1)
    tracer = Tracer(policy, container_id=container_id, log_path=log_path)
    server = None
    if control_socket:
        from .control import ControlServer

        server = ControlServer(control_socket, tracer.seize)
    try:
        tracer.seize(pid)
    except OSError as e:
        _report(report, f"error cannot seize {pid}: {e.strerror}")
        return 1
    _report(report, f"ok {os.getpid()}")
    os.close(report)
    if server is not None:
        # after the report: the socket already queues what connects; only its thread is
        # started here, with the imports that come with it
        tracer.pending = server.drain
        server.start()
    try:
        tracer.run()
    finally:
        if server is not None:
            server.close()
    return 0
