"""Cgroup paths and resource writes (pure), and one real cgroup on this host (root only)."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from secfilt_runtime.container import cgroups
from secfilt_runtime.container.cgroups import UNIFIED, Cgroup, Hierarchy
from secfilt_runtime.errors import ConfigError, ContainerError
from secfilt_runtime.spec import Device

MOUNTINFO_HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:32 /sub /mnt/mem\\040x rw - cgroup cgroup rw,memory
"""


def test_parse_mountinfo():
    h = cgroups.parse_mountinfo(MOUNTINFO_HYBRID)
    assert set(h) == {"cpu", "cpuacct", "cpuset", "memory", "name=systemd", UNIFIED}
    assert h["cpu"] == Hierarchy("cpu", "/sys/fs/cgroup/cpu,cpuacct", "/")
    assert h["cpuacct"].mountpoint == "/sys/fs/cgroup/cpu,cpuacct"
    assert h["memory"].mountpoint == "/sys/fs/cgroup/memory"  # the first mount wins
    assert h[UNIFIED].mountpoint == "/sys/fs/cgroup/unified"


def test_parse_mountinfo_v2_and_escapes():
    h = cgroups.parse_mountinfo(
        "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
        "50 23 0:32 /a /mnt/x\\040y rw - cgroup cgroup rw,pids\n")
    assert h == {UNIFIED: Hierarchy(UNIFIED, "/sys/fs/cgroup", "/"),
                 "pids": Hierarchy("pids", "/mnt/x y", "/a")}


def test_parse_proc_cgroup():
    text = "9:name=systemd:/\n2:cpu,cpuacct:/a b\n4:memory:/process_api/x\n0::/init.scope\n"
    assert cgroups.parse_proc_cgroup(text) == {
        "name=systemd": "/", "cpu": "/a b", "cpuacct": "/a b", "memory": "/process_api/x",
        UNIFIED: "/init.scope"}


def test_inner_path_default_and_plain():
    assert cgroups.inner_path(None, "abc") == "/secfilt-runtime/abc"
    assert cgroups.inner_path("", "abc") == "/secfilt-runtime/abc"
    assert cgroups.inner_path("/machine/abc", "x") == "/machine/abc"
    assert cgroups.inner_path("/a/../../etc//b/", "x") == "/etc/b"
    assert cgroups.inner_path("rel/c", "x") == "rel/c"
    assert cgroups.inner_path("../../escape", "x") == "escape"  # cannot climb out
    with pytest.raises(ConfigError, match="root cgroup"):
        cgroups.inner_path("/", "x")


def test_inner_path_systemd_form():
    assert cgroups.inner_path("system.slice:docker:abc", "x") == "/system.slice/docker-abc.scope"
    assert cgroups.inner_path("machine-pod1.slice:crio:abc", "x") == \
        "/machine.slice/machine-pod1.slice/crio-abc.scope"
    assert cgroups.inner_path(":runc:abc", "x") == "/system.slice/runc-abc.scope"
    assert cgroups.inner_path("user.slice::abc", "x") == "/user.slice/abc.scope"
    assert cgroups.inner_path("-.slice:p:n", "x") == "/p-n.scope"
    with pytest.raises(ConfigError) as e:
        cgroups.inner_path("nope:p:n", "x")
    assert str(e.value) == 'linux.cgroupsPath: invalid slice name "nope"'
    with pytest.raises(ConfigError, match="invalid slice"):
        cgroups.expand_slice("a--b.slice")


def test_hierarchy_dir():
    h = Hierarchy("memory", "/sys/fs/cgroup/memory", "/")
    assert cgroups.hierarchy_dir(h, "/secfilt-runtime/c1", "/ignored") == \
        "/sys/fs/cgroup/memory/secfilt-runtime/c1"
    assert cgroups.hierarchy_dir(h, "sub/c1", "/process_api/x") == \
        "/sys/fs/cgroup/memory/process_api/x/sub/c1"
    assert cgroups.hierarchy_dir(h, "c1", None) == "/sys/fs/cgroup/memory/c1"
    # Inside a cgroup namespace the mount shows a subtree: /proc/self/cgroup paths include it.
    h2 = Hierarchy("pids", "/sys/fs/cgroup/pids", "/outer")
    assert cgroups.hierarchy_dir(h2, "c1", "/outer/me") == "/sys/fs/cgroup/pids/me/c1"


