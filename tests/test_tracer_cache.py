"""What the tracer keeps between stops (each task's root descriptor, /proc/TID/mem, verdicts by
canonical path) must never answer a later call with what held for an earlier one: the same
path string can name another file once a directory moved, a symlink took its place or the cwd
changed. The helper makes the same call twice with the change in between, under the tracer
alone (no Landlock here: nothing else would stop a wrong verdict)."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
from test_tracer_harness import HAVE_GCC, run_traced

from secfilt_runtime.policy.model import Policy
from secfilt_runtime.tracer import resolve
from secfilt_runtime.tracer.judge import Judge
from secfilt_runtime.tracer.resolve import Roots

EPERM = f"ERR {errno.EPERM}"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "allowed" / "d").mkdir(parents=True)
    (tmp_path / "denied").mkdir()
    return tmp_path


def policy_for(tree: Path, **kw: object) -> Policy:
    return Policy(read_only=True, allow_write=(str(tree / "allowed"),), **kw)  # type: ignore


@pytest.mark.skipif(not HAVE_GCC, reason="needs gcc to build the helper")
def test_a_directory_swapped_for_a_symlink_between_two_opens(helper: str, tree: Path) -> None:
    # the same absolute path twice: first a real directory inside allowed, then a symlink
    # (made inside allowed, so allowed itself) leading to the denied directory
    d = tree / "allowed" / "d"
    out = run_traced(policy_for(tree), [
        helper, "open_w", f"{d}/f", "rename", str(d), f"{tree}/allowed/moved",
        "symlink", str(tree / "denied"), str(d), "open_w", f"{d}/f", "open_w", f"{d}/g"])
    assert out.exit_code == 0
    assert out.answer("open_w", 0) == "OK"
    assert out.answer("rename") == "OK" and out.answer("symlink") == "OK"
    assert out.answer("open_w", 1) == EPERM and out.answer("open_w", 2) == EPERM
    assert sorted(os.listdir(tree / "denied")) == []


@pytest.mark.skipif(not HAVE_GCC, reason="needs gcc to build the helper")
def test_a_relative_name_after_chdir(helper: str, tree: Path) -> None:
    # the same relative name from two working directories
    out = run_traced(policy_for(tree), [
        helper, "chdir", str(tree / "allowed"), "open_w", "f", "chdir", str(tree / "denied"),
        "open_w", "f", "chdir", str(tree / "allowed"), "open_w", "g"])
    assert [out.answer("open_w", i) for i in range(3)] == ["OK", EPERM, "OK"]
    assert sorted(os.listdir(tree / "allowed")) == ["d", "f", "g"]
    assert sorted(os.listdir(tree / "denied")) == []


def test_roots_are_kept_per_task_and_closed_when_forgotten() -> None:
    roots = Roots()
    me = os.getpid()
    fd = roots.get(me)
    assert roots.get(me) == fd
    assert os.path.samestat(os.fstat(fd), os.stat("/"))
    roots.forget(me)
    with pytest.raises(OSError):
        os.fstat(fd)
    roots.forget(me)  # twice: nothing left to close
    roots.close()


def test_roots_close_the_oldest_beyond_their_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolve, "MAX_ROOTS", 2)
    roots = Roots()
    others = [subprocess.Popen(["sleep", "30"]) for _ in range(2)]
    try:
        first = roots.get(os.getpid())
        for p in others:
            roots.get(p.pid)
        with pytest.raises(OSError):
            os.fstat(first)  # the oldest went
        assert roots.get(os.getpid()) >= 0  # and comes back when asked for again
    finally:
        roots.close()
        for p in others:
            p.kill()
            p.wait()


def test_roots_are_kept_only_where_a_new_root_is_refused(tmp_path: Path) -> None:
    # chroot and setns are refused under write rules, by BPF or (with a log) by the tracer;
    # in audit mode they run, so the root is opened at every stop
    plain = Judge(policy_for(tmp_path))
    logged = Judge(policy_for(tmp_path, log_path=str(tmp_path / "log")))
    audit = Judge(policy_for(tmp_path, mode="audit"))
    network = Judge(Policy(no_outbound_network=True))
    try:
        assert plain.keeps_roots and logged.keeps_roots
        assert not audit.keeps_roots and not network.keeps_roots
    finally:
        for j in (plain, logged, audit, network):
            j.close()
