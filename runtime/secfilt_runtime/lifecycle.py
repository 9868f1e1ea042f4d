"""Container lifecycle operations: launching a container and running it in the foreground.

Every step that creates something (state directory, cgroup, processes) registers its undo with
a Cleanup stack (cleanup.py) before the next step, so a failure anywhere leaves nothing behind.
"""

from __future__ import annotations

import _signal
import os
import select
import time

# `run` is timed against runc: modules only some containers need (hooks, terminal, policy
# parsing, the tracer) are imported where they are used, not here
from . import records, schema, seccomp, signals
from . import spec as spec_mod
from .cleanup import Cleanup
from .container import namespaces, process, system
from .container.cgroups import UNIFIED, Cgroup
from .errors import NOT_OUR_PROCFS, ConfigError, ContainerError
from .log import log, utc_now
from .policy.model import Policy
from .records import record
from .spec import Process, Spec
from .state import SHORT_SOCKET_DIR, START_SOCKET, Reserved, State, StateStore, proc_start_time
from .sync import Channel, ChildVanished, seqpacket_socket
from .waitstatus import exit_code

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from collections.abc import Callable

    from .console import Console

# Every signal the runtime forwards or waits for. SIGKILL and SIGSTOP cannot be caught.
_ALL_SIGNALS = frozenset(range(1, _signal.NSIG)) - {_signal.SIGKILL, _signal.SIGSTOP, 32, 33}


@record
class Prepared:
    """What create and run compute before anything is created."""

    spec: Spec
    plan: namespaces.NamespacePlan
    policy: Policy | None
    filters: seccomp.Filters


def prepare(bundle: str, root: str, session_keyring: str | None = None) -> Prepared:
    """Load and check the bundle, parse the policy, compile the filters: every refusal
    happens here, before the state entry, cgroup or any process exists. `session_keyring`:
    see Spec.session_keyring."""
    from .validcache import DIR_NAME

    spec = spec_mod.load_bundle(bundle, validation_cache=os.path.join(root, DIR_NAME))
    if session_keyring is not None:
        spec = records.replace(spec, session_keyring=session_keyring)
    plan = check_bundle(spec)
    policy = None
    if any(k.startswith(schema.SECFILTER_PREFIX) for k in spec.annotations):
        from .policy import parse as policy_parse  # None without such a key: skip the import

        policy = policy_parse.from_annotations(spec.annotations, spec.root.path,
                                               mounts=spec.mounts)
    if policy is not None:
        from . import kernel

        if not kernel.procfs_is_own_pid_namespace():
            raise ContainerError(NOT_OUR_PROCFS)
    if policy is not None and policy.log_path is not None:
        from .tracer.log import refusal

        refused = refusal(policy.log_path, policy.sources.get("log", "org.secfilter.log"))
        if refused is not None:
            raise ConfigError(refused)
    if policy is not None and policy.restricts_destinations and not plan.has("cgroup"):
        # the kernel's half of the destination rules sits on the container's cgroup
        # (guard_destinations): where cgroup2 is mounted with nsdelegate, a cgroup namespace
        # rooted there keeps even root from writing itself into another cgroup (elsewhere the
        # init's read-only cgroup mounts do: cgroup_net.seal_cgroup_mounts)
        plan = records.replace(plan, new=plan.new | {"cgroup"})
    filters = seccomp.prepare(spec.linux.seccomp, policy,
                              cache_dir=os.path.join(root, "seccomp-cache"))
    return Prepared(spec, plan, policy, filters)


@record
class Launched:
    """A container whose init is set up and waits for "start"."""

    state: State
    channel: Channel
    cgroup: Cgroup
    init: Child
    console: Console | None = None
    filters: seccomp.Filters | None = None


