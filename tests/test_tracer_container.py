"""Paths judged in the tracee's own view: a mount namespace and root of its own (pivot_root),
the tracer outside it, as with a container."""

from __future__ import annotations

import errno
import functools
import os
import shutil
from pathlib import Path

import pytest
from test_tracer_harness import HAVE_GCC, enter_root, log_records, run_traced

from secfilt_runtime import kernel
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


def _enter_root_and_a_pid_namespace(root: str) -> None:  # pragma: no cover - forked child
    enter_root(root)
    kernel.unshare(kernel.CLONE_NEWPID)  # the helper's children: pid 1 of a namespace below


def test_proc_self_is_the_tracee_at_the_level_of_its_procfs(root: Path, tmp_path: Path
                                                           ) -> None:
    # the child is pid 1 of its own pid namespace, but /proc is the outer namespace's (no
    # remount): there its "self" is its outer number. Read as 1 it would name another task.
    # (One child per run: a pid namespace takes no new task once its pid 1 is gone.)
    policy = Policy(read_only=True, allow_write=("/allowed",))
    log = str(tmp_path / "log")
    answers = [run_traced(policy, ["/bin/helper", "fork_open_w", path], log_path=log,
                          setup=functools.partial(_enter_root_and_a_pid_namespace, str(root))
                          ).answer("child_open")
               for path in ("/proc/self/cwd/allowed/nested",
                            "/proc/thread-self/root/denied/nested")]
    assert answers == ["OK", EPERM], log_records(log)
    assert [r["args"]["path"] for r in log_records(log)] == ["/denied/nested"]
    assert os.listdir(root / "allowed") == ["nested"]
    assert sorted(os.listdir(root / "denied")) == ["file"]
