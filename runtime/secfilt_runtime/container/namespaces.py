"""Namespaces: which to join by path, which to create, and the user namespace's id maps."""

from __future__ import annotations

import os

from .. import kernel
from ..errors import ConfigError, ContainerError
from ..records import record
from ..spec import IdMapping, Linux

# Joining the user namespace first grants the capabilities needed to join the namespaces it owns.
_JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "mount", "cgroup", "time")


@record(frozen=True)
class NamespacePlan:
    join: tuple[tuple[str, str], ...]  # (type, path), in the order to join
    new: frozenset[str]

    @property
    def new_user(self) -> bool:
        return "user" in self.new

    def unshare_flags(self) -> int:
        """Flags of the new namespaces other than user (created first, on its own)."""
        flags = 0
        for ns in self.new - {"user"}:
            flags |= kernel.NAMESPACE_FLAGS[ns]
        return flags

    def has(self, ns_type: str) -> bool:
        return ns_type in self.new or any(t == ns_type for t, _ in self.join)


def plan(linux: Linux) -> NamespacePlan:
    """Validate linux.namespaces and split it into namespaces to join and to create."""
    seen: set[str] = set()
    join: list[tuple[str, str]] = []
    new: set[str] = set()
    for i, ns in enumerate(linux.namespaces):
        where = f"linux.namespaces[{i}]"
        if ns.type not in kernel.NAMESPACE_FLAGS:
            raise ConfigError(f"{where}.type: unknown namespace type {ns.type!r}")
        if ns.type in seen:
            raise ConfigError(f"{where}.type: namespace {ns.type!r} is listed twice")
        seen.add(ns.type)
        if ns.path:
            if ns.type == "mount":
                raise ConfigError(
                    f"{where}.path: joining a mount namespace by path is not supported; "
                    "the container needs a mount namespace of its own for its rootfs"
                )
            join.append((ns.type, ns.path))
        else:
            new.add(ns.type)
    if "mount" not in new:
        raise ConfigError("linux.namespaces: a new mount namespace is required for the rootfs")
    if linux.time_offsets and "time" not in new:
        raise ConfigError("linux.timeOffsets: clock offsets need a new time namespace")
    if (linux.uid_mappings or linux.gid_mappings) and "user" not in new:
        raise ConfigError("linux.uidMappings: id mappings need a new user namespace")
    if "user" in new and not (linux.uid_mappings and linux.gid_mappings):
        raise ConfigError(
            "linux.uidMappings, linux.gidMappings: a new user namespace needs both mappings"
        )
    join.sort(key=lambda j: _JOIN_ORDER.index(j[0]))
    return NamespacePlan(join=tuple(join), new=frozenset(new))


def open_joins(p: NamespacePlan) -> list[tuple[str, str, int]]:
    """Open every namespace file before joining any: joining one changes how paths resolve."""
    opened = []
    try:
        for ns_type, path in p.join:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise ContainerError(
                    f"linux.namespaces ({ns_type}): {path}: {e.strerror}"
                ) from None
            opened.append((ns_type, path, fd))
    except BaseException:
        for _, _, fd in opened:
            os.close(fd)
        raise
    return opened


def join(opened: list[tuple[str, str, int]]) -> None:
    for ns_type, path, fd in opened:
        try:
            kernel.setns(fd, kernel.NAMESPACE_FLAGS[ns_type])
        except OSError as e:
            raise ContainerError(
                f"linux.namespaces ({ns_type}): cannot join {path}: {os.strerror(e.errno)}"
            ) from None
        finally:
            os.close(fd)


def format_time_offsets(offsets: dict[str, dict[str, int]]) -> str:
    """linux.timeOffsets in the form of /proc/PID/timens_offsets."""
    return "".join(f"{clock} {o.get('secs', 0)} {o.get('nanosecs', 0)}\n"
                   for clock, o in sorted(offsets.items()))


def write_time_offsets(offsets: dict[str, dict[str, int]]) -> None:
    """Set the clocks of the time namespace just created; possible only while no process is in
    it yet, that is before the init is cloned."""
    try:
        with open("/proc/self/timens_offsets", "w") as f:
            f.write(format_time_offsets(offsets))
    except OSError as e:
        raise ContainerError(f"linux.timeOffsets: {e.strerror}") from None


def format_id_map(mappings: tuple[IdMapping, ...]) -> str:
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings)


def write_id_maps(pid: int, linux: Linux) -> None:
    """Write the maps of a process that has just created its user namespace (done by the parent,
    which holds CAP_SETUID/CAP_SETGID over the parent namespace and so may map any range)."""
    for name, field, maps in (
        ("uid_map", "linux.uidMappings", linux.uid_mappings),
        ("gid_map", "linux.gidMappings", linux.gid_mappings),
    ):
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(format_id_map(maps))
        except OSError as e:
            raise ContainerError(
                f"{field}: cannot write /proc/{pid}/{name}: {e.strerror}"
            ) from None


def maps_container_id(mappings: tuple[IdMapping, ...], container_id: int) -> bool:
    return any(m.container_id <= container_id < m.container_id + m.size for m in mappings)
