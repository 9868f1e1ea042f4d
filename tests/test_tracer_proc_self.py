"""Paths named through /proc/self and /proc/thread-self under write rules with a log and an
errno of the policy, under `secfilt` and in a container.

Those links name the reader. The tracer reads the tracee's procfs, and in a container that
procfs belongs to a pid namespace the tracer is not in, where "self" names nobody: the tracer
must read them as the tracee would (its own numbers in that namespace). An allowed write
through them must work; a forbidden one must be refused with the policy's errno and logged,
as it is when named directly.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from attacks.cases import NEW, OWN, FsCase, created, prepared
from attacks.harness import MODES, Policy, Tree, runner_for

from conftest import needs_root

pytestmark = [needs_root]

ERRNO = errno.ENOTTY  # not EPERM: the answer must be the policy's, not a generic refusal


def logged_policy(runner, log: Path) -> Policy:
    return {**runner.write_policy(), "errno": "ENOTTY", "log": str(log)}


def log_records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _appended(rel: str):
    return lambda t: (t / rel).read_text() != "own\n"


ALLOWED = (
    FsCase("/proc/self/cwd", "proc_cwd_creat", ("@allowed", "new"), created("allowed/new")),
    FsCase("/proc/thread-self/cwd", "proc_thread_cwd_creat", ("@allowed", "new"),
           created("allowed/new")),
    FsCase("/proc/self/root", "proc_root_creat", ("@allowed/new",), created("allowed/new")),
    FsCase("/proc/self/fd/N/ (dirfd)", "proc_fd_dir_creat", ("@allowed", "new"),
           created("allowed/new")),
    FsCase("/proc/self/fd/N reopened for writing", "proc_fd_reopen", ("@" + OWN,),
           _appended(OWN)),
)

FORBIDDEN = (
    FsCase("/proc/self/root", "proc_root_creat", (NEW,), created("forbidden/new")),
    FsCase("/proc/self/cwd", "proc_cwd_creat", ("@forbidden", "new"), created("forbidden/new")),
    FsCase("/proc/thread-self/cwd", "proc_thread_cwd_creat", ("@forbidden", "new"),
           created("forbidden/new")),
)


@pytest.mark.parametrize("case", ALLOWED, ids=lambda c: c.name)
@pytest.mark.parametrize("mode", MODES)
def test_allowed_write_through_proc_self(tmp_path: Path, case: FsCase, mode: str,
                                         request) -> None:
    runner = runner_for(mode, prepared(tmp_path, case), request)
    log = tmp_path / "policy.log"
    out = runner.run(case.program, *case.argv(runner.path), policy=logged_policy(runner, log))
    assert out.claimed and case.changed(runner.tree), f"an allowed write was refused:\n{out}"
    assert log_records(log) == []


@pytest.mark.parametrize("case", FORBIDDEN, ids=lambda c: c.name)
@pytest.mark.parametrize("mode", MODES)
def test_forbidden_write_through_proc_self_is_refused_and_logged(
        tmp_path: Path, case: FsCase, mode: str, request) -> None:
    runner = runner_for(mode, prepared(tmp_path, case), request)
    log = tmp_path / "policy.log"
    out = runner.run(case.program, *case.argv(runner.path), policy=logged_policy(runner, log))
    assert not case.changed(runner.tree), f"BYPASS ({mode}): {case.name}\n{out}"
    assert f"blocked: {os.strerror(ERRNO)}" in out.stdout, str(out)
    records = log_records(log)
    assert [(r["syscall"], r["action"], r["errno"], r["args"].get("path"))
            for r in records] == [("open", "deny", ERRNO, runner.path("forbidden/new"))], \
        f"{records}\n{out}"


@pytest.mark.parametrize("mode", MODES)
def test_a_deleted_file_through_proc_self_fd_is_refused_and_logged(tmp_path: Path, mode: str,
                                                                   request) -> None:
    # an O_TMPFILE has no name to judge it by ("/allowed/#123 (deleted)"): linking it in
    # through /proc/self/fd/N is refused as unjudgeable, visibly, the same in both modes (with
    # AT_EMPTY_PATH instead, allowed_mounts allows it by the mount it is on)
    runner = runner_for(mode, Tree.make(tmp_path), request)
    log = tmp_path / "policy.log"
    out = runner.run("fsops", "tmpfile_proc_link", runner.path("allowed"),
                     runner.path("allowed/new"), policy=logged_policy(runner, log))
    assert f"blocked: {os.strerror(ERRNO)}" in out.stdout, str(out)
    records = log_records(log)
    assert [(r["syscall"], r["errno"]) for r in records] == [("linkat", ERRNO)], str(out)
    assert "(deleted)" in records[0]["reason"]
