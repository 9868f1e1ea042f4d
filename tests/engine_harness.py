"""Podman and containerd driven as a user drives them, with every bit of their state in a
temporary directory: the tests of issue 5 use these to run containers through an OCI runtime
given by absolute path (secfilt-runtime, or runc to show what the engine expects)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from conftest import REPO, Result

# The runtime under test first: the suite's verdict is about it; runc shows the engine's side.
RUNTIMES = ("secfilt-runtime", "runc")
IMAGE = "localhost/secfilt-test-busybox:latest"
# Podman's default limits exceed the hard limits this machine's root can set.
ULIMITS = '["nofile=20000:20000", "nproc=32768:32768"]'
READ_ONLY = ["--annotation", "org.secfilter.read-only=true"]
# A shell that exits 42 on SIGTERM: a pid 1 only receives the signals it has a handler for.
TRAP_LOOP = ["sh", "-c", "trap 'exit 42' TERM; while :; do sleep 0.1; done"]


def engine_marks(*programs: str) -> list:
    """An engine test module's pytestmark: root, e2e, engines, and skipped unless every one
    of `programs` is installed."""
    import pytest

    from conftest import needs_root

    missing = [p for p in programs if shutil.which(p) is None]
    return [needs_root, pytest.mark.e2e, pytest.mark.engines,
            pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")]


def runtime_path(name: str) -> str:
    """The absolute path an engine is given. The console script beside this interpreter first:
    on PATH there may be a wrapper (pyenv's shims) that needs the caller's environment. When
    that script runs another tree's code (an editable install of another checkout, as in a git
    worktree), a wrapper that runs this tree's instead."""
    if name == "secfilt-runtime":
        beside = Path(sys.executable).parent / name
        if beside.is_file() and _installed_tree() == REPO / "runtime":
            return str(beside)
        return str(_tree_launcher())
    found = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if found is None:
        raise FileNotFoundError(f"{name} is not installed")
    return os.path.abspath(found)


def _installed_tree() -> Path | None:
    """The directory the installed secfilt_runtime package is imported from."""
    p = subprocess.run([sys.executable, "-I", "-c",
                        "import secfilt_runtime, os; print(os.path.dirname("
                        "os.path.dirname(secfilt_runtime.__file__)))"],
                       capture_output=True, text=True, cwd="/")
    return Path(p.stdout.strip()).resolve() if p.returncode == 0 else None


def _tree_launcher() -> Path:
    """A launcher of this tree's runtime/ (an engine's environment has no PYTHONPATH), named
    secfilt-runtime as podman's runtime_supports_json expects."""
    tag = uuid.uuid5(uuid.NAMESPACE_URL, str(REPO)).hex[:10]
    directory = Path(tempfile.gettempdir()) / f"secfilt-tree-{tag}"
    directory.mkdir(mode=0o755, exist_ok=True)
    path = directory / "secfilt-runtime"
    text = (f"#!/bin/sh\nPYTHONPATH={REPO / 'runtime'} exec {sys.executable} "
            f"-m secfilt_runtime \"$@\"\n")
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_suffix(f".{os.getpid()}")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(path)
    return path


def run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 60,
        input: str | None = None) -> Result:
    p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                       env=env, stdin=None if input is not None else subprocess.DEVNULL)
    return Result(p.returncode, p.stdout, p.stderr)


def short_id(prefix: str) -> str:
    # other engineers run containers on this machine at the same time: never a fixed name
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def mounts_under(path: Path, pid: int | str = "self") -> list[str]:
    """The mount points at or below `path` in the mount namespace of `pid`."""
    base = str(path)
    with open(f"/proc/{pid}/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == base or p.startswith(base + "/")]


def unmount_all_under(path: Path) -> list[str]:
    """Lazily unmounts what an engine left below `path`, deepest first; returns what it found."""
    left = mounts_under(path)
    for point in sorted(left, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    return left


def runtime_list(runtime: str, state_root: Path | None = None) -> list[str]:
    """`RUNTIME [--root STATE] list --format json`: the ids the runtime still knows."""
    root = ["--root", str(state_root)] if state_root is not None else []
    r = run([runtime, *root, "list", "--format", "json"], timeout=30)
    if r.returncode != 0:
        raise AssertionError(f"{runtime} list failed ({r.returncode}): {r.stderr.strip()}")
    entries = json.loads(r.stdout or "null") or []
    return [e["id"] for e in entries]


def busybox_tar(rootfs: Path, dest: Path) -> Path:
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(dest), "."], check=True)
    return dest


