"""Attacks on the sandbox itself rather than on one rule: other system call entry points
(`int 0x80`, x32), io_uring, processes the tracer does not see, the process's own seccomp filters
and its own use of ptrace, and the tracer killed from outside.  Each ends in a write the policy
forbids, judged on the host's file system, and each works without the policy."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from attacks.cases import (
    NEW,
    OWN,
    VICTIM,
    FsCase,
    baseline,
    content_changed,
    created,
    enforced,
    gone,
    mode_changed,
    owner_changed,
    prepared,
    xattr_set,
)
from attacks.harness import (
    MODES,
    NET_POLICY,
    ContainerRunner,
    HarnessError,
    HostRunner,
    Tree,
    binaries,
    host_pid_of,
    runner_for,
    running_container,
    tracer_of,
)

from conftest import needs_root

pytestmark = [needs_root]

MADE = created("forbidden/new")


def int80(op: str, *args: str, changed: Callable[[Tree], bool] = MADE) -> FsCase:
    """entry's first word is the entry point: `entry int80 OP PATHS...`."""
    return FsCase(f"int 0x80 {op}", "int80", (op, *args), changed, program="entry")


# the i386 entry: i386 numbers, so a filter written for x86_64 numbers alone misses every one
INT80 = (
    int80("open", NEW), int80("openat", NEW), int80("creat", NEW), int80("mkdir", NEW),
    int80("mkdirat", NEW), int80("unlink", "@" + VICTIM, changed=gone(VICTIM)),
    int80("rmdir", "@forbidden/dir", changed=gone("forbidden/dir")),
    int80("rename", "@" + VICTIM, "@allowed/stolen", changed=gone(VICTIM)),
    int80("link", "@" + OWN, NEW), int80("symlink", "/etc/passwd", NEW),
    int80("chmod", "@" + VICTIM, changed=mode_changed),
    int80("chown", "@" + VICTIM, changed=owner_changed),
    int80("truncate", "@" + VICTIM, changed=content_changed()),
    int80("setxattr", "@" + VICTIM, changed=xattr_set),
)

URING = tuple(FsCase(f"io_uring {op}", op, args, changed, program="uring")
              for op, args, changed in (
    ("openat", (NEW,), MADE),
    ("mkdirat", (NEW,), MADE),
    ("unlinkat", ("@" + VICTIM,), gone(VICTIM)),
    ("renameat", ("@" + VICTIM, "@allowed/stolen"), gone(VICTIM)),
    ("symlinkat", ("/etc/passwd", NEW), MADE),
    ("linkat", ("@" + OWN, NEW), MADE),
))

ESCAPES = tuple(FsCase(name, op, (NEW, *extra), MADE, program="escape", host_only=host_only)
                for name, op, extra, host_only in (
    ("clone(CLONE_UNTRACED), seized by the attacker", "untraced", (), False),
    ("clone3(CLONE_UNTRACED), seized by the attacker", "untraced3", (), False),
    ("clone(CLONE_UNTRACED) left alone", "untraced_alone", (), False),
    ("clone(CLONE_UNTRACED) and ptrace through int 0x80", "untraced80", (), False),
    ("own USER_NOTIF filter installed through int 0x80", "notify80", (), False),
    ("own filter: USER_NOTIF answered with CONTINUE", "notify", (), False),
    ("own filter: RET_TRACE with data 0", "trace_data", ("0",), False),
    ("own filter: RET_TRACE with data 0xffff", "trace_data", ("0xffff",), False),
    # only the host's secfilt shares a pid namespace with its tracer
    ("SIGKILL to the tracer from inside", "kill_tracer", (), True),
))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", INT80, ids=lambda c: c.name)
def test_i386_entry(tmp_path: Path, case: FsCase, mode: str, request) -> None:
    baseline(tmp_path, case)
    enforced(runner_for(mode, prepared(tmp_path, case), request), case)


def test_x32_entry(tmp_path: Path) -> None:
    """x32 where the kernel has it; on a kernel without it there is no door to close."""
    host = HostRunner(Tree.make(tmp_path))
    out = host.run("entry", "x32", "open", host.path("forbidden/new"), policy=None)
    if "no x32 entry" in out.stdout:
        pytest.skip("this kernel has no x32 entry")
    assert out.claimed, str(out)
    runner = HostRunner(Tree.make(tmp_path))
    out = runner.run("entry", "x32", "open", runner.path("forbidden/new"),
                     policy=runner.write_policy())
    assert not MADE(runner.tree), f"BYPASS: x32\n{out}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", URING, ids=lambda c: c.name)
def test_io_uring(tmp_path: Path, case: FsCase, mode: str, request) -> None:
    baseline(tmp_path, case)
    enforced(runner_for(mode, prepared(tmp_path, case), request), case)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", ESCAPES, ids=lambda c: c.name)
def test_escape(tmp_path: Path, case: FsCase, mode: str, request) -> None:
    if case.host_only and mode == "container":
        pytest.skip("the tracer is outside the container's pid namespace")
    baseline(tmp_path, case)
    enforced(runner_for(mode, prepared(tmp_path, case), request), case)


