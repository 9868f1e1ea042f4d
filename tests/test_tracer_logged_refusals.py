"""Calls the policy's filter refuses outright, when the refusal must be logged.

With a log (or in audit mode) the filter cannot answer ERRNO itself: the tracer would never
see the call to log it. It sends a TRACE instead, and the tracer must refuse (audit: allow)
and log. Most such calls are in the tracer's table; chroot, setns and bpf are not (no argument
of theirs is read from memory), and the mount family is in it only as a write rule. Each must
still be refused with a log, or the log would open what it only meant to record: a chroot
under write rules gives the policy's names other meanings, a setns leaves the read-only mounts
or the cgroup of the destination programs, bpf detaches those programs.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
from test_tracer_harness import HAVE_GCC, log_records, run_traced

from secfilt_runtime.policy.model import Policy

pytestmark = pytest.mark.skipif(not HAVE_GCC, reason="needs gcc to build the helper")
REFUSED = f"ERR {errno.EROFS}"  # the policy's errno, so a refusal is never the kernel's own


def write_policy(tmp_path: Path, **kw: object) -> Policy:
    (tmp_path / "allowed").mkdir(exist_ok=True)
    return Policy(read_only=True, allow_write=(str(tmp_path / "allowed"),), errno=errno.EROFS,
                  log_path=str(tmp_path / "log"), **kw)  # type: ignore[arg-type]


def test_a_new_root_is_refused_with_a_log(helper: str, tmp_path: Path) -> None:
    # in the jail, the allowed directory's name leads to a forbidden place: had the chroot run,
    # the tracer (which keeps each task's root) would judge that name in the old root
    policy = write_policy(tmp_path)
    jailed = tmp_path / "jail" / tmp_path.relative_to("/") / "allowed"
    jailed.mkdir(parents=True)
    out = run_traced(policy, [helper, "open_w", str(tmp_path / "allowed" / "before"),
                              "chroot", str(tmp_path / "jail"), "setns0", "setns_mnt",
                              "open_w", str(tmp_path / "allowed" / "after")],
                     log_path=policy.log_path)
    assert [out.answer(op) for op in ("chroot", "setns0", "setns_mnt")] == [REFUSED] * 3
    assert out.answer("open_w", 0) == "OK" and out.answer("open_w", 1) == "OK"
    assert sorted(os.listdir(tmp_path / "allowed")) == ["after", "before"]
    assert os.listdir(jailed) == []
    records = log_records(str(policy.log_path))
    assert [(r["syscall"], r["action"], r["errno"]) for r in records] == [
        ("chroot", "deny", errno.EROFS), ("setns", "deny", errno.EROFS),
        ("setns", "deny", errno.EROFS)]
    assert {r["rule"] for r in records} == {"read-only"}


def test_the_destination_programs_stay_with_a_log(helper: str, tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    policy = Policy(no_outbound_network=True, errno=errno.EROFS,
                    log_path=str(tmp_path / "log"))
    try:
        out = run_traced(policy, [helper, "bpf", "setns_cgroup", "setns0", "mount",
                                  str(tmp_path / "m")], log_path=policy.log_path)
    finally:
        if os.path.ismount(tmp_path / "m"):  # the host's: the refusal failed
            subprocess.run(["umount", str(tmp_path / "m")], check=False)
    assert [out.answer(op) for op in ("bpf", "setns_cgroup", "setns0", "mount")] == \
        [REFUSED] * 4
    assert out.answer("mount") == REFUSED
    records = log_records(str(policy.log_path))
    assert [r["syscall"] for r in records] == ["bpf", "setns", "setns", "mount"]
    assert {r["rule"] for r in records} == {"no-outbound-network"}


def test_calls_no_rule_refuses_pass_with_a_log(helper: str, tmp_path: Path) -> None:
    # network rules alone: a new root or mount namespace is none of their business
    (tmp_path / "jail").mkdir()
    policy = Policy(no_outbound_network=True, log_path=str(tmp_path / "log"))
    out = run_traced(policy, [helper, "setns_mnt", "chroot", str(tmp_path / "jail")],
                     log_path=policy.log_path)
    assert out.answer("setns_mnt") == "OK" and out.answer("chroot") == "OK"
    assert log_records(str(policy.log_path)) == []


def test_audit_mode_allows_them_and_logs(helper: str, tmp_path: Path) -> None:
    (tmp_path / "jail").mkdir()
    policy = write_policy(tmp_path, mode="audit")
    out = run_traced(policy, [helper, "chroot", str(tmp_path / "jail")],
                     log_path=policy.log_path)
    assert out.answer("chroot") == "OK"
    records = log_records(str(policy.log_path))
    assert [(r["syscall"], r["action"]) for r in records] == [("chroot", "audit")]
