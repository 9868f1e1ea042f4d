"""Paths judged in the tracee's own view: a mount namespace and root of its own (pivot_root),
the tracer outside it, as with a container."""

from __future__ import annotations

import errno
import functools
import os
import shutil
from pathlib import Path

import pytest
from test_tracer_harness import HAVE_GCC, enter_root, run_traced

from secfilt_runtime.policy.model import Policy

pytestmark = [pytest.mark.skipif(not HAVE_GCC, reason="needs gcc to build the helper"),
              pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root")]
EPERM = f"ERR {errno.EPERM}"


@pytest.fixture
def root(tmp_path_factory: pytest.TempPathFactory, helper: str) -> Path:
    root = tmp_path_factory.mktemp("tracer-root") / "root"
    for d in ("allowed", "denied", "proc", "bin"):
        (root / d).mkdir(parents=True)
    shutil.copy(helper, root / "bin" / "helper")
    (root / "denied" / "file").write_text("keep")
    # a name the host has too: judged as the container's /etc, not the host's
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("inside")
    return root


def test_paths_are_judged_inside_the_root(root: Path) -> None:
    policy = Policy(read_only=True, allow_write=("/allowed",))
    out = run_traced(policy, [
        "/bin/helper", "open_w", "/allowed/a", "open_w", "/denied/a",
        "open_w", "/allowed/../../../../denied/b", "procfd_w", "/denied/file",
        "chdir", "/allowed", "open_w", "rel", "proccwd_w", "../denied/c",
        "rename", "/allowed/a", "/denied/moved", "fchmod_r", "/allowed/a",
        "fchmod_r", "/etc/hostname"],
        setup=functools.partial(enter_root, str(root)))
    assert [out.answer("open_w", i) for i in range(4)] == ["OK", EPERM, EPERM, "OK"]
    assert out.answer("procfd_w") == EPERM
    assert out.answer("proccwd_w") == EPERM
    assert out.answer("rename") == EPERM
    assert [out.answer("fchmod_r", i) for i in range(2)] == ["OK", EPERM]
    assert sorted(os.listdir(root / "allowed")) == ["a", "rel"]
    assert sorted(os.listdir(root / "denied")) == ["file"]
    assert (root / "denied" / "file").read_text() == "keep"


def test_host_paths_outside_the_root_are_not_writable_by_name(root: Path, tmp_path: Path
                                                              ) -> None:
    # the host's allowed directory does not exist inside: a name is the container's name
    host_dir = tmp_path / "host-allowed"
    host_dir.mkdir()
    policy = Policy(read_only=True, allow_write=(str(host_dir),))
    out = run_traced(policy, ["/bin/helper", "open_w", "/allowed/x", "open_w",
                              f"{host_dir}/x"], setup=functools.partial(enter_root, str(root)))
    assert out.answer("open_w", 0) == EPERM
    # the path does not exist in the container's view: the kernel's own ENOENT
    assert out.answer("open_w", 1) == f"ERR {errno.ENOENT}"
    assert os.listdir(host_dir) == []
