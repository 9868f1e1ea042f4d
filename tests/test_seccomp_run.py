"""End to end: linux.seccomp enforced in real containers, each action with its observable
effect, argument filters, the i386 entry, NOTIFY with an agent, noNewPrivileges false, bad
profiles refused; compared with runc where that is cheap."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from conftest import BASE_CONFIG, REPO, needs_root

pytestmark = [needs_root, pytest.mark.e2e]

PODMAN = REPO / "tests" / "data" / "reference" / "real-configs" / "podman-4.3-run.json"
SIGSYS_EXIT = 128 + 31


def seccomp(default: str = "SCMP_ACT_ALLOW", *rules: dict, **extra) -> dict:
    return {"linux": {"seccomp": {"defaultAction": default, "syscalls": list(rules), **extra}}}


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def run_runc(bundle: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    cid = f"secfilt-cmp-{uuid.uuid4().hex[:10]}"
    return subprocess.run(["runc", "--root", str(tmp_path / "runc-state"), "run", "-b",
                           str(bundle), cid], capture_output=True, text=True, timeout=60)


needs_runc = pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")


@pytest.fixture
def runtime(runtime):
    """The conftest runtime; the compiled-filter cache it keeps under --root is not a
    container left behind."""
    yield runtime
    shutil.rmtree(runtime.state_root / "seccomp-cache", ignore_errors=True)


# ---- actions ----------------------------------------------------------------------------------


def test_errno_with_errnoret_and_default_eperm(runtime, make_bundle):
    b = make_bundle(sh("mkdir /tmp/a; chmod 700 /tmp; echo done"), **seccomp(
        "SCMP_ACT_ALLOW",
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV},
        {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO"}))
    r = runtime.run(b)
    assert r.returncode == 0, r.stderr
    assert "Invalid cross-device link" in r.stderr  # errnoRet EXDEV
    assert "Operation not permitted" in r.stderr    # no errnoRet: EPERM
    assert r.stdout.strip() == "done"


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP"])
def test_kill_and_trap_end_with_sigsys(runtime, make_bundle, action):
    b = make_bundle(["mkdir", "/tmp/a"], **seccomp(
        "SCMP_ACT_ALLOW", {"names": ["mkdir", "mkdirat"], "action": action}))
    assert runtime.run(b).returncode == SIGSYS_EXIT


def test_log_allows_and_trace_without_tracer_is_enosys(runtime, make_bundle):
    b = make_bundle(sh("mkdir /tmp/a && echo log-ok; chmod 700 /tmp"), **seccomp(
        "SCMP_ACT_ALLOW",
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"},
        {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_TRACE"}))
    r = runtime.run(b)
    assert "log-ok" in r.stdout
    assert "Function not implemented" in r.stderr


@pytest.mark.parametrize("default", ["SCMP_ACT_ALLOW", "SCMP_ACT_TRACE"])
def test_trace_is_enosys_under_a_policy_too(runtime, make_bundle, default):
    """Under a secfilter policy the runtime's tracer receives every TRACE stop, the profile's
    too: it judged them and let most through, where runc's container, which has no tracer,
    gets ENOSYS (found by a review comparing the two). With TRACE as the default action an
    allow-list let everything through."""
    allowed = {"names": ["execve", "exit_group", "write", "brk", "arch_prctl", "mmap",
                         "rt_sigaction", "rt_sigprocmask", "getpid", "wait4", "clone", "fork",
                         "vfork", "read", "close", "fcntl", "getppid", "ioctl", "prctl",
                         "openat", "newfstatat", "fstat", "stat", "set_tid_address",
                         "getuid", "geteuid", "setpgid", "getpgrp", "dup2", "lseek",
                         "munmap", "mprotect", "rt_sigreturn", "pipe", "pipe2", "getcwd",
                         "chdir", "access", "faccessat2", "sigaltstack", "uname",
                         "exit", "readlink", "set_robust_list", "rseq", "futex",
                         "gettid", "tgkill", "getrandom", "statx", "prlimit64"],
               "action": "SCMP_ACT_ALLOW"}
    rules = [{"names": ["chmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_TRACE"}]
    if default == "SCMP_ACT_TRACE":
        rules = [allowed]
    b = make_bundle(sh("chmod 700 /tmp; mkdir /tmp/d; echo done"), **seccomp(default, *rules),
                    annotations={"org.secfilter.mainstream-network-families": "true"})
    r = runtime.run(b)
    assert "done" in r.stdout, r.stderr
    assert "Function not implemented" in r.stderr, r.stderr


def test_argument_conditions(runtime, make_bundle):
    # chmod(path, mode): same index twice = either mode denied; two indices = AND
    b = make_bundle(sh("for m in 700 711 755 750 644 1777; do chmod $m /tmp 2>/dev/null; "
                       "echo $m=$?; done"), **seccomp(
        "SCMP_ACT_ALLOW",
        {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 1, "value": 0o700, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 0o711, "op": "SCMP_CMP_EQ"}]},
        {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 1, "value": 0o7, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},  # a NULL path: never
            {"index": 1, "value": 0o644, "op": "SCMP_CMP_EQ"}]},
        {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 1, "value": 0o1000, "op": "SCMP_CMP_GE"}]}))
    r = runtime.run(b)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["700=1", "711=1", "755=0", "750=1", "644=0", "1777=1"]


def test_podman_default_profile(runtime, make_bundle):
    podman = json.loads(PODMAN.read_text())
    section = podman["linux"]["seccomp"]
    script = ("echo hi; ls / >/dev/null && echo ls-ok; id -u; grep Seccomp: /proc/self/status; "
              "unshare -m true 2>/dev/null; echo unshare=$?; "
              "mount -t tmpfs t /tmp 2>/dev/null; echo mount=$?; "
              "hostname other 2>/dev/null; echo hostname=$?")
    # as podman runs it: its profile with its capabilities (no CAP_SYS_ADMIN)
    as_podman = runtime.run(make_bundle(sh(script), linux={"seccomp": section},
                                        process={"capabilities": podman["process"][
                                            "capabilities"]}))
    assert as_podman.returncode == 0, as_podman.stderr
    assert as_podman.stdout.split("\n")[:7] == [
        "hi", "ls-ok", "0", "Seccomp:\t2", "unshare=1", "mount=1", "hostname=1"]
    # with CAP_SYS_ADMIN the profile alone still denies sethostname (and setns, ...), while
    # unshare and mount are left to the capabilities, as podman's profile means them to be
    with_admin = runtime.run(make_bundle(sh(script), linux={"seccomp": section}))
    assert "hostname=1" in with_admin.stdout and "unshare=0" in with_admin.stdout
    without = runtime.run(make_bundle(sh(script)))
    assert "hostname=0" in without.stdout


def test_unknown_syscalls_are_skipped_and_logged_with_debug(runtime, make_bundle):
    b = make_bundle(["mkdir", "/tmp/a"], **seccomp(
        "SCMP_ACT_ALLOW",
        {"names": ["no_such_syscall_v99", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}))
    r = runtime("--debug", "run", "--bundle", str(b), runtime.cid)
    assert r.returncode == 1
    assert "syscall no_such_syscall_v99 is unknown to libseccomp" in r.stderr


# ---- the filter is the last thing before execve -------------------------------------------------

SHORT_ALLOW_LIST = ["execve", "exit_group", "exit", "write", "brk", "arch_prctl",
                    "set_tid_address", "getuid", "geteuid", "getpid", "rt_sigaction",
                    "rt_sigprocmask", "ioctl", "prctl", "set_robust_list", "rseq", "readlink",
                    "uname", "mmap", "munmap", "mprotect"]


@needs_runc
def test_enosys_default_with_short_allow_list_starts_where_runc_cannot(
        runtime, make_bundle, tmp_path):
    b = make_bundle(["echo", "hello"], **seccomp(
        "SCMP_ACT_ERRNO", {"names": SHORT_ALLOW_LIST, "action": "SCMP_ACT_ALLOW"},
        defaultErrnoRet=errno.ENOSYS))
    r = runtime.run(b)
    assert (r.returncode, r.stdout) == (0, "hello\n"), r.stderr
    assert run_runc(b, tmp_path).returncode != 0  # runc's own last steps are caught


def test_profile_denying_writing_opens_still_starts(runtime, make_bundle):
    deny = [{"names": ["openat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS,
             "args": [{"index": 2, "value": 3, "valueTwo": mode, "op": "SCMP_CMP_MASKED_EQ"}]}
            for mode in (1, 2)]
    deny.append({"names": ["open", "creat"], "action": "SCMP_ACT_ERRNO",
                 "errnoRet": errno.EROFS})
    b = make_bundle(sh("head -1 /etc/passwd | cut -c1-4; echo x > /tmp/f; echo write=$?"),
                    **seccomp("SCMP_ACT_ALLOW", *deny))
    r = runtime.run(b)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["root", "write=1"]
    assert "Read-only file system" in r.stderr


# ---- architectures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def i386_prog(tmp_path_factory) -> Path:
    """A static x86_64 program that calls i386 mkdir through int 0x80 and prints the result."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("i386")
    (d / "i386.c").write_text(
        "#include <stdio.h>\n"
        "int main(void) {\n"
        "    static const char path[] = \"/tmp/i386-dir\";\n"
        "    long r;\n"
        "    __asm__ volatile(\"int $0x80\" : \"=a\"(r) : \"a\"(39L), \"b\"(path), "
        "\"c\"(0755L) : \"memory\");\n"
        "    printf(\"%ld\\n\", r);\n"
        "    return 0;\n"
        "}\n")
    (d / "nr.c").write_text(
        "#include <errno.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <unistd.h>\n"
        "int main(int argc, char **argv) {\n"
        "    for (int i = 1; i < argc; i++) {\n"
        "        long r = syscall(atol(argv[i]), 0, 0, 0, 0, 0, 0);\n"
        "        printf(\"%s=%ld\\n\", argv[i], r < 0 ? -errno : r);\n"
        "    }\n"
        "    return 0;\n"
        "}\n")
    for src, out in (("i386.c", "prog"), ("nr.c", "nr")):
        subprocess.run(["gcc", "-static", "-O1", "-o", str(d / out), str(d / src)], check=True)
    d.chmod(0o755)
    return d


