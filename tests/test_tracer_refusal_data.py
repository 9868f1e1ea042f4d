"""A real process under a logged policy: the filter's outright refusals reach the tracer as TRACE
stops whose data names them (policy.filter.REFUSALS), and the tracer refuses and logs them as
the filter meant, judging nothing: chroot and swapon are calls the judge has no branch for.
The process's own TRACE filter, whose data the kernel reports instead of ours, changes none of
it (tracer.refusals)."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest
from test_tracer_harness import HAVE_GCC, log_records, run_traced

from secfilt_runtime.policy import filter as policy_filter
from secfilt_runtime.policy.model import Policy

pytestmark = pytest.mark.skipif(not HAVE_GCC, reason="needs gcc to build the helper")
REFUSED = f"ERR {errno.EROFS}"  # the policy's errno: never the kernel's own answer here

SOURCE = r"""
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

static void out(const char *op, long rc)
{
    if (rc < 0) printf("%s ERR %d\n", op, errno);
    else printf("%s OK\n", op);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *op = argv[i];
        if (!strcmp(op, "own_trace")) {
            /* every call: SECCOMP_RET_TRACE with the data given (the newest filter's data is
             * what the tracer reads) */
            unsigned data = (unsigned)strtoul(argv[++i], NULL, 0) & 0xffff;
            struct sock_filter f[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE | data)};
            struct sock_fprog prog = {1, f};
            out(op, syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog));
        } else if (!strcmp(op, "chroot")) {
            out(op, chroot(argv[++i]));
        } else if (!strcmp(op, "swapon")) {
            out(op, syscall(SYS_swapon, argv[++i], 0));  /* the kernel alone: ENOENT */
        } else if (!strcmp(op, "traceme")) {
            out(op, ptrace(PTRACE_TRACEME, 0, 0, 0));    /* the kernel alone: EPERM (traced) */
        }
    }
    return 0;
}
"""


@pytest.fixture(scope="session")
def helper(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("refusal-data")
    (directory / "refusal.c").write_text(SOURCE)
    binary = directory / "refusal"
    subprocess.run(["gcc", "-O1", "-static", "-o", str(binary), str(directory / "refusal.c")],
                   check=True, capture_output=True)
    return str(binary)


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
