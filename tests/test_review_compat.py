"""Adversarial review of the runc-compatibility changes (e8e8b0e..8fe3dc7): tmpcopyup's copy
of an untrusted directory, `ps` filtering, `events --interval`, `delete --force`. Each test
failed before its fix."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_lifecycle import container

from secfilt_runtime.container import rootfs
from secfilt_runtime.errors import ContainerError
from secfilt_runtime.state import proc_start_time

from conftest import BASE_CONFIG, needs_root

BASE_MOUNTS = BASE_CONFIG["mounts"]
ETC_TMPFS = {"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
             "options": ["rw", "nosuid", "nodev", "tmpcopyup"]}


def _copy_with_swap(tmp_path, monkeypatch, swap, mode: int = 0o644) -> tuple[object, object]:
    """rootfs._copy_up of tmp_path/src into tmp_path/dst, `swap(src)` run right after the
    copy's lstat of src/f (what a container writing to a shared rootfs or volume can do)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "f").write_text("image\n")
    os.chmod(src / "f", mode)
    real_stat = os.stat

    def stat_then_swap(path, *args, **kw):
        st = real_stat(path, *args, **kw)
        if path == "f" and kw.get("dir_fd") is not None:
            swap(src)
        return st

    def too_long(*_):
        raise TimeoutError("the copy blocked")

    monkeypatch.setattr(os, "stat", stat_then_swap)
    old = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(5)
    try:
        covered = os.open(src, os.O_PATH | os.O_DIRECTORY)
        tmpfs = os.open(dst, os.O_PATH | os.O_DIRECTORY)
        try:
            rootfs._copy_up(covered, tmpfs, "mounts[4] (/etc)", str(dst))
        finally:
            os.close(covered)
            os.close(tmpfs)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        monkeypatch.undo()
    return src, dst


@needs_root
@pytest.mark.parametrize("node", ["fifo", "device"])
def test_tmpcopyup_opens_no_fifo_or_device_swapped_in_for_a_file(tmp_path, monkeypatch, node):
    # a fifo in place of the file blocked the init (create hung); a device (here /dev/null's
    # numbers) was opened and read by the init, outside the container's device cgroup
    def swap(src):
        os.unlink(src / "f")
        if node == "fifo":
            os.mkfifo(src / "f")
        else:
            os.mknod(src / "f", stat.S_IFCHR | 0o600, os.makedev(1, 3))

    with pytest.raises(ContainerError, match=r"^mounts\[4\] \(/etc\): .*tmpcopyup.*: f changed"):
        _copy_with_swap(tmp_path, monkeypatch, swap)


@needs_root
def test_tmpcopyup_takes_owner_and_mode_from_the_file_it_copies(tmp_path, monkeypatch):
    # the lstat saw the image's setuid-root file; a file of uid 1000 renamed over it was copied
    # with the first one's owner and mode: a setuid-root program of the other container's
    def swap(src):
        (src / "evil").write_text("evil\n")
        os.chown(src / "evil", 1000, 1000)
        os.chmod(src / "evil", 0o755)
        os.rename(src / "evil", src / "f")

    src, dst = _copy_with_swap(tmp_path, monkeypatch, swap, mode=0o4755)
    st = os.stat(dst / "f")
    assert (dst / "f").read_text() == "evil\n"
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (1000, 0o755)


def _nest(top, depth: int) -> None:
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
    os.close(fd)


@needs_root
@pytest.mark.e2e
def test_tmpcopyup_of_a_tree_too_deep_names_the_mount(runtime, make_bundle):
    # an image directory nested 1200 deep: "container setup: internal error: RecursionError"
    bundle = make_bundle(["true"], writable_rootfs=True, mounts=[*BASE_MOUNTS, ETC_TMPFS])
    _nest(bundle / "rootfs" / "etc", 1200)
    try:
        r = runtime.run(bundle)
        assert r.returncode == 1
        assert r.stderr.startswith("secfilt-runtime: mounts[4] (/etc): copy"), r.stderr
        assert "(tmpcopyup): directories nested too deep" in r.stderr
    finally:  # rmtree recurses too: pytest's clean-up of old temporary directories would fail
        subprocess.run(["rm", "-rf", str(bundle / "rootfs" / "etc" / "d")], check=True)


@needs_root
@pytest.mark.e2e
def test_tmpcopyup_larger_than_the_tmpfs_names_the_mount(runtime, make_bundle):
    small = {**ETC_TMPFS, "options": [*ETC_TMPFS["options"], "size=64k"]}
    bundle = make_bundle(["true"], writable_rootfs=True, mounts=[*BASE_MOUNTS, small])
    (bundle / "rootfs" / "etc" / "big").write_bytes(b"x" * (1 << 20))
    r = runtime.run(bundle)
    assert r.returncode == 1
    assert r.stderr.startswith("secfilt-runtime: mounts[4] (/etc): copy"), r.stderr
    assert r.stderr.rstrip().endswith("(tmpcopyup): No space left on device")


