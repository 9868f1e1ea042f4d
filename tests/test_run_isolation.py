"""Attacks on the isolation `run` sets up: each test fails if the claim in its name breaks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import needs_root

pytestmark = [needs_root, pytest.mark.e2e]


def add_mounts(bundle: Path, *mounts: dict, **linux) -> None:
    config = json.loads((bundle / "config.json").read_text())
    config["mounts"] += list(mounts)
    config["linux"].update(linux)
    (bundle / "config.json").write_text(json.dumps(config))


def test_inherited_descriptors_do_not_reach_the_container(runtime, make_bundle, tmp_path):
    """A directory descriptor of the caller would let the container write on the host."""
    target = tmp_path / "host-dir"
    target.mkdir()
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        script = (f"ls /proc/self/fd; echo pwned > /proc/self/fd/{fd}/escaped"
                  " 2>/dev/null; true")
        bundle = make_bundle(["sh", "-c", script], root={"readonly": False})
        p = subprocess.run(runtime.argv("run", "--bundle", str(bundle), "t1"), pass_fds=[fd],
                           capture_output=True, text=True, env=runtime.env(), timeout=60)
    finally:
        os.close(fd)
    assert p.returncode == 0, p.stderr
    assert str(fd) not in p.stdout.split()
    assert not (target / "escaped").exists()


def test_signals_ignored_by_the_caller_are_not_ignored_in_the_container(runtime, make_bundle):
    bundle = make_bundle(["grep", "-E", "SigIgn|SigBlk", "/proc/self/status"])

    def ignore_signals() -> None:
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_IGN)

    p = subprocess.run(runtime.argv("run", "--bundle", str(bundle), "t1"),
                       preexec_fn=ignore_signals, capture_output=True, text=True,
                       env=runtime.env(), timeout=60)
    assert p.returncode == 0, p.stderr
    for line in p.stdout.splitlines():
        assert int(line.split()[1], 16) == 0, line


def test_device_cgroup_denies_devices_not_in_the_config(runtime, make_bundle):
    """With CAP_MKNOD a container can make any node; the devices cgroup must stop its use."""
    caps = {k: ["CAP_MKNOD", "CAP_DAC_OVERRIDE"] for k in ("bounding", "effective", "permitted")}
    script = ("mknod /dev/kmsg3 c 1 11 && { echo '<6>secfilt' > /dev/kmsg3; } 2>/dev/null"
              " && echo opened || echo denied; echo x > /dev/null && echo null-ok")
    bundle = make_bundle(["sh", "-c", script], process={"capabilities": caps})
    r = runtime.run(bundle)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["denied", "null-ok"]


def test_linux_devices_are_allowed_in_the_device_cgroup(runtime, make_bundle):
    devices = [{"path": "/dev/kmsg2", "type": "c", "major": 1, "minor": 11, "fileMode": 0o200}]
    bundle = make_bundle(["sh", "-c", "echo '<6>secfilt test' > /dev/kmsg2 && echo written"],
                         linux={"devices": devices})
    r = runtime.run(bundle)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "written"


def test_a_cgroup_holding_other_processes_is_refused_and_they_survive(runtime, make_bundle):
    victim_dir = Path("/sys/fs/cgroup/pids/secfilt-test-victim")
    victim_dir.mkdir(exist_ok=True)
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        (victim_dir / "cgroup.procs").write_text(str(sleeper.pid))
        bundle = make_bundle(linux={"cgroupsPath": "/secfilt-test-victim"})
        r = runtime.run(bundle)
        assert r.returncode != 0
        assert "linux.cgroupsPath: the cgroup" in r.stderr
        assert "already has processes" in r.stderr
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
        (Path("/sys/fs/cgroup/pids") / "cgroup.procs").write_text(str(os.getpid()))
        victim_dir.rmdir()


def test_readonly_paths_are_only_read_only(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "echo still-executable"],
                         linux={"readonlyPaths": ["/bin"]}, root={"readonly": False},
                         writable_rootfs=True)
    r = runtime.run(bundle)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "still-executable"


@pytest.mark.parametrize("propagation", ["private", "slave", "shared", "unbindable", None])
def test_container_mounts_do_not_propagate_to_the_host(runtime, make_bundle, tmp_path,
                                                       propagation):
    """A bind from a shared host mount must not carry the container's mounts back out."""
    shared = tmp_path / "shared"
    shared.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "shd", str(shared)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(shared)], check=True)
        (shared / "data").mkdir()
        bundle = make_bundle(["sh", "-c", "grep -c leak-marker /proc/self/mountinfo"])
        linux = {"rootfsPropagation": propagation} if propagation else {}
        add_mounts(bundle,
                   {"destination": "/data", "type": "bind", "source": str(shared / "data"),
                    "options": ["rbind"]},
                   {"destination": "/data/inner", "type": "tmpfs", "source": "leak-marker"},
                   **linux)
        r = runtime.run(bundle)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "1"  # the container has its mount
        with open("/proc/self/mountinfo") as f:
            assert "leak-marker" not in f.read()
    finally:
        subprocess.run(["umount", "-R", str(shared)], check=True)


def test_read_only_host_root_covers_the_mounts_below_it(runtime, tmp_path):
    """With root.path "/", every host mount below / is read-only too, not only / itself:
    a cgroup filesystem left writable would let the container create host cgroups."""
    escape = Path("/sys/fs/cgroup/pids/secfilt-escape-test")
    config = {
        "ociVersion": "1.2.0",
        "process": {"args": ["sh", "-c", f"mkdir {escape} 2>&1; touch /tmp/ok && echo tmp-ok"],
                    "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "root": {"path": "/", "readonly": True},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
                   {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]},
    }
    bundle = tmp_path / "hostroot"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(config))
    try:
        r = runtime.run(bundle)
        assert r.returncode == 0, r.stderr
        assert "Read-only file system" in r.stdout
        assert "tmp-ok" in r.stdout  # the config's own mounts stay writable
        assert not escape.exists()
    finally:
        if escape.exists():
            escape.rmdir()


def test_host_root_without_its_own_dev_is_refused(runtime, tmp_path):
    config = {
        "ociVersion": "1.2.0",
        "process": {"args": ["true"], "cwd": "/"},
        "root": {"path": "/"},
        "linux": {"namespaces": [{"type": "mount"}]},
    }
    bundle = tmp_path / "hostroot"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(config))
    r = runtime.run(bundle)
    assert r.returncode != 0
    assert "the host's root needs a mount of its own at /dev" in r.stderr
