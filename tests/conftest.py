"""Fixtures for end-to-end tests: a busybox rootfs, bundles built from a base config, and a
check after every container test that nothing was left behind."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "runtime"))

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="containers need root")

BASE_CONFIG = {
    "ociVersion": "1.2.0",
    "process": {
        "args": ["true"],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
        "capabilities": {
            k: ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETUID",
                "CAP_SETGID", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"]
            for k in ("bounding", "effective", "permitted")
        },
    },
    "root": {"path": "rootfs", "readonly": True},
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]},
    ],
    "linux": {
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
    },
}


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox rootfs shared by the session; containers get it read-only unless they copy."""
    path = tmp_path_factory.mktemp("rootfs-base") / "rootfs"
    subprocess.run([str(REPO / "bundles" / "mkrootfs.sh"), str(path)], check=True)
    # pytest makes its directories 0700; the root of a user namespace is another host uid
    for parent in list(path.parents)[:-1]:
        parent.chmod(parent.stat().st_mode | 0o055)
    return path


@pytest.fixture(scope="session")
def helper(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tracer tests' static helper program (test_tracer_harness.HELPER_C), built once."""
    from test_tracer_harness import build_helper  # imported here: it loads secfilt_runtime

    return build_helper(tmp_path_factory.mktemp("tracer-helper"))


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Runtime:
    """Runs `secfilt-runtime` with a private --root."""

    state_root: Path
    # unique per test: container ids name cgroups (/secfilt-runtime/<id>), which are global
    cid: str = field(default_factory=lambda: f"t-{uuid.uuid4().hex[:12]}")

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "secfilt_runtime", "--root", str(self.state_root), *args]

    @staticmethod
    def env() -> dict[str, str]:
        return dict(os.environ, PYTHONPATH=str(REPO / "runtime"))

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60) -> Result:
        p = subprocess.run(self.argv(*args), input=input, capture_output=True, text=True,
                           timeout=timeout, env=self.env())
        return Result(p.returncode, p.stdout, p.stderr)

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        """Start `secfilt-runtime ARGS` with text pipes for stdin, stdout and stderr."""
        return subprocess.Popen(self.argv(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env(), **kw)

    def run(self, bundle: Path, container_id: str | None = None, **kw) -> Result:
        return self("run", "--bundle", str(bundle), container_id or self.cid, **kw)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime(tmp_path / "state")
    before_mounts = _mount_points()
    before_cgroups = _container_cgroups()
    yield rt
    assert_nothing_left(rt.state_root, before_mounts, before_cgroups)


def _mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def _container_cgroups() -> set[Path]:
    return {p for p in Path("/sys/fs/cgroup").glob("*/secfilt-runtime/*") if p.is_dir()}


def assert_nothing_left(state_root: Path, before_mounts: set[str],
                        before_cgroups: set[Path] = frozenset()) -> None:
    # the compiled-filter and config-verdict caches are meant to outlive containers
    entries = [p for p in state_root.iterdir()
               if p.name not in ("seccomp-cache", "validation-cache")] \
        if state_root.exists() else []
    assert entries == [], f"state entries left behind: {entries}"
    leaked = _mount_points() - before_mounts
    assert not leaked, f"mounts left behind: {leaked}"
    # those there before the test are not its own (other runs' on a shared machine)
    cgroup_dirs = sorted(_container_cgroups() - before_cgroups)
    assert cgroup_dirs == [], f"cgroups left behind: {cgroup_dirs}"


def deep_merge(base: dict, changes: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.fixture
def make_bundle(tmp_path: Path, rootfs: Path) -> Callable[..., Path]:
    """make_bundle(args=[...], config changes..., writable_rootfs=False) -> bundle dir."""
    counter = iter(range(1000))

    def make(args: list[str] | None = None, writable_rootfs: bool = False, **changes) -> Path:
        bundle = tmp_path / f"bundle{next(counter)}"
        bundle.mkdir()
        config = deep_merge(BASE_CONFIG, changes)
        if args is not None:
            config["process"]["args"] = args
        if writable_rootfs:
            subprocess.run(["cp", "-a", str(rootfs), str(bundle / "rootfs")], check=True)
            config["root"] = {"path": "rootfs",
                              "readonly": changes.get("root", {}).get("readonly", False)}
        else:
            config["root"]["path"] = str(rootfs)
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        return bundle

    return make