def _files(writes):
    return [(w.key, w.file, w.value) for w in writes]


def test_resource_writes_v1():
    res = {"memory": {"limit": 100 << 20, "reservation": 50 << 20, "swap": 200 << 20},
           "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
           "pids": {"limit": 10}, "blockIO": {"weight": 300}}
    writes = cgroups.resource_writes(res, v2=False, cur_memory_limit=-1)
    assert _files(w for w in writes if w.key != "devices") == [
        ("memory", "memory.limit_in_bytes", str(100 << 20)),
        ("memory", "memory.memsw.limit_in_bytes", str(200 << 20)),
        ("memory", "memory.soft_limit_in_bytes", str(50 << 20)),
        ("cpu", "cpu.shares", "512"),
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "50000"),
        ("cpuset", "cpuset.cpus", "0"),
        ("cpuset", "cpuset.mems", "0"),
        ("pids", "pids.max", "10"),
        ("blkio", "blkio.weight", "300"),
    ]


def test_v1_memsw_order_follows_the_kernel_invariant():
    res = {"memory": {"limit": 300, "swap": 400}}
    # current limit 100 < new memsw 400: memsw must grow first
    def memory_files(cur: int) -> list[str]:
        writes = cgroups.resource_writes(res, False, cur_memory_limit=cur)
        return [w.file for w in writes if w.key == "memory"]

    assert memory_files(100) == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
    # current limit 1000 >= new memsw: shrink the limit first
    assert memory_files(1000) == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]


def test_resource_writes_v2():
    res = {"memory": {"limit": 1000, "swap": 3000, "reservation": 10},
           "cpu": {"shares": 1024, "quota": -1}, "pids": {"limit": -1},
           "blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 100}]},
           "unified": {"memory.high": "5000"}}
    assert _files(cgroups.resource_writes(res, v2=True)) == [
        (UNIFIED, "memory.max", "1000"),
        (UNIFIED, "memory.swap.max", "2000"),
        (UNIFIED, "memory.low", "10"),
        (UNIFIED, "cpu.weight", "39"),
        (UNIFIED, "cpu.max", "max 100000"),
        (UNIFIED, "pids.max", "max"),
        (UNIFIED, "io.max", "8:0 rbps=100"),
        (UNIFIED, "memory.high", "5000"),
    ]


def test_conversions():
    assert cgroups.cpu_weight(2) == 1
    assert cgroups.cpu_weight(262144) == 10000
    assert cgroups.cpu_weight(1024) == 39
    assert cgroups.swap_v2(-1, 100) == "max"
    assert cgroups.swap_v2(None, 100) is None
    with pytest.raises(ConfigError, match="memory.swap: 50 is below memory.limit 100"):
        cgroups.swap_v2(50, 100)
    with pytest.raises(ConfigError, match="without memory.limit"):
        cgroups.swap_v2(50, None)
    with pytest.raises(ConfigError, match="not a cgroup file name"):
        cgroups.resource_writes({"unified": {"../x": "1"}}, v2=True)


def test_device_rules_v1():
    res = {"devices": [{"allow": False, "access": "rwm"},
                       {"allow": True, "type": "c", "major": 4, "minor": 1, "access": "rw"},
                       {"allow": True, "type": "b", "major": 8, "access": "r"}]}
    lines = [(w.file, w.value) for w in cgroups.resource_writes(res, v2=False)]
    # the runtime's own deny-all comes first, then the config's rules in order
    assert lines[:4] == [("devices.deny", "a"), ("devices.deny", "a"),
                         ("devices.allow", "c 4:1 rw"), ("devices.allow", "b 8:* r")]
    assert ("devices.allow", "c 1:3 rwm") in lines[4:]  # runc's defaults follow
    assert ("devices.allow", "c 136:* rwm") in lines[4:]
    assert cgroups.resource_writes(res, v2=True) == []


