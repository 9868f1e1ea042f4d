"""Attacks on the write rules (read-only + allow-write): every file-system-changing system call and
every way of naming the forbidden side, each run without the policy (it must work there) and under
it (the host's file system must show no change), under `secfilt` and in a container."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from attacks.cases import (
    ALLOWED_CONTROLS,
    PATH_TRICKS,
    SYSCALLS,
    FsCase,
    baseline,
    enforced,
    prepared,
)
from attacks.harness import MODES, ContainerRunner, HostRunner, Tree, runner_for

from conftest import needs_root

pytestmark = [needs_root]

ATTACKS = SYSCALLS + PATH_TRICKS


@pytest.fixture
def in_container(runtime, make_bundle) -> Callable[[Tree], ContainerRunner]:
    return lambda tree: ContainerRunner(tree, runtime, make_bundle)


@pytest.mark.parametrize("case", ATTACKS, ids=lambda c: c.name)
def test_write_attack_under_secfilt(tmp_path: Path, case: FsCase) -> None:
    baseline(tmp_path, case)
    enforced(HostRunner(prepared(tmp_path, case)), case)


@pytest.mark.parametrize("case", [c for c in ATTACKS if not c.host_only], ids=lambda c: c.name)
def test_write_attack_in_container(tmp_path: Path, case: FsCase, in_container) -> None:
    baseline(tmp_path, case)
    enforced(in_container(prepared(tmp_path, case)), case)


def test_container_tree_is_writable_without_policy(tmp_path: Path, in_container) -> None:
    """The container baseline: the bound tree is the host's and writable, so a blocked attack in
    a container is the policy's doing."""
    runner = in_container(Tree.make(tmp_path))
    out = runner.run("fsops", "open_creat", runner.path("forbidden/new"), policy=None)
    assert out.claimed and (runner.tree / "forbidden/new").exists(), str(out)


@pytest.mark.parametrize("case", ALLOWED_CONTROLS, ids=lambda c: c.name)
@pytest.mark.parametrize("mode", MODES)
def test_allowed_writes_still_work(tmp_path: Path, case: FsCase, mode: str, request) -> None:
    """A policy that breaks every write would pass every attack: the allowed side must work."""
    tree = prepared(tmp_path, case)
    runner = runner_for(mode, tree, request)
    out = runner.run(case.program, *case.argv(runner.path), policy=runner.write_policy())
    assert out.claimed and case.changed(tree), f"an allowed write was refused:\n{out}"