class Child:
    """A child process of the runtime. Until it is reaped its pid cannot be reused, so signals
    sent by pid reach it and nothing else; every reap goes through here for that reason."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.status: int | None = None

    def reap(self, flags: int = 0) -> int | None:
        if self.status is None:
            pid, status = os.waitpid(self.pid, flags)
            if pid == self.pid:
                self.status = status
        return self.status

    def signal(self, sig: int) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill_and_reap(self) -> None:
        self.signal(_signal.SIGKILL)
        try:
            self.reap()
        except ChildProcessError:
            pass


def check_bundle(spec: Spec) -> namespaces.NamespacePlan:
    """Checks that need the filesystem or cross several fields, done before anything is created."""
    proc = schema.require_process(spec)
    refuse_what_is_not_applied(spec, proc)
    for warning in process.check(proc):
        log.warning(warning)
    if not os.path.isdir(spec.root.path):
        what = "no such directory" if not os.path.exists(spec.root.path) else "not a directory"
        raise ConfigError(f"root.path ({spec.root.path}): {what}")
    plan = namespaces.plan(spec.linux)
    system.check(spec, plan)
    return plan


def refuse_what_is_not_applied(spec: Spec, proc: Process) -> None:
    """Settings the runtime cannot honour yet are refused, never skipped: a container run
    without its hooks or its confinement would be weaker than the config says."""
    if spec.hooks:
        from . import hooks as hooks_mod

        hooks_mod.parse(spec.hooks)
    for field, value in (("process.apparmorProfile", proc.apparmor_profile),
                         ("process.selinuxLabel", proc.selinux_label),
                         ("linux.mountLabel", spec.linux.mount_label)):
        if value:
            raise ConfigError(f"{field}: security labels are not applied by secfilt-runtime")
    if (spec.linux.personality or {}).get("flags"):
        raise ConfigError("linux.personality.flags: not supported (only the domain is)")


def launch(
    spec: Spec, plan: namespaces.NamespacePlan, container_id: str, store: StateStore,
    cleanup: Cleanup, filters: seccomp.Filters | None = None,
    on_init: Callable[[State], None] | None = None, created: str | None = None,
) -> Launched:
    """Create the cgroup and the init; return when the init is ready to execute the process.
    `on_init(state)` is called as soon as the init's pid is known (state.pid), while the init
    sets itself up; the create hooks run when the init pauses for them, before its
    pivot_root (spec.has_create_hooks).

    The caller must have blocked all signals (so none is lost before it can forward them).
    """
    me = os.getpid()
    from .confinement import to_state  # plain JSON for state.json: what exec confines by

    state = State(
        id=container_id,
        bundle=spec.bundle,
        status="creating",
        created=created or utc_now(),
        annotations=spec.annotations,
        owner=_owner(),
        rootfs=spec.root.path,
        runtime_pid=me,
        runtime_start_time=proc_start_time(me) or 0,
        hooks=spec.hooks,
        confinement=to_state(filters.policy if filters is not None else None,
                             spec.linux.seccomp, spec.process),
        session_keyring=spec.session_keyring or "",
    )
    store.save(state)  # "creating": should this process die, delete still finds what to clean
    cgroup = Cgroup.for_container(spec.linux.cgroups_path, container_id)
    log.debug(f"{container_id}: cgroup {cgroup.to_dict()}")
    cleanup.callback(cgroup.destroy)
    try:
        cgroup.create()
    finally:
        state.cgroup = cgroup.to_dict()
        store.save(state)
    # after the kill: an init whose pid never reached us (stage1 died first) is still our child
    cleanup.callback(_reap_unknown_children)
    cleanup.callback(cgroup.kill_all, _signal.SIGKILL)
    cgroup.apply(spec.linux.resources, spec.linux.devices)
    policy = filters.policy if filters is not None else None
    if policy is not None:
        guard_destinations(cgroup, policy, container_id)

    ours, theirs = Channel.pair()
    ours.while_waiting = _stop_if_told
    cleanup.callback(ours.close)
    from .container.init import stage1_main  # the set-up's modules: not exec's or delete's

    stage1 = os.fork()
    if stage1 == 0:
        ours.close()
        stage1_main(theirs, spec, plan, filters)
    theirs.close()
    stage1_child = Child(stage1)
    cleanup.callback(stage1_child.kill_and_reap)

    join_late = _init_may_join_late(spec, plan)
    if not join_late:
        cgroup.add(stage1)  # stage1, then the init it forks, are in the cgroup from the start
    try:
        ours.send_go()
        if plan.new_user:
            ours.expect("idmap", "stage1")
            namespaces.write_id_maps(stage1, spec.linux)
            ours.send("idmap-done")
        init = Child(ours.expect("init-pid", "stage1")["pid"])
    except ChildVanished as e:
        raise ContainerError(_why_vanished(e, stage1_child, cgroup, spec)) from None
    log.debug(f"{container_id}: init is pid {init.pid}")
    cleanup.callback(init.kill_and_reap)
    state.pid = init.pid
    if on_init is not None:
        try:
            on_init(state)
        except ContainerError:
            # on_init (the tracer's spawn) runs while the init sets up: an init that failed
            # meanwhile cannot be seized, and its own report, naming the field, is the error
            report = _report_of_exited_init(ours, init, cgroup, spec)
            if report is None:
                raise
            raise ContainerError(report) from None
    if join_late:
        # while the init sets its root up (it runs nothing of the container's before `start`)
        cgroup.add(init.pid)
    stage1_child.reap()
    state.init_start_time = proc_start_time(init.pid) or 0
    console = None
    try:
        if spec.has_create_hooks:
            ours.expect("hooks", "the container init")
            run_create_hooks(state, spec)
            ours.send("hooks-done")
        if spec.process is not None and spec.process.terminal:
            from .console import Console

            console = Console(ours.expect("pty", "the container init")["fds"][0])
            cleanup.callback(console.close)
        ours.expect("ready", "the container init")
    except ChildVanished as e:
        raise ContainerError(_why_vanished(e, init, cgroup, spec)) from None
    store.save(state)  # still "creating": the caller says when the container is created
    return Launched(state=state, channel=ours, cgroup=cgroup, init=init, console=console,
                    filters=filters)


def _owner() -> str:
    return "root" if os.geteuid() == 0 else str(os.geteuid())


def _reserve(store: StateStore, container_id: str, spec: Spec, created: str) -> Reserved:
    """store.reserve with what `state` prints of a create that dies before launch saves."""
    return store.reserve(container_id, bundle=spec.bundle, created=created, owner=_owner(),
                         rootfs=spec.root.path)


def _init_may_join_late(spec: Spec, plan: namespaces.NamespacePlan) -> bool:
    """Whether the init may join its cgroup after it is forked, while it sets itself up, rather
    than stage1 before: a v1 host makes the first cgroup.procs write wait for an RCU grace
    period (5-17 ms here) unless container.attach_lock kept the fast path open, and the wait
    then overlaps the init's own set-up. Not where the cgroup must hold from the start: a new
    cgroup namespace is rooted at the cgroup it is made in; a cgroup mount binds the cgroup the
    init reads in /proc/self/cgroup while it sets up (a late join let it bind the runtime's);
    and a pids or memory limit is what the init's fork and set-up must meet (a limit too low
    for them is reported by name only when they fail inside it)."""
    resources = spec.linux.resources
    limits = ((resources.get("pids") or {}).get("limit"),
              (resources.get("memory") or {}).get("limit"))
    return "cgroup" not in plan.new \
        and not any(m.type in ("cgroup", "cgroup2") for m in spec.mounts) \
        and not any(isinstance(limit, int) and limit > 0 for limit in limits)


_STOP_SIGNALS = frozenset({_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP})
_REPORT_WAIT_SECONDS = 2.0


def _stop_if_told() -> None:
    """During setup nothing runs yet to forward a signal to: stopping means giving up (the
    caller's cleanup then removes what was created). Other signals stay pending for later."""
    info = _signal.sigtimedwait(_STOP_SIGNALS, 0)
    if info is not None:
        raise ContainerError(
            f"setup interrupted by {signals.name(info.si_signo)}; nothing was started"
        )


def guard_destinations(cgroup: Cgroup, policy: Policy, container_id: str) -> None:
    """The policy's destination rules on the container's cgroup2 directory, checked by the
    kernel on the address it uses (policy.cgroup_net): before any process of the container
    exists, so every socket it will ever create is bound by them."""
    if not policy.restricts_destinations:
        return  # (without importing cgroup_net, as a write-only policy need not)
    from .policy import cgroup_net

    if not cgroup_net.applies(policy):
        return
    directory = cgroup.paths.get(UNIFIED)
    if directory is None:
        log.warning(f"{container_id}: no cgroup2 hierarchy: the tracer alone judges "
                    "destination addresses (racy)")
        return
    try:
        cgroup_net.attach(directory, policy)
    except OSError as e:
        raise ContainerError(f"cannot attach the destination rules to {directory}: {e}") \
            from None


def _reap_unknown_children() -> None:
    """Reap what the cgroup kill left as zombies; the runtime has no children of its own.
    Each exit wakes the wait (SIGCHLD, blocked so it stays pending), no sleeping poll."""
    deadline = time.monotonic() + 1
    old = _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGCHLD})
    try:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                _signal.sigtimedwait({_signal.SIGCHLD}, left)
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, old)


