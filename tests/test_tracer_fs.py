"""The tracer and the policy filter against real processes: file system writes.

Each test runs the static helper program under the policy's filter, traced by trace_child, and
checks the kernel's answers and what is on disk from the host side."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from test_tracer_harness import HAVE_GCC, log_records, run_traced

from secfilt_runtime.policy.model import Policy

pytestmark = pytest.mark.skipif(not HAVE_GCC, reason="needs gcc to build the helper")
EPERM = f"ERR {errno.EPERM}"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for d in ("allowed", "allowed-not", "denied"):
        (tmp_path / d).mkdir()
    (tmp_path / "denied" / "file").write_text("keep")
    (tmp_path / "allowed" / "file").write_text("free")
    return tmp_path


def policy_for(tree: Path, **kw: object) -> Policy:
    return Policy(read_only=True, allow_write=(str(tree / "allowed"),), **kw)  # type: ignore


def test_writes_judged_on_whole_components(helper: str, tree: Path) -> None:
    out = run_traced(policy_for(tree), [
        helper, "open_w", f"{tree}/allowed/new", "open_w", f"{tree}/allowed-not/new",
        "mkdir", f"{tree}/allowed/d", "mkdir", f"{tree}/denied/d",
        "creat", f"{tree}/denied/c", "open_trunc", f"{tree}/denied/file",
        "open_r", f"{tree}/denied/file", "unlink", f"{tree}/denied/file",
        "chmod", f"{tree}/denied/file", "truncate", f"{tree}/denied/file"])
    assert out.exit_code == 0
    assert out.answer("open_w", 0) == "OK" and (tree / "allowed/new").exists()
    assert out.answer("open_w", 1) == EPERM and not (tree / "allowed-not/new").exists()
    assert out.answer("mkdir", 0) == "OK"
    assert out.answer("mkdir", 1) == EPERM and not (tree / "denied/d").exists()
    assert out.answer("creat") == EPERM
    assert out.answer("open_trunc") == EPERM
    assert out.answer("open_r") == "OK"
    for op in ("unlink", "chmod", "truncate"):
        assert out.answer(op) == EPERM, op
    assert (tree / "denied/file").read_text() == "keep"
    assert (tree / "denied/file").stat().st_mode & 0o777 != 0o600


def test_dotdot_symlink_and_cwd_tricks(helper: str, tree: Path) -> None:
    (tree / "allowed" / "escape").symlink_to(tree / "denied")
    (tree / "allowed" / "dangling").symlink_to(tree / "denied" / "created-through-link")
    out = run_traced(policy_for(tree), [
        helper, "open_w", f"{tree}/allowed/../denied/dots",
        "open_w", f"{tree}/allowed/escape/via-dir-link",
        "open_w", f"{tree}/allowed/dangling",
        "chdir", f"{tree}/allowed", "open_w", "../denied/rel", "open_w", "rel-ok",
        "proccwd_w", "../denied/proc-cwd",
        "openat_w", f"{tree}/allowed", "../denied/at", "openat_w", f"{tree}/allowed", "at-ok"])
    assert [out.answer("open_w", i) for i in range(5)] == [EPERM, EPERM, EPERM, EPERM, "OK"]
    assert out.answer("proccwd_w") == EPERM
    assert [out.answer("openat_w", i) for i in range(2)] == [EPERM, "OK"]
    assert sorted(p.name for p in (tree / "denied").iterdir()) == ["file"]
    assert (tree / "allowed" / "rel-ok").exists() and (tree / "allowed" / "at-ok").exists()


def test_a_new_program_is_read_in_its_own_memory(helper: str, tree: Path) -> None:
    # the tracer is not told of execs (no exec stops): a /proc/TID/mem kept between stops
    # would stay bound to the address space it was opened on. A vfork child's is its
    # parent's; after the child's exec, a read through a kept file would find the parent's
    # bytes (an allowed path) where the new program put a denied one.
    out = run_traced(policy_for(tree), [helper, "vfork_exec_open_w", f"{tree}/allowed/v",
                                        f"{tree}/denied/v"])
    assert out.exit_code == 0
    assert (tree / "allowed" / "v").exists()  # the child's own call was judged (and allowed)
    assert out.answer("low_open_w") == EPERM
    assert not (tree / "denied" / "v").exists()


def test_symlink_into_allowed_is_judged_by_target_not_name(helper: str, tree: Path) -> None:
    # a link placed in the allowed tree pointing out; and an unlink of the link itself is fine
    (tree / "allowed" / "to-file").symlink_to(tree / "denied" / "file")
    out = run_traced(policy_for(tree), [
        helper, "open_w", f"{tree}/allowed/to-file", "open_nofollow_w", f"{tree}/allowed/to-file",
        "unlink", f"{tree}/allowed/to-file"])
    assert out.answer("open_w") == EPERM
    # O_NOFOLLOW on a symlink: the kernel's own ELOOP, judged on the link in the allowed dir
    assert out.answer("open_nofollow_w") == f"ERR {errno.ELOOP}"
    assert out.answer("unlink") == "OK"
    assert (tree / "denied" / "file").read_text() == "keep"


def test_proc_self_fd_of_read_descriptor(helper: str, tree: Path) -> None:
    out = run_traced(policy_for(tree), [helper, "procfd_w", f"{tree}/denied/file",
                                        "fchmod_r", f"{tree}/denied/file",
                                        "fchmod_r", f"{tree}/allowed/file"])
    assert out.answer("procfd_w") == EPERM
    assert out.answer("fchmod_r", 0) == EPERM
    assert out.answer("fchmod_r", 1) == "OK"
    assert (tree / "denied" / "file").read_text() == "keep"


def test_two_path_calls_judge_both(helper: str, tree: Path) -> None:
    out = run_traced(policy_for(tree), [
        helper, "rename", f"{tree}/allowed/file", f"{tree}/denied/moved",
        "rename", f"{tree}/denied/file", f"{tree}/allowed/stolen",
        "link", f"{tree}/denied/file", f"{tree}/allowed/hard",
        "link", f"{tree}/allowed/file", f"{tree}/denied/hard",
        "symlink", "/anything", f"{tree}/denied/sym",
        "symlink", "/anything", f"{tree}/allowed/sym"])
    assert [out.answer("rename", i) for i in range(2)] == [EPERM, EPERM]
    # a hard link of a protected file into the allowed tree would make it writable there
    assert [out.answer("link", i) for i in range(2)] == [EPERM, EPERM]
    assert not (tree / "allowed" / "hard").exists()
    assert [out.answer("symlink", i) for i in range(2)] == [EPERM, "OK"]
    assert (tree / "denied" / "file").exists() and (tree / "allowed" / "file").exists()
    assert not (tree / "denied" / "moved").exists() and not (tree / "denied" / "sym").exists()


def test_existing_names_keep_the_kernels_answer(helper: str, tree: Path) -> None:
    # mkdir -p walks existing directories expecting EEXIST, not the policy's errno
    out = run_traced(policy_for(tree), [helper, "mkdir", str(tree), "mkdir", f"{tree}/denied",
                                        "mkdir", f"{tree}/missing/sub"])
    assert [out.answer("mkdir", i) for i in range(3)] == [
        f"ERR {errno.EEXIST}", f"ERR {errno.EEXIST}", f"ERR {errno.ENOENT}"]


def test_openat2_flags_are_read_from_the_struct(helper: str, tree: Path) -> None:
    out = run_traced(policy_for(tree), [helper, "openat2_w", f"{tree}/denied/o2",
                                        "openat2_w", f"{tree}/allowed/o2"])
    assert [out.answer("openat2_w", i) for i in range(2)] == [EPERM, "OK"]
    assert not (tree / "denied" / "o2").exists()


def test_i386_entry_is_judged(helper: str, tree: Path) -> None:
    out = run_traced(policy_for(tree), [helper, "int80_open_w", f"{tree}/denied/i",
                                        "int80_open_w", f"{tree}/allowed/i",
                                        "int80_mkdir", f"{tree}/denied/m", "int80_getpid"])
    assert [out.answer("int80_open_w", i) for i in range(2)] == [EPERM, "OK"]
    assert out.answer("int80_mkdir") == EPERM
    assert out.answer("int80_getpid") == "OK"
    assert not (tree / "denied" / "i").exists() and (tree / "allowed" / "i").exists()


def test_garbage_pointers_and_lengths_are_refused(helper: str, tree: Path) -> None:
    out = run_traced(policy_for(tree), [helper, "badptr_open_w", "longpath_mkdir"])
    assert out.answer("badptr_open_w") == f"ERR {errno.EFAULT}"
    assert out.answer("longpath_mkdir") == f"ERR {errno.ENAMETOOLONG}"


def test_threads_and_children_are_followed(helper: str, tree: Path) -> None:
    out = run_traced(policy_for(tree), [
        helper, "thread_open_w", f"{tree}/denied/t", "fork_open_w", f"{tree}/denied/f",
        "vfork_mkdir", f"{tree}/denied/v", "thread_open_w", f"{tree}/allowed/t"])
    assert out.answer("thread_open", 0) == EPERM
    assert out.answer("child_open") == EPERM
    assert out.answer("vfork_mkdir") == f"ERR {errno.EPERM}"
    assert out.answer("thread_open", 1) == "OK"
    assert sorted(p.name for p in (tree / "denied").iterdir()) == ["file"]


def test_custom_errno(helper: str, tree: Path) -> None:
    out = run_traced(policy_for(tree, errno=errno.EROFS), [helper, "mkdir", f"{tree}/denied/x"])
    assert out.answer("mkdir") == f"ERR {errno.EROFS}"


def test_log_lines_name_the_call_and_rule(helper: str, tree: Path) -> None:
    log = str(tree / "policy.log")
    out = run_traced(policy_for(tree, log_path=log), [
        helper, "rename", f"{tree}/allowed/file", f"{tree}/denied/moved",
        "open_w", f"{tree}/allowed/ok"], log_path=log)
    assert out.answer("rename") == EPERM and out.answer("open_w") == "OK"
    records = log_records(log)
    assert len(records) == 1
    rec = records[0]
    assert rec["syscall"] in ("rename", "renameat", "renameat2")
    assert rec["args"]["path2"] == f"{tree}/denied/moved"
    assert rec["rule"] == "read-only" and rec["action"] == "deny"
    assert rec["container"] == "test" and rec["errno"] == errno.EPERM
    assert rec["pid"] > 0 and rec["time"].endswith("Z")


def test_audit_mode_allows_and_logs(helper: str, tree: Path) -> None:
    log = str(tree / "audit.log")
    policy = Policy(read_only=True, mode="audit", log_path=log)
    out = run_traced(policy, [helper, "mkdir", f"{tree}/denied/audited", "open_r", "/etc/passwd"],
                     log_path=log)
    assert out.answer("mkdir") == "OK" and (tree / "denied" / "audited").is_dir()
    records = log_records(log)
    assert [(r["syscall"], r["action"], r["args"]["path"]) for r in records] == [
        ("mkdir", "audit", f"{tree}/denied/audited")]


def test_read_only_without_allow_write_needs_no_path(helper: str, tree: Path) -> None:
    out = run_traced(Policy(read_only=True), [helper, "open_w", f"{tree}/allowed/x",
                                              "open_r", f"{tree}/allowed/file"])
    assert out.answer("open_w") == EPERM and out.answer("open_r") == "OK"
    assert os.listdir(tree / "allowed") == ["file"]


def test_descriptor_and_attribute_changes(helper: str, tree: Path) -> None:
    os.utime(tree / "denied" / "file", (1000, 1000))
    out = run_traced(policy_for(tree), [
        helper, "setxattr", f"{tree}/denied/file", "setxattr", f"{tree}/allowed/file",
        "futimens", f"{tree}/denied/file", "futimens", f"{tree}/allowed/file",
        "setflags", f"{tree}/denied/file"])
    assert out.answer("setxattr", 0) == EPERM
    assert out.answer("setxattr", 1) in ("OK", f"ERR {errno.ENOTSUP}")
    assert [out.answer("futimens", i) for i in range(2)] == [EPERM, "OK"]
    # FS_IOC_SETFLAGS with the upper half of the request register set: still caught
    assert out.answer("setflags") in (EPERM, f"ERR {errno.ENOTTY}")
    if out.answer("setflags") != EPERM:
        pytest.skip("this file system has no inode flags")
    assert (tree / "denied" / "file").stat().st_mtime == 1000


def test_bind_of_a_unix_path_creates_a_file(helper: str, tree: Path) -> None:
    out = run_traced(policy_for(tree), [helper, "bind_unix", f"{tree}/denied/sock",
                                        "bind_unix", f"{tree}/allowed/sock"])
    assert [out.answer("bind_unix", i) for i in range(2)] == [EPERM, "OK"]
    assert not (tree / "denied" / "sock").exists()


def test_reopening_a_pipe_changes_no_file_system(helper: str, tree: Path) -> None:
    # the helper's stdout is a pipe: `> /dev/stdout` must keep working under allow-write,
    # while the same trick on a file descriptor stays judged by the file's path
    out = run_traced(policy_for(tree), [helper, "open_w", "/dev/stdout",
                                        "open_w", "/proc/self/fd/1",
                                        "procfd_w", f"{tree}/denied/file"])
    assert [out.answer("open_w", i) for i in range(2)] == ["OK", "OK"]
    assert out.answer("procfd_w") == EPERM


def test_calls_newer_than_libseccomp_are_not_let_through(helper: str, tree: Path) -> None:
    # setxattrat changes a file's attributes by path; libseccomp cannot name it, so the
    # policy's filter must still keep it from the kernel
    out = run_traced(policy_for(tree), [helper, "setxattrat", f"{tree}/denied/file"])
    assert out.answer("setxattrat") in (EPERM, f"ERR {errno.ENOSYS}")
    assert "user.t" not in os.listxattr(tree / "denied" / "file")


@pytest.mark.parametrize("mode", ["enforce", "audit"])
def test_a_call_the_tracer_fails_to_judge_is_refused_and_logged(
        helper: str, tree: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    # an error of the tracer's own (a bug, an answer of procfs it did not expect) must not let
    # the call through, not even in audit mode, and must show: the policy's errno, a log line
    from secfilt_runtime.tracer.judge import Judge

    def broken(self, tid, entry, args, compat):  # noqa: ANN001, ANN202
        raise RuntimeError(f"no verdict for {entry.name}")

    monkeypatch.setattr(Judge, "_dispatch", broken)
    log = str(tree / "log")
    policy = policy_for(tree, errno=errno.ENOTTY, log_path=log, mode=mode)
    out = run_traced(policy, [helper, "mkdir", f"{tree}/allowed/d"], log_path=log)
    assert out.answer("mkdir") == f"ERR {errno.ENOTTY}"
    assert not (tree / "allowed" / "d").exists()
    assert [(r["syscall"], r["action"], r["errno"], r["rule"], r["reason"])
            for r in log_records(log)] == [
        ("mkdir", "deny", errno.ENOTTY, "sandbox-integrity",
         "the tracer failed: RuntimeError: no verdict for mkdir")]
