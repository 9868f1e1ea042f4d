"""The container's cgroup, managed directly through cgroupfs (there is no systemd here).

Two layouts are handled:
- cgroup v1 (or hybrid): one hierarchy per controller under /sys/fs/cgroup/<controller>, a
  named "name=systemd" hierarchy, and possibly a cgroup2 hierarchy at /sys/fs/cgroup/unified;
- cgroup v2: a single cgroup2 hierarchy mounted at /sys/fs/cgroup.
Both are found in /proc/self/mountinfo; /sys/fs/cgroup's filesystem magic tells which layout the
host uses. `paths` maps a hierarchy key (a v1 controller, "name=systemd", or "unified" for the
cgroup2 hierarchy) to the container's directory in it.

The manager remembers which directories it created, so `destroy` (possibly run by a later
`delete` from the saved state, see to_dict/from_dict) removes exactly those and never a parent
that existed before.
"""

from __future__ import annotations

import _signal
import errno
import os
import posixpath
import time

from ..errors import ConfigError, ContainerError
from ..log import log
from ..records import field, record
from . import mountinfo

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:  # a type only: `delete` and `kill --all` need no spec (~15 ms to import)
    from collections.abc import Mapping, Sequence
    from typing import Any

    from ..spec import Device

CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP2_SUPER_MAGIC = 0x63677270
UNIFIED = "unified"  # key of the cgroup2 hierarchy in `paths`
DEFAULT_PARENT = "/secfilt-runtime"

V1_CONTROLLERS = frozenset({
    "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory", "misc",
    "net_cls", "net_prio", "perf_event", "pids", "rdma",
})

# Device rules runc appends to every container's list (specconv.AllowedDevices): mknod of any
# device, the standard /dev nodes, ptys and /dev/net/tun. Users rely on them being there.
DEFAULT_DEVICE_RULES: tuple[dict[str, Any], ...] = (
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},  # null
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},  # random
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},  # full
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},  # tty
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},  # zero
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},  # urandom
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},  # /dev/pts/*
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # ptmx
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # net/tun
)

_FIELD = "linux.resources"


# ---- pure: where the hierarchies are and where the container goes --------------------------


@record(frozen=True)
class Hierarchy:
    key: str  # v1 controller, "name=<x>", or UNIFIED
    mountpoint: str
    root: str  # the part of the hierarchy the mount shows (not "/" inside a cgroup namespace)


def parse_mountinfo(text: str) -> dict[str, Hierarchy]:
    """Cgroup hierarchies by key; the first mount of a hierarchy wins."""
    out: dict[str, Hierarchy] = {}
    for entry in mountinfo.parse(text):
        for key in hierarchy_keys(entry):
            out.setdefault(key, Hierarchy(key, entry.mount_point, entry.root))
    return out


def hierarchy_keys(entry: mountinfo.MountEntry) -> list[str]:
    """The hierarchy keys a mount shows: its v1 controllers (and name=), or UNIFIED."""
    if entry.fstype == "cgroup2":
        return [UNIFIED]
    if entry.fstype == "cgroup":
        return [o for o in entry.super_options if o in V1_CONTROLLERS or o.startswith("name=")]
    return []


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup: hierarchy key -> the process's cgroup path in it."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            out[UNIFIED] = path
        else:
            for c in controllers.split(","):
                out[c] = path
    return out


def own_dirs(hierarchies: dict[str, Hierarchy], own: dict[str, str]) -> dict[str, str]:
    """Hierarchy key -> this process's cgroup directory, for each hierarchy whose mount shows
    it (`own`: parse_proc_cgroup's). A path outside the mount's root is left out: joined below
    the mount it would name another cgroup."""
    return {key: hierarchy_dir(h, "", path) for key, h in hierarchies.items()
            if (path := own.get(key)) is not None
            and (h.root == "/" or path == h.root or path.startswith(h.root + "/"))}


