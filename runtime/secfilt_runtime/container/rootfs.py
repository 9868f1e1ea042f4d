"""The container's filesystem: mounts, devices, pivot_root, then read-only and masked paths.

Runs in the init, in its own mount namespace. Every mount target inside the rootfs is opened
with paths.make_in_root and mounted through /proc/self/fd/N, so a symlink in the image cannot
send a mount (or a device node) onto the host. Nothing here may import lazily: after
pivot_root the host's filesystem, and its Python modules, are gone.
"""

from __future__ import annotations

import errno
import os
import stat

from .. import kernel
from ..errors import ContainerError, SecfiltError
from ..policy import mounts
from ..records import field, record
from ..spec import Mount, Spec
from . import cgroups, devices, mountinfo, mountopts, paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_CGROUP_ROOT = "/sys/fs/cgroup"
# The only files under /proc that may be mounted over: lxcfs emulates them (runc's list).
_PROC_MOUNTABLE = frozenset({
    "/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
    "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/sys/kernel/ns_last_pid",
    "/proc/sys/crypto/fips_enabled",
})
_UNSUPPORTED_OPTIONS = {"idmap": "id-mapped mounts", "ridmap": "id-mapped mounts"}
_CGROUP_FLAGS = kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC


@record(frozen=True)
class _Hierarchy:
    """One cgroup hierarchy of the host and the init's cgroup in it."""

    name: str  # basename of the host's mount point: "memory", "cpu,cpuacct", "systemd", "unified"
    mount_point: str  # on the host
    fstype: str  # cgroup or cgroup2
    data: str  # mount data for a fresh mount: "memory", "none,name=systemd"; "" for cgroup2
    rel: str | None  # the init's cgroup relative to the mount's root; None: not visible in it


@record
class _Setup:
    root: str
    root_fd: int
    bundle: str
    cgroup_ns: bool
    hierarchies: list[_Hierarchy] | None = None
    # (what, path in the root) of tmpfs and /dev mounts to make read-only once /dev is populated
    readonly_later: list[tuple[str, str]] = field(default_factory=list)


def prepare(spec: Spec, before_pivot: Callable[[], None] | None = None) -> None:
    """Mounts, devices and pivot_root; returns with "/" the container's root. `before_pivot`
    is called with every mount made and the root not yet changed (the create hooks' point)."""
    root = spec.root.path
    # The host's own root needs no pivot: the container works on this namespace's copy of it.
    host_root = os.path.realpath(root) == "/"
    requested = mountopts.root_propagation(spec.linux.rootfs_propagation)
    # Cut this namespace's copy of the whole tree off from the host first, recursively, whatever
    # was asked: a shared mount left a peer of the host's would carry the container's mounts
    # out. The requested propagation is given to the container's own "/" after pivot_root.
    isolation = kernel.MS_REC | (kernel.MS_PRIVATE if requested & kernel.MS_PRIVATE
                                 else kernel.MS_SLAVE)
    _mount(None, "/", None, isolation, what="linux.rootfsPropagation",
           action="set the propagation of /")
    if host_root:
        _host_root_first(spec)
    else:
        _parent_not_shared(root, isolation)
        _mount(root, root, None, kernel.MS_BIND | kernel.MS_REC, what=f"root.path ({root})",
               action=f"bind {root} onto itself")
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise ContainerError(f"root.path ({root}): {e.strerror}") from None
    setup_dev = not any(
        paths.clean(m.destination) == "/dev" and mountopts.parse(m.options, m.type).bind
        for m in spec.mounts
    )
    try:
        ctx = _Setup(root, root_fd, spec.bundle, spec.linux.namespace("cgroup") is not None)
        for i, m in enumerate(spec.mounts):
            _mount_entry(ctx, i, m)
        if setup_dev:
            devices.create(root_fd, devices.defaults_not_in(spec.linux.devices),
                           "default devices")
            devices.create(root_fd, spec.linux.devices, "linux.devices")
            devpts = any(paths.clean(m.destination) == "/dev/pts"
                         for m in spec.mounts)
            devices.create_links(root_fd, devpts)
        for what, path in ctx.readonly_later:
            _remount_in_root(root_fd, path, kernel.MS_RDONLY, what)
    finally:
        os.close(root_fd)
    if before_pivot is not None:
        before_pivot()
    if host_root:
        os.chdir("/")
    else:
        _pivot_root(root)
    if spec.linux.rootfs_propagation:
        _mount(None, "/", None, requested, what="linux.rootfsPropagation",
               action="set the propagation of the container's /")
    if setup_dev:
        devices.reopen_dev_null()


