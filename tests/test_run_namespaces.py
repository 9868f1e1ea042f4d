"""End to end: every namespace type is created, or joined by path, as config.json says."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid

import pytest

from conftest import needs_root

pytestmark = [needs_root, pytest.mark.e2e]

ALL_NEW = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")]


def ns_inode(pid: int | str, ns: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{ns}")


def test_new_namespaces_differ_from_the_host(runtime, make_bundle):
    script = "for n in pid net ipc uts mnt cgroup; do readlink /proc/self/ns/$n; done"
    r = runtime.run(make_bundle(["sh", "-c", script], linux={"namespaces": ALL_NEW}))
    assert r.returncode == 0, r.stderr
    inside = r.stdout.split()
    host = [ns_inode("self", n) for n in ("pid", "net", "ipc", "uts", "mnt", "cgroup")]
    assert len(inside) == 6
    for a, b in zip(inside, host, strict=True):
        assert a != b, f"{a} is the host's namespace"


def test_without_namespaces_the_host_ones_are_kept(runtime, make_bundle):
    script = "for n in net uts ipc; do readlink /proc/self/ns/$n; done"
    bundle = make_bundle(["sh", "-c", script], linux={"namespaces": [{"type": "mount"}]})
    r = runtime.run(bundle)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [ns_inode("self", n) for n in ("net", "uts", "ipc")]


def test_pid_namespace_makes_the_process_pid_1(runtime, make_bundle):
    r = runtime.run(make_bundle(["sh", "-c", "echo $$; ps -o pid | wc -l"]))
    assert r.returncode == 0, r.stderr
    pid, lines = r.stdout.split()
    assert pid == "1"
    assert int(lines) <= 4  # header, sh, ps, wc: nothing of the host


def test_network_namespace_has_only_loopback(runtime, make_bundle):
    r = runtime.run(make_bundle(["sh", "-c", "cat /proc/net/dev"]))
    assert r.returncode == 0, r.stderr
    interfaces = [line.split(":")[0].strip() for line in r.stdout.splitlines()[2:]]
    assert interfaces == ["lo"]


def test_cgroup_namespace_roots_the_view_at_the_container(runtime, make_bundle):
    r = runtime.run(make_bundle(["cat", "/proc/self/cgroup"], linux={"namespaces": ALL_NEW}))
    assert r.returncode == 0, r.stderr
    for line in r.stdout.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if controllers in ("memory", "pids", "cpu,cpuacct", "cpu", "freezer"):
            assert path == "/", line


@pytest.mark.parametrize("resources", [{}, {"pids": {"limit": 50}}], ids=["late-join", "pids"])
def test_the_process_runs_in_its_cgroup_in_every_hierarchy(runtime, make_bundle, resources):
    """Without a cgroup namespace or a pids limit the init joins its cgroup while it sets its
    root up (lifecycle._init_may_join_late), with one stage1 joins before: either way the
    process is in the container's cgroup, in every hierarchy, by the time it runs."""
    r = runtime.run(make_bundle(["cat", "/proc/1/cgroup", "/proc/self/cgroup"],
                                linux={"resources": resources} if resources else {}))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) % 2 == 0 and lines[: len(lines) // 2] == lines[len(lines) // 2:], r.stdout
    paths = {line.split(":", 2)[2] for line in lines}
    assert paths == {f"/secfilt-runtime/{runtime.cid}"}, r.stdout


def test_user_namespace_maps_ids(runtime, make_bundle):
    linux = {
        "namespaces": [*ALL_NEW, {"type": "user"}],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 200000, "size": 65536}],
    }
    script = "cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c %u /bin/busybox; echo $$"
    r = runtime.run(make_bundle(["sh", "-c", script], linux=linux))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["0", "100000", "65536"]
    assert lines[1].split() == ["0", "200000", "65536"]
    assert lines[2] == "0"
    assert lines[3] == "65534"  # the rootfs belongs to host root, unmapped inside
    assert lines[4] == "1"


