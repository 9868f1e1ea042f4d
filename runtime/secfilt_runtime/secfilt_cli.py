"""`secfilt [options] command [args...]`: the original secfilter's command line, on the host's
own root and network, as the calling user, with the runtime's policy engine.

The argv parser is hand-written: secfilt wraps short commands and must start fast (typer alone
costs ~47 ms). Options come before the command; `--opt=value` and `--opt value` for valued
options; booleans take `=0|1|true|false` or stand bare for true (a separate word would be
ambiguous with the command: `secfilt --read-only true` runs true).
"""

from __future__ import annotations

import _signal
import os
import sys

from . import __version__
from .errors import NOT_OUR_PROCFS, SecfiltError
from .policy import parse
from .policy.model import Policy
from .records import field, record
from .waitstatus import exit_code

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn

    from .policy.cgroup_net import CommandCgroup
    from .seccomp import Filters

PROG = "secfilt"
# --verbose: the log goes to stderr, through a pipe of ours (see _stderr_log)
STDERR_LOG = "/dev/stderr"
EXIT_USAGE = 2
EXIT_CANNOT_RUN = 126
EXIT_NOT_FOUND = 127

BOOL_OPTIONS = {name: name for name in parse.BOOL_KEYS}
# option name -> policy key; the aliases are the original's spellings
VALUE_OPTIONS = {**{k: k for k in (*parse.LIST_KEYS, *parse.SCALAR_KEYS)}, **parse.ALIASES}

HELP = f"""\
usage: {PROG} [options] command [args...]

Run command under a secfilter policy: seccomp-BPF in the kernel, a ptrace tracer for the calls
whose paths or addresses matter, Landlock for writes and, under write rules, the host's mounts
read-only in a mount namespace of the command's own. Stdio and exit status pass through.

options:
  --read-only[=0|1]                   no change to any file system
  --allow-write=PATH                  writes allowed at or below PATH only (repeatable;
                                      alias --write-allow); implies read-only elsewhere
  --no-outbound-network[=0|1]         no IPv4/IPv6 destination except loopback
  --allowed-netmask=CIDR              destinations must be inside one (repeatable;
                                      alias --allowed-netmasks; a bare address is one host)
  --allowed-port=N                    destination port must be one (repeatable, 1-65535)
  --allow-resolv[=0|1]                the nameservers of /etc/resolv.conf stay reachable on 53
  --mainstream-network-families[=0|1] socket() only for AF_UNIX, AF_INET, AF_INET6, AF_NETLINK
  --config=FILE                       key=value lines with the option names (# comments);
                                      options on the command line apply on top of it
  --mode=enforce|audit                audit: allow, but log what enforce would deny
  --errno=NAME                        what a denied call returns (default EPERM)
  --log=FILE                          JSON lines, one per denied (or audited) call
  --verbose                           the same log on stderr
  --help, --version
"""


class UsageError(Exception):
    """A command line secfilt cannot run: printed as `secfilt: <message>`, exit 2."""


@record
class Invocation:
    command: list[str]
    configs: list[str] = field(default_factory=list)
    settings: list[parse.Setting] = field(default_factory=list)
    verbose: bool = False


def parse_argv(argv: Sequence[str]) -> Invocation | str:
    """The command line, or "help"/"version". Raises UsageError."""
    inv = Invocation(command=[])
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        if arg in ("-h", "--help"):
            return "help"
        if arg == "--version":
            return "version"
        if not arg.startswith("--"):
            raise UsageError(f"{arg}: unknown option (see --help)")
        name, eq, value = arg[2:].partition("=")
        option = f"--{name}"
        if name in BOOL_OPTIONS or name == "verbose":
            if not eq:
                value = "1"
            if name == "verbose":
                inv.verbose = parse.parse_bool(value, option, strict=False)
            else:
                inv.settings.append(parse.Setting(BOOL_OPTIONS[name], value, option))
        elif name in VALUE_OPTIONS or name == "config":
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"{option}: needs a value")
                value = argv[i]
            if name == "config":
                inv.configs.append(value)
            else:
                key = VALUE_OPTIONS[name]
                items = value.split(",") if key in parse.LIST_KEYS else [value]
                inv.settings += [parse.Setting(key, item.strip(), option) for item in items]
        else:
            raise UsageError(f"{option}: unknown option (see --help)")
        i += 1
    inv.command = list(argv[i:])
    if not inv.command:
        raise UsageError("no command given (see --help)")
    return inv