def test_device_rules_v1_deny_all_even_without_resources():
    """A new cgroup inherits "a *:* rwm": with no rule in the config, everything would pass."""
    devices = (Device(path="/dev/kmsg", type="c", major=1, minor=11),
               Device(path="/dev/fifo", type="p"), Device(path="/dev/sda", type="b", major=8))
    lines = [(w.file, w.value, w.field)
             for w in cgroups.resource_writes({}, v2=False, linux_devices=devices)]
    assert lines[0] == ("devices.deny", "a", "linux.resources.devices (deny all first)")
    assert ("devices.allow", "c 1:11 rwm", "linux.devices[0]") in lines
    assert ("devices.allow", "b 8:0 rwm", "linux.devices[2]") in lines
    assert not any(field == "linux.devices[1]" for _, _, field in lines)  # a fifo needs none


def test_state_round_trip():
    cg = Cgroup(paths={"memory": "/sys/fs/cgroup/memory/x"}, version=1,
                created=["/sys/fs/cgroup/memory/x"])
    assert Cgroup.from_dict(cg.to_dict()) == cg


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create cgroups")
def test_real_cgroup_lifecycle():
    cid = f"test-{uuid.uuid4().hex[:8]}"
    cg = Cgroup.for_container(None, cid)
    assert all(p.endswith(f"/secfilt-runtime/{cid}") for p in cg.paths.values())
    parent_existed = {p: os.path.isdir(os.path.dirname(p)) for p in cg.paths.values()}
    cg.create()
    pid = None
    try:
        assert all(os.path.isdir(p) for p in cg.paths.values())
        if "cpuset" in cg.paths:
            with open(os.path.join(cg.paths["cpuset"], "cpuset.cpus")) as f:
                assert f.read().strip()
        cg = Cgroup.from_dict(cg.to_dict())  # as `delete` would see it
        cg.apply({"pids": {"limit": 7}, "memory": {"limit": 64 << 20}})
        key = "pids" if cg.version == 1 else UNIFIED
        with open(os.path.join(cg.paths[key], "pids.max")) as f:
            assert f.read().strip() == "7"
        mem = "memory.limit_in_bytes" if cg.version == 1 else "memory.max"
        with open(os.path.join(cg.paths["memory" if cg.version == 1 else UNIFIED], mem)) as f:
            assert int(f.read()) == 64 << 20

        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(w)
                os.read(r, 1)  # wait until we are in the cgroup
                os.execvp("sleep", ["sleep", "60"])
            finally:
                os._exit(127)
        os.close(r)
        cg.add(pid)
        os.write(w, b"x")
        os.close(w)
        assert cg.pids() == [pid]
        with open(f"/proc/{pid}/cgroup") as f:
            assert f"/secfilt-runtime/{cid}" in f.read()

        cg.freeze()
        assert cg.frozen()
        cg.thaw()
        assert not cg.frozen()

        if cg.version == 1:
            # The kernel cannot push a live process under 1 byte: the error names the field.
            with pytest.raises(ContainerError) as e:
                cg.apply({"memory": {"limit": 1}})
            assert str(e.value) == (
                f"linux.resources.memory.limit: cannot write 1 to "
                f"{cg.paths['memory']}/memory.limit_in_bytes: Device or resource busy")

        cg.kill_all(signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        pid = None
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        cg.destroy()
    assert not any(os.path.exists(p) for p in cg.paths.values())
    for p, existed in parent_existed.items():
        if existed:
            assert os.path.isdir(os.path.dirname(p)), "a pre-existing parent was removed"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create cgroups")
def test_destroy_keeps_preexisting_parent_and_waits_for_exit():
    base = f"/secfilt-test-{uuid.uuid4().hex[:8]}"
    outer = Cgroup.for_container(base, "unused")
    outer.create()
    try:
        cg = Cgroup.for_container(f"{base}/leaf", "unused")
        cg.create()
        assert all(d.endswith("/leaf") for d in cg.created)  # the parent was there already
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        cg.add(pid)
        cg.kill_all()
        cg.destroy()  # the killed child is a zombie until reaped; EBUSY is retried
        os.waitpid(pid, 0)
        assert not any(os.path.exists(p) for p in cg.paths.values())
        assert all(os.path.isdir(p) for p in outer.paths.values())
    finally:
        outer.destroy()
    assert not any(os.path.exists(p) for p in outer.paths.values())