def test_user_namespace_process_runs_as_the_mapped_host_uid(runtime, make_bundle, tmp_path):
    linux = {
        "namespaces": [*ALL_NEW, {"type": "user"}],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
    }
    pid_file = tmp_path / "pid"
    bundle = make_bundle(["sh", "-c", "echo ready; read x"], linux=linux)
    proc = runtime.popen("run", "--pid-file", str(pid_file), "--bundle", str(bundle), "t1")
    try:
        assert proc.stdout.readline() == "ready\n"
        pid = int(pid_file.read_text())
        with open(f"/proc/{pid}/status") as f:
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
        assert uids == ["100000"] * 4
        proc.communicate("\n", timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0


@pytest.fixture
def holder():
    """A process in new uts, ipc, net and pid namespaces, whose namespaces containers join."""
    name = f"joined-{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen(
        ["unshare", "--uts", "--ipc", "--net", "--pid", "--fork", "sh", "-c",
         f"hostname {name}; ip link add v0 type veth peer name v1; echo ready; exec sleep 1000"],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout.readline() == "ready\n"
    # unshare forks: its child is the one inside the new pid namespace
    child = int(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                               text=True, check=True).stdout.split()[0])
    yield child, name
    # the child too: killing unshare leaves its forked child (pid 1 of the namespace) running
    try:
        os.kill(child, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.kill()
    proc.wait()


def test_namespaces_joined_by_path(runtime, make_bundle, holder):
    pid, name = holder
    linux = {"namespaces": [
        {"type": "pid", "path": f"/proc/{pid}/ns/pid"}, {"type": "mount"},
        {"type": "uts", "path": f"/proc/{pid}/ns/uts"},
        {"type": "ipc", "path": f"/proc/{pid}/ns/ipc"},
        {"type": "network", "path": f"/proc/{pid}/ns/net"},
    ]}
    script = ("hostname; readlink /proc/self/ns/ipc; readlink /proc/self/ns/net;"
              " readlink /proc/self/ns/pid; echo $$; cat /proc/net/dev")
    r = runtime.run(make_bundle(["sh", "-c", script], linux=linux))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == name
    assert lines[1] == ns_inode(pid, "ipc")
    assert lines[2] == ns_inode(pid, "net")
    assert lines[3] == ns_inode(pid, "pid")
    assert lines[4] != "1"  # the holder's sleep is pid 1 of that namespace
    assert "v0" in r.stdout and "v1" in r.stdout


def test_joining_a_missing_namespace_path_fails_cleanly(runtime, make_bundle):
    missing = "/proc/999999999/ns/net"
    linux = {"namespaces": [{"type": "mount"}, {"type": "network", "path": missing}]}
    r = runtime.run(make_bundle(linux=linux))
    assert r.returncode != 0
    assert f"linux.namespaces (network): {missing}: No such file or directory" in r.stderr


def test_hostname_and_domainname(runtime, make_bundle):
    bundle = make_bundle(["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"],
                         hostname="box-one", domainname="example.test")
    r = runtime.run(bundle)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["box-one", "example.test"]
    assert os.uname().nodename != "box-one"


def test_hostname_without_uts_namespace_is_refused(runtime, make_bundle):
    bundle = make_bundle(hostname="nope", linux={"namespaces": [{"type": "mount"}]})
    r = runtime.run(bundle)
    assert r.returncode != 0
    assert "hostname: setting it needs a new uts namespace" in r.stderr


def test_sysctl_is_set_in_the_container_only(runtime, make_bundle):
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host_before = f.read()
    wanted = "0" if host_before.strip() == "1" else "1"
    bundle = make_bundle(["cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/shmmni"],
                         linux={"sysctl": {"net.ipv4.ip_forward": wanted, "kernel.shmmni": "2048"}})
    r = runtime.run(bundle)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [wanted, "2048"]
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read() == host_before


@pytest.mark.parametrize(
    ("sysctl", "namespaces", "message"),
    [
        ({"kernel.panic": "1"}, ALL_NEW, "linux.sysctl.kernel.panic: not a namespaced sysctl"),
        ({"net.ipv4.ip_forward": "1"}, [{"type": "mount"}],
         "linux.sysctl.net.ipv4.ip_forward: needs a new network namespace"),
        # a "net." key that walks up to a global sysctl must not pass as namespaced
        ({"net.ipv4/../../kernel/panic": "17"}, ALL_NEW,
         "linux.sysctl.net.ipv4/../../kernel/panic: not a sysctl name"),
    ],
)
def test_sysctl_that_would_touch_the_host_is_refused(runtime, make_bundle, sysctl, namespaces,
                                                    message):
    with open("/proc/sys/kernel/panic") as f:
        panic_before = f.read()
    r = runtime.run(make_bundle(linux={"sysctl": sysctl, "namespaces": namespaces}))
    assert r.returncode != 0
    assert message in r.stderr
    with open("/proc/sys/kernel/panic") as f:
        assert f.read() == panic_before


def test_user_namespace_joined_by_path(runtime, make_bundle):
    holder = subprocess.Popen(["unshare", "--user", "--map-root-user", "sh", "-c",
                               "echo ready; exec sleep 1000"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "ready\n"
        namespaces = [*ALL_NEW, {"type": "user", "path": f"/proc/{holder.pid}/ns/user"}]
        bundle = make_bundle(["sh", "-c", "readlink /proc/self/ns/user; cat /proc/self/uid_map"],
                             linux={"namespaces": namespaces})
        r = runtime.run(bundle)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == ns_inode(holder.pid, "user")
        assert lines[1].split() == ["0", "0", "1"]
    finally:
        holder.kill()
        holder.wait()


def test_time_namespace_offsets(runtime, make_bundle):
    linux = {"namespaces": [*ALL_NEW, {"type": "time"}],
             "timeOffsets": {"boottime": {"secs": 86400 * 365}, "monotonic": {"secs": 3600}}}
    r = runtime.run(make_bundle(["cat", "/proc/uptime"], linux=linux))
    assert r.returncode == 0, r.stderr
    with open("/proc/uptime") as f:
        host_uptime = float(f.read().split()[0])
    assert float(r.stdout.split()[0]) - host_uptime > 86400 * 365 - 60


def test_time_offsets_without_a_time_namespace_are_refused(runtime, make_bundle):
    r = runtime.run(make_bundle(linux={"timeOffsets": {"monotonic": {"secs": 1}}}))
    assert r.returncode != 0
    assert "linux.timeOffsets: clock offsets need a new time namespace" in r.stderr
