"""The bench's quick mode runs once, so the command the numbers come from cannot rot. Nothing
about speed is asserted: only that every variant produced a figure."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import IS_ROOT, REPO

pytestmark = pytest.mark.skipif(not IS_ROOT or not shutil.which("gcc"),
                                reason="the bench needs root and gcc")


def test_bench_quick_mode_produces_every_figure(tmp_path):
    out = tmp_path / "results"
    p = subprocess.run([sys.executable, str(REPO / "bench" / "bench.py"), "--quick",
                        "--sections", "hot,syscalls,work,containers", "--out", str(out)],
                       capture_output=True, text=True, timeout=600,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                            "PYTHONPATH": str(REPO / "runtime")})
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert {"state", "kill", "delete", "python -I -c pass"} <= set(results["hot"])
    variants = {(r["case"], r["variant"]) for r in results["syscalls"]}
    for case in ("write-open (judged)", "connect (judged)", "getppid (no rule)"):
        assert {(case, v) for v in ("bare", "null", "secfilt")} <= variants, variants
    assert set(results["work"]) == {"untar", "fork", "python imports"}
    assert all(v["x none"] > 0 for v in results["work"].values())
    # the same jobs in containers, timed inside them: runc with podman's profile against ours
    if "skipped" in results["containers"]:  # no runc on this machine: nothing to compare with
        pytest.skip(results["containers"]["skipped"])
    assert set(results["containers"]) == {"untar", "fork", "python imports"}, \
        results["containers"]
    for job in results["containers"].values():
        assert all(job[f"{v} s"] > 0 for v in ("none", "runc", "secfilt-runtime",
                                                "secfilt-runtime + policy")), job


def test_stop_profile_times_every_step_of_a_judged_stop():
    p = subprocess.run([sys.executable, str(REPO / "bench" / "stop_profile.py"), "--calls", "500"],
                       capture_output=True, text=True, timeout=300,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert p.returncode == 0, p.stderr[-3000:]
    write_open, connect = p.stdout.split("connect:")
    for step in ("the stop's handling", "PTRACE_GET_SYSCALL_INFO", "reading the path",
                 "openat2 + close", "PTRACE_CONT"):
        assert step in write_open, p.stdout
    assert "judging" in connect and "PTRACE_CONT" in connect, p.stdout