def clean_path(path: str) -> str:
    """Lexically clean a cgroup path so ".." can never climb above where it is joined."""
    if path.startswith("/"):
        return posixpath.normpath(path).replace("//", "/")
    rel = posixpath.relpath(posixpath.normpath("/" + path), "/")
    return "" if rel == "." else rel


def expand_slice(slice_name: str, field: str = "linux.cgroupsPath") -> str:
    """systemd's slice nesting: "a-b-c.slice" lives at /a.slice/a-b.slice/a-b-c.slice."""
    if slice_name == "-.slice":
        return "/"
    if not slice_name.endswith(".slice") or "/" in slice_name:
        raise ConfigError(f'{field}: invalid slice name "{slice_name}"')
    base = slice_name[: -len(".slice")]
    if not base or base.startswith("-") or base.endswith("-") or "--" in base:
        raise ConfigError(f'{field}: invalid slice name "{slice_name}"')
    out, prefix = "", ""
    for part in base.split("-"):
        prefix = f"{prefix}-{part}" if prefix else part
        out += f"/{prefix}.slice"
    return out


def inner_path(cgroups_path: str | None, container_id: str) -> str:
    """The container's cgroup path inside every hierarchy: absolute (from the hierarchy's root)
    or relative (to the runtime's own cgroup), as runc's cgroupfs manager reads it."""
    field = "linux.cgroupsPath"
    if not cgroups_path:
        return f"{DEFAULT_PARENT}/{container_id}"
    parts = cgroups_path.split(":")
    if len(parts) == 3 and not cgroups_path.startswith("/"):
        # systemd's "slice:prefix:name"; without systemd we place it where systemd would.
        slice_name, prefix, name = parts
        if not name:
            raise ConfigError(f'{field} ("{cgroups_path}"): the name part is empty')
        parent = expand_slice(slice_name or "system.slice", field)
        if name.endswith(".slice"):
            unit = name
        else:
            unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
        return clean_path(posixpath.join(parent, unit))
    path = clean_path(cgroups_path)
    if path in ("", "/"):
        raise ConfigError(f'{field} ("{cgroups_path}"): would be the root cgroup')
    return path


def hierarchy_dir(h: Hierarchy, inner: str, own: str | None) -> str:
    """Directory of cgroup `inner` in hierarchy `h`; `own` is our cgroup path in it."""
    if inner.startswith("/"):
        return posixpath.normpath(h.mountpoint + inner)
    base = own or "/"
    # /proc/self/cgroup paths are from the hierarchy's root; the mount may show only a subtree.
    if h.root != "/" and (base == h.root or base.startswith(h.root + "/")):
        base = base[len(h.root):] or "/"
    return posixpath.normpath(posixpath.join(h.mountpoint + base, inner))


def _bytes_or_max(v: int) -> str:
    return "max" if v < 0 else str(v)


def cpu_weight(shares: int) -> int:
    """cgroup v1 cpu.shares [2, 262144] to v2 cpu.weight [1, 10000], as runc converts."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def swap_v2(swap: int | None, limit: int | None) -> str | None:
    """OCI memory.swap is memory+swap; cgroup v2's memory.swap.max is swap alone."""
    if swap is None:
        return None
    if swap < 0:
        return "max"
    if limit is None or limit == 0:
        raise ConfigError(f"{_FIELD}.memory.swap: cannot be set without memory.limit on cgroup v2")
    if limit < 0:
        return "max"
    if swap < limit:
        raise ConfigError(f"{_FIELD}.memory.swap: {swap} is below memory.limit {limit} "
                          "(swap counts memory plus swap)")
    return str(swap - limit)


def device_rule_line(rule: Mapping[str, Any]) -> str:
    """`type major:minor access` for devices.allow/deny; a missing number is the wildcard."""
    t = rule.get("type") or "a"
    if t == "a":
        return "a"
    major = rule.get("major")
    minor = rule.get("minor")
    return (f"{t} {'*' if major is None or major < 0 else major}:"
            f"{'*' if minor is None or minor < 0 else minor} {rule.get('access') or 'rwm'}")


