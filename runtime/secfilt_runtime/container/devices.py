"""/dev inside the container: the default device nodes, linux.devices and the standard links."""

from __future__ import annotations

import errno
import os
import stat

from .. import kernel
from ..errors import ContainerError
from ..spec import Device
from . import paths

# The devices every container gets (runtime-spec "Default Devices").
DEFAULT_DEVICES = tuple(
    Device(path=f"/dev/{name}", type="c", major=major, minor=minor, file_mode=0o666, uid=0, gid=0)
    for name, major, minor in (
        ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9),
        ("tty", 5, 0),
    )
)

LINKS = (
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
)

_TYPE_BITS = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def node_mode(device: Device) -> int:
    mode = 0o666 if device.file_mode is None else device.file_mode
    return _TYPE_BITS[device.type] | (mode & 0o7777)


def defaults_not_in(devices: tuple[Device, ...]) -> tuple[Device, ...]:
    """The default devices that linux.devices does not redefine (its entry wins, as in runc)."""
    taken = {paths.clean(d.path) for d in devices}
    return tuple(d for d in DEFAULT_DEVICES if d.path not in taken)


def create(root_fd: int, devices: tuple[Device, ...], field: str) -> None:
    """Create each device inside the root. Where mknod is refused (a user namespace), bind-mount
    the host's node onto an empty file instead, as runc does."""
    for i, device in enumerate(devices):
        where = f"{field}[{i}] ({device.path})"
        parent, name = os.path.split(paths.clean(device.path))
        if parent == "/dev" and name == "ptmx":
            continue  # /dev/ptmx is the link to the devpts instance's own ptmx, see create_links
        try:
            with paths.opened(paths.make_in_root(root_fd, parent, want_dir=True)) as dir_fd:
                _create_one(root_fd, dir_fd, name, device)
        except OSError as e:
            raise ContainerError(f"{where}: create {device.type} device {device.major}:"
                                 f"{device.minor}: {e.strerror or os.strerror(e.errno or 0)}"
                                 ) from None


def _create_one(root_fd: int, dir_fd: int, name: str, device: Device) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)  # a file of the image's own at that path is replaced
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise OSError(errno.EISDIR, "a directory is in the way") from None
    mode = node_mode(device)
    try:
        os.mknod(name, mode, os.makedev(device.major, device.minor), dir_fd=dir_fd)
    except PermissionError:
        if device.type == "p":
            raise
        _bind_host_node(root_fd, device)
        return
    # mknod's mode went through the umask; chmod and chown by a handle on the new node
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        proc_path = paths.fd_path(fd)
        os.chmod(proc_path, mode & 0o7777)
        os.chown(proc_path, device.uid or 0, device.gid or 0)
    finally:
        os.close(fd)


def _bind_host_node(root_fd: int, device: Device) -> None:
    host = device.path
    try:
        st = os.stat(host)
    except FileNotFoundError:
        raise OSError(errno.ENODEV, "cannot mknod in a user namespace and the host has no "
                      "such node to bind") from None
    if os.major(st.st_rdev) != device.major or os.minor(st.st_rdev) != device.minor:
        raise OSError(errno.ENODEV, "cannot mknod in a user namespace and the host's node "
                      "at that path is another device")
    with paths.opened(paths.make_in_root(root_fd, device.path, want_dir=False)) as target:
        kernel.mount(host, paths.fd_path(target), None, kernel.MS_BIND)


def create_links(root_fd: int, devpts: bool) -> None:
    links = list(LINKS)
    if os.path.exists("/proc/kcore"):
        links.append(("/dev/core", "/proc/kcore"))
    if devpts:
        links.append(("/dev/ptmx", "pts/ptmx"))
    with paths.opened(paths.make_in_root(root_fd, "/dev", want_dir=True)) as dev_fd:
        for path, target in links:
            name = os.path.basename(path)
            if path == "/dev/ptmx":
                # the devpts instance's own ptmx must be the one used
                try:
                    os.unlink(name, dir_fd=dev_fd)
                except FileNotFoundError:
                    pass
            try:
                os.symlink(target, name, dir_fd=dev_fd)
            except FileExistsError:
                pass
            except OSError as e:
                raise ContainerError(f"{path}: cannot link to {target}: {e.strerror}") from None


def reopen_dev_null() -> None:
    """After pivot_root: stdio left on the host's /dev/null moves to the container's, as in runc,
    so that nothing of the host stays open across the exec."""
    try:
        fd = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise ContainerError(f"/dev/null: cannot open in the container: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not _is_dev_null(st):
            raise ContainerError("/dev/null: in the container it is not the null device (1:3)")
        for std in (0, 1, 2):
            try:
                other = os.fstat(std)
            except OSError:
                continue
            if _is_dev_null(other) and (other.st_dev, other.st_ino) != (st.st_dev, st.st_ino):
                os.dup2(fd, std, inheritable=True)
    finally:
        os.close(fd)


def _is_dev_null(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
