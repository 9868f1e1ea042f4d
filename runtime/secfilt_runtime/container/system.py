"""Per-container kernel settings: hostname, domainname and sysctl."""

from __future__ import annotations

from .. import kernel
from ..errors import ConfigError, ContainerError
from ..spec import Spec
from .namespaces import NamespacePlan

# Namespaced sysctls and the namespace that must be the container's own to set them,
# as runc allows them (everything else would change the host).
_IPC_SYSCTLS = frozenset({
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
    "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
})
_UTS_SYSCTLS = frozenset({"kernel.hostname", "kernel.domainname"})


def sysctl_components(key: str) -> list[str]:
    """The path components of a sysctl key, in either notation: "net.ipv4.ip_forward" or
    "net/ipv4/conf/eth0.100/forwarding" (slashes, when an interface name holds a dot)."""
    parts = key.split("/") if "/" in key else key.split(".")
    if any(p in ("", ".", "..") for p in parts):
        raise ConfigError(f"linux.sysctl.{key}: not a sysctl name")
    return parts


def sysctl_namespace(key: str) -> str | None:
    """The namespace a sysctl belongs to, or None when it is global to the host."""
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        return "ipc"
    if key in _UTS_SYSCTLS:
        return "uts"
    if key.startswith("net."):
        return "network"
    return None


def check(spec: Spec, namespaces: NamespacePlan) -> None:
    """Refuse settings that would apply to the host instead of the container."""
    if spec.hostname is not None and "uts" not in namespaces.new:
        raise ConfigError("hostname: setting it needs a new uts namespace")
    if spec.domainname is not None and "uts" not in namespaces.new:
        raise ConfigError("domainname: setting it needs a new uts namespace")
    for key in spec.linux.sysctl:
        ns = sysctl_namespace(".".join(sysctl_components(key)))
        if ns is None:
            raise ConfigError(
                f"linux.sysctl.{key}: not a namespaced sysctl; it would change the host"
            )
        if ns not in namespaces.new:
            raise ConfigError(f"linux.sysctl.{key}: needs a new {ns} namespace")


_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def loopback_up() -> None:
    """Bring `lo` up, as runc does in every network namespace it creates: without it,
    127.0.0.1 is unreachable in `podman run --network=none` or a plain `ctr run`."""
    import _socket
    import fcntl
    import struct

    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM, 0)
    try:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1]
        if not flags & _IFF_UP:
            fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
    finally:
        s.close()


def apply(spec: Spec) -> None:
    """Run in the init, after pivot_root (so /proc is the container's own)."""
    if any(ns.type == "network" and not ns.path for ns in spec.linux.namespaces):
        try:
            loopback_up()
        except OSError as e:
            raise ContainerError(f"network namespace: cannot bring lo up: {e.strerror}") from None
    try:
        if spec.hostname is not None:
            kernel.sethostname(spec.hostname)
        if spec.domainname is not None:
            kernel.setdomainname(spec.domainname)
    except OSError as e:
        raise ContainerError(f"hostname/domainname: {e.strerror}") from None
    for key, value in spec.linux.sysctl.items():
        path = "/proc/sys/" + "/".join(sysctl_components(key))
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            raise ContainerError(f"linux.sysctl.{key}: cannot write {path}: {e.strerror}") from None
