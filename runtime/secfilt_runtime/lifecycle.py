"""Container lifecycle operations: launching a container and running it in the foreground.

Every step that creates something (state directory, cgroup, processes) registers its undo with
an ExitStack before the next step, so a failure anywhere leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import time
from dataclasses import dataclass

from . import schema
from . import spec as spec_mod
from .console import Console
from .container import namespaces, process, system
from .container.cgroups import Cgroup
from .container.init import stage1_main
from .errors import ConfigError, ContainerError
from .log import log
from .spec import Process, Spec
from .state import State, StateStore, proc_start_time
from .sync import Channel, ChildVanished

# Every signal the runtime forwards or waits for. SIGKILL and SIGSTOP cannot be caught.
_ALL_SIGNALS = frozenset(range(1, signal.NSIG)) - {signal.SIGKILL, signal.SIGSTOP, 32, 33}


@dataclass
class Launched:
    """A container whose init is set up and waits for "start"."""

    state: State
    channel: Channel
    cgroup: Cgroup
    init: Child
    console: Console | None = None


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
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill_and_reap(self) -> None:
        self.signal(signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            self.reap()


def exit_code(wait_status: int) -> int:
    """The shell's convention: the exit code, or 128 + the signal that killed the process."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


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
    asked = sorted(name for name, hooks in spec.hooks.items() if hooks)
    if asked:
        raise ConfigError(f"hooks.{asked[0]}: OCI hooks are not supported yet")
    if spec.linux.seccomp is not None:
        raise ConfigError("linux.seccomp: seccomp profiles are not enforced yet; remove the "
                          "section to run without one")
    for field, value in (("process.apparmorProfile", proc.apparmor_profile),
                         ("process.selinuxLabel", proc.selinux_label),
                         ("linux.mountLabel", spec.linux.mount_label)):
        if value:
            raise ConfigError(f"{field}: security labels are not applied by secfilt-runtime")
    if (spec.linux.personality or {}).get("flags"):
        raise ConfigError("linux.personality.flags: not supported (only the domain is)")
    policy = sorted(k for k in spec.annotations if k.startswith("org.secfilter."))
    if policy:
        raise ConfigError(f'annotations["{policy[0]}"]: secfilter policies are not enforced '
                          "yet")


def launch(
    spec: Spec, plan: namespaces.NamespacePlan, container_id: str, store: StateStore,
    cleanup: contextlib.ExitStack,
) -> Launched:
    """Create the cgroup and the init; return when the init is ready to execute the process.

    The caller must have blocked all signals (so none is lost before it can forward them).
    """
    cgroup = Cgroup.for_container(spec.linux.cgroups_path, container_id)
    log.debug(f"{container_id}: cgroup {cgroup.to_dict()}")
    cgroup.create()
    cleanup.callback(cgroup.destroy)
    # after the kill: an init whose pid never reached us (stage1 died first) is still our child
    cleanup.callback(_reap_unknown_children)
    cleanup.callback(cgroup.kill_all, signal.SIGKILL)
    cgroup.apply(spec.linux.resources, spec.linux.devices)

    ours, theirs = Channel.pair()
    ours.while_waiting = _stop_if_told
    cleanup.callback(ours.close)
    stage1 = os.fork()
    if stage1 == 0:
        ours.close()
        stage1_main(theirs, spec, plan)
    theirs.close()
    stage1_child = Child(stage1)
    cleanup.callback(stage1_child.kill_and_reap)

    cgroup.add(stage1)
    ours.send("go")
    try:
        if plan.new_user:
            ours.expect("idmap", "stage1")
            namespaces.write_id_maps(stage1, spec.linux)
            ours.send("idmap-done")
        init = Child(ours.expect("init-pid", "stage1")["pid"])
    except ChildVanished as e:
        raise ContainerError(_why_vanished(e, stage1_child, cgroup, spec)) from None
    log.debug(f"{container_id}: init is pid {init.pid}")
    cleanup.callback(init.kill_and_reap)
    stage1_child.reap()
    console = None
    try:
        if spec.process is not None and spec.process.terminal:
            console = Console(ours.expect("pty", "the container init")["fds"][0])
            cleanup.callback(console.close)
        ours.expect("ready", "the container init")
    except ChildVanished as e:
        raise ContainerError(_why_vanished(e, init, cgroup, spec)) from None
    pid = init.pid

    state = State(
        id=container_id,
        bundle=spec.bundle,
        pid=pid,
        status="created",
        init_start_time=proc_start_time(pid) or 0,
        created=datetime.datetime.now(datetime.UTC).isoformat(),
        annotations=spec.annotations,
        cgroup=cgroup.to_dict(),
        owner="root" if os.geteuid() == 0 else str(os.geteuid()),
    )
    store.save(state)
    return Launched(state=state, channel=ours, cgroup=cgroup, init=init, console=console)


_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def _stop_if_told() -> None:
    """During setup nothing runs yet to forward a signal to: stopping means giving up (the
    caller's cleanup then removes what was created). Other signals stay pending for later."""
    info = signal.sigtimedwait(_STOP_SIGNALS, 0)
    if info is not None:
        raise ContainerError(
            f"setup interrupted by {signal.Signals(info.si_signo).name}; nothing was started"
        )


def _reap_unknown_children() -> None:
    """Reap what the cgroup kill left as zombies; the runtime has no children of its own."""
    deadline = time.monotonic() + 1
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)


def _why_vanished(e: ChildVanished, child: Child, cgroup: Cgroup, spec: Spec) -> str:
    """Explain a child that died without a report: usually the kernel killed it."""
    status = child.reap()
    message = str(e)
    if status is not None and os.WIFSIGNALED(status):
        message += f" (killed by {signal.Signals(os.WTERMSIG(status)).name})"
    if cgroup.oom_kills():
        limit = spec.linux.resources.get("memory", {}).get("limit")
        message += (f": the container's cgroup ran out of memory "
                    f"(linux.resources.memory.limit is {limit})")
    return message


def start(launched: Launched, store: StateStore) -> None:
    """Let the init execute the container process; return once execve has succeeded.

    The state says running before the process can run: it may act (and be observed) before the
    runtime hears that execve succeeded. If execve fails, the container is torn down anyway.
    """
    launched.state.status = "running"
    store.save(launched.state)
    launched.channel.send("start")
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
        info = signal.sigwaitinfo(_ALL_SIGNALS)
        if info.si_signo == signal.SIGWINCH and console is not None:
            console.resize()
        elif info.si_signo != signal.SIGCHLD:
            init.signal(info.si_signo)
        elif init.reap(os.WNOHANG) is not None:
            return exit_code(init.status)


def write_pid_file(path: str, pid: int, cleanup: contextlib.ExitStack) -> None:
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
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def run(bundle: str, container_id: str, root: str, pid_file: str | None = None) -> int:
    """`run`: create and start a container, forward signals, return its exit code."""
    spec = spec_mod.load_bundle(bundle)
    plan = check_bundle(spec)
    store = StateStore(root)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _ALL_SIGNALS)
    try:
        with store.reserve(container_id), contextlib.ExitStack() as cleanup:
            cleanup.callback(store.remove, container_id)
            launched = launch(spec, plan, container_id, store, cleanup)
            if pid_file:
                write_pid_file(pid_file, launched.state.pid, cleanup)
            start(launched, store)
            if launched.console is not None:
                launched.console.start()
            code = wait_forwarding_signals(launched.init, launched.console)
            log.debug(f"{container_id}: init exited, status {code}")
            return code
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
