"""`events`: runc's container statistics (`events --stats ID`: one JSON document) and its
stream (`events ID`: a stats document every --interval, an "oom" one when the OOM killer took
a process, until the container stops), read from the container's cgroup. The documents have
runc's field names (types.Stats), so tools that parse runc's output parse ours."""

from __future__ import annotations

import os
import sys
import time

from . import jsonio
from .errors import SecfiltError
from .state import StateStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_UNLIMITED_V2 = "max"
# runc's figure for a cgroup v2 limit of "max": the largest uint64 for memory and swap, as
# GetCgroupParamUint gives it; 0 ("no limit") for pids, as its pids stats say
_NO_MEMORY_LIMIT = 2**64 - 1
# time.sleep's deadline (now + interval) must stay in range: ~31 years is as good as Go's 292
_LONGEST_SLEEP = 1e9
_USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_interval(text: str) -> float:
    """A Go duration as runc takes it: "5s", "500ms", "1m30s", "1.5s"."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, rest = 0.0, text.strip()
    if not rest:
        raise ValueError(text)
    while rest:
        i = 0
        while i < len(rest) and (rest[i].isdigit() or rest[i] == "."):
            i += 1
        j = i
        while j < len(rest) and not (rest[j].isdigit() or rest[j] == "."):
            j += 1
        number, unit = rest[:i], rest[i:j]
        if not number or unit not in units:
            raise ValueError(text)
        total += float(number) * units[unit]
        rest = rest[j:]
    if total <= 0 or total * 1e9 >= 2**63:  # Go's durations are int64 nanoseconds
        raise ValueError(text)
    return total


def _read(d: str | None, name: str) -> str | None:
    if d is None:
        return None
    try:
        with open(os.path.join(d, name)) as f:
            return f.read().strip()
    except OSError:
        return None


def _int(d: str | None, name: str, unlimited: int = 0) -> int | None:
    text = _read(d, name)
    if text is None:
        return None
    if text == _UNLIMITED_V2:
        return unlimited
    try:
        return int(text)
    except ValueError:
        return None


def _flat(d: str | None, name: str) -> dict[str, int]:
    """A "key value" file (memory.stat, cpu.stat, cpuacct.stat)."""
    out: dict[str, int] = {}
    for line in (_read(d, name) or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def _ints(d: str | None, name: str) -> list[int]:
    return [int(v) for v in (_read(d, name) or "").split() if v.isdigit()]


def _drop_empty(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v not in (None, {}, [])}


def _usage(d: str | None, prefix: str) -> dict[str, Any]:
    return _drop_empty({"limit": _int(d, f"{prefix}.limit_in_bytes"),
                        "usage": _int(d, f"{prefix}.usage_in_bytes"),
                        "max": _int(d, f"{prefix}.max_usage_in_bytes"),
                        "failcnt": _int(d, f"{prefix}.failcnt")})


def stats_v1(paths: dict[str, str]) -> dict[str, Any]:
    acct, cpu, mem, pids = (paths.get(k) for k in ("cpuacct", "cpu", "memory", "pids"))
    ticks = _flat(acct, "cpuacct.stat")
    to_ns = 1_000_000_000 // _USER_HZ
    throttle = _flat(cpu, "cpu.stat")
    raw = _flat(mem, "memory.stat")
    return {
        "cpu": {
            "usage": _drop_empty({
                "total": _int(acct, "cpuacct.usage"),
                "percpu": _ints(acct, "cpuacct.usage_percpu"),
                "percpu_kernel": _ints(acct, "cpuacct.usage_percpu_sys"),
                "percpu_user": _ints(acct, "cpuacct.usage_percpu_user"),
                "kernel": ticks.get("system", 0) * to_ns,
                "user": ticks.get("user", 0) * to_ns,
            }),
            "throttling": _drop_empty({"periods": throttle.get("nr_periods"),
                                       "throttled_periods": throttle.get("nr_throttled"),
                                       "throttled_time": throttle.get("throttled_time")}),
        },
        "memory": _drop_empty({
            "cache": raw.get("cache"),
            "usage": _usage(mem, "memory"),
            "swap": _usage(mem, "memory.memsw"),
            "kernel": _usage(mem, "memory.kmem"),
            "kernelTCP": _usage(mem, "memory.kmem.tcp"),
            "raw": raw,
        }),
        "pids": _drop_empty({"current": _int(pids, "pids.current"),
                             "limit": _int(pids, "pids.max")}),
    }


def _swap_v2(d: str, memory_usage: int | None, memory_limit: int | None) -> dict[str, int]:
    """Swap as runc reports it on cgroup v2: memory plus swap, as cgroup v1's memsw files
    count it (a swap limit of "max" stays the largest uint64; a sum never exceeds it)."""
    usage = _int(d, "memory.swap.current")
    limit = _int(d, "memory.swap.max", _NO_MEMORY_LIMIT)
    if usage is not None and memory_usage is not None:
        usage += memory_usage
    if limit is not None and limit != _NO_MEMORY_LIMIT and memory_limit is not None:
        limit = min(limit + memory_limit, _NO_MEMORY_LIMIT)
    return _drop_empty({"limit": limit, "usage": usage})


def stats_v2(d: str) -> dict[str, Any]:
    cpu = _flat(d, "cpu.stat")
    raw = _flat(d, "memory.stat")
    memory_usage = _int(d, "memory.current")
    memory_limit = _int(d, "memory.max", _NO_MEMORY_LIMIT)
    return {
        "cpu": {
            "usage": _drop_empty({"total": cpu.get("usage_usec", 0) * 1000,
                                  "kernel": cpu.get("system_usec", 0) * 1000,
                                  "user": cpu.get("user_usec", 0) * 1000}),
            "throttling": _drop_empty({"periods": cpu.get("nr_periods"),
                                       "throttled_periods": cpu.get("nr_throttled"),
                                       "throttled_time": (cpu["throttled_usec"] * 1000
                                                          if "throttled_usec" in cpu else None)}),
        },
        "memory": _drop_empty({
            "cache": raw.get("file"),
            "usage": _drop_empty({"limit": memory_limit, "usage": memory_usage}),
            "swap": _swap_v2(d, memory_usage, memory_limit),
            "raw": raw,
        }),
        "pids": _drop_empty({"current": _int(d, "pids.current"),
                             "limit": _int(d, "pids.max")}),
    }


def container_stats(cgroup: dict[str, Any]) -> dict[str, Any]:
    paths = dict(cgroup.get("paths") or {})
    if int(cgroup.get("version", 1)) == 2:
        return stats_v2(paths.get("unified", ""))
    return stats_v1(paths)


def _write(doc: dict[str, Any]) -> None:
    sys.stdout.write(jsonio.dumps(doc) + "\n")
    sys.stdout.flush()


def run(store: StateStore, container_id: str, stats_only: bool, interval: float) -> int:
    from .container.cgroups import Cgroup

    st = store.load(container_id)
    status = st.live_status()  # reads /proc: once
    if status in ("stopped", "creating"):
        raise SecfiltError("container not running" if status == "stopped"
                           else f"container {container_id} is being created")
    if not st.cgroup:
        raise SecfiltError(f"container {container_id} has no cgroup")
    if stats_only:
        _write({"type": "stats", "id": container_id, "data": container_stats(st.cgroup)})
        return 0
    oom_seen = Cgroup.from_dict(st.cgroup).oom_kills()
    while True:
        try:
            st = store.load(container_id)
        except SecfiltError:
            return 0  # deleted meanwhile
        if st.live_status() == "stopped":
            return 0
        ooms = Cgroup.from_dict(st.cgroup).oom_kills()
        if ooms > oom_seen:
            oom_seen = ooms
            _write({"type": "oom", "id": container_id})
        _write({"type": "stats", "id": container_id, "data": container_stats(st.cgroup)})
        time.sleep(min(interval, _LONGEST_SLEEP))