@needs_root
@pytest.mark.e2e
def test_events_interval_beyond_go_durations_is_a_usage_error(runtime, make_bundle):
    # Go's durations stop at 2562047h: "3000000h" printed a document, then OverflowError's
    # traceback from time.sleep (exit 1)
    with container(runtime, make_bundle(["sh", "-c", "sleep 60 & wait"])) as cid:
        r = runtime("events", "--interval", "3000000h", cid, timeout=10)
        assert (r.returncode, r.stdout) == (2, "")
        assert "--interval: not a duration: '3000000h'" in r.stderr
        assert "Traceback" not in r.stderr


@needs_root
@pytest.mark.e2e
def test_ps_lines_are_chosen_by_the_pid_column_not_by_word_count(runtime, make_bundle):
    # `ps ID -o comm,pid` split lines on spaces: a host process named "x PID" (PID a
    # container's) was listed as the container's, and the container's shell, renamed "a 1",
    # was left out
    script = 'printf "a 1" > /proc/$$/comm; sleep 60 & wait'
    with container(runtime, make_bundle(["sh", "-c", script])) as cid:
        pids = json.loads(runtime("ps", "--format", "json", cid).stdout)
        code = ("import ctypes, sys, time; ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), "
                "0, 0, 0); print(flush=True); time.sleep(30)")
        host = subprocess.Popen([sys.executable, "-c", code, f"x {max(pids)}"],
                                stdout=subprocess.PIPE, text=True)
        try:
            host.stdout.readline()
            r = runtime("ps", cid, "-o", "comm,pid")
        finally:
            host.kill()
            host.wait()
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert [int(line.split()[-1]) for line in lines[1:]] == pids, r.stdout
        assert any(line.startswith("a 1 ") for line in lines[1:]), r.stdout


@needs_root
@pytest.mark.e2e
def test_delete_force_removes_no_state_a_create_wrote_after_its_check(runtime, make_bundle,
                                                                        monkeypatch):
    # delete --force looks for state.json, then removes the directory: a create of the same id
    # that wrote its state in between lost it (state.json, start.sock) while its init and
    # cgroup stayed, a container no command could reach. Here the check is made to see the
    # directory as a create left it before its first state.
    from secfilt_runtime import cli

    with container(runtime, make_bundle(["sleep", "60"]), started=False) as cid:
        state = json.loads(runtime("state", cid).stdout)
        state_json = str(runtime.state_root / cid / "state.json")
        real_exists = os.path.exists
        checks = []

        def exists_once_missing(p):  # the first look, made before the create's first save
            if p == state_json and not checks:
                checks.append(p)
                return False
            return real_exists(p)

        monkeypatch.setattr(os.path, "exists", exists_once_missing)
        try:
            assert cli.dispatch(["--root", str(runtime.state_root), "delete", "--force",
                                 cid]) == 0
        finally:
            monkeypatch.undo()
            left = proc_start_time(state["pid"]) is not None  # alive, not a zombie
            if left:  # what the test must not leave for the next ones
                os.kill(state["pid"], signal.SIGKILL)
                for _ in range(100):
                    if proc_start_time(state["pid"]) is None:
                        break
                    time.sleep(0.02)
                for d in sorted(Path("/sys/fs/cgroup").glob(f"*/secfilt-runtime/{cid}")):
                    subprocess.run(["rmdir", str(d)], capture_output=True)
        assert not left, "the container's init outlived delete --force"
        assert not (runtime.state_root / cid).exists()


def test_events_reports_cgroup2_memory_as_runc_does(tmp_path):
    """On cgroup v2 runc reports a limit of "max" as the largest uint64 for memory and swap and
    as 0 for pids, and swap as memory plus swap, as v1's memsw files count it (this host's
    containers are on cgroup v1: the files are written here)."""
    from secfilt_runtime import events

    for name, text in {"memory.max": "max", "memory.current": "4096",
                       "memory.swap.max": "max", "memory.swap.current": "100",
                       "pids.max": "max", "pids.current": "3",
                       "cpu.stat": "usage_usec 5\n", "memory.stat": "file 7\n"}.items():
        (tmp_path / name).write_text(text + "\n")
    stats = events.stats_v2(str(tmp_path))
    assert stats["memory"]["usage"] == {"limit": 2**64 - 1, "usage": 4096}
    assert stats["memory"]["swap"] == {"limit": 2**64 - 1, "usage": 4196}
    assert stats["pids"] == {"current": 3, "limit": 0}
    (tmp_path / "memory.max").write_text("1048576\n")
    (tmp_path / "memory.swap.max").write_text("2048\n")
    stats = events.stats_v2(str(tmp_path))
    assert stats["memory"]["usage"]["limit"] == 1048576
    assert stats["memory"]["swap"]["limit"] == 1048576 + 2048
    (tmp_path / "memory.max").write_text("max\n")  # runc's sum wraps; ours stays "no limit"
    assert events.stats_v2(str(tmp_path))["memory"]["swap"]["limit"] == 2**64 - 1
