"""`exec`: one more process in a running container, confined as the init is.

```
secfilt-runtime exec           (host; the process's parent, as runc's exec is)
 └─ stage1                      placed in the container's cgroup, setns into the init's
 │                              namespaces (user first), clones the process, exits
 └─ process (CLONE_PARENT)      in the container's pid namespace: pty, rlimits, cwd, env,
                                executable -> "ready"; the container's tracer seizes it;
                                <- "start": user, caps, no_new_privs, filters -> execve
```

The process gets the same seccomp programs as the init (linux.seccomp and the policy's), built
from what create saved in state.json (see confinement: config.json may have been edited since),
and is seized by the container's tracer before it loads them. So are the capabilities and
rlimits the process does not give itself: the init's, as saved. config.json gives only the
other defaults of the process itself (args, env, user, cwd...), as it does for runc's exec.
A capability that defeats the policy (confinement.DEFEATING: CAP_NET_ADMIN under destination
rules) is refused, before anything is made, unless the init held it: `--cap` adds it as runc's
does, and a process file may list it, but only the bundle can grant it.
"""

from __future__ import annotations

import _signal
import os

from . import confinement, jsonio, kernel, nsjoin, records, seccomp
from . import spec as spec_mod
from .cleanup import Cleanup
from .container import process, terminal
from .container.cgroups import Cgroup
from .container.confine import _fail, confine_and_exec
from .errors import ConfigError, ContainerError, StateError, warn
from .lifecycle import (
    _ALL_SIGNALS,
    Child,
    refuse_what_is_not_applied,
    wait_forwarding_signals,
    write_pid_file,
)
from .log import log
from .policy.model import Policy
from .spec import Process, Spec, User

# imported here, not in the children: after setns into the container's mount namespace the
# host's files (this package's included) are out of reach
from .state import StateStore
from .sync import Channel, ChildVanished

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn


@records.record(frozen=True)
class ExecOptions:
    """What the command line says about the process (runc's exec flags)."""

    args: tuple[str, ...] = ()
    process_file: str | None = None
    tty: bool = False
    cwd: str | None = None
    env: tuple[str, ...] = ()
    user: str | None = None  # UID[:GID]
    additional_gids: tuple[int, ...] = ()
    no_new_privs: bool = False
    cap_add: tuple[str, ...] = ()


def parse_user(text: str) -> tuple[int, int | None]:
    uid_s, _, gid_s = text.partition(":")
    try:
        uid = int(uid_s)
        gid = int(gid_s) if gid_s else None
    except ValueError:
        raise ConfigError(f"--user {text}: must be UID[:GID] (numbers)") from None
    if uid < 0 or (gid is not None and gid < 0):
        raise ConfigError(f"--user {text}: ids cannot be negative")
    return uid, gid


def build_process(base: Process | None, opts: ExecOptions, saved: confinement.SavedProcess,
                  container_id: str) -> Process:
    """The process to execute: --process FILE as it is, or the container's process with the
    command line's args and overrides (runc's rule: env adds to the config's, cwd and user
    replace, --cap adds). Either way, capabilities and rlimits it does not give are the
    init's as create saved them (runc's exec takes the container config's), not config.json's
    now and never the runtime's own."""
    if opts.process_file is not None:
        if opts.args:
            raise ConfigError("exec: give either --process FILE or a command, not both")
        # as runc, the command line's overrides (--cap included) are for its own form only
        proc = _load_process_file(opts.process_file)
        return _with_saved(proc, proc.capabilities is None, not proc.rlimits, saved,
                           container_id)
    if not opts.args:
        raise ConfigError("exec: no command given (args or --process FILE)")
    if base is None:
        raise ConfigError("exec: config.json has no process to take the defaults from")
    proc = _with_saved(base, True, True, saved, container_id, older_state_keeps_own=True)
    user = proc.user
    if opts.user is not None:
        uid, gid = parse_user(opts.user)
        user = User(uid=uid, gid=proc.user.gid if gid is None else gid, umask=proc.user.umask,
                    additional_gids=())
    if opts.additional_gids:
        user = records.replace(user, additional_gids=opts.additional_gids)
    caps = proc.capabilities
    if opts.cap_add and caps is not None:
        # runc adds to ambient only when there is an inheritable set: the kernel raises an
        # ambient cap only if it is inheritable too
        grown = ("bounding", "effective", "permitted", *(("ambient",) if caps.inheritable
                                                         else ()))
        caps = records.replace(caps, **{
            k: tuple(dict.fromkeys(getattr(caps, k) + opts.cap_add)) for k in grown})
    # the init's as create saved it, not config.json's now (an older state: config.json's)
    no_new_privs = proc.no_new_privileges if saved.no_new_privileges is None \
        else saved.no_new_privileges
    return records.replace(
        proc, args=opts.args, terminal=opts.tty, cwd=opts.cwd or proc.cwd,
        env=proc.env + opts.env, user=user, capabilities=caps,
        no_new_privileges=no_new_privs or opts.no_new_privs,
    )