@record(frozen=True)
class Write:
    key: str  # hierarchy key
    file: str
    value: str
    field: str  # the config field it comes from
    optional_alt: str | None = None  # try this file when `file` does not exist


def resource_writes(res: Mapping[str, Any], v2: bool, cur_memory_limit: int | None = None,
                    has_v1_hugetlb: bool = False,
                    linux_devices: Sequence[Device] = ()) -> list[Write]:
    """The cgroupfs writes for linux.resources, in the order they must happen."""
    w: list[Write] = []
    f = _FIELD
    mem = res.get("memory") or {}
    limit, swap = mem.get("limit"), mem.get("swap")
    if v2:
        key = UNIFIED
        if limit is not None:
            w.append(Write(key, "memory.max", _bytes_or_max(limit), f"{f}.memory.limit"))
        sv = swap_v2(swap, limit)
        if sv is not None:
            w.append(Write(key, "memory.swap.max", sv, f"{f}.memory.swap"))
        if mem.get("reservation") is not None:
            w.append(Write(key, "memory.low", _bytes_or_max(mem["reservation"]),
                           f"{f}.memory.reservation"))
    else:
        key = "memory"
        lim_w = Write(key, "memory.limit_in_bytes", str(limit), f"{f}.memory.limit")
        swap_w = Write(key, "memory.memsw.limit_in_bytes", str(swap), f"{f}.memory.swap")
        if limit is not None and swap is not None:
            # The kernel keeps limit <= memsw at every step: raise memsw first when growing.
            growing = swap < 0 or cur_memory_limit is None or \
                (cur_memory_limit >= 0 and cur_memory_limit < swap)
            w.extend([swap_w, lim_w] if growing else [lim_w, swap_w])
        elif limit is not None:
            w.append(lim_w)
        elif swap is not None:
            w.append(swap_w)
        if mem.get("reservation") is not None:
            w.append(Write(key, "memory.soft_limit_in_bytes", str(mem["reservation"]),
                           f"{f}.memory.reservation"))
        if mem.get("swappiness") is not None:
            w.append(Write(key, "memory.swappiness", str(mem["swappiness"]),
                           f"{f}.memory.swappiness"))
        if mem.get("disableOOMKiller"):
            w.append(Write(key, "memory.oom_control", "1", f"{f}.memory.disableOOMKiller"))

    cpu = res.get("cpu") or {}
    quota, period = cpu.get("quota"), cpu.get("period")
    if v2:
        key = UNIFIED
        if cpu.get("shares"):
            w.append(Write(key, "cpu.weight", str(cpu_weight(cpu["shares"])), f"{f}.cpu.shares"))
        if quota is not None or period is not None:
            q = "max" if quota is None or quota < 0 else str(quota)
            w.append(Write(key, "cpu.max", f"{q} {period or 100000}", f"{f}.cpu.quota"))
        if cpu.get("burst") is not None:
            w.append(Write(key, "cpu.max.burst", str(cpu["burst"]), f"{f}.cpu.burst"))
        if cpu.get("idle") is not None:
            w.append(Write(key, "cpu.idle", str(cpu["idle"]), f"{f}.cpu.idle"))
    else:
        key = "cpu"
        if cpu.get("shares"):
            w.append(Write(key, "cpu.shares", str(cpu["shares"]), f"{f}.cpu.shares"))
        if period:
            w.append(Write(key, "cpu.cfs_period_us", str(period), f"{f}.cpu.period"))
        if quota is not None and quota != 0:
            w.append(Write(key, "cpu.cfs_quota_us", str(quota), f"{f}.cpu.quota"))
        if cpu.get("burst") is not None:
            w.append(Write(key, "cpu.cfs_burst_us", str(cpu["burst"]), f"{f}.cpu.burst"))
        if cpu.get("realtimePeriod"):
            w.append(Write(key, "cpu.rt_period_us", str(cpu["realtimePeriod"]),
                           f"{f}.cpu.realtimePeriod"))
        if cpu.get("realtimeRuntime"):
            w.append(Write(key, "cpu.rt_runtime_us", str(cpu["realtimeRuntime"]),
                           f"{f}.cpu.realtimeRuntime"))
        if cpu.get("idle") is not None:
            w.append(Write(key, "cpu.idle", str(cpu["idle"]), f"{f}.cpu.idle"))
    cs_key = UNIFIED if v2 else "cpuset"
    if cpu.get("cpus"):
        w.append(Write(cs_key, "cpuset.cpus", cpu["cpus"], f"{f}.cpu.cpus"))
    if cpu.get("mems"):
        w.append(Write(cs_key, "cpuset.mems", cpu["mems"], f"{f}.cpu.mems"))

    pids = res.get("pids") or {}
    if pids.get("limit"):  # 0 means unset, as in runc
        w.append(Write(UNIFIED if v2 else "pids", "pids.max", _bytes_or_max(pids["limit"]),
                       f"{f}.pids.limit"))

    bio = res.get("blockIO") or {}
    if v2:
        if bio.get("weight"):
            # io.bfq.weight takes blkio's range as is
            w.append(Write(UNIFIED, "io.bfq.weight", str(bio["weight"]), f"{f}.blockIO.weight"))
        for name, fname in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                            ("throttleReadIOPSDevice", "riops"),
                            ("throttleWriteIOPSDevice", "wiops")):
            for i, d in enumerate(bio.get(name) or ()):
                w.append(Write(UNIFIED, "io.max", f"{d['major']}:{d['minor']} {fname}={d['rate']}",
                               f"{f}.blockIO.{name}[{i}]"))
    else:
        if bio.get("weight"):
            w.append(Write("blkio", "blkio.weight", str(bio["weight"]), f"{f}.blockIO.weight",
                           optional_alt="blkio.bfq.weight"))
        if bio.get("leafWeight"):
            w.append(Write("blkio", "blkio.leaf_weight", str(bio["leafWeight"]),
                           f"{f}.blockIO.leafWeight"))
        for i, d in enumerate(bio.get("weightDevice") or ()):
            if d.get("weight"):
                w.append(Write("blkio", "blkio.weight_device",
                               f"{d['major']}:{d['minor']} {d['weight']}",
                               f"{f}.blockIO.weightDevice[{i}]",
                               optional_alt="blkio.bfq.weight_device"))
        for name, fname in (("throttleReadBpsDevice", "read_bps_device"),
                            ("throttleWriteBpsDevice", "write_bps_device"),
                            ("throttleReadIOPSDevice", "read_iops_device"),
                            ("throttleWriteIOPSDevice", "write_iops_device")):
            for i, d in enumerate(bio.get(name) or ()):
                w.append(Write("blkio", f"blkio.throttle.{fname}",
                               f"{d['major']}:{d['minor']} {d['rate']}",
                               f"{f}.blockIO.{name}[{i}]"))

    for i, h in enumerate(res.get("hugepageLimits") or ()):
        if has_v1_hugetlb:
            w.append(Write("hugetlb", f"hugetlb.{h['pageSize']}.limit_in_bytes", str(h["limit"]),
                           f"{f}.hugepageLimits[{i}]"))
        else:
            w.append(Write(UNIFIED, f"hugetlb.{h['pageSize']}.max", str(h["limit"]),
                           f"{f}.hugepageLimits[{i}]"))

    if not v2:
        # Always, whatever the config lists: a new cgroup inherits "a *:* rwm" from its parent,
        # and with CAP_MKNOD that would open every host device.
        w.append(Write("devices", "devices.deny", "a", f"{f}.devices (deny all first)"))
        for i, rule in enumerate(res.get("devices") or ()):
            w.append(Write("devices", "devices.allow" if rule.get("allow") else "devices.deny",
                           device_rule_line(rule), f"{f}.devices[{i}]"))
        for rule in DEFAULT_DEVICE_RULES:
            w.append(Write("devices", "devices.allow", device_rule_line(rule),
                           f"{f}.devices (runtime default)"))
        for i, dev in enumerate(linux_devices):
            if dev.type in ("c", "u", "b"):
                rule = {"type": "b" if dev.type == "b" else "c", "major": dev.major,
                        "minor": dev.minor, "access": "rwm"}
                w.append(Write("devices", "devices.allow", device_rule_line(rule),
                               f"linux.devices[{i}]"))

    for name, value in (res.get("unified") or {}).items():
        if "/" in name or name in ("", ".", ".."):
            raise ConfigError(f'{f}.unified: "{name}" is not a cgroup file name')
        w.append(Write(UNIFIED, name, str(value), f"{f}.unified.{name}"))
    return w


