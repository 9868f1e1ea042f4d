"""OCI hooks: run each hook of a phase with the container's state on stdin.

The runtime-spec names six phases and where each runs:
- prestart, createRuntime: the runtime's namespaces, during create, after the init is ready;
- createContainer, startContainer: the container's namespaces (joined with setns by a forked
  child, see nsjoin); createContainer's path resolves in the runtime's mount namespace (the
  executable is opened before the join), startContainer's in the container's;
- poststart: the runtime's namespaces, once the process has started;
- poststop: the runtime's namespaces, when the container is deleted.

Failures of the phases before the process runs abort the lifecycle step; poststart and poststop
failures are warnings (the spec's rule). Kept free of heavy imports: `start` and `delete` run
hooks on the hot path.
"""

from __future__ import annotations

import _signal
import contextlib
import os
import select
import time

from . import jsonio
from .errors import ConfigError, ContainerError
from .records import record

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

PHASES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
          "poststop")
_OUTPUT_LIMIT = 4096


@record(frozen=True)
class Hook:
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None


def parse(hooks: dict[str, Any]) -> dict[str, tuple[Hook, ...]]:
    """config.json's hooks object (already schema-checked) into Hook tuples per phase."""
    out: dict[str, tuple[Hook, ...]] = {}
    for phase, items in (hooks or {}).items():
        if phase not in PHASES:
            raise ConfigError(f"hooks.{phase}: not a hook phase (one of {', '.join(PHASES)})")
        parsed = []
        for i, h in enumerate(items or ()):
            if not isinstance(h, dict) or not isinstance(h.get("path"), str) \
                    or not os.path.isabs(h["path"]):
                raise ConfigError(f"hooks.{phase}[{i}].path: must be an absolute path")
            timeout = h.get("timeout")
            if timeout is not None and (not isinstance(timeout, int) or timeout <= 0):
                raise ConfigError(f"hooks.{phase}[{i}].timeout: must be a positive integer")
            parsed.append(Hook(h["path"], tuple(h.get("args") or ()), tuple(h.get("env") or ()),
                               timeout))
        out[phase] = tuple(parsed)
    return out


def _describe(phase: str, index: int, hook: Hook) -> str:
    return f"hooks.{phase}[{index}] ({hook.path})"


def run_phase(phase: str, hooks: dict[str, Any], state: dict[str, Any], *,
              enter: Callable[[], None] | None = None, open_first: bool = False,
              warn: Callable[[str], None] | None = None,
              while_waiting: Callable[[], None] | None = None) -> None:
    """Run every hook of `phase` in order. `enter` runs in the forked child before the exec
    (joins the container's namespaces); open_first opens the executable before `enter`.
    With `warn`, failures are reported through it and the next hooks still run.
    `while_waiting` is called while a hook runs: what it raises kills the hook and
    propagates (a set-up told to stop)."""
    items = parse({phase: (hooks or {}).get(phase) or []})[phase]
    payload = jsonio.dumps(state).encode()
    for i, hook in enumerate(items):
        try:
            run_one(hook, payload, enter=enter, open_first=open_first,
                    what=_describe(phase, i, hook), while_waiting=while_waiting)
        except ContainerError as e:
            if warn is None:
                raise
            warn(str(e))


def run_one(hook: Hook, payload: bytes, *, enter: Callable[[], None] | None = None,
            open_first: bool = False, what: str = "hook",
            while_waiting: Callable[[], None] | None = None) -> None:
    """Fork, feed the state on stdin, wait with the timeout; ContainerError on failure."""
    stdin_r, stdin_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs or _exits
        code = 127
        try:
            os.close(stdin_w)
            os.close(err_r)
            _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
            os.setpgid(0, 0)  # a group of its own: a timeout kills what it started too
            exe: int | str = hook.path
            if open_first:
                exe = os.open(hook.path, os.O_RDONLY)  # resolved here, run after the join
                # a script is read by its interpreter through /dev/fd/N: keep N open
                os.set_inheritable(exe, True)
            if enter is not None:
                enter()
            os.dup2(stdin_r, 0)
            os.dup2(err_w, 2)
            args = list(hook.args) or [hook.path]
            env = dict(e.split("=", 1) for e in hook.env if "=" in e)
            os.execve(exe, args, env)
        except BaseException as e:  # noqa: BLE001 - reported on the error pipe
            with contextlib.suppress(OSError):
                os.write(err_w, f"cannot run: {e}".encode())
        finally:
            os._exit(code)
    with contextlib.suppress(OSError):  # also here: the child may not have run yet
        os.setpgid(pid, pid)
    os.close(stdin_r)
    os.close(err_w)
    try:
        with contextlib.suppress(BrokenPipeError):
            _write_all(stdin_w, payload)
        os.close(stdin_w)
        stdin_w = -1
        status, output = _wait(pid, err_r, hook.timeout, while_waiting)
    finally:
        if stdin_w >= 0:
            os.close(stdin_w)
        os.close(err_r)
    text = output.decode(errors="replace").strip()
    if status is None:
        raise ContainerError(f"{what}: timed out after {hook.timeout}s")
    if os.WIFSIGNALED(status):
        raise ContainerError(f"{what}: killed by signal {os.WTERMSIG(status)}"
                             + (f": {text}" if text else ""))
    if os.WEXITSTATUS(status) != 0:
        raise ContainerError(f"{what}: exit status {os.WEXITSTATUS(status)}"
                             + (f": {text}" if text else ""))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _wait(pid: int, err_r: int, timeout: int | None,
          while_waiting: Callable[[], None] | None = None) -> tuple[int | None, bytes]:
    """The hook's wait status (None after a timeout: it was killed) and its stderr head.
    Whatever stops the wait (`while_waiting`'s exception, a KeyboardInterrupt) kills the hook's
    group first: in a group of its own, a terminal's ^C no longer reaches it."""
    try:
        status, output, open_ = _wait_for(pid, err_r, timeout, while_waiting)
    except BaseException:
        _kill_group(pid)  # not reaped yet: its pid is still the hook's
        os.waitpid(pid, 0)
        raise
    if open_ and status is not None:
        with contextlib.suppress(OSError):
            while select.select([err_r], [], [], 0)[0]:
                chunk = os.read(err_r, 4096)
                if not chunk:
                    break
                output = (output + chunk)[:_OUTPUT_LIMIT]
    return status, output


def _wait_for(pid: int, err_r: int, timeout: int | None,
              while_waiting: Callable[[], None] | None) -> tuple[int | None, bytes, bool]:
    deadline = None if timeout is None else time.monotonic() + timeout
    output = b""
    open_ = True
    while True:
        if while_waiting is not None:
            while_waiting()
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            return status, output, open_
        if deadline is not None and time.monotonic() > deadline:
            _kill_group(pid)
            os.waitpid(pid, 0)
            return None, output, False
        wait = 0.05 if deadline is None else max(0.0, min(0.05, deadline - time.monotonic()))
        if open_ and select.select([err_r], [], [], wait)[0]:
            chunk = os.read(err_r, 4096)
            if chunk:
                output = (output + chunk)[:_OUTPUT_LIMIT]
            else:
                open_ = False
        elif not open_:
            time.sleep(wait)


def _kill_group(pid: int) -> None:
    """SIGKILL the hook's whole group (its id stays taken until the hook is reaped): a
    script's commands, or the child that joined the container's pid namespace."""
    try:
        os.killpg(pid, _signal.SIGKILL)
    except OSError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, _signal.SIGKILL)
