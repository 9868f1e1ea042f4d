"""The policy's write rules as read-only mounts: every mount of the process's namespace made
read-only, writable clones of the allow-write paths put on top. The kernel then refuses every
change outside them, metadata included (chmod, chown, utimes, chattr, xattrs, which Landlock
has no right for), on the mount the call really reaches: no race with a path rewritten after
the tracer's check.

Two callers share `freeze`: a container's init (after pivot_root, in the container's mount
namespace) and `secfilt`'s child, which first gets a mount namespace of its own
(`private_view`): directly when it holds CAP_SYS_ADMIN (root), else inside a user namespace
that maps only the caller's uid and gid. Without either (unprivileged user namespaces refused)
the child keeps the tracer alone for those calls, and `available()` tells `check` so.

Only what kernel.py wraps, and no heavy import: secfilt's child runs this before every command.
"""

from __future__ import annotations

import errno
import os
import stat

from .. import kernel
from ..container import mountinfo
from ..errors import SecfiltError, warn
from ..records import record

CAP_SYS_ADMIN = 21
# unshare(CLONE_NEWUSER) refused: by policy (EPERM, EACCES from an LSM), by a limit (ENOSPC,
# EUSERS), or inside a chroot (EPERM); EINVAL on a kernel without user namespaces
_USERNS_REFUSED = frozenset({errno.EPERM, errno.EACCES, errno.ENOSPC, errno.EUSERS,
                             errno.EINVAL, errno.ENOSYS})
ROOT, USERNS = "mount namespace", "user and mount namespace"


def _err(what: str, action: str, e: OSError) -> SecfiltError:
    reason = os.strerror(e.errno) if e.errno else str(e)
    return SecfiltError(f"{what}: {action}: {reason}")


def freeze(allow_write: tuple[str, ...], *, write_source: str, read_only_source: str) -> None:
    """Make every mount of this namespace read-only, except the allow-write paths and /proc
    (its files are the processes' settings, not a file system to protect, and the tracer
    judges them; /proc/sys and friends keep their own read-only mounts).

    The tracer judges each call first (its errno and its log); this layer holds when a call
    changes under the tracer's feet, and for the calls Landlock cannot restrict. The paths are
    the namespace's own (a container's after pivot_root). `*_source` name the setting in
    errors (`org.secfilter.allow-write`, `--allow-write`).
    """
    if "/" in allow_write:
        return  # everything is writable; a clone over "/" would not even be the process's root
    clones: list[tuple[int, int]] = []  # (where, detached writable copy)
    try:
        for path in allow_write:
            # no symlink anywhere on the way: the kernel layers must never reach wider than
            # the tracer, which judges the path the policy names
            try:
                where = kernel.openat2(-100, path, os.O_PATH | os.O_CLOEXEC,
                                       resolve=kernel.RESOLVE_NO_SYMLINKS)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    warn(f"{write_source}: {path} is reached through a symlink here; it stays "
                         "read-only (name the link's target to allow writes there)")
                    continue
                if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
                    continue  # nothing there, or out of the user's reach: it stays read-only
                raise _err(write_source, f"open {path}", e) from None
            if _is_ptmx(where):
                # the kernel finds a ptmx's devpts as "pts" next to it, which a mount of the
                # file alone has not (ENOENT on every new pty); a device takes writes on a
                # read-only mount anyway
                os.close(where)
                continue
            try:
                copy = kernel.open_tree("", kernel.OPEN_TREE_CLONE | kernel.OPEN_TREE_CLOEXEC
                                        | kernel.AT_RECURSIVE | kernel.AT_EMPTY_PATH,
                                        dirfd=where)
            except OSError as e:
                os.close(where)
                raise _err(write_source, f"clone the mounts at {path}", e) from None
            clones.append((where, copy))
        proc_writable = os.path.ismount("/proc") and not os.statvfs("/proc").f_flag & os.ST_RDONLY
        try:
            kernel.mount_setattr("/", kernel.MOUNT_ATTR_RDONLY, 0, kernel.AT_RECURSIVE)
            if proc_writable:
                kernel.mount_setattr("/proc", 0, kernel.MOUNT_ATTR_RDONLY)
            # the clones were taken writable: moved on top, they are the allow-write view
            for where, copy in clones:
                kernel.move_mount_fd(copy, where)
        except OSError as e:
            raise _err(read_only_source, "make every mount read-only", e) from None
    finally:
        for where, copy in clones:
            os.close(where)
            os.close(copy)


