"""The lifecycle operations on an existing container: start, state, kill, delete, pause,
resume, ps, list, update. Engines call start, state, kill and delete all the time: this module
imports nothing heavy (no jsonschema, no libseccomp, no typer), and the cgroup manager only
where a cgroup is touched.

Errors keep runc's wording where engines match on it: "container X does not exist",
"container not running", "cannot delete container X that is not stopped: running".
"""

from __future__ import annotations

import _signal
import os
import time

from . import signals
from .errors import ContainerError, StateError
from .log import log
from .state import SHORT_SOCKET_DIR, START_SOCKET, State, StateStore, alive, proc_start_time

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from typing import Any

_GONE_TIMEOUT = 10.0


def signal_if_alive(pid: int, start_time: int, sig: int) -> bool:
    """Signal `pid` only if it is still the process that started at `start_time`: a pidfd
    pins the process, so the check and the signal name the same one."""
    if pid <= 0:
        return False
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if proc_start_time(pid) != start_time:
            return False
        _signal.pidfd_send_signal(pidfd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)


def parse_signal(text: str) -> int:
    """runc's forms: 9, KILL, SIGKILL (any case)."""
    if text.isdigit():
        num = int(text)
        if 0 < num < _signal.NSIG:
            return num
        raise StateError(f"invalid signal: {text}")
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return signals.number(name)
    except KeyError:
        if name.startswith("SIGRTMIN+") and name[9:].isdigit():
            num = _signal.SIGRTMIN + int(name[9:])
            if num <= _signal.SIGRTMAX:
                return num
        raise StateError(f"invalid signal: {text}") from None


def _cgroup(st: State):  # noqa: ANN202 - the manager is imported here only
    from .container.cgroups import Cgroup

    return Cgroup.from_dict(st.cgroup)


def kill(store: StateStore, container_id: str, sig: int, all_processes: bool = False) -> None:
    with store.locked(container_id):
        st = store.load(container_id)
        status = st.live_status()
        if status not in ("created", "running", "paused"):
            raise StateError("container not running")
        if all_processes:
            _cgroup(st).kill_all(sig)
        elif not signal_if_alive(st.pid, st.init_start_time, sig):
            raise StateError("container not running")


def start(store: StateStore, container_id: str) -> None:
    """Tell the created init to execute the process; return once execve succeeded."""
    from .sync import Channel

    with store.locked(container_id):
        st = store.load(container_id)
        status = st.live_status()
        if status == "stopped":
            raise StateError("cannot start a container that has stopped")
        if status in ("running", "paused"):
            raise StateError("cannot start an already running container")
        if status != "created":
            raise StateError(f"cannot start a container in the {status} state")
        if st.hooks.get("startContainer"):
            from .lifecycle import run_start_hooks

            try:
                run_start_hooks(st)
            except ContainerError:
                signal_if_alive(st.pid, st.init_start_time, _signal.SIGKILL)
                raise
        chan = Channel(_connect_start(store, container_id))
        try:
            st.status = "running"  # before the process can act and be observed
            store.save(st)
            try:
                chan.send("start")
                clean = True
            except (BrokenPipeError, ConnectionResetError):
                clean = False  # refused before it read us: its reason waits to be read
            try:
                msg = chan.recv()  # end-of-file: the close-on-exec socket went with execve
            except ConnectionResetError:
                # an init that refused us closed with our "start" unread: the kernel reports
                # that once, ahead of the refusal still queued
                clean = False
                msg = chan.recv()
            if msg is not None and msg.get("type") == "handoff":
                _hand_listener(st, msg, chan.fileno())
                msg = chan.recv()
            if msg is None and not clean:
                msg = {"type": "error", "message": "the container init closed the "
                                                   "connection before it was told to start"}
            if msg is not None and alive(st.pid, st.init_start_time):
                # not started: it still waits for a start it accepts, and says created
                st.status = "created"
                store.save(st)
        finally:
            chan.close()
        if msg is not None:
            if msg.get("type") == "error":
                raise ContainerError(msg["message"])
            raise ContainerError(f"the container init sent {msg.get('type')!r}")
        if st.hooks.get("poststart"):
            from . import hooks  # dataclasses and select: only containers with hooks pay

            hooks.run_phase("poststart", st.hooks, st.to_oci(), warn=log.warning)


def _hand_listener(st: State, msg: dict, watch_fd: int) -> None:
    """SCMP_ACT_NOTIFY: the init's listener goes to linux.seccomp.listenerPath before the
    process runs, as with run. (The init sends the page before it loads its filters: the
    agent's state is built while it still works, not while it spins.)"""
    from .seccomp import hand_over
    from .seccomp.notify import Handoff

    agent_state = {**st.to_oci(), "status": "creating"}
    handoff = Handoff(msg["fds"][0])
    try:
        hand_over(handoff, msg.get("listener_path"), msg.get("listener_metadata"), st.pid,
                  agent_state, watch_fd)
    finally:
        handoff.close()