def finalize(spec: Spec) -> None:
    """After pivot_root and sysctl: read-only paths, masked paths, read-only root."""
    for i, path in enumerate(spec.linux.readonly_paths):
        _readonly(path, f"linux.readonlyPaths[{i}] ({path})")
    masked: set[str] = set()
    for i, path in enumerate(spec.linux.masked_paths):
        if paths.clean(path) not in masked:
            masked.add(paths.clean(path))
            _mask(path, f"linux.maskedPaths[{i}] ({path})")
    if spec.root.readonly:
        _remount("/", kernel.MS_BIND | kernel.MS_RDONLY, "root.readonly")


def _host_root_first(spec: Spec) -> None:
    """The host's own root as the container's: a read-only root is made read-only with every
    mount below it (this namespace's copies of the host's mounts), before the config's mounts,
    which stay as the config says. /dev must be the container's own: the default devices
    would otherwise be made in the host's /dev."""
    if not any(paths.clean(m.destination) == "/dev" for m in spec.mounts):
        raise ContainerError("root.path (/): the host's root needs a mount of its own at /dev")
    if spec.root.readonly:
        try:
            kernel.mount_setattr("/", kernel.MOUNT_ATTR_RDONLY, 0, kernel.AT_RECURSIVE)
        except OSError as e:
            raise _err("root.readonly", "make / and every mount below it read-only", e
                       ) from None


def _err(what: str, action: str, e: OSError) -> ContainerError:
    reason = os.strerror(e.errno) if e.errno else str(e)
    return ContainerError(f"{what}: {action}: {reason}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None,
           *, what: str, action: str) -> None:
    try:
        kernel.mount(source, target, fstype, flags, data)
    except OSError as e:
        raise _err(what, action, e) from None


def _remount(path: str, flags: int, what: str, shown: str | None = None) -> None:
    """Remount keeping the flags already on the mount: in a user namespace they are locked, and
    dropping one (nosuid, say) would fail; elsewhere keeping them only adds restrictions."""
    shown = shown or path
    try:
        kept = mountopts.flags_from_statvfs(os.statvfs(path).f_flag)
    except OSError as e:
        raise _err(what, f"statvfs {shown}", e) from None
    if flags & mountopts.ATIME_FLAGS:
        kept &= ~mountopts.ATIME_FLAGS
    _mount(None, path, None, kernel.MS_REMOUNT | flags | kept, what=what,
           action=f"remount {shown} {_flag_names(flags)}")


def _flag_names(flags: int) -> str:
    names = [name for name, bit in (("ro", kernel.MS_RDONLY), ("nosuid", kernel.MS_NOSUID),
                                    ("nodev", kernel.MS_NODEV), ("noexec", kernel.MS_NOEXEC))
             if flags & bit]
    return ",".join(names) or "with its flags"


def _parent_not_shared(root: str, propagation: int) -> None:
    """pivot_root refuses a new root whose parent mount is shared, and the bind of the root
    must not propagate to the host either. Walk up from the root to the first mount point
    (mount(2) says EINVAL for a directory that is not one), as runc does."""
    flag = kernel.MS_SLAVE if propagation & kernel.MS_SLAVE else kernel.MS_PRIVATE
    path = root
    while True:
        try:
            kernel.mount(None, path, None, flag)
            return
        except OSError as e:
            if e.errno != errno.EINVAL or path == "/":
                raise _err(f"root.path ({root})", f"make the mount at {path} not shared", e
                           ) from None
        path = os.path.dirname(path)


