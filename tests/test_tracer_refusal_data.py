"""A real process under a logged policy: the filter's outright refusals reach the tracer as TRACE
stops whose data names them (policy.filter.REFUSALS), and the tracer refuses and logs them as
the filter meant, judging nothing: chroot and swapon are calls the judge has no branch for.
The process's own TRACE filter, whose data the kernel reports instead of ours, changes none of
it (tracer.refusals)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from test_tracer_harness import HAVE_GCC, log_records, run_traced

from secfilt_runtime.policy import filter as policy_filter
from secfilt_runtime.policy.model import Policy

pytestmark = pytest.mark.skipif(not HAVE_GCC, reason="needs gcc to build the helper")
REFUSED = f"ERR {errno.EROFS}"  # the policy's errno: never the kernel's own answer here

def policy_for(tmp_path: Path, **kw: object) -> Policy:
    (tmp_path / "allowed").mkdir(exist_ok=True)
    (tmp_path / "jail").mkdir(exist_ok=True)
    return Policy(read_only=True, allow_write=(str(tmp_path / "allowed"),), errno=errno.EROFS,
                  log_path=str(tmp_path / "log"), **kw)  # type: ignore[arg-type]


def reason(refusal: int) -> str:
    return policy_filter.REFUSALS[refusal][1]


def test_calls_the_judge_never_heard_of_are_refused_and_logged(helper: str,
                                                               tmp_path: Path) -> None:
    policy = policy_for(tmp_path)
    out = run_traced(policy, [helper, "chroot", str(tmp_path / "jail"),
                              "swapon", str(tmp_path / "no-such-swap"), "traceme"],
                     log_path=policy.log_path)
    assert [out.answer(op) for op in ("chroot", "swapon", "traceme")] == [REFUSED] * 3
    records = log_records(str(policy.log_path))
    assert [(r["syscall"], r["action"], r["errno"], r["rule"], r["reason"]) for r in records] \
        == [("chroot", "deny", errno.EROFS, "read-only", reason(policy_filter.NEW_ROOT)),
            ("swapon", "deny", errno.EROFS, "read-only", reason(policy_filter.MOUNT_TREE)),
            ("ptrace", "deny", errno.EROFS, "sandbox-integrity", reason(policy_filter.ESCAPE))]


@pytest.mark.parametrize("forged", [0, policy_filter.MOUNT_TREE, 0xFFFF])
def test_an_own_filter_s_data_changes_no_refusal(helper: str, tmp_path: Path,
                                                 forged: int) -> None:
    policy = policy_for(tmp_path)
    out = run_traced(policy, [helper, "own_trace", str(forged), "chroot", str(tmp_path / "jail"),
                              "swapon", str(tmp_path / "no-such-swap")],
                     log_path=policy.log_path)
    assert out.answer("own_trace") == "OK"
    assert [out.answer(op) for op in ("chroot", "swapon")] == [REFUSED] * 2
    assert [(r["syscall"], r["rule"]) for r in log_records(str(policy.log_path))] == [
        ("chroot", "read-only"), ("swapon", "read-only")]


def test_audit_mode_keeps_hardening_whatever_the_data(helper: str, tmp_path: Path) -> None:
    # a forged write refusal (audit mode lets those through) on ptrace, a hardening refusal
    policy = policy_for(tmp_path, mode="audit")
    out = run_traced(policy, [helper, "own_trace", str(policy_filter.MOUNT_TREE),
                              "chroot", str(tmp_path / "jail"), "traceme"],
                     log_path=policy.log_path)
    assert out.answer("chroot") == "OK" and out.answer("traceme") == REFUSED
    assert [(r["syscall"], r["action"]) for r in log_records(str(policy.log_path))] == [
        ("chroot", "audit"), ("ptrace", "deny")]
