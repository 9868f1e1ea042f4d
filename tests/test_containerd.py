"""Issue 5: containerd's runc shim (io.containerd.runc.v2) drives the runtime given by
`ctr run --runc-binary ABSOLUTE_PATH`: create with --pid-file and the shim's fifos as stdio,
start, state, exec, kill, delete. A daemon of the module's own runs with CRI off, its root, state
and sockets in a temp dir; the image comes from `podman save --format oci-archive`.

After every test: containerd knows none of its tasks or containers, the runtime's `list` under
the shim's root is empty, and no cgroup or rootfs mount is left."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from engine_harness import (
    IMAGE,
    READ_ONLY,
    RUNTIMES,
    TRAP_LOOP,
    Containerd,
    PodmanStore,
    busybox_tar,
    engine_marks,
    mounts_under,
    oci_archive,
    repo_file,
    runtime_path,
)

from conftest import Result

pytestmark = engine_marks("containerd", "ctr", "podman")


@pytest.fixture(scope="module")
def containerd(rootfs: Path) -> Iterator[Containerd]:
    # short, as an engine's own paths would be: unix socket paths are limited to 108 bytes
    base = Path(tempfile.mkdtemp(prefix="secfilt-ctrd-"))
    store = PodmanStore()
    try:
        r = store("import", str(busybox_tar(rootfs, base / "busybox.tar")), IMAGE)
        assert r.returncode == 0, r.stderr
        archive = oci_archive(store, base / "busybox-oci.tar")
    finally:
        assert store.destroy() == []
    try:
        daemon = Containerd(base / "daemon")
    except RuntimeError:
        shutil.rmtree(base, ignore_errors=True)
        raise
    try:
        r = daemon.ctr("images", "import", str(archive))
        assert r.returncode == 0, r.stderr
        yield daemon
    finally:
        daemon.stop()
        left = mounts_under(base)
        if not left:
            shutil.rmtree(base, ignore_errors=True)
    assert left == []


@dataclass
class Ctr:
    """ctr run/exec with one runtime binary; remembers the ids the test created."""

    daemon: Containerd
    runtime: str

    def __call__(self, *args: str, **kw) -> Result:
        return self.daemon.ctr(*args, **kw)

    def run(self, argv: list[str], *flags: str, detach: bool = False, cid: str | None = None,
            **kw) -> tuple[str, Result]:
        """ctr run --rm (or --detach) FLAGS IMAGE ID ARGV...: (the id, ctr's result)."""
        if cid is None:
            cid = self.daemon.new_id()
        else:
            self.daemon.ids.append(cid)
        mode = "--detach" if detach else "--rm"
        return cid, self.daemon.ctr("run", mode, *self.daemon.run_flags(self.runtime), *flags,
                                    IMAGE, cid, *argv, **kw)

    def run_detached(self, argv: list[str], *flags: str) -> str:
        cid, r = self.run(argv, *flags, detach=True)
        assert r.returncode == 0, detail(self, r)
        assert self.daemon.wait_task(cid, "RUNNING") == "RUNNING"
        return cid

    def exec(self, cid: str, *argv: str, **kw) -> Result:
        return self.daemon.ctr("tasks", "exec", "--exec-id", f"e{len(argv)}-{cid[-6:]}",
                               "--fifo-dir", str(self.daemon.fifo_dir), cid, *argv, **kw)

    def kill_delete(self, cid: str, signal: str = "SIGKILL") -> Result:
        self.daemon.ctr("tasks", "kill", "--signal", signal, cid)
        assert self.daemon.wait_task(cid, "STOPPED") == "STOPPED"
        r = self.daemon.ctr("tasks", "delete", cid)
        assert r.returncode == 0, detail(self, r)
        assert self.daemon.ctr("containers", "delete", cid).returncode == 0
        return r


def _view(daemon: Containerd, name: str) -> Iterator[Ctr]:
    view = Ctr(daemon, runtime_path(name))
    daemon.ids.clear()
    yield view
    # a test that failed halfway leaves its containers: killing and deleting them through
    # containerd must still remove all that the runtime made for them
    unremoved = daemon.containers_left()
    daemon.force_clean()
    left = daemon.leftovers(view.runtime)
    assert left == [], f"left behind after kill and delete: {left}"
    assert unremoved == [], f"the test left containers (now removed): {unremoved}"


@pytest.fixture(params=RUNTIMES)
def ctr(request: pytest.FixtureRequest, containerd: Containerd) -> Iterator[Ctr]:
    yield from _view(containerd, request.param)


@pytest.fixture
def secfilt_ctr(containerd: Containerd) -> Iterator[Ctr]:
    yield from _view(containerd, "secfilt-runtime")


def detail(c: Ctr, r: Result) -> str:
    shim_log = "\n".join(p.read_text()[-1500:] for p in
                         (c.daemon.base / "state").glob("**/log.json") if p.is_file())
    return (f"runtime={c.runtime} rc={r.returncode}\nstdout:{r.stdout}\nstderr:{r.stderr}\n"
            f"runtime log:{shim_log}\ncontainerd log:{c.daemon.log.read_text()[-1500:]}")


def test_run_output_and_exit_code(ctr):
    _, r = ctr.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert r.returncode == 3, detail(ctr, r)
    assert r.stdout == "out\n" and "err" in r.stderr


def test_detached_exec_kill_delete(ctr):
    cid = ctr.run_detached(TRAP_LOOP)
    # the rootfs mount the teardown checks for is there while the task lives
    assert any(cid in m for m in ctr.daemon.mounts())
    r = ctr.exec(cid, "sh", "-c", "echo in-exec; ps -o pid,args; exit 7")
    assert r.returncode == 7, detail(ctr, r)
    assert "in-exec" in r.stdout and "trap" in r.stdout
    r = ctr.kill_delete(cid, "SIGTERM")
    assert "exit code 42" in r.stderr, detail(ctr, r)  # the shim reports the init's status


def test_pause_resume_kill(ctr):
    cid = ctr.run_detached(["sleep", "1000"])
    r = ctr("tasks", "pause", cid)
    assert r.returncode == 0 and ctr.daemon.task_status(cid) == "PAUSED", detail(ctr, r)
    r = ctr("tasks", "resume", cid)
    assert r.returncode == 0 and ctr.daemon.task_status(cid) == "RUNNING", detail(ctr, r)
    r = ctr.kill_delete(cid, "SIGKILL")
    assert "exit code 137" in r.stderr, detail(ctr, r)


def test_loopback_is_up(ctr):
    # runc brings lo up in the network namespace it creates for a task
    _, r = ctr.run(["cat", "/sys/class/net/lo/flags"])
    assert r.returncode == 0, detail(ctr, r)
    assert int(r.stdout, 16) & 1, f"lo is down: {detail(ctr, r)}"


def test_annotation_read_only_in_force_for_run(secfilt_ctr):
    c = secfilt_ctr
    write = ["sh", "-c", "echo x > /tmp/f && echo written"]
    _, r = c.run(write)
    assert (r.returncode, r.stdout) == (0, "written\n"), detail(c, r)
    _, r = c.run(write, *READ_ONLY)
    assert r.returncode != 0 and "written" not in r.stdout, detail(c, r)
    assert "Operation not permitted" in r.stderr, detail(c, r)


def test_annotation_in_force_for_exec(secfilt_ctr):
    c = secfilt_ctr
    cid = c.run_detached(TRAP_LOOP, *READ_ONLY)
    # (no redirection to /dev/null: opening it for writing counts as a write)
    r = c.exec(cid, "sh", "-c", "grep -c root /etc/passwd")
    assert (r.returncode, r.stdout) == (0, "1\n"), detail(c, r)
    r = c.exec(cid, "sh", "-c", "sh -c 'echo x > /tmp/f' && echo written")
    assert "written" not in r.stdout and "Operation not permitted" in r.stderr, detail(c, r)
    c.kill_delete(cid)


def test_kubernetes_length_id_with_policy(secfilt_ctr):
    """CRI gives containers 64-hex-digit ids, and the shim a --root of its own: whatever the
    runtime keeps per container (sockets too) must work at that length."""
    c = secfilt_ctr
    cid = uuid.uuid4().hex + uuid.uuid4().hex
    _, r = c.run(["sh", "-c", "echo x > /tmp/f && echo written"], *READ_ONLY, cid=cid)
    assert "written" not in r.stdout, detail(c, r)
    assert "Operation not permitted" in r.stderr, detail(c, r)


def test_documented_config_parses(tmp_path):
    """deploy/containerd-config.toml names the keys containerd 1.6 reads: the runtime handler,
    its BinaryName, and the pod annotations it passes through."""
    conf = tmp_path / "config.toml"
    conf.write_text(repo_file("deploy/containerd-config.toml").read_text())
    r = subprocess.run(["containerd", "--config", str(conf), "config", "dump"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    dumped = r.stdout
    assert "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.secfilt]" in dumped
    options = dumped[dumped.index("containerd.runtimes.secfilt.options]"):]
    assert 'BinaryName = "/usr/local/bin/secfilt-runtime"' in options.split("[", 1)[0]
    assert 'pod_annotations = ["org.secfilter.*"]' in dumped