def _host_path(fd: int) -> str:
    return os.readlink(paths.fd_path(fd))


def _in_root(ctx: _Setup, fd: int, what: str) -> str:
    """The container path of what `fd` names; refuses anything outside the root or the root."""
    real = _host_path(fd)
    rel = os.path.relpath(real, ctx.root)
    if rel == "." or rel == ".." or rel.startswith("../"):
        raise ContainerError(f"{what}: the mount point resolves to {real}, "
                             + ("the root itself" if rel == "." else "outside the root"))
    return "/" + rel


def _mount_entry(ctx: _Setup, index: int, m: Mount) -> None:
    what = f"mounts[{index}] ({m.destination})"
    opts = mountopts.parse(m.options, m.type)
    for opt in opts.extra:
        if opt in _UNSUPPORTED_OPTIONS:
            raise ContainerError(f"{what}: option {opt!r}: {_UNSUPPORTED_OPTIONS[opt]} are not "
                                 "supported")
    dest = paths.clean(m.destination)
    if dest == "/":
        raise ContainerError(f"{what}: cannot mount over the container's root")
    if m.type in ("cgroup", "cgroup2") and not opts.bind:
        _mount_cgroup(ctx, m, opts, what)
        return
    source = m.source
    want_dir = True
    if opts.bind:
        if not source:
            raise ContainerError(f"{what}: a bind mount needs a source")
        source = os.path.normpath(os.path.join(ctx.bundle, source))  # relative: to the bundle
        try:
            want_dir = stat.S_ISDIR(os.stat(source).st_mode)
        except OSError as e:
            raise _err(what, f"bind source {source}", e) from None
    elif m.type in ("proc", "sysfs"):
        _ordinary_directory(ctx, dest, m.type, what)
    try:
        existed = True
        try:
            target_fd = paths.open_in_root(ctx.root_fd, dest)
        except FileNotFoundError:
            existed = False
            target_fd = paths.make_in_root(ctx.root_fd, dest, want_dir)
    except OSError as e:
        raise _err(what, f"create the mount point {dest} in {ctx.root}", e) from None
    with paths.opened(target_fd):
        where = _in_root(ctx, target_fd, what)
        shown = _host_path(target_fd)
        _check_proc(where, m, opts, source, what)
        if opts.bind:
            flags = kernel.MS_BIND | (kernel.MS_REC if opts.recursive else 0)
            _mount(source, paths.fd_path(target_fd), None, flags, what=what,
                   action=f"bind {source} on {shown}")
        else:
            fstype = m.type or "none"
            flags, data = opts.flags, opts.data
            if fstype == "tmpfs" and existed:
                # the tmpfs keeps the mode of the directory it covers unless mode= says otherwise
                mode = stat.S_IMODE(os.fstat(target_fd).st_mode)
                data = f"mode={mode:04o}" + ("," + data if data else "")
            if (fstype == "tmpfs" or dest == "/dev") and flags & kernel.MS_RDONLY:
                flags &= ~kernel.MS_RDONLY  # files and devices go in first: ro once done
                ctx.readonly_later.append((what, where))
            _mount(m.source or fstype, paths.fd_path(target_fd), fstype, flags, data or None,
                   what=what, action=f"mount {fstype} on {shown}")
            if fstype == "tmpfs" and existed and "tmpcopyup" in opts.extra:
                with paths.opened(_reopen(ctx, where, shown, what)) as new_fd:
                    _copy_up(target_fd, new_fd, what, shown)
    # the handle used as the target names the directory under the new mount: walk again
    with paths.opened(_reopen(ctx, where, shown, what)) as fd:
        if opts.bind and (opts.bind_remount_flags or opts.cleared):
            _bind_remount(fd, opts, what, shown)
        if opts.rec_attr_set or opts.rec_attr_clr:
            try:
                kernel.mount_setattr("", opts.rec_attr_set, opts.rec_attr_clr,
                                     kernel.AT_RECURSIVE | kernel.AT_EMPTY_PATH, dirfd=fd)
            except OSError as e:
                raise _err(what, f"set the recursive mount attributes of {shown}", e) from None
        for flag in opts.propagation:
            _mount(None, paths.fd_path(fd), None, flag, what=what,
                   action=f"set the propagation of {shown}")