def _with_saved(proc: Process, caps: bool, rlimits: bool, saved: confinement.SavedProcess,
                container_id: str, older_state_keeps_own: bool = False) -> Process:
    """`proc` with the init's saved capabilities (`caps`) and rlimits (`rlimits`).
    `older_state_keeps_own`: a state.json from before their saving keeps `proc`'s (config.json's
    process: what exec gave before), with a warning, instead of refusing."""
    if caps and saved.capabilities is confinement.MISSING and older_state_keeps_own:
        warn(f"container {container_id}: state.json has no saved capabilities (an older "
             "secfilt-runtime created it): exec takes config.json's as they are now")
    elif caps:
        if saved.capabilities is confinement.MISSING:
            raise StateError(
                f"container {container_id}: state.json has no saved capabilities of the "
                "container (written by an older secfilt-runtime): exec refused rather than "
                "run with the runtime's own; give process.capabilities in --process FILE, "
                "or delete and create the container again")
        proc = records.replace(proc, capabilities=saved.capabilities)
    if rlimits and saved.rlimits is not None:  # an older state: what proc says, as before
        proc = records.replace(proc, rlimits=saved.rlimits)
    return proc


def _load_process_file(path: str) -> Process:
    try:
        with open(path, "rb") as f:
            doc = jsonio.loads(jsonio.read_bounded(f, spec_mod.CONFIG_MAX_BYTES))
    except FileNotFoundError:
        raise ConfigError(f"--process {path}: no such file") from None
    except OSError as e:
        raise ConfigError(f"--process {path}: cannot read: {e.strerror}") from None
    except (jsonio.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--process {path}: invalid JSON: {e}") from None
    from . import schema

    # checked as the process of a config: messages name process.<field>
    schema.validate_config({"ociVersion": "1.2.0", "root": {"path": "rootfs"}, "process": doc},
                           source=f"--process {path}")
    return spec_mod._process(doc)


def exec_process(store: StateStore, container_id: str, opts: ExecOptions, *,
                 detach: bool = False, pid_file: str | None = None,
                 console_socket: str | None = None, preserve_fds: int = 0) -> int:
    """Run the process; with detach, return 0 once it executes, else its exit code."""
    st = store.load(container_id)
    status = st.live_status()
    if status == "stopped":
        raise StateError("cannot exec in a stopped container")
    if status == "paused":
        raise StateError("cannot exec in a paused container")
    if status == "creating":
        raise StateError("cannot exec in a container that is being created")
    from .validcache import DIR_NAME

    spec = spec_mod.load_bundle(st.bundle,
                                validation_cache=os.path.join(store.root, DIR_NAME))
    # the confinement create saved, not config.json's (which may have been edited since)
    policy, saved_seccomp = confinement.from_state(st.confinement, st.id,
                                                   traced=bool(st.tracer_socket))
    saved = confinement.saved_process(st.confinement, st.id)
    proc = build_process(spec.process, opts, saved, st.id)
    # a capability that defeats the policy's rules (CAP_NET_ADMIN against the destinations)
    # only if the container's init held it: the bundle's choice, never exec's (--cap adds
    # it, as runc's does; so does a process file)
    refused = confinement.refused_capabilities(policy, proc.capabilities, saved.capabilities)
    if refused:
        assert policy is not None
        raise ConfigError(f"container {st.id}: " + confinement.capability_refusal(
            policy, refused, saved.capabilities))
    if proc.terminal and detach and not console_socket:
        raise ConfigError("--tty: cannot allocate a terminal with --detach and no "
                          "--console-socket")
    if console_socket and not proc.terminal:
        raise ConfigError("--console-socket: the process has no terminal (--tty)")
    spec = records.replace(spec, process=proc,
                               linux=records.replace(spec.linux, seccomp=saved_seccomp),
                               session_keyring=st.session_keyring or None)
    refuse_what_is_not_applied(spec, proc)
    for warning in process.check(proc):
        log.warning(warning)
    filters = seccomp.prepare(saved_seccomp, policy,
                              cache_dir=os.path.join(store.root, "seccomp-cache"))
    joins = nsjoin.open_for(st.pid, st.init_start_time)
    cgroup = Cgroup.from_dict(st.cgroup)
    old_mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _ALL_SIGNALS)
    try:
        with Cleanup() as cleanup:
            cleanup.callback(joins.close)
            ours, theirs = Channel.pair()
            cleanup.callback(ours.close)
            first = os.fork()
            if first == 0:
                ours.close()
                _stage1_main(theirs, joins, spec, filters, policy)
            theirs.close()
            joins.close()
            stage1 = Child(first)
            cleanup.callback(stage1.kill_and_reap)
            cgroup.add(first)
            try:
                ours.send_go()
                child = Child(ours.expect("pid", "exec's stage1")["pid"])
            except ChildVanished as e:
                stage1.reap()
                raise ContainerError(str(e)) from None
            cleanup.callback(child.kill_and_reap)
            stage1.reap()
            ours.send("proceed")  # the process shares stage1's channel: it speaks after it
            master = None
            if proc.terminal:
                master = ours.expect("pty", "the exec'd process")["fds"][0]
                cleanup.callback(os.close, master)
            ours.expect("ready", "the exec'd process")
            if policy is not None:
                from . import tracer

                tracer.add(st.tracer_socket, child.pid)
            # built before "start": once its filters are loaded the process spins until its
            # listener is taken, and nothing but the hand-over itself should keep it waiting
            agent_state = {**st.to_oci(), "status": "running"} if filters.needs_listener \
                else None
            ours.send("start", preserve_fds=preserve_fds)
            if agent_state is not None:  # the agent gets this process's listener too, as runc
                seccomp.hand_listener_to_agent(filters, child.pid, agent_state, ours.fileno())
            msg = ours.recv()  # end-of-file: execve succeeded
            if msg is not None:
                raise ContainerError(msg.get("message") or f"exec: unexpected {msg['type']!r}")
            if pid_file:
                write_pid_file(pid_file, child.pid, cleanup)
            console = None
            if master is not None:
                # only for a terminal (threads, termios); here in the runtime, which stays in
                # the host's namespaces
                from .console import Console, send_to_socket

                if console_socket:
                    send_to_socket(console_socket, master)
                else:
                    console = Console(os.dup(master))
                    console.start()
            cleanup.pop_all()
            if master is not None:
                os.close(master)
            ours.close()
            if detach:
                return 0
            try:
                return wait_forwarding_signals(child, console)
            finally:
                if console is not None:
                    console.close()
    finally:
        if filters.handoff is not None:  # when the hand-over never came (it closes it too)
            filters.handoff.close()
        _signal.pthread_sigmask(_signal.SIG_SETMASK, old_mask)