PTMX = (5, 2)  # TTYAUX_MAJOR, 2


def _beneath(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top + "/")


def views_of(path: str) -> list[str]:
    """Every name under which this namespace shows the directory `path`: itself, and the same
    directory through each other mount of its file system whose root holds it (a bind of an
    ancestor, the file system mounted twice). Only names that reach the same inode."""
    with open("/proc/self/mountinfo") as f:
        entries = mountinfo.parse(f.read())
    st = os.stat(path)
    device = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    # the mount `path` is on: the last (topmost) of the longest mount points above it
    own = None
    for e in entries:
        if _beneath(path, e.mount_point) and (own is None or len(e.mount_point)
                                              >= len(own.mount_point)):
            own = e
    if own is None:
        return [path]
    inside = _below(path, own.mount_point)
    fs_path = own.root.rstrip("/") + inside
    views = [path]
    for e in entries:
        if e.device != device or not _beneath(fs_path or "/", e.root):
            continue
        view = (e.mount_point.rstrip("/") + _below(fs_path or "/", e.root)) or "/"
        try:
            there = os.stat(view)
        except OSError:
            continue  # covered by another mount, or gone
        if (there.st_dev, there.st_ino) == (st.st_dev, st.st_ino) and view not in views:
            views.append(view)
    return views


def _below(path: str, top: str) -> str:
    """What `path` adds to its ancestor `top` ("" for itself, else "/a/b")."""
    return "" if top == "/" and path == "/" else path[len(top.rstrip("/")):]


def keep_read_only(path: str, writable: tuple[str, ...]) -> None:
    """Make the directory `path` (secfilt's filter cache: canonical, no symlink on the way)
    read-only in this namespace, whatever the policy lets the command write: a program that a
    later run would load in place of its filters must not be one this command wrote there.

    `writable`: the paths whose mounts the command may write (the allow-write clones; "/"
    when allow-write is "/"). Below the nearest of them every directory down to `path`
    becomes a mount point of its own (a bind onto itself), which no rename can move: the
    command cannot put a directory of its making where the next run looks for its cache.
    Raises OSError (the command must not run beside a cache it could rewrite)."""
    top = max((w for w in writable if _beneath(path, w)), key=len, default=None)
    if top is None:
        return  # on a read-only mount, as is every directory above it
    below = path[len(top.rstrip("/")):].strip("/").split("/") if path != top else []
    current = top.rstrip("/")
    for part in below:
        current = f"{current}/{part}"
        kernel.mount(current, current, None, kernel.MS_BIND | kernel.MS_REC)
    kernel.mount_setattr(path, kernel.MOUNT_ATTR_RDONLY, 0, kernel.AT_RECURSIVE)


def _is_ptmx(fd: int) -> bool:
    st = os.fstat(fd)
    return stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == PTMX


def _has_cap(cap: int) -> bool:
    effective, _permitted, _inheritable = kernel.capget()
    return bool(effective >> cap & 1)


def has_sys_admin() -> bool:
    """Whether this process makes its mount namespace without a user namespace (root)."""
    return _has_cap(CAP_SYS_ADMIN)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _own_user_namespace() -> bool:
    """Enter a user namespace (and a mount namespace it owns) in which the caller keeps its
    uid and gid: the only ids mapped, setgroups denied, so nothing gains an identity or a group
    it did not have; files of unmapped owners read as 65534 but the kernel checks access with
    the real ids. False when the kernel refuses unprivileged user namespaces."""
    uid, gid = os.geteuid(), os.getegid()
    try:
        kernel.unshare(kernel.CLONE_NEWUSER | kernel.CLONE_NEWNS)
    except OSError as e:
        if e.errno in _USERNS_REFUSED:
            return False
        raise
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1\n")
    _write("/proc/self/gid_map", f"{gid} {gid} 1\n")
    return True


def drop_capabilities() -> None:
    """Every capability gone, bounding set and ambient ones included: what the user namespace
    gave is for the set-up only (no_new_privs keeps an execve from giving any back)."""
    for cap in range(64):
        try:
            kernel.prctl(kernel.PR_CAPBSET_DROP, cap)
        except OSError as e:
            if e.errno == errno.EINVAL:
                break  # past the kernel's last capability
            raise
    kernel.prctl(kernel.PR_CAP_AMBIENT, kernel.PR_CAP_AMBIENT_CLEAR_ALL)
    kernel.capset(0, 0, 0)