def _why_vanished(e: ChildVanished, child: Child, cgroup: Cgroup, spec: Spec) -> str:
    """Explain a child that died without a report: usually the kernel killed it."""
    status = child.reap()
    message = str(e)
    if status is not None and os.WIFSIGNALED(status):
        message += f" (killed by {signals.name(os.WTERMSIG(status))})"
    if cgroup.oom_kills():
        limit = spec.linux.resources.get("memory", {}).get("limit")
        message += (f": the container's cgroup ran out of memory "
                    f"(linux.resources.memory.limit is {limit})")
    return message


def _report_of_exited_init(chan: Channel, init: Child, cgroup: Cgroup, spec: Spec) -> str | None:
    """Why the init failed, if it has exited (not reaped: Child.reap does that); None while it
    lives. Its messages end with its error or the channel's end-of-file: it holds the only
    other end once stage1 has exited, which stage1 does right after naming the init."""
    try:
        if os.waitid(os.P_PID, init.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            return None
    except ChildProcessError:
        return None  # reaped already: not ours to explain here
    while True:
        # its report is written before it exits; a process of its that still held the
        # channel would keep the end-of-file away: never wait for more than what is there
        if not select.select([chan.sock], [], [], _REPORT_WAIT_SECONDS)[0]:
            msg = None
        else:
            try:
                msg = chan.recv()
            except ConnectionResetError:
                msg = None
        if msg is None:
            return _why_vanished(ChildVanished("the container init exited during setup "
                                               "without a report"), init, cgroup, spec)
        for fd in msg["fds"]:
            os.close(fd)
        if msg["type"] == "error":
            return msg["message"]


def start(launched: Launched, store: StateStore) -> None:
    """Let the init execute the container process; return once execve has succeeded.

    The state says running before the process can run: it may act (and be observed) before the
    runtime hears that execve succeeded. If execve fails, the container is torn down anyway.
    """
    launched.state.status = "running"
    store.save(launched.state)
    launched.channel.send("start")
    if launched.filters is not None and launched.filters.needs_listener:
        seccomp.hand_listener_to_agent(
            launched.filters, launched.init.pid,
            {**launched.state.to_oci(), "status": "creating"}, launched.channel.fileno())
    msg = launched.channel.recv()  # end-of-file: the close-on-exec socket went with execve
    if msg is not None:
        if msg.get("type") == "error":
            raise ContainerError(msg["message"])
        raise ContainerError(f"the container init sent {msg.get('type')!r} instead of starting")


def wait_forwarding_signals(init: Child, console: Console | None = None) -> int:
    """Forward every signal the runtime receives to the container's init until it exits.

    All signals are blocked (see run), so none is lost between fork and this loop, and SIGCHLD
    is taken synchronously too: no handler, no race with the exit.
    """
    while True:
        info = _signal.sigwaitinfo(_ALL_SIGNALS)
        if info.si_signo == _signal.SIGWINCH and console is not None:
            console.resize()
        elif info.si_signo != _signal.SIGCHLD:
            init.signal(info.si_signo)
        elif init.reap(os.WNOHANG) is not None:
            return exit_code(init.status)


def write_pid_file(path: str, pid: int, cleanup: Cleanup) -> None:
    """Write atomically (engines poll for this file); removed when the container is gone."""
    path = os.path.abspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.rename(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        raise ContainerError(f"--pid-file {path}: {e.strerror}") from None
    cleanup.callback(_unlink_quietly, path)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def attach_tracer(state: State, policy: Policy, store: StateStore, cleanup: Cleanup) -> None:
    """One tracer per container, seizing the init before it may load its filters (it loads
    them only after "start"); it serves every process of the container, `exec`'s too, through
    its control socket in the state directory, and leaves when the last one is gone. Spawned
    while the init sets itself up (~6 ms here, off the critical path)."""
    from . import tracer

    state.tracer_socket = tracer_socket_path(store, state.id)
    pid = tracer.spawn(state.pid, policy, container_id=state.id, log_path=policy.log_path,
                       control_socket=state.tracer_socket)
    state.tracer_pid = pid
    state.tracer_start_time = proc_start_time(pid) or 0
    store.save(state)
    cleanup.callback(_kill_if_alive, pid, state.tracer_start_time)


_SUN_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


def tracer_socket_path(store: StateStore, container_id: str) -> str:
    """<state dir>/tracer.sock, or, when an engine's --root and a 64-character id make that
    too long for a unix socket, a name derived from it in a root-only directory of /run
    (recorded in state.json; delete removes it)."""
    path = os.path.join(store.path(container_id), "tracer.sock")
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return path
    import hashlib

    os.makedirs(SHORT_SOCKET_DIR, mode=0o700, exist_ok=True)
    return os.path.join(SHORT_SOCKET_DIR,
                        hashlib.sha256(os.fsencode(path)).hexdigest()[:32] + ".sock")


def _kill_if_alive(pid: int, start_time: int) -> None:
    from .ops import signal_if_alive

    signal_if_alive(pid, start_time, _signal.SIGKILL)


def run_create_hooks(st: State, spec: Spec) -> None:
    """prestart and createRuntime in the runtime's namespaces, createContainer in the
    container's (executable resolved in ours first), all with the state "creating"."""
    from . import hooks as hooks_mod

    state = {**st.to_oci(), "status": "creating", "pid": st.pid}
    for phase in ("prestart", "createRuntime"):
        hooks_mod.run_phase(phase, spec.hooks, state, while_waiting=_stop_if_told)
    if spec.hooks.get("createContainer"):
        from . import nsjoin

        joins = nsjoin.open_for(st.pid, st.init_start_time)
        try:
            hooks_mod.run_phase("createContainer", spec.hooks, state,
                                enter=lambda: nsjoin.enter_and_fork(joins), open_first=True,
                                while_waiting=_stop_if_told)
        finally:
            joins.close()


def session_keyring_name(container_id: str, new_keyring: bool = True) -> str | None:
    """The session keyring a container's processes join: a new one of runc's name, or the
    caller's (None) with --no-new-keyring. Joining the caller's would hand the container the
    keys of whoever ran the runtime (root's session keyring, say), as possessor."""
    return f"_ses.{container_id}" if new_keyring else None


def create(bundle: str, container_id: str, root: str, *, pid_file: str | None = None,
           console_socket: str | None = None, preserve_fds: int = 0,
           new_keyring: bool = True) -> None:
    """`create`: set the container up and return, its init waiting for `start`.

    The init is our child (stage1 clones it with CLONE_PARENT); when we exit it is
    reparented to our caller when that is a subreaper (conmon, containerd's shim), as with
    runc. It waits on start.sock in the state directory, which `start` connects to.
    """
    prepared = prepare(bundle, root, session_keyring_name(container_id, new_keyring))
    spec = prepared.spec
    assert spec.process is not None
    if spec.process.terminal and not console_socket:
        raise ConfigError("process.terminal: a terminal needs --console-socket with create "
                          "(create returns while the container lives on)")
    if not spec.process.terminal and console_socket:
        raise ConfigError("--console-socket: process.terminal is false in config.json")
    store = StateStore(root)
    old_mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _ALL_SIGNALS)
    try:
        created = utc_now()
        with _reserve(store, container_id, spec, created), Cleanup() as cleanup:
            launched = _set_up(prepared, container_id, store, cleanup, created)
            if launched.console is not None:
                from .console import send_to_socket

                send_to_socket(console_socket or "", launched.console.master)
            if pid_file:
                write_pid_file(pid_file, launched.state.pid, cleanup)
            listener = start_listener(store, container_id)
            try:
                launched.channel.send("wait-start", fds=[listener.fileno()],
                                      preserve_fds=preserve_fds)
            finally:
                listener.close()
            launched.channel.expect("waiting", "the container init")
            launched.state.status = "created"
            launched.state.runtime_pid = launched.state.runtime_start_time = 0
            store.save(launched.state)
            cleanup.pop_all()  # the container stays: start and delete take over
            launched.channel.close()
            if launched.console is not None:
                os.close(launched.console.master)
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, old_mask)


