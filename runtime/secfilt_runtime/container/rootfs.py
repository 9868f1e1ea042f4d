"""The container's filesystem: mounts, devices, pivot_root, then read-only and masked paths.

Runs in the init, in its own mount namespace. Every mount target inside the rootfs is opened
with paths.make_in_root and mounted through /proc/self/fd/N, so a symlink in the image cannot
send a mount (or a device node) onto the host.
"""

from __future__ import annotations

import errno
import os

from .. import kernel
from ..errors import ContainerError
from ..spec import Mount, Spec
from . import devices, mountopts, paths

_CGROUP_ROOT = "/sys/fs/cgroup"


def prepare(spec: Spec) -> None:
    """Mounts, devices and pivot_root; returns with "/" the container's root."""
    root = spec.root.path
    # The host's own root needs no pivot: the container works on this namespace's copy of it.
    host_root = os.path.realpath(root) == "/"
    propagation = mountopts.root_propagation(spec.linux.rootfs_propagation)
    _mount(None, "/", None, propagation, what="linux.rootfsPropagation")
    if not host_root:
        _make_parent_private(root)
        _mount(root, root, None, kernel.MS_BIND | kernel.MS_REC, what=f"root.path ({root})")
    cgroup_ns = spec.linux.namespace("cgroup") is not None
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, m in enumerate(spec.mounts):
            _mount_entry(root_fd, spec.bundle, i, m, cgroup_ns)
        dev_is_bound = any(
            os.path.normpath(m.destination) == "/dev" and mountopts.parse(m.options, m.type).bind
            for m in spec.mounts
        )
        if not dev_is_bound:
            devices.create(root_fd, devices.DEFAULT_DEVICES, "default devices")
            devpts = any(os.path.normpath(m.destination) == "/dev/pts" for m in spec.mounts)
            devices.create_links(root_fd, devpts)
        devices.create(root_fd, spec.linux.devices, "linux.devices")
    finally:
        os.close(root_fd)
    if host_root:
        os.chdir("/")
    else:
        _pivot_root(root)
    # Applied to the new "/" only now, so that a shared propagation never reaches the host.
    if spec.linux.rootfs_propagation and not propagation & kernel.MS_PRIVATE:
        _mount(None, "/", None, propagation, what="linux.rootfsPropagation")


def finalize(spec: Spec) -> None:
    """After pivot_root and sysctl: read-only paths, masked paths, read-only root."""
    for i, path in enumerate(spec.linux.readonly_paths):
        _readonly(path, f"linux.readonlyPaths[{i}] ({path})")
    for i, path in enumerate(spec.linux.masked_paths):
        _mask(path, f"linux.maskedPaths[{i}] ({path})")
    if spec.root.readonly:
        _remount("/", kernel.MS_BIND | kernel.MS_RDONLY, "root.readonly")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None,
           *, what: str) -> None:
    try:
        kernel.mount(source, target, fstype, flags, data)
    except OSError as e:
        raise ContainerError(f"{what}: {e.strerror}") from None


def _remount(path: str, flags: int, what: str) -> None:
    """Remount keeping the flags already on the mount: in a user namespace they are locked, and
    dropping one (nosuid, say) would fail; elsewhere keeping them only adds restrictions."""
    try:
        kept = mountopts.flags_from_statvfs(os.statvfs(path).f_flag)
    except OSError as e:
        raise ContainerError(f"{what}: {path}: {e.strerror}") from None
    _mount(None, path, None, kernel.MS_REMOUNT | flags | kept, what=f"{what}: remount {path}")


def _make_parent_private(root: str) -> None:
    """pivot_root refuses a new root whose parent mount is shared; the bind of the root must
    not propagate to the host either. Only this namespace's copy of the mount changes."""
    best = "/"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mount_point = line.split()[4].replace("\\040", " ")
            if (root == mount_point or root.startswith(mount_point.rstrip("/") + "/")) and \
                    len(mount_point) > len(best):
                best = mount_point
    _mount(None, best, None, kernel.MS_PRIVATE, what=f"root.path ({root}): parent mount {best}")


def _mount_entry(root_fd: int, bundle: str, index: int, m: Mount, cgroup_ns: bool) -> None:
    what = f"mounts[{index}] ({m.destination})"
    opts = mountopts.parse(m.options, m.type)
    if m.type == "cgroup" or m.type == "cgroup2":
        _mount_cgroup(root_fd, m, opts, cgroup_ns, what)
        return
    source = m.source
    want_dir = True
    if opts.bind:
        if not source:
            raise ContainerError(f"{what}: a bind mount needs a source")
        source = source if os.path.isabs(source) else os.path.join(bundle, source)
        try:
            want_dir = os.path.isdir(source)
        except OSError:
            want_dir = True
        if not os.path.exists(source):
            raise ContainerError(f"{what}: source {source}: No such file or directory")
    try:
        target_fd = paths.make_in_root(root_fd, m.destination, want_dir)
    except OSError as e:
        raise ContainerError(f"{what}: cannot create the mount point: {e.strerror}") from None
    try:
        target = paths.fd_path(target_fd)
        if opts.bind:
            rec = kernel.MS_REC if opts.recursive else 0
            _mount(source, target, None, kernel.MS_BIND | rec, what=f"{what}: bind {source}")
            if opts.bind_remount_flags:
                _remount_in_root(root_fd, m.destination, opts.bind_remount_flags, what)
        else:
            _mount(source or m.type, target, m.type, opts.flags, opts.data or None,
                   what=f"{what}: mount {m.type}")
        for flag in opts.propagation:
            _remount_target = _reopen(root_fd, m.destination, what)
            try:
                _mount(None, paths.fd_path(_remount_target), None, flag,
                       what=f"{what}: propagation")
            finally:
                os.close(_remount_target)
    finally:
        os.close(target_fd)