def _copy_up(covered_fd: int, tmpfs_fd: int, what: str, shown: str) -> None:
    """tmpcopyup, as runc: the image's directory the tmpfs now covers (`covered_fd` was opened
    before the mount and still names it) is copied into the tmpfs, with owners and modes;
    symlinks are copied, never followed, and device nodes and fifos made anew."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC  # through the fds' magic links
    action = f"copy the directory under the tmpfs into {shown} (tmpcopyup)"
    try:
        src = os.open(paths.fd_path(covered_fd), flags)
        with paths.opened(src), paths.opened(os.open(paths.fd_path(tmpfs_fd), flags)) as dst:
            _copy_tree(src, dst)
    except OSError as e:
        raise _err(what, action, e) from None
    except _Changed as e:
        raise ContainerError(f"{what}: {action}: {e} changed while it was copied") from None
    except RecursionError:
        raise ContainerError(f"{what}: {action}: directories nested too deep to copy") from None


class _Changed(Exception):  # noqa: N818 - its message is the entry's name
    """An entry of the covered directory turned into something else between its lstat and
    its open (a rootfs or a volume another container writes to)."""


def _copy_tree(src: int, dst: int) -> None:
    with os.scandir(src) as entries:
        names = [e.name for e in entries]
    for name in names:
        st = os.stat(name, dir_fd=src, follow_symlinks=False)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(name, 0o700, dir_fd=dst)
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            with paths.opened(os.open(name, flags, dir_fd=src)) as sub_src, \
                    paths.opened(os.open(name, flags, dir_fd=dst)) as sub_dst:
                st = os.fstat(sub_src)  # the owner and mode of what is copied
                mode = stat.S_IMODE(st.st_mode)
                _copy_tree(sub_src, sub_dst)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
        elif stat.S_ISREG(st.st_mode):
            # looked at before it is opened: a fifo or a device swapped in since the lstat
            # would block the init, or have it read a host device (it is not in the
            # container's cgroup yet); owner and mode are those of the file read
            with paths.opened(os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                                      dir_fd=src)) as handle:
                st = os.fstat(handle)
                mode = stat.S_IMODE(st.st_mode)
                if not stat.S_ISREG(st.st_mode):
                    raise _Changed(name)
                fin = os.open(paths.fd_path(handle), os.O_RDONLY | os.O_CLOEXEC)
            wflags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with paths.opened(fin), \
                    paths.opened(os.open(name, wflags, 0o600, dir_fd=dst)) as fout:
                while os.sendfile(fout, fin, None, 1 << 20) > 0:
                    pass
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            os.mknod(name, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev, dir_fd=dst)
        else:
            continue  # a socket: nothing to copy
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(name, mode, dir_fd=dst)  # after chown, which clears set-id bits
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)


def _ordinary_directory(ctx: _Setup, dest: str, fstype: str, what: str) -> None:
    """proc and sysfs go on a directory of that very name: a symlink in the image at /proc must
    not move them elsewhere in the root (runc refuses it too)."""
    parent, name = os.path.split(dest)
    try:
        with paths.opened(paths.make_in_root(ctx.root_fd, parent, want_dir=True)) as pfd:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    except OSError as e:
        raise _err(what, f"look up {dest} in {ctx.root}", e) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ContainerError(f"{what}: {fstype} must be mounted on a directory, and {dest} in "
                             f"{ctx.root} is not one (a symlink or a file)")


def _check_proc(where: str, m: Mount, opts: mountopts.MountOptions, source: str | None,
                what: str) -> None:
    """Nothing may be mounted over /proc's files, which could fake or hide what the kernel
    reports (e.g. /proc/self/attr), except the few that lxcfs emulates; only a procfs goes on
    /proc itself."""
    if where != "/proc" and not where.startswith("/proc/"):
        return
    if where == "/proc":
        if opts.bind and source:
            try:
                if kernel.statfs_type(source) == kernel.PROC_SUPER_MAGIC:
                    return
            except OSError as e:
                raise _err(what, f"statfs {source}", e) from None
        elif m.type == "proc":
            return
        raise ContainerError(f"{what}: only a proc filesystem can be mounted on /proc")
    if where in _PROC_MOUNTABLE:
        return
    raise ContainerError(f"{what}: {where} is inside /proc, where only "
                         f"{', '.join(sorted(_PROC_MOUNTABLE))} may be mounted over")


def _reopen(ctx: _Setup, where: str, shown: str, what: str) -> int:
    """A handle on what is now mounted at `where` (a path with no symlinks left in it)."""
    try:
        fd = paths.open_in_root(ctx.root_fd, where)
    except OSError as e:
        raise _err(what, f"open {shown} after mounting", e) from None
    if _host_path(fd) != shown:
        os.close(fd)
        raise ContainerError(f"{what}: {shown} was moved while it was being mounted")
    return fd


def _bind_remount(fd: int, opts: mountopts.MountOptions, what: str, shown: str) -> None:
    """A bind mount takes its flags only from a second, remounting call. Ask for exactly the
    requested flags first; if the kernel refuses because the source's mount has locked flags (a
    user namespace), repeat those, unless the config asked to clear one of them."""
    target = paths.fd_path(fd)
    flags = kernel.MS_BIND | kernel.MS_REMOUNT | (opts.flags & mountopts.BIND_REMOUNT_FLAGS)
    try:
        kernel.mount(None, target, None, flags)
        return
    except OSError as e:
        if e.errno != errno.EPERM:
            raise _err(what, f"remount {shown} {_flag_names(flags)}", e) from None
        first = e
    try:
        locked = mountopts.flags_from_statvfs(os.statvfs(target).f_flag) & mountopts.LOCKED_FLAGS
    except OSError as e:
        raise _err(what, f"statvfs {shown}", e) from None
    stuck = locked & opts.cleared & ~mountopts.ATIME_FLAGS
    if stuck:
        raise ContainerError(f"{what}: remount {shown}: cannot clear the locked flags "
                             f"{_flag_names(stuck)} of the source's mount: "
                             f"{os.strerror(first.errno)}")
    asked_atime = opts.flags & mountopts.ATIME_FLAGS
    if asked_atime and asked_atime != locked & mountopts.ATIME_FLAGS:
        raise ContainerError(f"{what}: remount {shown}: the source's mount has locked atime "
                             f"flags that differ from the requested ones: "
                             f"{os.strerror(first.errno)}")
    if not asked_atime:
        flags |= locked & mountopts.ATIME_FLAGS
    _mount(None, target, None, flags | (locked & ~mountopts.ATIME_FLAGS), what=what,
           action=f"remount {shown} {_flag_names(flags)} keeping its locked flags")


def _remount_in_root(root_fd: int, where: str, flags: int, what: str) -> None:
    try:
        fd = paths.open_in_root(root_fd, where)
    except OSError as e:
        raise _err(what, f"open {where}", e) from None
    with paths.opened(fd):
        _remount(paths.fd_path(fd), kernel.MS_BIND | flags, what, shown=_host_path(fd))


def _mount_cgroup(ctx: _Setup, m: Mount, opts: mountopts.MountOptions, what: str) -> None:
    """The container's view of the cgroup hierarchies at m.destination.

    On a cgroup v2 host, cgroup2 itself. Otherwise a tmpfs holding one directory per hierarchy
    (co-mounted controllers get symlinks, "cpu" -> "cpu,cpuacct"): in a cgroup namespace each
    hierarchy is mounted afresh and shows the namespace's root; without one, the container's own
    cgroup directories are bound from the host, as runc does.
    """
    dest = paths.clean(m.destination)
    if ctx.hierarchies is None:
        ctx.hierarchies = _hierarchies(ctx.root, what)
    flags = opts.flags | _CGROUP_FLAGS
    unified_only = [h.name for h in ctx.hierarchies] == [""]
    # "cgroup2" asks for the v2 hierarchy alone, even on a host that also has v1 ones
    v2 = next((h for h in ctx.hierarchies if h.fstype == "cgroup2"), None)
    if m.type == "cgroup2" and v2 is None:
        raise ContainerError(f"{what}: the host has no cgroup2 hierarchy to mount")
    try:
        dest_fd = paths.make_in_root(ctx.root_fd, dest, want_dir=True)
    except OSError as e:
        raise _err(what, f"create the mount point {dest} in {ctx.root}", e) from None
    with paths.opened(dest_fd):
        where = _in_root(ctx, dest_fd, what)
        shown = _host_path(dest_fd)
        if unified_only or m.type == "cgroup2":
            assert v2 is not None
            h = v2
            try:
                kernel.mount("cgroup2", paths.fd_path(dest_fd), "cgroup2", flags)
            except OSError as e:
                # a user namespace without a cgroup namespace may not mount cgroup2: bind it
                if e.errno not in (errno.EPERM, errno.EBUSY):
                    raise _err(what, f"mount cgroup2 on {shown}", e) from None
                source = _own_cgroup_dir(h, what)
                _mount(source, paths.fd_path(dest_fd), None, kernel.MS_BIND | kernel.MS_REC,
                       what=what, action=f"bind {source} on {shown}")
                if flags & mountopts.BIND_REMOUNT_FLAGS:
                    _remount_in_root(ctx.root_fd, where, flags & mountopts.BIND_REMOUNT_FLAGS,
                                     what)
            return
        _mount("tmpfs", paths.fd_path(dest_fd), "tmpfs", _CGROUP_FLAGS, "mode=755", what=what,
               action=f"mount tmpfs on {shown}")
    for h in ctx.hierarchies:
        sub = os.path.join(where, h.name)
        try:
            sub_fd = paths.make_in_root(ctx.root_fd, sub, want_dir=True)
        except OSError as e:
            raise _err(what, f"create {sub} in {ctx.root}", e) from None
        with paths.opened(sub_fd):
            sub_shown = _host_path(sub_fd)
            if ctx.cgroup_ns:
                _mount(h.fstype, paths.fd_path(sub_fd), h.fstype, flags, h.data or None,
                       what=what, action=f"mount {h.fstype} {h.data} on {sub_shown}".replace(
                           "  ", " "))
                continue
            source = _own_cgroup_dir(h, what)
            _mount(source, paths.fd_path(sub_fd), None, kernel.MS_BIND | kernel.MS_REC,
                   what=what, action=f"bind {source} on {sub_shown}")
        _remount_in_root(ctx.root_fd, sub, flags & mountopts.BIND_REMOUNT_FLAGS, what)
    with paths.opened(_reopen(ctx, where, shown, what)) as top:
        for h in ctx.hierarchies:
            if "," not in h.name:
                continue
            for controller in h.name.split(","):
                try:
                    os.symlink(h.name, controller, dir_fd=top)
                except FileExistsError:
                    pass
                except OSError as e:
                    raise _err(what, f"link {where}/{controller} to {h.name}", e) from None
        for flag in opts.propagation:
            _mount(None, paths.fd_path(top), None, flag, what=what,
                   action=f"set the propagation of {shown}")
    if opts.flags & kernel.MS_RDONLY:
        ctx.readonly_later.append((what, where))


def _hierarchies(root: str, what: str) -> list[_Hierarchy]:
    """The host's cgroup hierarchies (from this namespace's copy of its mounts) and the init's
    cgroup in each. A pure cgroup v2 host gives one entry named ""."""
    try:
        with open("/proc/self/cgroup") as f:
            own_text = f.read()
        with open("/proc/self/mountinfo") as f:
            mountinfo_text = f.read()
        pure_v2 = kernel.statfs_type(_CGROUP_ROOT) == kernel.CGROUP2_SUPER_MAGIC
    except OSError as e:
        raise _err(what, "read the cgroup hierarchies", e) from None
    own = cgroups.parse_proc_cgroup(own_text)
    out: list[_Hierarchy] = []
    seen: set[str] = set()
    for entry in mountinfo.parse(mountinfo_text):
        keys = cgroups.hierarchy_keys(entry)
        if not keys or entry.mount_point.startswith(root.rstrip("/") + "/"):
            continue
        key = ",".join(keys)
        own_path = own.get(keys[0])
        if own_path is None or key in seen:
            continue  # not a hierarchy the init is in, or a second mount of one already seen
        seen.add(key)
        if entry.fstype == "cgroup2":
            data = ""
        else:
            data = ("none," + key) if key.startswith("name=") else key
        rel = os.path.relpath(own_path, entry.root)
        visible = None if rel == ".." or rel.startswith("../") else rel
        if pure_v2:
            return [_Hierarchy("", entry.mount_point, entry.fstype, data, visible)]
        out.append(_Hierarchy(os.path.basename(entry.mount_point), entry.mount_point,
                              entry.fstype, data, visible))
    return out


def _own_cgroup_dir(h: _Hierarchy, what: str) -> str:
    if h.rel is None:
        raise ContainerError(f"{what}: the init's cgroup is not visible in the host's mount of "
                             f"the {h.name or 'cgroup2'} hierarchy at {h.mount_point}")
    return os.path.normpath(os.path.join(h.mount_point, h.rel))


def _pivot_root(root: str) -> None:
    try:
        old_root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir(root)
            kernel.pivot_root(".", ".")
            # The old root is now stacked on the new one. Go to it by handle: "." would name the
            # new root's mount to mount(2), and its rslave would undo the container's rshared
            # mounts. Make the old tree rslave so that the detach does not reach the host.
            os.fchdir(old_root)
        finally:
            os.close(old_root)
        kernel.mount(None, ".", None, kernel.MS_SLAVE | kernel.MS_REC)
        kernel.umount2(".", kernel.MNT_DETACH)
        os.chdir("/")
    except OSError as e:
        raise _err(f"root.path ({root})", "pivot_root", e) from None


def _readonly(path: str, what: str) -> None:
    try:
        kernel.mount(path, path, None, kernel.MS_BIND | kernel.MS_REC)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return
        raise _err(what, f"bind {path} onto itself", e) from None
    # read-only and nothing more (the flags the mount has are kept by _remount)
    _remount(path, kernel.MS_BIND | kernel.MS_RDONLY, what)


def _mask(path: str, what: str) -> None:
    """Directories get an empty read-only tmpfs, anything else the null device."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as e:
        raise _err(what, f"open {path}", e) from None
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            try:
                kernel.mount("tmpfs", path, "tmpfs", kernel.MS_RDONLY, "nr_blocks=1,nr_inodes=1")
            except OSError as e:
                raise _err(what, f"mount an empty read-only tmpfs on {path}", e) from None
            return
        _check_dev_null(what)
        try:
            kernel.mount("/dev/null", path, None, kernel.MS_BIND)
        except OSError as e:
            raise _err(what, f"bind /dev/null on {path}", e) from None
    finally:
        os.close(fd)


def _check_dev_null(what: str) -> None:
    try:
        st = os.stat("/dev/null")
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3):
            return
    except OSError:
        pass
    raise ContainerError(f"{what}: cannot mask it: /dev/null is not the null device")


def freeze_for_policy(allow_write: tuple[str, ...]) -> None:
    """The kernel's own, race-free enforcement of a write policy in the container: every mount
    read-only but the allow-write paths and /proc (policy.mounts.freeze, shared with secfilt).
    Run after pivot_root, so the paths are the container's own."""
    try:
        mounts.freeze(allow_write, write_source="org.secfilter.allow-write",
                      read_only_source="org.secfilter.read-only")
    except SecfiltError as e:
        raise ContainerError(str(e)) from None