def start_listener(store: StateStore, container_id: str) -> _socket.socket:
    """The socket the created init waits on, listening. Bound through /proc/self/fd of the
    state directory: a --root of engines (containerd's) can exceed sun_path's 108 bytes."""
    sock = seqpacket_socket()
    dirfd = os.open(store.path(container_id), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old = os.umask(0o077)
        try:
            sock.bind(f"/proc/self/fd/{dirfd}/{START_SOCKET}")
        finally:
            os.umask(old)
        sock.listen(4)
    except BaseException:
        sock.close()
        raise
    finally:
        os.close(dirfd)
    return sock


def _set_up(prepared: Prepared, container_id: str, store: StateStore,
            cleanup: Cleanup, created: str | None = None) -> Launched:
    """What create and run share: the init up and seized by its tracer, the create hooks run;
    every step undone by `cleanup` unless the caller keeps the container."""
    cleanup.callback(store.remove, container_id)
    policy = prepared.policy
    launched = launch(prepared.spec, prepared.plan, container_id, store, cleanup,
                      prepared.filters,
                      on_init=None if policy is None else (
                          lambda state: attach_tracer(state, policy, store, cleanup)),
                      created=created)
    return launched


def run(bundle: str, container_id: str, root: str, pid_file: str | None = None,
        new_keyring: bool = True) -> int:
    """`run`: create and start a container, forward signals, return its exit code."""
    prepared = prepare(bundle, root, session_keyring_name(container_id, new_keyring))
    spec = prepared.spec
    store = StateStore(root)
    old_mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _ALL_SIGNALS)
    try:
        created = utc_now()
        with _reserve(store, container_id, spec, created), Cleanup() as cleanup:
            launched = _set_up(prepared, container_id, store, cleanup, created)
            launched.state.status = "created"
            store.save(launched.state)
            if pid_file:
                write_pid_file(pid_file, launched.state.pid, cleanup)
            if spec.hooks.get("startContainer"):
                run_start_hooks(launched.state)
            start(launched, store)
            if spec.hooks.get("poststart"):
                from . import hooks as hooks_mod

                hooks_mod.run_phase("poststart", spec.hooks, launched.state.to_oci(),
                                    warn=log.warning)
            if launched.console is not None:
                launched.console.start()
            code = wait_forwarding_signals(launched.init, launched.console)
            log.debug(f"{container_id}: init exited, status {code}")
            stopped = ({**launched.state.to_oci(), "status": "stopped"}
                       if spec.hooks.get("poststop") else {})
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, old_mask)
    # after the container is deleted, as the spec orders
    if spec.hooks.get("poststop"):
        from . import hooks as hooks_mod

        hooks_mod.run_phase("poststop", spec.hooks, stopped, warn=log.warning)
    return code


def run_start_hooks(state: State) -> None:
    """startContainer: in the container's namespaces, path resolved there, before the
    process executes."""
    from . import hooks as hooks_mod
    from . import nsjoin

    joins = nsjoin.open_for(state.pid, state.init_start_time)
    try:
        hooks_mod.run_phase("startContainer", state.hooks, state.to_oci(),
                            enter=lambda: nsjoin.enter_and_fork(joins))
    finally:
        joins.close()
