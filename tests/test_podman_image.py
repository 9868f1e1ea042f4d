"""Issue 5: the Dockerfile builds an image that carries secfilt-runtime and installs it onto a
node through a mounted host directory. No registry is reachable, so the base image is made
here from this machine's Python (as python:slim would be) and the build runs offline; the
installed runtime must then run containers with nothing of the host's Python or libraries."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_harness import (
    PodmanStore,
    engine_marks,
    mounts_under,
    run,
    runtime_list,
    runtime_path,
    short_id,
)

from conftest import REPO

pytestmark = engine_marks("podman")

BASE = "localhost/secfilt-test-python:latest"
INSTALLER = "localhost/secfilt-test-installer:latest"
BUNDLE_PY = REPO / "deploy" / "bundle.py"


def make_python_base(root: Path) -> None:
    """busybox, this interpreter at /usr/local with pip, setuptools and the project's
    dependencies, and its libraries where the dynamic loader looks without a cache."""
    subprocess.run([str(REPO / "bundles" / "mkrootfs.sh"), str(root)], check=True)
    reqs = subprocess.run([sys.executable, str(BUNDLE_PY), "--requirements", str(REPO)],
                          capture_output=True, text=True, check=True).stdout.split()
    names = [re.match(r"[A-Za-z0-9._-]+", r).group(0) for r in reqs]
    subprocess.run([sys.executable, str(BUNDLE_PY), str(root / "usr/local"),
                    "pip", "setuptools", *names], check=True)
    (root / "lib64").mkdir()
    (root / "usr/lib").mkdir(exist_ok=True)
    strip = shutil.which("strip")
    for lib in (root / "usr/local/lib").iterdir():
        if lib.is_file() and ".so" in lib.name:
            dest = root / ("lib64" if lib.name.startswith("ld-linux") else "usr/lib")
            shutil.move(lib, dest / lib.name)
            if strip and "python" in lib.name:  # a pyenv build keeps its symbols: 20 MB
                subprocess.run([strip, "--strip-unneeded", str(dest / lib.name)], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (root / "usr/local/bin/python3").symlink_to(version)


@pytest.fixture(scope="module")
def installer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanStore]:
    """The installer image, built with `podman build` from the repository's Dockerfile."""
    work = tmp_path_factory.mktemp("image")
    store = PodmanStore(driver="overlay")
    runc = runtime_path("runc")
    try:
        make_python_base(work / "base")
        tar = work / "base.tar"
        subprocess.run(["tar", "-C", str(work / "base"), "-cf", str(tar), "."], check=True)
        r = store("import", str(tar), BASE)
        assert r.returncode == 0, r.stderr
        r = store("build", "--runtime", runc, "--network", "none", "--pull=never", "--layers=false",
                  "--build-arg", f"BASE={BASE}", "--build-arg", "PIP_OPTS=--no-index",
                  "--tag", INSTALLER, "--file", str(REPO / "Dockerfile"), str(REPO),
                  timeout=600)
        assert r.returncode == 0, f"podman build failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
        yield store
    finally:
        left = store.destroy()
        shutil.rmtree(work / "base", ignore_errors=True)
    assert left == []


@pytest.fixture(scope="module")
def installed(installer: PodmanStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A node's /usr/local stand-in, filled by running the image as documented."""
    host = tmp_path_factory.mktemp("node-usr-local")
    r = installer("run", "--rm", "--runtime", runtime_path("runc"), "--network", "none",
                  "--volume", f"{host}:/host", "--env", f"SECFILT_PREFIX={host}", INSTALLER)
    assert r.returncode == 0, r.stderr
    assert f"installed {host}/bin/secfilt-runtime" in r.stdout
    return host


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def clean_env(**extra: str) -> dict[str, str]:
    # an engine's environment: no pyenv, no virtualenv, nothing of this test's Python
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **extra}