def policy_of(inv: Invocation) -> Policy:
    """Config files first, then the command line on top of them."""
    settings: list[parse.Setting] = []
    for path in inv.configs:
        settings += parse.read_config_file(path)
    settings += inv.settings
    policy = parse.build(settings, rootfs="/", strict_bools=False)
    if inv.verbose and policy.log_path is None:
        from .records import replace

        policy = replace(policy, log_path=STDERR_LOG)
    elif policy.log_path is not None:
        from .tracer.log import refusal

        refused = refusal(policy.log_path, policy.sources.get("log", "--log"))
        if refused is not None:
            raise UsageError(refused)
    return policy


CACHE_DIR = "/var/cache/secfilt"


def cache_dir() -> str | None:
    """Where compiled filters are kept: /var/cache/secfilt, 0700, root's only; None when it
    cannot be made (the filters are then compiled each time).

    One fixed place, not the environment's ($HOME, $XDG_CACHE_HOME): every command run under
    write rules gets it read-only in its mount namespace, under every name a mount gives it
    (mounts.keep_read_only, views_of), and a place another run chose could be left writable.
    The command runs as the same user: a program it wrote there would be loaded in place of a
    later run's filters. Only for root with CAP_SYS_ADMIN, whose commands always get their
    namespace; a user's commands get one only where the kernel grants a user namespace,
    which may change between runs, so a user's filters are compiled at every start. A path
    with a symlink on the way is not used (the link could be changed)."""
    from . import kernel
    from .policy import mounts

    if os.geteuid() != 0 or not mounts.has_sys_admin():
        return None
    try:
        os.makedirs(CACHE_DIR, mode=0o700, exist_ok=True)
        fd = kernel.openat2(-100, CACHE_DIR, os.O_PATH | os.O_DIRECTORY,
                            resolve=kernel.RESOLVE_NO_SYMLINKS)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None  # not ours alone: a cache others can write could plant a filter
    except OSError:
        return None  # a symlink on the way (ELOOP), or no way to make it
    return CACHE_DIR


def run(policy: Policy, command: list[str]) -> int:
    from . import kernel, seccomp

    if not policy.is_empty and not kernel.procfs_is_own_pid_namespace():
        raise SecfiltError(NOT_OUR_PROCFS)

    # the destination rules in the kernel, race-free: cgroup programs where this caller may
    # attach them (root), else a supervisor that performs the calls itself
    group, supervised = None, False
    if policy.restricts_destinations and not policy.audit:
        from .policy import cgroup_net

        group = cgroup_net.CommandCgroup.make(policy)
        supervised = group is None
    try:
        cache = cache_dir()
        filters = seccomp.prepare(None, policy, cache_dir=cache, supervised=supervised)
        return _run_traced(policy, command, filters, group, cache)
    finally:
        if group is not None:
            group.remove()


def _run_traced(policy: Policy, command: list[str], filters: Filters,
                group: CommandCgroup | None, cache: str | None = None) -> int:
    from . import tracer

    log_path, log_done = (_stderr_log() if policy.log_path == STDERR_LOG
                          else (policy.log_path, lambda: None))
    go_r, go_w = os.pipe()
    # the child's end closes at its exec or exit: how the supervisor learns it failed early
    watch_r, watch_w = os.pipe2(os.O_CLOEXEC)
    # into the command's cgroup at the fork where the kernel can: a cgroup.procs write
    # would wait for an RCU grace period, ~10 ms of every start here
    pid = group.fork_into() if group is not None else None
    moved = pid is not None
    if pid is None:
        pid = os.fork()
    if pid == 0:
        os.close(go_w)
        os.close(watch_r)
        _child(go_r, policy, filters, command, group, moved, cache)
    os.close(go_r)
    os.close(watch_w)
    supervisor = None
    if filters.handoff is not None:
        from . import supervisor as supervisor_mod

        supervisor = supervisor_mod.start(filters.handoff, pid, watch_r, policy, log_path)
    # the terminal's ^C and ^\ are for the command; the tracer must outlive its tracee
    for sig in (_signal.SIGINT, _signal.SIGQUIT):
        _signal.signal(sig, _signal.SIG_IGN)
    for sig in (_signal.SIGTERM, _signal.SIGHUP):
        _signal.signal(sig, lambda s, _f: _forward(pid, s))

    def release() -> None:  # seized: the child may load its filters and exec
        os.write(go_w, b"g")

    try:
        status = tracer.trace_child(pid, policy, container_id=None, log_path=log_path,
                                    release=release, supervised=filters.handoff is not None)
    except BaseException:
        os.close(go_w)  # the child reads EOF and exits without running the command
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        raise
    finally:
        if supervisor is not None:
            supervisor.join(timeout=5)  # every caller is gone: it ends, closing its log
        os.close(watch_r)
        log_done()
    os.close(go_w)
    return exit_code(status)