@pytest.mark.parametrize("policy", ["write", "network"])
@pytest.mark.parametrize("op", ["ptrace_tracer", "tracer_mem"])
def test_tracer_out_of_reach(tmp_path: Path, op: str, policy: str) -> None:
    """Under secfilt the tracer is in the attacker's pid namespace, with the attacker's uid:
    seizing it, or opening its memory for writing, hands the attacker every decision, under
    any rule.  (Judged by the attack's word: a seize or an open leaves no trace on the file
    system; without a policy it reaches its parent, which proves it can.)"""
    host = HostRunner(Tree.make(tmp_path))
    out = host.run("escape", op, host.path("forbidden/new"), policy=None)
    assert out.claimed, f"does not work without a policy:\n{out}"
    rules = host.write_policy() if policy == "write" else NET_POLICY
    out = host.run("escape", op, host.path("forbidden/new"), policy=rules)
    assert "TracerPid: 0" not in out.stdout, f"the attack saw no tracer:\n{out}"
    assert not out.claimed, f"BYPASS: the attacker reached its tracer ({op})\n{out}"


@pytest.mark.parametrize("mode", MODES)
def test_terminal_injection(tmp_path: Path, mode: str, request) -> None:
    """TIOCSTI pushes input into the terminal the sandbox shares with the shell that started
    it: the shell runs it after the sandbox exits, outside every rule."""
    text = f"echo injected-{uuid.uuid4().hex[:8]}\n"

    def injected(runner, policy) -> tuple[bool, object]:
        master, slave = os.openpty()
        try:
            out = runner.run("escape", "tiocsti", text, policy=policy, stdin=slave)
            os.set_blocking(slave, False)
            try:
                got = os.read(slave, 4096).decode(errors="replace")
            except BlockingIOError:
                got = ""
            return text.strip() in got, out
        finally:
            os.close(master)
            os.close(slave)

    ok, out = injected(HostRunner(Tree.make(tmp_path)), None)
    assert ok, f"does not work without a policy:\n{out}"
    runner = runner_for(mode, Tree.make(tmp_path), request)
    ok, out = injected(runner, runner.write_policy())
    assert not ok, f"BYPASS ({mode}): input injected into the outer terminal\n{out}"


@pytest.mark.parametrize("mode", MODES)
def test_tracer_killed_from_outside(tmp_path: Path, mode: str, request) -> None:
    """SIGKILL to the tracer: the traced process dies with it (PTRACE_O_EXITKILL) and nothing
    is written afterwards; a process outliving its tracer would run unjudged."""
    tree = Tree.make(tmp_path)
    runner = runner_for(mode, tree, request)
    token = f"allowed/log-{uuid.uuid4().hex[:8]}"
    log = tree / token
    proc = runner.popen("escape", ["append_loop", runner.path(token)], runner.write_policy())
    try:
        try:
            pid = host_pid_of(runner.path(token))
        except HarnessError:
            proc.kill()
            raise HarnessError(f"the attack did not start: {proc.communicate()}") from None
        deadline = time.monotonic() + 10
        while not (log.exists() and log.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert log.exists(), "the allowed writes never happened under the policy"
        tracer = tracer_of(pid)
        assert tracer > 0, f"the attack ({pid}) is not traced"
        os.kill(tracer, signal.SIGKILL)
        while _alive(tracer):
            time.sleep(0.005)
        size_at_death = log.stat().st_size
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.3)
    assert not _alive(pid), "the traced process outlived its tracer"
    # one line whose open the tracer had already let through may land after its death
    after = log.read_bytes()[size_at_death:]
    assert after.count(b"\n") <= 1, f"written after the tracer died: {after!r}"
    assert proc.returncode != 0


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


@pytest.mark.parametrize("policy", [True, False], ids=["policy", "baseline"])
def test_exec_into_a_running_container_is_confined(tmp_path: Path, policy: bool, runtime,
                                                   make_bundle) -> None:
    """`secfilt-runtime exec` adds a process to a running container: it must be filtered and
    traced like the init (without the policy the same exec writes, proving the attack)."""
    tree = Tree.make(tmp_path)
    runner = ContainerRunner(tree, runtime, make_bundle)
    with running_container(runtime, runner, runner.write_policy() if policy else None) as cid:
        r = runtime("exec", cid, "/attacks/fsops", "open_creat", runner.path("forbidden/new"))
        assert "attack-start" in r.stdout, f"the exec never ran: {r}"
        if policy:
            assert not (tree / "forbidden/new").exists(), f"BYPASS: exec'd process\n{r}"
        else:
            assert (tree / "forbidden/new").exists(), f"does not work without a policy:\n{r}"


@pytest.mark.parametrize("mode", MODES)
def test_no_descriptor_leaks_into_the_sandbox(tmp_path: Path, mode: str, request) -> None:
    """The process starts with stdio only: a leaked socket to the runtime or the tracer, or a
    directory outside the root, would be a way around every rule. (The control run hands the
    program a pipe to prove it sees what it is given.)"""
    r, w = os.pipe()
    try:
        control = subprocess.run([str(binaries() / "escape"), "fds", "-"], pass_fds=(w,),
                                 capture_output=True, text=True, timeout=30)
    finally:
        os.close(r)
        os.close(w)
    assert control.returncode == 0 and "pipe:" in control.stdout, control
    runner = runner_for(mode, Tree.make(tmp_path), request)
    out = runner.run("escape", "fds", "-", policy=runner.write_policy())
    assert not out.claimed, f"descriptors leaked into the sandbox ({mode}):\n{out}"