# ---- the manager ----------------------------------------------------------------------------


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: str) -> None:
    # cgroupfs acts on each write(2): one call, no buffering.
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def host_uses_v2(root: str = CGROUP_ROOT) -> bool:
    # here: delete, kill --all, pause and resume need no ctypes (~5 ms of imports)
    from .. import kernel

    try:
        return kernel.statfs_type(root) == CGROUP2_SUPER_MAGIC
    except OSError:
        return False


def discover() -> dict[str, Hierarchy]:
    return parse_mountinfo(_read("/proc/self/mountinfo"))


def own_dirs_now() -> dict[str, str]:
    """own_dirs of the calling process, as the mounts and /proc/self/cgroup show it now ({}
    where they cannot be read)."""
    try:
        return own_dirs(discover(), parse_proc_cgroup(_read("/proc/self/cgroup")))
    except OSError:
        return {}


@record
class Cgroup:
    paths: dict[str, str]  # hierarchy key -> the container's directory
    version: int = 1  # 2: pure cgroup v2 host
    created: list[str] = field(default_factory=list)  # dirs we made, parents first

    # -- construction and state --

    @classmethod
    def for_container(cls, cgroups_path: str | None, container_id: str) -> Cgroup:
        inner = inner_path(cgroups_path, container_id)
        hierarchies = discover()
        v2 = host_uses_v2()
        if v2:
            hierarchies = {k: h for k, h in hierarchies.items() if k == UNIFIED}
        if not hierarchies:
            raise ContainerError(f"cgroup: no cgroup hierarchy is mounted under {CGROUP_ROOT}")
        own = {} if inner.startswith("/") else parse_proc_cgroup(_read("/proc/self/cgroup"))
        paths = {k: hierarchy_dir(h, inner, own.get(k)) for k, h in hierarchies.items()}
        return cls(paths=paths, version=2 if v2 else 1)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "paths": dict(self.paths), "created": list(self.created)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Cgroup:
        return cls(paths=dict(d.get("paths") or {}), version=int(d.get("version", 1)),
                   created=list(d.get("created") or ()))

    def _dirs(self) -> list[str]:
        return list(dict.fromkeys(self.paths.values()))  # co-mounted controllers share a dir

    def _main_dir(self) -> str | None:
        for key in (UNIFIED if self.version == 2 else "pids", "freezer", "memory", "cpu"):
            if key in self.paths:
                return self.paths[key]
        return next(iter(self.paths.values()), None)

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer took from this cgroup."""
        d = self.paths.get(UNIFIED if self.version == 2 else "memory")
        if d is None:
            return 0
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = _read(os.path.join(d, name))
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    # -- creation --

    def create(self) -> None:
        """Create the directories; refuse a cgroup that already holds processes: they are not
        the container's, and the teardown would kill them."""
        for key, path in self.paths.items():
            self._mkdirs(path, cpuset=key == "cpuset")
            if key == UNIFIED and self.version == 2:
                # Not on a hybrid host: its cgroup2 root is the host's, leave it as it is.
                self._enable_controllers(path)
        if self.pids():
            main = self._main_dir()
            self.destroy()
            raise ConfigError(f"linux.cgroupsPath: the cgroup {main} already has processes")

    def _mkdirs(self, path: str, cpuset: bool) -> None:
        missing: list[str] = []
        p = path
        while not os.path.isdir(p):
            missing.append(p)
            p = os.path.dirname(p)
        for d in reversed(missing):
            for attempt in range(5):
                try:
                    os.mkdir(d, 0o755)
                    self.created.append(d)
                    break
                except FileExistsError:
                    break  # another container made the shared parent at the same moment
                except FileNotFoundError:
                    # a shared parent vanished under us (another container's destroy): remake it
                    if attempt == 4:
                        raise ContainerError(f"cgroup: cannot create {d}: parent keeps vanishing")\
                            from None
                    self._mkdirs(os.path.dirname(d), cpuset)
                except OSError as e:
                    raise ContainerError(f"cgroup: cannot create {d}: {e.strerror}") from None
            if cpuset:
                self._inherit_cpuset(d)

    @staticmethod
    def _inherit_cpuset(d: str) -> None:
        # A new v1 cpuset has no cpus and mems: no task could join it. Copy the parent's.
        parent = os.path.dirname(d)
        for name in ("cpuset.cpus", "cpuset.mems"):
            try:
                if _read(os.path.join(d, name)).strip():
                    continue
                _write(os.path.join(d, name), _read(os.path.join(parent, name)).strip() or "\n")
            except OSError as e:
                raise ContainerError(f"cgroup: cannot initialise {d}/{name}: {e.strerror}") \
                    from None

    @staticmethod
    def _enable_controllers(leaf: str) -> None:
        # cgroup v2 offers a controller to a cgroup only when every ancestor enables it in
        # cgroup.subtree_control. Enable what each ancestor has; a failure leaves a controller
        # off, and a resource that needs it fails later with a message naming the field.
        mount = leaf
        while os.path.exists(os.path.join(os.path.dirname(mount), "cgroup.controllers")):
            mount = os.path.dirname(mount)
        d = mount
        for part in os.path.relpath(leaf, mount).split("/") if leaf != mount else ():
            try:
                available = _read(os.path.join(d, "cgroup.controllers")).split()
            except OSError:
                return
            for c in available:
                try:
                    _write(os.path.join(d, "cgroup.subtree_control"), f"+{c}")
                except OSError:
                    pass
            d = os.path.join(d, part)

    def add(self, pid: int) -> None:
        try:
            for d in self._dirs():
                try:
                    _write(os.path.join(d, "cgroup.procs"), str(pid))
                except OSError as e:
                    raise ContainerError(f"cgroup: cannot add pid {pid} to {d}: {e.strerror}") \
                        from None
        finally:
            # the move a command warmed the migration lock for is made: the warming stops
            from . import attach_lock  # it imports this module

            attach_lock.done()

    # -- resources --

    def apply(self, resources: Mapping[str, Any], devices: Sequence[Device] = ()) -> None:
        """Write linux.resources and the device rules (linux.devices are allowed).
        Raises ConfigError/ContainerError naming the field."""
        v2 = self.version == 2
        cur_limit = None
        if not v2 and "memory" in self.paths:
            try:
                cur_limit = int(_read(os.path.join(self.paths["memory"],
                                                   "memory.limit_in_bytes")))
            except (OSError, ValueError):
                pass
        if v2:
            log.warning(f"{_FIELD}.devices: device access is not restricted on cgroup v2 (needs "
                        "an eBPF program, which this runtime does not load yet)")
        writes = resource_writes(resources, v2, cur_limit, has_v1_hugetlb="hugetlb" in self.paths,
                                 linux_devices=devices)
        for w in writes:
            d = self.paths.get(w.key)
            if d is None:
                what = "the cgroup v2 hierarchy" if w.key == UNIFIED else \
                    f"the {w.key} cgroup controller"
                raise ContainerError(f"{w.field}: {what} is not available on this host")
            path = os.path.join(d, w.file)
            if w.optional_alt and not os.path.exists(path):
                path = os.path.join(d, w.optional_alt)
            try:
                _write(path, w.value)
            except OSError as e:
                raise ContainerError(
                    f"{w.field}: cannot write {w.value} to {path}: {e.strerror}"
                ) from None

    # -- processes --

    def pids(self) -> list[int]:
        d = self._main_dir()
        if d is None:
            return []
        try:
            return [int(x) for x in _read(os.path.join(d, "cgroup.procs")).split()]
        except FileNotFoundError:
            return []

    def _freezer(self) -> tuple[str, str, str, str] | None:
        """(file, frozen value, thawed value, file reporting the state)"""
        if "freezer" in self.paths:
            f = os.path.join(self.paths["freezer"], "freezer.state")
            return f, "FROZEN", "THAWED", f
        if self.version == 2 and UNIFIED in self.paths:
            d = self.paths[UNIFIED]
            return os.path.join(d, "cgroup.freeze"), "1", "0", os.path.join(d, "cgroup.events")
        return None

    def _set_frozen(self, frozen: bool, timeout: float = 5.0) -> None:
        fz = self._freezer()
        if fz is None:
            raise ContainerError("cgroup: no freezer (v1 freezer controller or cgroup v2) here")
        file, on, off, report = fz
        want = on if frozen else off
        deadline = time.monotonic() + timeout
        while True:
            try:
                _write(file, want)
                state = _read(report)
            except OSError as e:
                raise ContainerError(f"cgroup: cannot write {want} to {file}: {e.strerror}") \
                    from None
            done = state.strip() == want if report == file else \
                f"frozen {'1' if frozen else '0'}" in state.splitlines()
            if done:
                return
            if time.monotonic() > deadline:
                raise ContainerError(f"cgroup: {file} did not become {want} "
                                     f"(state: {state.strip()})")
            time.sleep(0.01)  # v1 FREEZING: tasks still being stopped; write again

    def freeze(self) -> None:
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def frozen(self) -> bool:
        fz = self._freezer()
        if fz is None:
            return False
        try:
            state = _read(fz[3])
        except OSError:
            return False
        return state.strip() == fz[1] if fz[0] == fz[3] else "frozen 1" in state.splitlines()

    def kill_all(self, sig: int = _signal.SIGKILL) -> None:
        """Signal every process in the cgroup. Frozen while signalling, so nothing can fork a
        process we would miss (as runc does); cgroup.kill when v2 offers it. A paused
        container stays paused, except that SIGKILL thaws it so the processes can die."""
        d = self._main_dir()
        if d is None or not os.path.isdir(d):
            return
        if sig == _signal.SIGKILL and self.version == 2:
            try:
                _write(os.path.join(d, "cgroup.kill"), "1")
                return
            except FileNotFoundError:
                pass
        was_frozen = self.frozen()
        froze = False
        if not was_frozen and self._freezer() is not None:
            try:
                self._set_frozen(True)
                froze = True
            except ContainerError:
                pass
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if froze or (was_frozen and sig == _signal.SIGKILL):
                self._set_frozen(False)

    # -- removal --

    def destroy(self, timeout: float = 3.0) -> None:
        """Remove the directories we created (leaf first, with any sub-cgroups the container
        made), retrying while exiting processes still hold them. Parents shared with other
        containers stay when they are not empty."""
        deadline = time.monotonic() + timeout
        ours = set(self.created)
        for d in self._dirs():
            if d in ours:
                self._rmtree(d, deadline)
        for d in reversed(self.created):
            if d in self._dirs():
                continue
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise ContainerError(f"cgroup: cannot remove {d}: {e.strerror}") from None
        self.created = [d for d in self.created if os.path.isdir(d)]

    @staticmethod
    def _rmtree(d: str, deadline: float) -> None:
        if not os.path.isdir(d):
            return
        subdirs: list[str] = []
        for top, dirs, _ in os.walk(d, topdown=False):
            subdirs.extend(os.path.join(top, x) for x in dirs)
        for path in [*subdirs, d]:
            while True:
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise ContainerError(f"cgroup: cannot remove {path}: {e.strerror}") \
                            from None
                    time.sleep(0.02)  # tasks still exiting

