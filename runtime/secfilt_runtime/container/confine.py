"""The last steps of every container process, the init's and exec's, and how their children
report a failure: what `exec` needs of the container's code without the filesystem set-up
(rootfs, devices, mounts), which only the init runs.
"""

from __future__ import annotations

import _signal
import os

from .. import kernel, seccomp
from ..errors import SecfiltError
from ..policy import landlock
from ..policy.model import Policy
from ..seccomp import Filters
from ..spec import Spec
from ..sync import Channel
from . import process

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn


def _fail(chan: Channel, exc: BaseException) -> NoReturn:
    # the traceback is walked by hand: the traceback module costs ~5 ms of imports (linecache,
    # tokenize, textwrap) and the init may fail after pivot_root, away from the library
    if isinstance(exc, SecfiltError):
        message = str(exc)
    elif isinstance(exc, OSError):
        # the innermost frame that is not the syscall wrapper says which step failed
        codes = []
        tb = exc.__traceback__
        while tb is not None:
            codes.append(tb.tb_frame.f_code)
            tb = tb.tb_next
        code = next((c for c in reversed(codes) if not c.co_filename.endswith("kernel.py")),
                    codes[-1])
        message = f"container setup: {exc} (in {code.co_name})"
    else:
        message = f"container setup: internal error: {_exception_only(exc)}"
    try:
        chan.send("error", message=message)
    finally:
        os._exit(1)


def _exception_only(exc: BaseException) -> str:
    """`Type: message`, as traceback.format_exception_only words it (the module's name before
    a type that is not a builtin one)."""
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ not in ("builtins", "__main__"):
        name = f"{cls.__module__}.{name}"
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - as traceback: a __str__ that fails is not the error
        text = "<exception str() failed>"
    return f"{name}: {text}" if text else name


def confine_and_exec(spec: Spec, plan: process.ExecPlan, filters: Filters,
                     policy: Policy | None, preserve_fds: int) -> NoReturn:
    """The last steps of every container process, the init's and exec's, in this order: the
    session keyring, identity, personality, Landlock, a clean slate of fds and signals, the
    filters, execve."""
    assert spec.process is not None
    if spec.session_keyring:
        process.join_session_keyring(spec.session_keyring)
    # without no_new_privs, loading the filters needs CAP_SYS_ADMIN up to the load
    process.apply_identity(spec.process, keep_sys_admin=bool(filters.programs)
                           and not spec.process.no_new_privileges)
    if spec.linux.personality:
        domain = spec.linux.personality.get("domain", "LINUX")
        kernel.personality(kernel.PER_LINUX32 if domain == "LINUX32" else kernel.PER_LINUX)
    if policy is not None:
        landlock.restrict_self(policy)
    _clean_slate(preserve_fds)
    plan = process.chdir_late(plan)
    # the very last step: nothing of ours may run under the filters but execve itself
    seccomp.install(filters)
    process.exec_process(plan)


def _clean_slate(preserve_fds: int = 0) -> None:
    """What the runtime's process holds must not reach the container's: every descriptor but
    stdio and the --preserve-fds ones after it (another one inherited from the runtime's
    caller could name a host directory), ignored or blocked signals, and the parent-death
    signal (cleared by a uid change, not by execve: keep the behaviour the same for every
    uid, as runc does)."""
    kernel.close_range(3 + preserve_fds, flags=kernel.CLOSE_RANGE_CLOEXEC)
    for sig in range(1, _signal.NSIG):
        if sig not in (_signal.SIGKILL, _signal.SIGSTOP, 32, 33):
            _signal.signal(sig, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    kernel.prctl(kernel.PR_SET_PDEATHSIG, 0)