def containers_conf() -> str:
    """The containers.conf of the tests: cgroupfs, file events, no network, the limits this
    machine allows, secfilt-runtime's errors read as JSON (as deploy/containers.conf says)."""
    # ipcns none: a private ipc namespace without the /dev/shm podman would otherwise mount on
    # the host (a mount that test suites running meanwhile would see in the host's mount table)
    return "\n".join([
        "[containers]", 'netns = "none"', 'ipcns = "none"', f"default_ulimits = {ULIMITS}",
        "[engine]", 'cgroup_manager = "cgroupfs"', 'events_logger = "file"',
        'runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", "secfilt-runtime"]',
        ""])


@dataclass
class PodmanStore:
    """One podman storage (images, containers) in a temp dir of its own, which podman wants
    short (its runroot must be under 50 characters); views of it pick the runtime."""

    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="secfilt-podman-")))
    # vfs copies layers but needs nothing of the filesystem; overlay is faster for big images
    driver: str = "vfs"
    conf: Path = field(init=False)

    def __post_init__(self) -> None:
        for d in ("root", "runroot", "tmp", "net"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        self.conf = self.base / "containers.conf"
        self.conf.write_text(containers_conf())

    def global_flags(self) -> list[str]:
        b = self.base
        return ["--root", str(b / "root"), "--runroot", str(b / "runroot"),
                "--tmpdir", str(b / "tmp"), "--network-config-dir", str(b / "net"),
                "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                "--storage-driver", self.driver]

    def env(self, conf: Path | None = None) -> dict[str, str]:
        return dict(os.environ, CONTAINERS_CONF=str(conf or self.conf))

    def __call__(self, *args: str, timeout: float = 120, input: str | None = None) -> Result:
        return run(["podman", *self.global_flags(), *args], env=self.env(), timeout=timeout,
                   input=input)

    def destroy(self) -> list[str]:
        """Removes every container, image and directory; returns the mounts it had to undo."""
        self("rm", "--all", "--force", "--time", "0")
        self("system", "reset", "--force")
        left = unmount_all_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        return left


@dataclass
class Podman:
    """podman --runtime RUNTIME over a shared store. The runtime keeps its default --root:
    podman passes its --runtime-flag options to the commands it runs itself but not to the
    `podman container cleanup` that conmon runs when a container exits, so a private root would
    leave state behind that a user's setup never would."""

    store: PodmanStore
    runtime: str
    names: list[str] = field(default_factory=list)

    def argv(self, *args: str) -> list[str]:
        return ["podman", *self.store.global_flags(), "--runtime", self.runtime, *args]

    def __call__(self, *args: str, timeout: float = 60, input: str | None = None) -> Result:
        return run(self.argv(*args), env=self.store.env(), timeout=timeout, input=input)

    def name(self) -> str:
        """A fresh container name, remembered so the test's teardown can check and clean it."""
        n = short_id("pod")
        self.names.append(n)
        return n

    def full_id(self, name: str) -> str | None:
        r = self("inspect", "--format", "{{.Id}}", name)
        return r.stdout.strip() if r.returncode == 0 else None

    def created_ids(self) -> list[str]:
        """The full ids of every container this view named, removed ones too (the event log)."""
        r = self("events", "--stream=false", "--filter", "event=create",
                 "--format", "{{.ID}} {{.Name}}")
        pairs = [line.split() for line in r.stdout.splitlines()]
        return [p[0] for p in pairs if len(p) == 2 and p[1] in self.names]

    def status(self, name: str) -> str:
        return self("inspect", "--format", "{{.State.Status}}", name).stdout.strip()

    def wait_status(self, name: str, want: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while (got := self.status(name)) != want and time.monotonic() < deadline:
            time.sleep(0.1)
        return got

    def containers_left(self) -> list[str]:
        listed = self("ps", "--all", "--format", "{{.Names}}").stdout.split()
        return [f"podman container {n}" for n in listed if n in self.names]

    def leftovers(self) -> list[str]:
        """What the test's containers left: podman entries, runtime state, cgroups."""
        found = self.containers_left()
        ids = self.created_ids()
        try:
            found += [f"runtime state {i}" for i in runtime_list(self.runtime) if i in ids]
        except AssertionError as e:
            found.append(str(e))
        found += [f"cgroup {p}" for i in ids
                  for p in Path("/sys/fs/cgroup").glob(f"*/libpod_parent/libpod-{i}")]
        return found

    def force_clean(self) -> None:
        for n in self.names:
            self("rm", "--force", "--time", "0", n)


CONTAINERD_CONFIG = """\
version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{base}/containerd.sock"
[ttrpc]
  address = "{base}/containerd.sock.ttrpc"
[debug]
  address = "{base}/debug.sock"
"""


class Containerd:
    """A containerd daemon of the test session's own (CRI off), driven with `ctr`. It runs in a
    mount namespace of its own: the rootfs mounts of its containers stay out of the host's
    mount table, which other suites running meanwhile check, and die with the daemon."""

    namespace = "secfilt-test"

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.config = base / "config.toml"
        self.config.write_text(CONTAINERD_CONFIG.format(base=base))
        self.fifo_dir = base / "fifo"
        self.log = base / "containerd.log"
        self.ids: list[str] = []
        with open(self.log, "w") as log:
            self.daemon = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private",
                 "containerd", "--config", str(self.config)], stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 20
        while self.ctr("version").returncode != 0:
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"containerd did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def ctr(self, *args: str, timeout: float = 60, input: str | None = None) -> Result:
        return run(["ctr", "--address", str(self.base / "containerd.sock"),
                    "--namespace", self.namespace, *args], timeout=timeout, input=input)

    def runc_root(self, runtime: str) -> Path:
        return self.base / "runtime-state" / Path(runtime).name

    def state_root(self, runtime: str) -> Path:
        # the runc shim keeps each namespace's containers under ROOT/NAMESPACE
        return self.runc_root(runtime) / self.namespace

    def run_flags(self, runtime: str) -> list[str]:
        return ["--runc-binary", runtime, "--runc-root", str(self.runc_root(runtime)),
                "--fifo-dir", str(self.fifo_dir)]

    def new_id(self) -> str:
        cid = short_id("ctr")
        self.ids.append(cid)
        return cid

    def task_status(self, cid: str) -> str:
        for line in self.ctr("tasks", "ls").stdout.splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] == cid:
                return parts[-1]
        return ""

    def wait_task(self, cid: str, want: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while (got := self.task_status(cid)) != want and time.monotonic() < deadline:
            time.sleep(0.1)
        return got

    def containers_left(self) -> list[str]:
        tasks = [ln.split()[0] for ln in self.ctr("tasks", "ls").stdout.splitlines()[1:]]
        found = [f"task {t}" for t in tasks if t in self.ids]
        ctrs = self.ctr("containers", "ls", "--quiet").stdout.split()
        return found + [f"container {c}" for c in ctrs if c in self.ids]

    def leftovers(self, runtime: str) -> list[str]:
        found = self.containers_left()
        if self.state_root(runtime).exists():
            try:
                found += [f"runtime state {i}"
                          for i in runtime_list(runtime, self.state_root(runtime))]
            except AssertionError as e:
                found.append(str(e))
        found += [f"cgroup {p}" for p in self.cgroups()]
        found += [f"mount {m}" for m in self.mounts()]
        return found

    def mounts(self) -> list[str]:
        """The daemon's mounts of container root filesystems."""
        return mounts_under(self.base / "state", self.daemon.pid)

    def cgroups(self) -> list[Path]:
        return [p for cid in self.ids
                for p in Path("/sys/fs/cgroup").glob(f"*/{self.namespace}/{cid}") if p.is_dir()]

    def force_clean(self) -> None:
        for cid in self.ids:
            self.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", cid, timeout=20)
            self.ctr("tasks", "delete", "--force", cid, timeout=20)
            self.ctr("containers", "delete", cid, timeout=20)

    def stop(self) -> None:
        self.ids.clear()
        for line in self.ctr("tasks", "ls").stdout.splitlines()[1:]:
            self.ids.append(line.split()[0])
        self.ids.extend(self.ctr("containers", "ls", "--quiet").stdout.split())
        self.force_clean()
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        unmount_all_under(self.base)
        for group in Path("/sys/fs/cgroup").glob(f"*/{self.namespace}"):
            with contextlib.suppress(OSError):
                group.rmdir()


def oci_archive(store: PodmanStore, dest: Path) -> Path:
    r = store("save", "--format", "oci-archive", "--output", str(dest), IMAGE)
    if r.returncode != 0:
        raise RuntimeError(f"podman save: {r.stderr}")
    return dest


def repo_file(rel: str) -> Path:
    return REPO / rel