def _with_progs(prog_dir: Path) -> list[dict]:
    return [*BASE_CONFIG["mounts"], {"destination": "/t", "type": "bind",
                                     "source": str(prog_dir), "options": ["bind", "ro"]}]


def _i386_bundle(make_bundle, prog_dir: Path, archs: list[str]):
    return make_bundle(
        ["/t/prog"], mounts=_with_progs(prog_dir),
        **seccomp("SCMP_ACT_ALLOW",
                  {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
                  architectures=archs))


def test_i386_entry_refused_when_only_x86_64_is_listed(runtime, make_bundle, i386_prog):
    r = runtime.run(_i386_bundle(make_bundle, i386_prog, ["SCMP_ARCH_X86_64"]))
    assert r.returncode == SIGSYS_EXIT, (r.stdout, r.stderr)


def test_i386_entry_gets_the_rules_when_listed(runtime, make_bundle, i386_prog):
    r = runtime.run(_i386_bundle(make_bundle, i386_prog, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]))
    assert (r.returncode, r.stdout.strip()) == (0, f"-{errno.EPERM}"), r.stderr


@needs_runc
def test_syscalls_newer_than_the_profile_get_enosys_as_under_runc(
        runtime, make_bundle, i386_prog, tmp_path):
    """podman's profile with EPERM as the default: numbers above the last syscall it names
    answer ENOSYS (runc's stub), unlisted ones below it EPERM; same output as runc's."""
    section = json.loads(PODMAN.read_text())["linux"]["seccomp"]
    del section["defaultErrnoRet"]
    numbers = ["156", "174", "236", "449", "460", "1000"]
    b = make_bundle(["/t/nr", *numbers], mounts=_with_progs(i386_prog),
                    linux={"seccomp": section})
    ours = runtime.run(b)
    assert ours.returncode == 0, ours.stderr
    eperm, enosys = f"-{errno.EPERM}", f"-{errno.ENOSYS}"
    assert ours.stdout.split() == [f"156={eperm}", f"174={eperm}", f"236={eperm}",
                                   f"449={enosys}", f"460={enosys}", f"1000={enosys}"]
    theirs = run_runc(b, tmp_path)
    assert theirs.stdout == ours.stdout, theirs.stderr