def _reopen(root_fd: int, destination: str, what: str) -> int:
    """A handle on what is now mounted at `destination`: the handle used as the mount target
    still names the directory underneath the new mount, a new walk of the path crosses it."""
    try:
        return paths.open_in_root(root_fd, destination)
    except OSError as e:
        raise ContainerError(f"{what}: {e.strerror}") from None


def _remount_in_root(root_fd: int, destination: str, flags: int, what: str) -> None:
    with paths.opened(_reopen(root_fd, destination, what)) as fd:
        _remount(paths.fd_path(fd), kernel.MS_BIND | flags, what)


def _mount_cgroup(root_fd: int, m: Mount, opts: mountopts.MountOptions, own_ns: bool,
                  what: str) -> None:
    """Mount the container's view of the cgroup hierarchies at m.destination.

    In a cgroup namespace each hierarchy is mounted afresh and shows the namespace's root; without
    one, the container's own cgroup directories are bound from the host, as runc does.
    """
    hierarchies = _own_cgroups()
    flags = opts.flags | kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC
    try:
        dest_fd = paths.make_in_root(root_fd, m.destination, want_dir=True)
    except OSError as e:
        raise ContainerError(f"{what}: cannot create the mount point: {e.strerror}") from None
    try:
        if list(hierarchies) == [""]:  # a pure cgroup v2 host
            if own_ns:
                _mount("cgroup2", paths.fd_path(dest_fd), "cgroup2", flags, what=what)
            else:
                _bind(root_fd, os.path.join(_CGROUP_ROOT, hierarchies[""].lstrip("/")),
                      m.destination, flags, what)
            return
        _mount("tmpfs", paths.fd_path(dest_fd), "tmpfs", flags & ~kernel.MS_RDONLY, "mode=755",
               what=f"{what}: tmpfs")
    finally:
        os.close(dest_fd)
    for controllers, cgroup_path in hierarchies.items():
        name = "unified" if controllers == "" else controllers.removeprefix("name=")
        host_dir = os.path.join(_CGROUP_ROOT, name)
        if not os.path.isdir(host_dir):
            continue
        sub = os.path.join(m.destination, name)
        if not own_ns:
            _bind(root_fd, os.path.join(host_dir, cgroup_path.lstrip("/")), sub, flags,
                  f"{what}: {name}")
            continue
        fstype, data = ("cgroup2", None) if controllers == "" else ("cgroup", controllers)
        if controllers.startswith("name="):
            data = "none," + controllers
        with paths.opened(_make(root_fd, sub, what)) as fd:
            _mount(fstype, paths.fd_path(fd), fstype, flags, data, what=f"{what}: {name}")
    if opts.flags & kernel.MS_RDONLY:
        _remount_in_root(root_fd, m.destination, kernel.MS_RDONLY, what)


def _make(root_fd: int, path: str, what: str) -> int:
    try:
        return paths.make_in_root(root_fd, path, want_dir=True)
    except OSError as e:
        raise ContainerError(f"{what}: cannot create {path}: {e.strerror}") from None


def _bind(root_fd: int, source: str, destination: str, flags: int, what: str) -> None:
    with paths.opened(_make(root_fd, destination, what)) as fd:
        _mount(source, paths.fd_path(fd), None, kernel.MS_BIND, what=f"{what}: bind {source}")
    if flags & mountopts.BIND_REMOUNT_FLAGS:
        _remount_in_root(root_fd, destination, flags & mountopts.BIND_REMOUNT_FLAGS, what)


def _own_cgroups() -> dict[str, str]:
    """/proc/self/cgroup as {controllers: path}; "" is the cgroup v2 hierarchy."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            out[controllers] = path
    return out


def _pivot_root(root: str) -> None:
    try:
        os.chdir(root)
        kernel.pivot_root(".", ".")
        # the old root is now stacked under "."; detach it without telling the host about it
        kernel.mount(None, ".", None, kernel.MS_SLAVE | kernel.MS_REC)
        kernel.umount2(".", kernel.MNT_DETACH)
        os.chdir("/")
    except OSError as e:
        raise ContainerError(f"root.path ({root}): pivot_root: {e.strerror}") from None


def _readonly(path: str, what: str) -> None:
    try:
        kernel.mount(path, path, None, kernel.MS_BIND | kernel.MS_REC)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return
        raise ContainerError(f"{what}: {e.strerror}") from None
    _remount(path, kernel.MS_BIND | kernel.MS_RDONLY | kernel.MS_NOSUID | kernel.MS_NODEV
             | kernel.MS_NOEXEC, what)


def _mask(path: str, what: str) -> None:
    try:
        if os.path.isdir(path):
            kernel.mount("tmpfs", path, "tmpfs", kernel.MS_RDONLY, "size=0")
        elif os.path.lexists(path):
            kernel.mount("/dev/null", path, None, kernel.MS_BIND)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise ContainerError(f"{what}: {e.strerror}") from None
