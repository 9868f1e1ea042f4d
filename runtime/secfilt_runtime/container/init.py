"""Code that runs in the forked children: stage1 (namespaces) and the container init.

The runtime forks stage1. Stage1 joins the namespaces given by path, creates a user namespace
(the runtime writes its id maps), creates the other namespaces, and clones the init with
CLONE_PARENT so the init is the runtime's own child (it reaps the exit status directly) and pid 1
of a new pid namespace. The init sets up the filesystem and the process, reports "ready", waits
for "start" and executes the container process.

Both children report failures as {"type": "error", "message": ...} and _exit: they must never
return into the runtime's code.
"""

from __future__ import annotations

import _signal
import _socket  # not socket.py: see sync
import errno
import os

from .. import kernel
from ..errors import SecfiltError
from ..policy import mounts
from ..seccomp import Filters
from ..spec import Spec
from ..sync import Channel, accept, peer_uid
from . import namespaces, process, rootfs, system
from .confine import _fail, confine_and_exec
from .namespaces import NamespacePlan

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn


def stage1_main(chan: Channel, spec: Spec, plan: NamespacePlan,
                filters: Filters | None = None) -> NoReturn:
    try:
        _stage1(chan, spec, plan, filters or Filters())
    except BaseException as exc:  # noqa: BLE001 - everything must be reported, then _exit
        _fail(chan, exc)
    os._exit(0)


def _stage1(chan: Channel, spec: Spec, plan: NamespacePlan, filters: Filters) -> None:
    kernel.prctl(kernel.PR_SET_PDEATHSIG, _signal.SIGKILL)
    # the runtime has placed us in the container's cgroup, or will place the init there before
    # it sends `start` (lifecycle._init_may_join_late)
    chan.expect("go", "the runtime")
    namespaces.join(namespaces.open_joins(plan))
    if plan.new_user:
        kernel.unshare(kernel.CLONE_NEWUSER)
        chan.send("idmap")
        chan.expect("idmap-done", "the runtime")
        linux = spec.linux
        if namespaces.maps_container_id(linux.gid_mappings, 0):
            os.setresgid(0, 0, 0)
        if namespaces.maps_container_id(linux.uid_mappings, 0):
            os.setresuid(0, 0, 0)
    flags = plan.unshare_flags()
    if flags:
        try:
            kernel.unshare(flags)
        except OSError as e:
            raise SecfiltError(
                f"linux.namespaces: cannot create {', '.join(sorted(plan.new))}: "
                f"{os.strerror(e.errno)}"
            ) from None
    if spec.linux.time_offsets:
        namespaces.write_time_offsets(spec.linux.time_offsets)
    # the init talks on our channel: it waits until its pid is sent, which must come first
    # (a busy machine could let it send `ready` or `error` before we return from the clone)
    told_r, told_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = kernel.clone_process(kernel.CLONE_PARENT)
    except OSError as e:
        message = f"cannot create the container's init: {os.strerror(e.errno)}"
        limit = spec.linux.resources.get("pids", {}).get("limit")
        if e.errno == errno.EAGAIN and limit:
            message += f" (linux.resources.pids.limit is {limit})"
        raise SecfiltError(message) from None
    if pid == 0:
        os.close(told_w)
        if os.read(told_r, 1) != b"g":
            os._exit(1)  # stage1 failed before sending our pid: it reports that
        os.close(told_r)
        init_main(chan, spec, filters)
    os.close(told_r)
    chan.send("init-pid", pid=pid)
    os.write(told_w, b"g")
    os.close(told_w)


def init_main(chan: Channel, spec: Spec, filters: Filters | None = None) -> NoReturn:
    try:
        _init(chan, spec, filters or Filters())
    except BaseException as exc:  # noqa: BLE001
        _fail(chan, exc)
    os._exit(1)  # not reached: _init executes the process or raises


def _init(chan: Channel, spec: Spec, filters: Filters) -> NoReturn:
    assert spec.process is not None
    kernel.prctl(kernel.PR_SET_PDEATHSIG, _signal.SIGKILL)
    os.setsid()
    if spec.process.terminal:
        # termios is an extension module of the host's library: imported here, before
        # pivot_root, and only by a container that has a terminal
        from . import terminal
    rootfs.prepare(spec, before_pivot=(lambda: _pause_for_create_hooks(chan))
                   if spec.has_create_hooks else None)
    system.apply(spec)
    rootfs.finalize(spec)
    policy = filters.policy
    enforce_writes = policy is not None and policy.restricts_writes and not policy.audit
    if enforce_writes:
        rootfs.freeze_for_policy(policy.allow_write)
    if policy is not None and policy.restricts_destinations and not policy.audit:
        mounts.seal_cgroup_mounts()  # the destination programs sit on our cgroup
    if spec.process.terminal:
        master, slave = terminal.open_pty(spec.process.user.uid)
        chan.send("pty", fds=[master])
        os.close(master)
        terminal.make_controlling(slave)
    plan = process.prepare(spec)
    chan.send("ready")
    start = _wait_for_start(chan)
    if start.get("adopted") and filters.needs_listener and filters.handoff is not None:
        # `start` is not the process that forked us: it gets the page the listener is handed
        # over in, and where to take it
        chan.send("handoff", fds=[filters.handoff.fileno()],
                  listener_path=filters.listener_path,
                  listener_metadata=filters.listener_metadata)
    confine_and_exec(spec, plan, filters, policy, int(start.get("preserve_fds", 0)))


def _pause_for_create_hooks(chan: Channel) -> None:
    """The runtime runs prestart, createRuntime and createContainer now: every mount made, the
    root not yet pivoted (a hook that mounts into root.path through our mount namespace, as
    GPU hooks do, finds it where config.json says)."""
    chan.send("hooks")
    chan.expect("hooks-done", "the runtime")


def _wait_for_start(chan: Channel) -> dict:
    """`run` says "start" on the setup channel. `create` instead hands over a listening socket
    of the state directory and exits: its caller (an engine, a subreaper) becomes our parent,
    so the parent-death signal goes first. `start` connects there and says "start"; from then
    on the connection is the channel (errors and the close-on-exec end-of-file go to it)."""
    msg = chan.recv()
    if msg is None:
        raise SecfiltError("the runtime went away before starting the container")
    if msg["type"] == "start":
        return msg
    if msg["type"] != "wait-start":
        raise SecfiltError(f"the runtime sent {msg['type']!r} where 'start' was expected")
    listener = _socket.socket(fileno=msg["fds"][0])
    kernel.prctl(kernel.PR_SET_PDEATHSIG, 0)
    chan.send("waiting")
    while True:
        conn = accept(listener)
        uid = peer_uid(conn)
        peer = Channel(conn)
        first = peer.recv() if uid == os.geteuid() or uid == 0 else None
        if first is not None and first["type"] == "start":
            listener.close()
            chan.adopt(conn)
            # create's settings (preserve_fds) stand, whatever the peer sent
            return {**first, **msg, "fds": [], "adopted": True}
        # said, not just closed: `start` takes a silent end-of-file for a successful execve
        try:
            peer.send("error", message=f"start refused: peer uid {uid} is neither root nor "
                                       "the container's creator (as this user namespace maps "
                                       "them)")
        except OSError:
            pass
        conn.close()