# ---- bad profiles -------------------------------------------------------------------------------


@pytest.mark.parametrize(("section", "message"), [
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]},
     "linux.seccomp.architectures[1]"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kill"], "action":
      "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]},
     "linux.seccomp.syscalls[0].args[0].op"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]},
     "linux.seccomp.flags[0]"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["write"], "action": "SCMP_ACT_NOTIFY"}], "listenerPath": "/run/x.sock"},
     "SCMP_ACT_NOTIFY cannot be used for the write syscall"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     "linux.seccomp.syscalls[0].args[0].index: 7 is out of range"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_LOONGARCH64"]},
     "linux.seccomp.architectures[0]: SCMP_ARCH_LOONGARCH64 is not supported by libseccomp"),
    ({"defaultAction": "SCMP_ACT_ERRNO"}, "linux.seccomp: the filters deny execve"),
])
def test_bad_profiles_refused_before_anything_starts(runtime, make_bundle, section, message):
    r = runtime.run(make_bundle(["true"], linux={"seccomp": section}))
    assert r.returncode == 1
    assert message in r.stderr, r.stderr


# ---- flags, noNewPrivileges ---------------------------------------------------------------------


def test_flags_are_applied(runtime, make_bundle):
    b = make_bundle(sh("mkdir /tmp/a; grep Seccomp_filters /proc/self/status"), **seccomp(
        "SCMP_ACT_ALLOW", {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
        flags=["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
               "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]))
    r = runtime.run(b)
    assert "Operation not permitted" in r.stderr and "Seccomp_filters:\t1" in r.stdout


CAP_LINES = "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status"


@needs_runc
@pytest.mark.parametrize("process", [
    {"user": {"uid": 0, "gid": 0}, "capabilities": {
        "bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_CHOWN"],
        "permitted": ["CAP_CHOWN", "CAP_KILL"], "inheritable": ["CAP_KILL"]}},
    {"user": {"uid": 1000, "gid": 1000}, "capabilities": {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "effective": ["CAP_CHOWN", "CAP_NET_RAW"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "inheritable": ["CAP_KILL", "CAP_NET_RAW"], "ambient": ["CAP_NET_RAW"]}},
], ids=["uid0", "uid1000-ambient"])
def test_no_new_privileges_false_gives_runcs_capabilities(runtime, make_bundle, tmp_path,
                                                          process):
    b = make_bundle(sh(CAP_LINES), process={**process, "noNewPrivileges": False}, **seccomp(
        "SCMP_ACT_ALLOW", {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}))
    ours = runtime.run(b)
    theirs = run_runc(b, tmp_path)
    assert ours.returncode == theirs.returncode == 0, (ours.stderr, theirs.stderr)
    assert "CAP_SYS_ADMIN" not in json.dumps(process)
    assert ours.stdout == theirs.stdout
    assert "NoNewPrivs:\t0" in ours.stdout and "Seccomp:\t2" in ours.stdout


# ---- NOTIFY -------------------------------------------------------------------------------------

NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif)
NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp)
_NOTIF = struct.Struct("=QIIiIQ6Q")
_RESP = struct.Struct("=QqiI")


class Agent(threading.Thread):
    """A seccomp agent: takes the listener and state from the runtime, answers every
    notification with EXDEV, records what it saw."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.server.settimeout(60)
        self.message: dict | None = None
        self.calls: list[tuple[int, int]] = []

    def run(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 4)
        self.message = json.loads(data)
        listener = fds[0]
        poller = select.poll()
        poller.register(listener, select.POLLIN)
        while True:
            events = poller.poll(30_000)
            if not events or events[0][1] & (select.POLLHUP | select.POLLERR):
                break
            buf = bytearray(_NOTIF.size)
            try:
                fcntl.ioctl(listener, NOTIF_RECV, buf)
            except OSError:
                continue  # the caller died meanwhile
            notif_id, _pid, _flags, nr, arch, *_ = _NOTIF.unpack(buf)
            self.calls.append((nr, arch))
            fcntl.ioctl(listener, NOTIF_SEND, bytearray(
                _RESP.pack(notif_id, 0, -errno.EXDEV, 0)))


def test_notify_reaches_the_agent(runtime, make_bundle, tmp_path):
    sock = tmp_path / "agent.sock"
    agent = Agent(sock)
    agent.start()
    b = make_bundle(sh("mkdir /tmp/n; echo rc=$?; echo fds $(ls /proc/self/fd)"), **seccomp(
        "SCMP_ACT_ALLOW", {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"},
        listenerPath=str(sock), listenerMetadata="hello-agent",
        flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]))
    r = runtime.run(b)
    agent.join(10)
    assert r.returncode == 0, r.stderr
    assert "Invalid cross-device link" in r.stderr and "rc=1" in r.stdout
    # the listener (and the handoff page) did not reach the container: stdio, and ls's own fd
    assert "fds 0 1 2 3\n" in r.stdout
    msg = agent.message
    assert msg is not None
    assert (msg["fds"], msg["metadata"], msg["ociVersion"]) == (["seccompFd"], "hello-agent",
                                                                "1.0.2")
    assert msg["state"]["id"] == runtime.cid and msg["state"]["pid"] == msg["pid"] > 0
    assert msg["state"]["bundle"] == str(b)
    assert agent.calls and agent.calls[0] == (83, 0xC000003E)  # mkdir, x86_64


def test_notify_reaches_the_agent_with_create_and_start(runtime, make_bundle, tmp_path):
    """As podman and containerd run it: the listener is handed over by `start`."""
    import subprocess
    import time

    sock = tmp_path / "agent.sock"
    agent = Agent(sock)
    agent.start()
    b = make_bundle(sh("mkdir /tmp/n; echo rc=$?"), **seccomp(
        "SCMP_ACT_ALLOW", {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"},
        listenerPath=str(sock), listenerMetadata="via-start"))
    out, err = tmp_path / "out", tmp_path / "err"
    # files, not pipes: the init keeps create's stdio (a pipe would not see EOF with create)
    with open(out, "w") as f, open(err, "w") as e:
        created = subprocess.run(runtime.argv("create", "--bundle", str(b), runtime.cid),
                                 stdout=f, stderr=e, timeout=60, env=runtime.env())
    assert created.returncode == 0, err.read_text()
    try:
        started = runtime("start", runtime.cid)
        assert started.returncode == 0, started.stderr
        agent.join(10)
        for _ in range(100):
            if '"stopped"' in runtime("state", runtime.cid).stdout:
                break
            time.sleep(0.1)
    finally:
        runtime("delete", "--force", runtime.cid)
    assert "rc=1" in out.read_text()
    assert agent.message is not None and agent.message["metadata"] == "via-start"
    assert agent.calls and agent.calls[0] == (83, 0xC000003E)


def test_notify_reaches_the_agent_for_exec_too(runtime, make_bundle, tmp_path):
    import subprocess

    sock = tmp_path / "agent.sock"
    first = Agent(sock)
    first.start()
    b = make_bundle(["sleep", "30"], **seccomp(
        "SCMP_ACT_ALLOW", {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"},
        listenerPath=str(sock), listenerMetadata="exec"))
    with open(tmp_path / "out", "w") as f:
        created = subprocess.run(runtime.argv("create", "--bundle", str(b), runtime.cid),
                                 stdout=f, stderr=f, timeout=60, env=runtime.env())
    assert created.returncode == 0, (tmp_path / "out").read_text()
    try:
        assert runtime("start", runtime.cid).returncode == 0
        first.join(0.5)
        assert first.message is not None
        first.server.close()  # its thread keeps serving the init's listener
        sock.unlink()
        second = Agent(sock)
        second.start()
        r = runtime("exec", runtime.cid, "sh", "-c", "mkdir /tmp/e; echo rc=$?")
        assert r.returncode == 0, r.stderr
        assert "rc=1" in r.stdout and "Invalid cross-device link" in r.stderr
        second.join(5)
        assert second.message is not None and second.message["metadata"] == "exec"
        assert second.message["pid"] != first.message["pid"]
    finally:
        runtime("delete", "--force", runtime.cid)


def test_notify_without_a_listening_agent_fails_cleanly(runtime, make_bundle, tmp_path):
    b = make_bundle(["true"], **seccomp(
        "SCMP_ACT_ALLOW", {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
        listenerPath=str(tmp_path / "nobody.sock")))
    r = runtime.run(b)
    assert r.returncode == 1
    assert "linux.seccomp.listenerPath" in r.stderr


# ---- the filters command ----------------------------------------------------------------------


def test_filters_command_shows_pfc_without_running(runtime, make_bundle):
    b = make_bundle(["true"], **seccomp(
        "SCMP_ACT_ALLOW", {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}))
    r = runtime("filters", "--bundle", str(b))
    assert r.returncode == 0, r.stderr
    assert "# ==== linux.seccomp" in r.stdout
    assert '"chmod"' in r.stdout and "action ERRNO(13)" in r.stdout
    assert not (runtime.state_root / runtime.cid).exists()


def test_listener_handoff_through_an_attached_page():
    """The init publishes the listener and waits without syscalls; a process holding only the
    page's descriptor (as a later `start` would) takes the listener and releases the init,
    whose next NOTIFY call it then answers."""
    from secfilt_runtime import kernel
    from secfilt_runtime import seccomp as seccomp_mod
    from secfilt_runtime.seccomp.notify import Handoff

    filters = seccomp_mod.prepare(
        {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/unused",
         "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]}, None,
        cache_dir=None)
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        try:
            kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
            seccomp_mod.install(filters)
            os.write(theirs.fileno(), str(os.getppid()).encode())
        finally:
            os._exit(0)
    try:
        other = Handoff.attach(os.dup(filters.handoff.fileno()))
        listener = other.take(pid, ours.fileno(), timeout=20)
        assert listener is not None
        other.release()
        buf = bytearray(_NOTIF.size)
        fcntl.ioctl(listener, NOTIF_RECV, buf)
        notif_id, notif_pid, _flags, nr, *_ = _NOTIF.unpack(buf)
        assert (notif_pid, nr) == (pid, 110)  # getppid on x86_64
        fcntl.ioctl(listener, NOTIF_SEND, bytearray(_RESP.pack(notif_id, 4242, 0, 0)))
        assert ours.recv(16) == b"4242"
    finally:
        os.waitpid(pid, 0)