def _connect_start(store: StateStore, container_id: str) -> _socket.socket:
    from .sync import seqpacket_socket  # start only: kill and delete need no sockets

    sock = seqpacket_socket()
    dirfd = os.open(store.path(container_id), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock.connect(f"/proc/self/fd/{dirfd}/{START_SOCKET}")
    except OSError as e:
        sock.close()
        raise ContainerError(f"cannot reach the created init of {container_id}: "
                             f"{e.strerror}") from None
    finally:
        os.close(dirfd)
    return sock


def delete(store: StateStore, container_id: str, force: bool = False) -> None:
    try:
        held = store.locked(container_id)
    except StateError:
        if force:
            return  # as runc: --force of a container that does not exist succeeds
        raise
    with held:
        # a create that died before its first state.json (StateStore.reserve holds this lock
        # until it has written one): nothing but the directory was made
        if not store.has_state_file(container_id) and store.remove_stateless(container_id):
            return
        st = store.load(container_id)
        status = st.live_status()
        if status in ("running", "paused", "creating") and not force:
            raise StateError(f"cannot delete container {container_id} that is not stopped: "
                             f"{status}")
        destroy(st)
        store.remove(container_id)
    if (st.status != "creating" or st.pid) and st.hooks.get("poststop"):
        from . import hooks  # dataclasses and select: only containers with hooks pay

        hooks.run_phase("poststop", st.hooks, {**st.to_oci(), "status": "stopped"},
                        warn=log.warning)


def destroy(st: State) -> None:
    """Kill what is left of the container and remove its cgroup: the init, the other
    processes of its cgroup, a create still running, the tracer."""
    if st.status == "creating":
        signal_if_alive(st.runtime_pid, st.runtime_start_time, _signal.SIGKILL)
    if st.cgroup:
        cg = _cgroup(st)
        cg.kill_all(_signal.SIGKILL)
    signal_if_alive(st.pid, st.init_start_time, _signal.SIGKILL)
    _wait_gone(st.pid, st.init_start_time)
    # the tracer leaves with its last tracee; a wedged one must not outlive the container
    if st.tracer_pid and not _wait_gone(st.tracer_pid, st.tracer_start_time, 1.0):
        signal_if_alive(st.tracer_pid, st.tracer_start_time, _signal.SIGKILL)
    if st.cgroup:
        cg.destroy()
    # a socket outside the state directory (a long --root) goes by hand; a dead tracer
    # could not unlink it
    if st.tracer_socket.startswith(SHORT_SOCKET_DIR + "/"):
        try:
            os.unlink(st.tracer_socket)
        except FileNotFoundError:
            pass


def _wait_gone(pid: int, start_time: int, timeout: float = _GONE_TIMEOUT) -> bool:
    """Wait until `pid` (if it is still the process that started at `start_time`) has
    exited; False on timeout. A pidfd turns readable at the exit of any process, our child or
    not (the init is usually the engine's, the tracer nobody's), so no polling of /proc."""
    if pid <= 0:
        return True
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except OSError:  # no pidfd_open (Linux < 5.3, or a seccomp profile around us)
        return _poll_gone(pid, start_time, timeout)
    try:
        if proc_start_time(pid) != start_time:
            return True  # exited (a zombie), or the pid is another process's now
        import select  # a C module: nothing heavy

        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(int(timeout * 1000)))
    finally:
        os.close(pidfd)


def _poll_gone(pid: int, start_time: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid, start_time):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def pause(store: StateStore, container_id: str) -> None:
    with store.locked(container_id):
        st = store.load(container_id)
        status = st.live_status()
        if status == "paused":
            raise StateError("container already paused")
        if status != "running":
            raise StateError("container not running")
        _cgroup(st).freeze()


def resume(store: StateStore, container_id: str) -> None:
    with store.locked(container_id):
        st = store.load(container_id)
        if st.live_status() != "paused":
            raise StateError("container not paused")
        _cgroup(st).thaw()


def pids(store: StateStore, container_id: str) -> list[int]:
    st = store.load(container_id)
    if st.live_status() in ("stopped", "creating") and not st.cgroup:
        return []
    return sorted(_cgroup(st).pids())


def update(store: StateStore, container_id: str, resources: dict[str, Any]) -> None:
    """Write new linux.resources. The v1 device rules are rewritten from scratch on every
    apply (deny all first), so the config's devices go with them unless the update brings
    its own: a container must not lose access to its configured devices."""
    from . import jsonio
    from . import spec as spec_mod

    if not isinstance(resources, dict):
        raise StateError("--resources: must be a JSON object (linux.resources)")
    with store.locked(container_id):
        st = store.load(container_id)
        if st.live_status() == "stopped":
            raise StateError("container not running")
        try:
            text = spec_mod.read_config(os.path.join(st.bundle, "config.json"))
            spec = spec_mod.parse(jsonio.loads(text), st.bundle)
        except (OSError, ValueError, KeyError) as e:
            raise StateError(f"{st.bundle}/config.json: cannot read: {e}") from None
        merged = dict(resources)
        if "devices" not in merged:
            merged["devices"] = spec.linux.resources.get("devices") or []
        _cgroup(st).apply(merged, spec.linux.devices)


def list_states(store: StateStore) -> list[dict[str, Any]]:
    out = []
    for cid in store.ids():
        try:
            out.append(store.load(cid).to_oci())
        except (StateError, ValueError, OSError):
            pass
    return out