def private_view(allow_write: tuple[str, ...], *, write_source: str, read_only_source: str,
                 keep: str | None = None) -> str | None:
    """secfilt's child: the host's mounts, read-only but for the allow-write paths, in a mount
    namespace of its own that nothing propagates into or out of. Returns how (ROOT or USERNS),
    or None when this user cannot have one here (the caller stays tracer-only). Raises
    SecfiltError when set-up fails half-way: the command must not run on a view it did not ask
    for. `keep`: a directory made read-only whatever the allow-write paths say
    (keep_read_only, under each of its names: views_of)."""
    try:
        cwd: str | None = os.getcwd()
    except OSError:
        cwd = None  # removed: nothing can be written in it anyway
    try:
        if has_sys_admin():
            kernel.unshare(kernel.CLONE_NEWNS)
            how = ROOT
        elif _own_user_namespace():
            how = USERNS
        else:
            return None
        # private, not slave: a mount the host adds later would come in writable
        kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
    except OSError as e:
        raise _err(read_only_source, "enter a mount namespace of its own", e) from None
    freeze(allow_write, write_source=write_source, read_only_source=read_only_source)
    if keep is not None:
        writable = allow_write if "/" not in allow_write else ("/",)
        try:
            # under every name: a writable path could reach it through another mount
            for view in views_of(keep):
                keep_read_only(view, writable)
        except OSError as e:
            raise _err(read_only_source, f"keep the filter cache {keep} read-only", e) from None
    if cwd is not None:
        # the cwd still names the mount it was on; an allow-write path now has a clone on top
        try:
            os.chdir(cwd)
        except OSError as e:
            raise _err(read_only_source, f"return to the working directory {cwd}", e) from None
    if how == USERNS:
        try:
            drop_capabilities()
        except OSError as e:
            raise _err(read_only_source, "drop the user namespace's capabilities", e) from None
    return how


@record(frozen=True)
class Availability:
    """Whether secfilt's child gets its read-only mounts on this machine."""

    caller: str | None     # for the user asking: ROOT, USERNS or None
    other_users: str | None  # for an unprivileged user (probed as nobody when root asks)


def _probe(as_uid: int | None) -> str | None:
    """private_view in a throw-away child (optionally as another user), read off its exit."""
    results = {0: None, 1: ROOT, 2: USERNS}
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            if as_uid is not None:
                os.setgroups([])
                os.setresgid(as_uid, as_uid, as_uid)
                os.setresuid(as_uid, as_uid, as_uid)
                # a uid change made us undumpable: /proc/self would stay root's, uid_map too
                kernel.prctl(kernel.PR_SET_DUMPABLE, 1)
            how = private_view((), write_source="probe", read_only_source="probe")
            code = {None: 0, ROOT: 1, USERNS: 2}[how]
        except BaseException:  # noqa: BLE001 - a failed set-up counts as not available
            pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return results.get(os.waitstatus_to_exitcode(status))


_availability: list[Availability] = []  # not functools.cache: ~5 ms of every `run`'s imports


def available() -> Availability:
    """Probed once per process by really setting the layer up in a child."""
    if not _availability:
        nobody = 65534
        caller = _probe(None)
        other = _probe(nobody) if os.geteuid() == 0 else caller
        _availability.append(Availability(caller, other))
    return _availability[0]


def seal_cgroup_mounts() -> None:
    """Make every cgroup file system this mount namespace shows read-only: a process that could
    write another cgroup's cgroup.procs would leave the programs behind. A cgroup namespace
    alone stops that only where cgroup2 is mounted with nsdelegate. The policy's filter
    refuses the mount family under destination rules, so this cannot be undone from inside."""
    with open("/proc/self/mountinfo") as f:
        entries = mountinfo.parse(f.read())
    for entry in entries:
        if entry.fstype in ("cgroup", "cgroup2"):
            try:
                kernel.mount_setattr(entry.mount_point, kernel.MOUNT_ATTR_RDONLY, 0)
            except FileNotFoundError:
                continue  # under a mount that hides it: unreachable anyway
            except OSError as e:
                raise OSError(e.errno, f"make {entry.mount_point} read-only: {e.strerror}"
                              ) from None
