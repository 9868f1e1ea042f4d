"""What a runc user or an engine sees the same with secfilt-runtime as with runc: the
differences found by running both on the same bundles and command lines (runc 1.1 here).
Each test states runc's behaviour, checked against runc where it is installed."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from test_lifecycle import container

from conftest import BASE_CONFIG, needs_root

pytestmark = [needs_root, pytest.mark.e2e]

HAS_RUNC = shutil.which("runc") is not None
BASE_MOUNTS = BASE_CONFIG["mounts"]
SYSFS = {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]}


def test_a_new_network_namespace_has_loopback_up(runtime, make_bundle):
    # runc brings `lo` up in every network namespace it creates: `podman run --network=none`
    # and `ctr run` give the process a working 127.0.0.1
    script = "cat /sys/class/net/lo/operstate /sys/class/net/lo/flags"
    r = runtime.run(make_bundle(["sh", "-c", script], mounts=[*BASE_MOUNTS, SYSFS]))
    assert r.returncode == 0, r.stderr
    state, flags = r.stdout.split()
    assert int(flags, 16) & 1, f"lo is down (flags {flags})"
    assert state in ("unknown", "up")


def test_delete_force_of_an_unknown_id_succeeds(runtime):
    # runc: `delete --force` of a container that does not exist removes what is left of its
    # directory and exits 0 (engines call it to clean up after a failed create)
    (runtime.state_root / "ghost").mkdir(parents=True)
    r = runtime("delete", "--force", "ghost")
    assert (r.returncode, r.stderr) == (0, "")
    assert not (runtime.state_root / "ghost").exists()
    r = runtime("delete", "--force", "never-was")
    assert (r.returncode, r.stderr) == (0, "")
    r = runtime("delete", "never-was")
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_tmpcopyup_fills_the_tmpfs_with_what_it_covers(runtime, make_bundle):
    # runc's tmpcopyup (podman gives it to every --tmpfs, and to /run, /tmp under --read-only):
    # the tmpfs starts with a copy of the image's directory, owners, modes and links kept
    tmpfs = {"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
             "options": ["rw", "nosuid", "nodev", "tmpcopyup"]}
    script = ("set -e; grep -c . /etc/passwd; stat -c '%a %u:%g' /etc /etc/passwd; "
              "readlink /etc/link; echo new > /etc/new; cat /etc/sub/deep; "
              "stat -c %u:%g /etc/sub/deep; "
              "grep ' /etc ' /proc/mounts | cut -d' ' -f3")
    bundle = make_bundle(["sh", "-c", script], writable_rootfs=True,
                         mounts=[*BASE_MOUNTS, tmpfs])
    etc = bundle / "rootfs" / "etc"
    (etc / "sub").mkdir()
    (etc / "sub" / "deep").write_text("deep\n")
    os.chown(etc / "sub" / "deep", 1000, 1001)
    (etc / "link").symlink_to("passwd")
    os.chmod(etc, 0o751)
    r = runtime.run(bundle)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert int(lines[0]) > 0
    assert lines[1:] == ["751 0:0", f"{os.stat(etc / 'passwd').st_mode & 0o7777:o} 0:0",
                         "passwd", "deep", "1000:1001", "tmpfs"]
    assert not (etc / "new").exists()  # written to the tmpfs, not through to the image


def test_ps_prints_ps_lines_of_the_container_with_ps_options(runtime, make_bundle):
    # runc ps ID [ps options]: ps(1) run with the options (-ef by default), its header kept
    # and the lines of the container's processes; --format json: the pids
    with container(runtime, make_bundle(["sh", "-c", "sleep 60 & wait"])) as cid:
        pids = json.loads(runtime("ps", "--format", "json", cid).stdout)
        assert len(pids) == 2
        r = runtime("ps", cid)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].split()[:3] == ["UID", "PID", "PPID"]
        assert sorted(int(line.split()[1]) for line in lines[1:]) == sorted(pids)
        assert any("sleep 60" in line for line in lines[1:])
        r = runtime("ps", cid, "-o", "pid,comm")  # runc: what follows the id goes to ps
        assert r.stdout.split() == ["PID", "COMMAND", *_pid_comm(pids)], r.stderr


def _pid_comm(pids: list[int]) -> list[str]:
    out = []
    for pid in sorted(pids):
        with open(f"/proc/{pid}/comm") as f:
            out += [str(pid), f.read().strip()]
    return out


def test_features_lists_the_mount_options_runc_lists_that_we_honour(runtime):
    options = set(json.loads(runtime("features").stdout)["mountOptions"])
    assert {"bind", "rbind", "tmpcopyup", "defaults", "ro", "rro", "rprivate"} <= options
    assert "idmap" not in options  # refused: id-mapped mounts are not supported


def test_events_stats_and_stream(runtime, make_bundle):
    # runc events --stats ID: one {"type": "stats", "id", "data"} document with runc's field
    # names; runc events --interval D ID: one every D until the container stops
    with container(runtime, make_bundle(["sh", "-c", "sleep 60 & wait"],
                                        linux={"resources": {"pids": {"limit": 50}}})) as cid:
        r = runtime("events", "--stats", cid)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert (doc["type"], doc["id"]) == ("stats", cid)
        data = doc["data"]
        assert data["pids"] == {"current": 2, "limit": 50}
        assert data["cpu"]["usage"]["total"] > 0
        assert data["memory"]["usage"]["usage"] > 0
        stream = runtime.popen("events", "--interval", "100ms", cid)
        try:
            docs = [json.loads(stream.stdout.readline()) for _ in range(2)]
            assert [d["type"] for d in docs] == ["stats", "stats"]
            assert runtime("kill", cid, "KILL").returncode == 0
            assert stream.wait(timeout=10) == 0  # the stream ends with the container
        finally:
            stream.kill()
            stream.wait()
    r = runtime("events", "--interval", "soon", cid)
    assert r.returncode == 2 and "--interval" in r.stderr