def _stderr_log() -> tuple[str, Callable[[], None]]:
    """A path the tracer can open that ends on our stderr, and what to call once it is closed.

    /dev/stderr itself cannot be reopened by an unprivileged user when stderr is a pipe another
    user created; a pipe of our own can, and a thread copies it over."""
    import threading

    r, w = os.pipe2(os.O_CLOEXEC)

    def copy() -> None:
        while chunk := os.read(r, 65536):
            os.write(2, chunk)
        os.close(r)

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()

    def done() -> None:  # the tracer closed its end: drain what is left
        os.close(w)
        thread.join()

    return f"/proc/self/fd/{w}", done


def _forward(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _child(go: int, policy: Policy, filters: Filters, command: list[str],
           group: CommandCgroup | None = None, in_group: bool = False,
           cache: str | None = None) -> NoReturn:
    from . import kernel, seccomp
    from .policy import landlock

    code, where = EXIT_CANNOT_RUN, "cannot sandbox the command"
    try:
        if os.read(go, 1) != b"g":
            os._exit(code)  # the parent gave up before starting us
        os.close(go)
        if group is not None:  # first: the later layers may make cgroup.procs unwritable
            group.enter() if in_group else group.join()
        # Python ignores SIGPIPE and SIGXFSZ; an ignored disposition would survive the exec
        for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):
            _signal.signal(sig, _signal.SIG_DFL)
        kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
        if policy.restricts_writes and not policy.audit:
            # the cache too: its protection counts only where the file system is protected
            # (without write rules, or in audit mode, the command could as well rewrite the
            # runtime itself)
            _read_only_mounts(policy, cache)
        landlock.restrict_self(policy)
        seccomp.install(filters)
        where = command[0]
        try:
            os.execvp(command[0], command)
        except FileNotFoundError:
            code = EXIT_NOT_FOUND
            raise
    except BaseException as e:  # whatever it is, the child must not return into the parent
        msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        os.write(2, f"{PROG}: {where}: {msg}\n".encode())
    os._exit(code)


def _read_only_mounts(policy: Policy, cache: str | None) -> None:
    """The kernel layer for what Landlock cannot restrict (chmod, chown, utimes, chattr,
    xattrs): the host's mounts read-only in a namespace of the child's own, the allow-write
    paths writable on top. Where the kernel refuses an unprivileged user namespace the tracer
    alone judges those calls, as `check` reports; --verbose says so too. `cache`: the filter
    cache, read-only in that namespace whatever the allow-write paths (cache_dir)."""
    from .policy import mounts

    write_source = policy.sources.get("allow-write", "--allow-write")
    how = mounts.private_view(policy.allow_write, write_source=write_source,
                              read_only_source=policy.sources.get("read-only", write_source),
                              keep=cache)
    if how is None and cache is not None:
        # cache_dir hands one out only to a caller that always gets its namespace
        raise SecfiltError(f"cannot keep the filter cache {cache} read-only")
    if how is None and policy.log_path == STDERR_LOG:
        os.write(2, f"{PROG}: warning: no user namespace for read-only mounts here: chmod, "
                 "chown, utimes, chattr and xattrs are judged by the tracer alone\n".encode())


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        parsed = parse_argv(args)
        if parsed == "help":
            sys.stdout.write(HELP)
            sys.exit(0)
        if parsed == "version":
            sys.stdout.write(f"{PROG} (secfilt-runtime) {__version__}\n")
            sys.exit(0)
        assert isinstance(parsed, Invocation)
        policy = policy_of(parsed)
    except (UsageError, SecfiltError) as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        sys.exit(EXIT_USAGE)
    try:
        sys.exit(run(policy, parsed.command))
    except (SecfiltError, OSError) as e:  # OSError: ptrace or seccomp refused by the kernel
        sys.stderr.write(f"{PROG}: {e}\n")
        sys.exit(EXIT_CANNOT_RUN)


if __name__ == "__main__":
    main()
