"""container.attach_lock: the runtime keeps the kernel's cgroup-migration fast path open by
moving itself into its own cgroup. Which directory is "its own" (cgroups.own_dirs, pure, which
secfilt's cgroup2 directory comes from too), and, end to end, that the runtime stays where it
was started and the warming thread is gone once the container runs."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest

from secfilt_runtime.container.cgroups import (
    UNIFIED,
    Cgroup,
    Hierarchy,
    own_dirs,
    parse_proc_cgroup,
)

from conftest import needs_root


def test_own_dirs_are_the_cgroups_the_mounts_show():
    hierarchies = {
        "pids": Hierarchy("pids", "/sys/fs/cgroup/pids", "/"),
        "memory": Hierarchy("memory", "/mnt/mem", "/outer"),
        "cpu": Hierarchy("cpu", "/mnt/cpu", "/outer"),
        UNIFIED: Hierarchy(UNIFIED, "/sys/fs/cgroup/unified", "/"),
    }
    own = {"pids": "/a/b", "memory": "/outer/me", "cpu": "/elsewhere", UNIFIED: "/"}
    assert own_dirs(hierarchies, own) == {
        "pids": "/sys/fs/cgroup/pids/a/b", "memory": "/mnt/mem/me",
        UNIFIED: "/sys/fs/cgroup/unified"}
    # a mount of the very cgroup, and a prefix that is not a parent
    assert own_dirs({"memory": Hierarchy("memory", "/m", "/outer")},
                    {"memory": "/outer"}) == {"memory": "/m"}
    assert own_dirs({"memory": Hierarchy("memory", "/m", "/outer")},
                    {"memory": "/outerx"}) == {}
    assert own_dirs(hierarchies, {}) == {}


def _cgroups_of(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/cgroup") as f:
        return parse_proc_cgroup(f.read())


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


def _wait_for_one_thread(pid: int, timeout: float = 0.5) -> int:
    deadline = time.monotonic() + timeout
    while (n := _threads(pid)) != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    return n


@needs_root
@pytest.mark.parametrize("limits", [False, True], ids=["joins-late", "pids-limit"])
def test_the_runtime_stays_in_its_cgroup_and_stops_warming(runtime, make_bundle, limits):
    # the runtime starts in a cgroup of its own in every hierarchy: a warming write that named
    # another directory (a parent, the hierarchy's root) would show here as a moved runtime
    inner = f"/secfilt-attach-test-{uuid.uuid4().hex[:8]}"
    home = Cgroup.for_container(inner, "unused")
    home.create()
    procs = [os.path.join(d, "cgroup.procs") for d in dict.fromkeys(home.paths.values())]

    def enter_home() -> None:
        for path in procs:
            with open(path, "w") as f:
                f.write("0")

    changes = {"linux": {"resources": {"pids": {"limit": 64}}}} if limits else {}
    bundle = make_bundle(["sh", "-c", "echo up; read line"], **changes)
    proc = subprocess.Popen(runtime.argv("run", "--bundle", str(bundle), runtime.cid),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=runtime.env(),
                            preexec_fn=enter_home)
    try:
        assert proc.stdout.readline() == "up\n", proc.stderr.read()
        where = _cgroups_of(proc.pid)
        assert {k: where.get(k) for k in home.paths} == dict.fromkeys(home.paths, inner)
        assert _wait_for_one_thread(proc.pid) == 1, "the warming thread outlived the move"
        proc.stdin.write("x\n")
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        home.destroy()
