"""The container process: limits, working directory, executable, identity and capabilities.

Runs in the container init after pivot_root, so everything it needs is imported here at the
top. `check` runs earlier, in the runtime itself, so configuration mistakes are reported before
anything is created and warnings reach the runtime's log rather than the container's stderr.

Order, as runc does it (`prepare` before the init reports ready, the rest after "start"):
  prepare:        rlimits, oomScoreAdj, chdir(cwd), environment, executable lookup
  apply_identity: noNewPrivileges, [hook], drop the bounding set, KEEPCAPS, chown stdio,
                  setgroups, setresgid, setresuid, clear KEEPCAPS, capset, ambient, umask
  exec_process:   execve
The bounding set is dropped while we are still uid 0 with CAP_SETPCAP in the effective set:
setresuid to a non-zero uid clears the effective set (KEEPCAPS keeps only the permitted set),
and PR_CAPBSET_DROP needs CAP_SETPCAP effective.
"""

from __future__ import annotations

import errno
import os
import resource
import stat

from .. import kernel, records
from ..errors import ConfigError, ContainerError
from ..records import record
from ..spec import Process, Spec
from . import capabilities as caps_mod

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn

# The PATH runc's default spec and Docker give a container; used when process.env has none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_UMASK = 0o022
_MAX_PASSWD = 1 << 20

RLIMITS: dict[str, int] = {
    "RLIMIT_AS": resource.RLIMIT_AS,
    "RLIMIT_CORE": resource.RLIMIT_CORE,
    "RLIMIT_CPU": resource.RLIMIT_CPU,
    "RLIMIT_DATA": resource.RLIMIT_DATA,
    "RLIMIT_FSIZE": resource.RLIMIT_FSIZE,
    "RLIMIT_LOCKS": 10,  # not exported by Python's resource module
    "RLIMIT_MEMLOCK": resource.RLIMIT_MEMLOCK,
    "RLIMIT_MSGQUEUE": resource.RLIMIT_MSGQUEUE,
    "RLIMIT_NICE": resource.RLIMIT_NICE,
    "RLIMIT_NOFILE": resource.RLIMIT_NOFILE,
    "RLIMIT_NPROC": resource.RLIMIT_NPROC,
    "RLIMIT_RSS": resource.RLIMIT_RSS,
    "RLIMIT_RTPRIO": resource.RLIMIT_RTPRIO,
    "RLIMIT_RTTIME": resource.RLIMIT_RTTIME,
    "RLIMIT_SIGPENDING": resource.RLIMIT_SIGPENDING,
    "RLIMIT_STACK": resource.RLIMIT_STACK,
}


@record(frozen=True)
class ExecPlan:
    path: str  # the executable, as found by the lookup
    args: tuple[str, ...]
    env: tuple[str, ...]  # NAME=VALUE, deduplicated, HOME added
    cwd_later: str | None = None  # chdir after the user switch (root was denied access)


# ---- pure helpers ---------------------------------------------------------------------------


def rlimit_resource(name: str, field: str) -> int:
    try:
        return RLIMITS[name]
    except KeyError:
        raise ConfigError(f'{field}: unknown rlimit type "{name}"') from None


def env_lookup(env: Sequence[str], key: str) -> str | None:
    """The value of `key` in a NAME=VALUE list; the last one wins, as execve's users expect."""
    value = None
    prefix = key + "="
    for item in env:
        if item.startswith(prefix):
            value = item[len(prefix):]
    return value


def prepare_env(env: Sequence[str], home: Callable[[], str]) -> tuple[str, ...]:
    """Validate and deduplicate process.env as runc does (the last occurrence of a name wins and
    keeps its position), and add HOME=home() when it is missing or empty."""
    last: dict[str, int] = {}
    for i, item in enumerate(env):
        name, sep, _ = item.partition("=")
        if not sep:
            raise ConfigError(f'process.env[{i}]: "{item}" is not NAME=VALUE')
        if not name:
            raise ConfigError(f'process.env[{i}]: "{item}" has an empty name')
        if "\0" in item:
            raise ConfigError(f"process.env[{i}]: {name} contains a NUL byte")
        last[name] = i
    out = [env[i] for i in sorted(last.values())]
    if not env_lookup(out, "HOME"):
        out = [e for e in out if not e.startswith("HOME=")]
        out.append("HOME=" + home())
    return tuple(out)