def _stage1_main(chan: Channel, joins: nsjoin.Joins, spec: Spec, filters: seccomp.Filters,
                 policy: Policy | None) -> NoReturn:
    try:
        kernel.prctl(kernel.PR_SET_PDEATHSIG, _signal.SIGKILL)
        chan.expect("go", "the runtime")  # placed in the container's cgroup
        nsjoin.enter(joins)
        pid = kernel.clone_process(kernel.CLONE_PARENT)
        if pid == 0:
            _process_main(chan, spec, filters, policy)
        chan.send("pid", pid=pid)
    except BaseException as exc:  # noqa: BLE001 - reported, then _exit
        _fail(chan, exc)
    os._exit(0)


def _process_main(chan: Channel, spec: Spec, filters: seccomp.Filters,
                  policy: Policy | None) -> NoReturn:
    try:
        proc = spec.process
        assert proc is not None
        kernel.prctl(kernel.PR_SET_PDEATHSIG, _signal.SIGKILL)
        chan.expect("proceed", "the runtime")
        os.setsid()
        if proc.terminal:
            master, slave = terminal.open_pty(proc.user.uid)
            chan.send("pty", fds=[master])
            os.close(master)
            terminal.make_controlling(slave)
        plan = process.prepare(spec)
        chan.send("ready")
        start: dict[str, Any] = chan.expect("start", "the runtime")
        confine_and_exec(spec, plan, filters, policy, int(start.get("preserve_fds", 0)))
    except BaseException as exc:  # noqa: BLE001
        _fail(chan, exc)
    os._exit(1)