@pytest.fixture
def state(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A state root and container id for the installed runtime, checked empty afterwards (with
    the runtime's own `list`: the host's mount table is shared with concurrent suites)."""
    root, cid = tmp_path / "state", short_id("img")
    yield root, cid
    assert runtime_list(runtime_path("secfilt-runtime"), root) == []
    assert not list(Path("/sys/fs/cgroup").glob(f"*/secfilt-runtime/{cid}"))


def test_installed_runtime_runs_a_container(installed, state, make_bundle):
    root, cid = state
    bundle = make_bundle(args=["sh", "-c", "echo from-installed; exit 4"])
    exe = installed / "bin" / "secfilt-runtime"
    r = run([str(exe), "--root", str(root), "run", "--bundle", str(bundle), cid],
            env=clean_env())
    assert (r.returncode, r.stdout) == (4, "from-installed\n"), r.stderr
    assert (installed / "bin" / "secfilt").is_file()
    r = run([str(exe), "--root", str(root), "list", "--format", "json"], env=clean_env())
    assert r.returncode == 0 and json.loads(r.stdout or "null") in (None, []), r.stderr


def test_installed_runtime_starts_without_site(installed, tmp_path):
    """The launchers skip site: the bundle's sitecustomize imported ctypes.util (shutil,
    subprocess, re, enum: ~25 ms of every command) for the one path that needs it."""
    exe = installed / "bin" / "secfilt-runtime"
    r = run([str(exe), "--root", str(tmp_path), "state", "none"],
            env=clean_env(PYTHONPROFILEIMPORTTIME="1"))
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")}
    assert "secfilt_runtime.cli" in imported, r.stderr
    assert imported & {"site", "sitecustomize", "ctypes.util", "subprocess", "shutil"} == set()


LIB_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib",
            "/usr/lib", "/usr/local/lib")  # where find_library's fallbacks look


def test_installed_runtime_compiles_a_seccomp_profile(installed, state, make_bundle):
    """A cold filter cache on a node without libseccomp (its files and the loader's cache
    hidden in a mount namespace): the bundle's copy is found (find_library, patched as
    pyseccomp is imported) and compiles linux.seccomp."""
    root, cid = state
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    bundle = make_bundle(args=["sh", "-c", "mkdir /tmp/d 2>/dev/null || echo refused"],
                         linux={"seccomp": profile})
    exe = installed / "bin" / "secfilt-runtime"
    hidden = ["/etc/ld.so.cache", *(str(p) for d in LIB_DIRS for p in Path(d).glob("libseccomp.*"))]
    hide = "".join(f"mount --bind /dev/null '{f}' && " for f in hidden)
    r = run(["unshare", "-m", "--propagation", "private", "sh", "-c",
             f'{hide}exec "$@"', "sh", str(exe), "--root", str(root), "run", "--bundle",
             str(bundle), cid], env=clean_env())
    assert (r.returncode, r.stdout) == (0, "refused\n"), r.stderr


def test_installed_runtime_maps_only_its_bundle(installed, state, make_bundle):
    """The node's Python and libraries do not matter: every ELF file the running runtime maps
    (loader, interpreter, libraries, extension modules) is in the bundle. glibc's locale data
    may come from the node: it is optional and not code."""
    root, cid = state
    bundle = make_bundle(args=["sleep", "3"])
    exe = installed / "bin" / "secfilt-runtime"
    p = subprocess.Popen([str(exe), "--root", str(root), "run", "--bundle", str(bundle), cid],
                         env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not (root / cid).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(f"/proc/{p.pid}/maps") as f:
            files = {line.split()[5] for line in f if len(line.split()) > 5}
    finally:
        out, err = p.communicate(timeout=20)
    mapped = {f for f in files if f.startswith("/") and is_elf(f)}
    outside = {f for f in mapped if not f.startswith(f"{installed}/lib/secfilt-runtime/")}
    assert p.returncode == 0, err
    assert outside == set(), outside
    assert any("libpython" in f or "python3" in f for f in mapped)


def test_installed_runtime_ignores_pythonpath_and_cwd(installed, tmp_path):
    # a directory an engine might run us in, holding a module of the runtime's name
    evil = tmp_path / "evil"
    (evil / "secfilt_runtime").mkdir(parents=True)
    marker = tmp_path / "imported"
    (evil / "secfilt_runtime" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n")
    (evil / "secfilt_runtime" / "cli.py").write_text("def main():\n    return 0\n")
    exe = installed / "bin" / "secfilt-runtime"
    p = subprocess.run([str(exe), "--help"], cwd=evil, capture_output=True, text=True,
                       env=clean_env(PYTHONPATH=str(evil), PYTHONHOME=str(evil)), timeout=60)
    assert p.returncode == 0, p.stderr
    assert "usage: secfilt-runtime" in p.stdout.lower()
    assert not marker.exists()


def test_reinstall_replaces_in_place(installer, installed):
    """Running the installer again over an installed node leaves one bundle, no temp dirs."""
    r = installer("run", "--rm", "--runtime", runtime_path("runc"), "--network", "none",
                  "--volume", f"{installed}:/host", "--env", f"SECFILT_PREFIX={installed}",
                  INSTALLER)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(installed / "lib")) == ["secfilt-runtime"]
    assert sorted(os.listdir(installed / "bin")) == ["secfilt", "secfilt-runtime"]
    assert mounts_under(installed) == []


def test_installer_refuses_relative_prefix(installer, tmp_path):
    r = installer("run", "--rm", "--runtime", runtime_path("runc"), "--network", "none",
                  "--volume", f"{tmp_path}:/host", "--env", "SECFILT_PREFIX=usr/local",
                  INSTALLER)
    assert r.returncode == 2
    assert "SECFILT_PREFIX must be absolute" in r.stderr
    assert os.listdir(tmp_path) == []