def passwd_home(uid: int, passwd: str = "/etc/passwd") -> str:
    """The home directory of `uid` in the container's /etc/passwd, "/" when there is none."""
    # The image is untrusted: a FIFO would block the init, /dev/zero behind a link would
    # fill its memory. Only a regular file is read, and only its first megabyte.
    try:
        fd = os.open(passwd, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return "/"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "/"
        text = os.read(fd, _MAX_PASSWD).decode("utf-8", errors="replace")
    except OSError:
        return "/"
    finally:
        os.close(fd)
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 6 and parts[2].isdigit() and int(parts[2]) == uid:
            return parts[5] or "/"
    return "/"


def _executable_problem(path: str) -> str | None:
    """Why `path` cannot be executed, or None. Mode bits decide, like Go's LookPath: we are
    root at this point and access(2) would say yes to any file with one x bit."""
    try:
        st = os.stat(path)
    except OSError as e:
        return f": {e.strerror}"
    if stat.S_ISDIR(st.st_mode):
        return " is a directory"
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        return ": permission denied"
    return None


def find_executable(name: str, path_env: str | None, cwd: str | None = None) -> str:
    """Resolve process.args[0]: a name with a slash is used as is (relative to `cwd`), any
    other is searched in `path_env` (DEFAULT_PATH when None; an empty entry means cwd)."""
    field = "process.args[0]"
    if not name:
        raise ContainerError(f"{field}: empty executable name")
    if "/" in name:
        full = name if cwd is None else os.path.join(cwd, name)
        problem = _executable_problem(full)
        if problem is not None:
            raise ContainerError(f'{field}: executable file "{name}"{problem}')
        return name
    first_problem = None
    for d in (DEFAULT_PATH if path_env is None else path_env).split(":"):
        candidate = os.path.join(d or ".", name)
        full = candidate if cwd is None else os.path.join(cwd, candidate)
        problem = _executable_problem(full)
        if problem is None:
            return candidate
        # Remember a file that exists but cannot run: it explains more than "not found".
        if first_problem is None and not problem.startswith(": No such") and \
                not problem.startswith(": Not a directory"):
            first_problem = f'{field}: executable file "{candidate}"{problem}'
    if first_problem is not None:
        raise ContainerError(first_problem)
    raise ContainerError(f'{field}: executable file "{name}" not found in $PATH')


def check(process: Process, kernel_last_cap: int | None = None) -> list[str]:
    """Checks of process that need no container, run by the runtime before it creates anything.
    Raises ConfigError; returns warnings for the runtime's log (capabilities skipped for this
    kernel, ambient capabilities the kernel will refuse to raise)."""
    warnings: list[str] = []
    check_scheduling(process)
    for i, r in enumerate(process.rlimits):
        rlimit_resource(r.type, f"process.rlimits[{i}]")
        if r.soft > r.hard:
            raise ConfigError(
                f"process.rlimits[{i}] ({r.type}): soft limit {r.soft} exceeds hard limit {r.hard}"
            )
    prepare_env(process.env, lambda: "/")
    if process.capabilities is not None:
        last = caps_mod.last_cap() if kernel_last_cap is None else kernel_last_cap
        m = caps_mod.masks(process.capabilities, last)
        if m.skipped:
            warnings.append("process.capabilities: ignoring capabilities this kernel does not "
                            f"support: {', '.join(m.skipped)}")
        missing = m.ambient & ~(m.permitted & m.inheritable)
        if missing:
            names = ", ".join(caps_mod.names_of(missing))
            warnings.append("process.capabilities.ambient: not in both permitted and "
                            f"inheritable, will not be raised: {names}")
    return warnings


# ---- in the container init ------------------------------------------------------------------


def apply_rlimits(process: Process) -> None:
    for i, r in enumerate(process.rlimits):
        res = rlimit_resource(r.type, f"process.rlimits[{i}]")
        try:
            kernel.setrlimit(res, r.soft, r.hard)  # config.json and the kernel: uint64
        except OSError as e:
            raise ContainerError(
                f"process.rlimits[{i}] ({r.type}): cannot set soft={r.soft} hard={r.hard}: "
                f"{os.strerror(e.errno or 0)}"
            ) from None


def set_oom_score_adj(value: int, path: str = "/proc/self/oom_score_adj") -> None:
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as e:
        raise ContainerError(
            f"process.oomScoreAdj ({value}): cannot write {path}: {e.strerror}"
        ) from None


def _chdir(cwd: str) -> bool:
    """chdir to process.cwd; False when root is denied (retried as the container user)."""
    try:
        os.chdir(cwd)
    except PermissionError:
        return False
    except OSError as e:
        raise ContainerError(f"process.cwd ({cwd}): {e.strerror}") from None
    _verify_cwd(cwd)
    return True


def _verify_cwd(cwd: str) -> None:
    # A directory outside our root (e.g. reached through a leaked fd) reads as unreachable.
    try:
        where = os.getcwd()
    except OSError as e:
        raise ContainerError(f"process.cwd ({cwd}): outside the container: {e.strerror}") from None
    if not where.startswith("/"):
        raise ContainerError(f"process.cwd ({cwd}): outside the container ({where})")


IO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
SCHED_POLICIES = {"SCHED_OTHER": os.SCHED_OTHER, "SCHED_FIFO": os.SCHED_FIFO,
                  "SCHED_RR": os.SCHED_RR, "SCHED_BATCH": os.SCHED_BATCH,
                  "SCHED_IDLE": os.SCHED_IDLE}


def check_scheduling(process: Process) -> None:
    """What the scheduler and I/O priority settings ask that this runtime cannot do."""
    sched = process.scheduler
    if sched is not None:
        if sched["policy"] not in SCHED_POLICIES:
            raise ConfigError(f"process.scheduler.policy: {sched['policy']} is not supported")
        for key in ("flags", "runtime", "deadline", "period"):
            if sched.get(key):
                raise ConfigError(f"process.scheduler.{key}: not supported (only policy, nice "
                                  "and priority are)")


def apply_scheduling(process: Process) -> None:
    """Scheduler and I/O priority, set while the init is still privileged (a real-time policy
    needs CAP_SYS_NICE); both survive execve."""
    sched = process.scheduler
    if sched is not None:
        policy = SCHED_POLICIES[sched["policy"]]
        try:
            os.sched_setscheduler(0, policy, os.sched_param(sched.get("priority", 0)))
            if "nice" in sched:
                os.setpriority(os.PRIO_PROCESS, 0, sched["nice"])
        except OSError as e:
            raise ContainerError(f"process.scheduler ({sched['policy']}): {e.strerror}") from None
    io = process.io_priority
    if io is not None:
        try:
            kernel.ioprio_set(IO_CLASSES[io["class"]], io.get("priority", 0))
        except OSError as e:
            raise ContainerError(
                f"process.ioPriority ({io['class']} {io.get('priority', 0)}): "
                f"{os.strerror(e.errno or 0)}"
            ) from None


def prepare(spec: Spec) -> ExecPlan:
    """After pivot_root: limits, cwd, environment and executable. Raises ContainerError."""
    process = spec.process
    if process is None or not process.args:
        raise ConfigError("process.args: must be a non-empty array")
    apply_rlimits(process)
    apply_scheduling(process)
    if process.oom_score_adj is not None:
        set_oom_score_adj(process.oom_score_adj)
    in_cwd = _chdir(process.cwd)
    env = prepare_env(process.env, lambda: passwd_home(process.user.uid))
    path = find_executable(process.args[0], env_lookup(env, "PATH"),
                           cwd=None if in_cwd else process.cwd)
    return ExecPlan(path=path, args=process.args, env=env,
                    cwd_later=None if in_cwd else process.cwd)


def _fix_stdio_owner(uid: int) -> None:
    """Give a terminal or pipe on stdio to the container user, so /dev/stdout stays usable.
    Unlike runc, never a regular file or socket: those are the caller's files on the host."""
    for fd in (0, 1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if st.st_uid == uid or not (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3):
            continue
        try:
            os.fchown(fd, uid, -1)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EROFS, errno.EINVAL):
                raise ContainerError(f"process.user.uid ({uid}): cannot chown fd {fd}: "
                                     f"{e.strerror}") from None


def _setgroups_allowed() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except FileNotFoundError:
        return True


def _drop_bounding(keep: int, last: int) -> None:
    for cap in range(last + 1):
        if keep >> cap & 1:
            continue
        try:
            if kernel.prctl(kernel.PR_CAPBSET_READ, cap) == 1:
                kernel.prctl(kernel.PR_CAPBSET_DROP, cap)
        except OSError as e:
            if e.errno == errno.EINVAL:  # above this kernel's last capability
                return
            raise ContainerError(
                f"process.capabilities.bounding: cannot drop {caps_mod.CAPABILITY_NAMES[cap]}: "
                f"{os.strerror(e.errno or 0)}"
            ) from None


# possessor: everything; its owner (the container's root before the uid changes): view, read,
# search and link, so exec's processes, of the same owner, find it by name and join it too
SESSION_KEYRING_PERMISSIONS = 0x3F1B0000


def join_session_keyring(name: str) -> None:
    """A session keyring of the container's own instead of the one inherited from whoever ran
    the runtime, whose keys the container would possess. A kernel without keyrings (ENOSYS)
    has nothing to share; any other failure stops the container, as runc's does."""
    try:
        serial = kernel.join_session_keyring(name)
    except OSError as e:
        if e.errno == errno.ENOSYS:
            return
        raise ContainerError(f"cannot join a new session keyring {name}: "
                             f"{os.strerror(e.errno)}") from None
    try:
        kernel.set_key_permissions(serial, SESSION_KEYRING_PERMISSIONS)
    except OSError as e:
        raise ContainerError(f"cannot set the permissions of session keyring {name}: "
                             f"{os.strerror(e.errno)}") from None


def apply_identity(process: Process, before_drop: Callable[[], None] | None = None,
                   keep_sys_admin: bool = False) -> None:
    """Switch to the container's user, groups and capabilities (see the module docstring).

    `before_drop` runs after noNewPrivileges and before any privilege is given up. (Seccomp
    filters are not loaded there: they come last, right before execve; see keep_sys_admin.)

    process.capabilities None: the capabilities are left as they are, as runc does (a uid 0
    process keeps what the runtime had; a non-zero uid loses them at execve).

    keep_sys_admin: CAP_SYS_ADMIN stays in the effective and permitted sets (never in the
    bounding, inheritable or ambient ones) so seccomp filters can be loaded without
    no_new_privs right before execve; execve then drops it by its own rules (permitted' is
    built from the bounding and inheritable sets for uid 0, from ambient or file capabilities
    otherwise), leaving the sets the config asks for.
    """
    user = process.user
    if process.no_new_privileges:
        kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
    if before_drop is not None:
        before_drop()
    masks = None
    if process.capabilities is not None:
        last = caps_mod.last_cap()
        masks = caps_mod.masks(process.capabilities, last)
        _drop_bounding(masks.bounding, last)

    kernel.prctl(kernel.PR_SET_KEEPCAPS, 1)
    _fix_stdio_owner(user.uid)
    if _setgroups_allowed():
        try:
            os.setgroups(list(user.additional_gids))
        except OSError as e:
            raise ContainerError(
                f"process.user.additionalGids {list(user.additional_gids)}: setgroups: "
                f"{e.strerror}"
            ) from None
    for name, ident, setter in (("gid", user.gid, os.setresgid), ("uid", user.uid, os.setresuid)):
        try:
            setter(ident, ident, ident)
        except OSError as e:
            why = ("not mapped in the container's user namespace" if e.errno == errno.EINVAL
                   else e.strerror)
            raise ContainerError(f"process.user.{name} ({ident}): {why}") from None
    kernel.prctl(kernel.PR_SET_KEEPCAPS, 0)

    if masks is not None:
        extra = 1 << caps_mod.CAPABILITIES["CAP_SYS_ADMIN"] if keep_sys_admin else 0
        try:
            kernel.capset(masks.effective | extra, masks.permitted | extra, masks.inheritable)
        except OSError as e:
            raise ContainerError(
                "process.capabilities: cannot set effective "
                f"{caps_mod.names_of(masks.effective)} permitted "
                f"{caps_mod.names_of(masks.permitted)} inheritable "
                f"{caps_mod.names_of(masks.inheritable)}: {os.strerror(e.errno or 0)}"
            ) from None
        try:
            kernel.prctl(kernel.PR_CAP_AMBIENT, kernel.PR_CAP_AMBIENT_CLEAR_ALL)
        except OSError as e:
            if e.errno != errno.EINVAL:  # EINVAL: a kernel without ambient capabilities
                raise
        # only what the kernel would raise from the config's own sets (not from `extra`)
        for cap in caps_mod.names_of(masks.ambient & masks.permitted & masks.inheritable):
            # As runc: only a warning (given by check()) when the kernel refuses one.
            try:
                kernel.prctl(kernel.PR_CAP_AMBIENT, kernel.PR_CAP_AMBIENT_RAISE,
                             caps_mod.CAPABILITIES[cap])
            except OSError:
                pass
    os.umask(DEFAULT_UMASK if user.umask is None else user.umask)


def chdir_late(plan: ExecPlan) -> ExecPlan:
    """The chdir root was denied, as the container user; done before the seccomp filters."""
    if plan.cwd_later is not None:
        try:
            os.chdir(plan.cwd_later)
        except OSError as e:
            raise ContainerError(f"process.cwd ({plan.cwd_later}): {e.strerror}") from None
        _verify_cwd(plan.cwd_later)
    return records.replace(plan, cwd_later=None)


def exec_process(plan: ExecPlan) -> NoReturn:
    plan = chdir_late(plan)
    env = dict(item.split("=", 1) for item in plan.env)
    try:
        os.execve(plan.path, plan.args, env)
    except OSError as e:
        raise ContainerError(
            f'process.args[0]: cannot execute "{plan.path}": {e.strerror}'
        ) from None
