"""The calls the supervisor performs for a caller with other threads (secfilt run by a user):
each must do what the kernel's own run would have done for the caller. A unix address names a
path from the caller's working directory or root, not the supervisor's; SCM_RIGHTS passes the
caller's descriptors; a closed peer raises SIGPIPE in the caller; TCP ignores a send's
address. The same program runs without secfilt first: both runs must give the same answers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from attacks.harness import EMPTY_NETNS, NOBODY, as_nobody

from conftest import REPO, needs_root

pytestmark = needs_root

PROGRAM = r'''
import json, os, signal, socket, sys, threading

held = threading.Event()
threading.Thread(target=held.wait, daemon=True).start()  # the caller is not alone
os.chdir("inner")  # a relative name means something here only
got = {"threads": threading.active_count()}

def check(name, fn):
    try:
        got[name] = fn()
    except OSError as e:
        got[name] = type(e).__name__

def datagram(to):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"ping " + to.encode(), to)
    return rx.recv(100).decode()

rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
rx.bind("d.sock")
check("sendto relative", lambda: datagram("d.sock"))
check("sendto absolute", lambda: datagram(os.path.abspath("d.sock")))

def sendmsg_named():
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendmsg([b"via ", b"sendmsg"], [], 0, "d.sock")
    return rx.recv(100).decode()
check("sendmsg relative", sendmsg_named)

def blocked_send_holds_nothing():
    # a performed send that blocks (a full stream) must not hold the next call: the
    # supervisor performs each on a thread of its own while one is busy
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    filled = 0
    try:
        while True:
            filled += a.send(b"x" * 4096, socket.MSG_DONTWAIT)  # no address: not supervised
    except BlockingIOError:
        pass
    blocked = threading.Thread(target=a.sendmsg, args=([b"y" * 65536],))
    blocked.start()
    blocked.join(0.3)
    rx.settimeout(10)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"meanwhile", "d.sock")
    got = rx.recv(100).decode()
    while filled + 65536 > 0:
        filled -= len(b.recv(1 << 16))
    blocked.join(10)
    a.close(), b.close()
    return got, blocked.is_alive()
check("a blocked send holds nothing", blocked_send_holds_nothing)

def stream_connect():
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind("s.sock")
        srv.listen(1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect("s.sock")
            peer, _ = srv.accept()
            c.sendmsg([b"hello"])
            with peer:
                return peer.recv(100).decode()
check("connect relative", stream_connect)

def pass_descriptor():
    a, b = socket.socketpair()
    with a, b, open("secret", "rb") as f:
        socket.send_fds(a, [b"fd"], [f.fileno()])
        _, fds, _, _ = socket.recv_fds(b, 10, 1)
        with os.fdopen(fds[0], "rb") as g:
            g.seek(0)
            return g.read().decode()
check("scm_rights", pass_descriptor)
check("scm_rights bad fd", lambda: socket.send_fds(socket.socketpair()[0], [b"x"], [999]))

# blocked here only: a SIGPIPE sent to the process, not this thread, would go to the other
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
def closed_peer(flags):
    a, b = socket.socketpair()
    b.close()
    with a:
        try:
            a.sendmsg([b"x"], [], flags)
        except BrokenPipeError:
            pending = signal.SIGPIPE in signal.sigpending()
            if pending:
                signal.sigtimedwait({signal.SIGPIPE}, 0)
            return "EPIPE", "SIGPIPE to this thread" if pending else "no signal here"
check("closed peer", lambda: closed_peer(0))
check("closed peer nosignal", lambda: closed_peer(socket.MSG_NOSIGNAL))

def tcp_ignores_the_address():
    with socket.create_server(("127.0.0.1", 0)) as srv, \
            socket.create_connection(srv.getsockname()) as c:
        peer, _ = srv.accept()
        with peer:
            c.sendto(b"tcp", ("192.0.2.1", 9))
            return peer.recv(10).decode()
check("tcp ignores the address", tcp_ignores_the_address)
check("udp to a forbidden address",
      lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("192.0.2.1", 9)))
print(json.dumps(got))
'''


@pytest.fixture
def work() -> Iterator[Path]:
    """nobody's directory (not under pytest's tmp_path, which is root's 0700)."""
    d = Path(tempfile.mkdtemp(prefix="secfilt-performs-"))
    try:
        (d / "inner").mkdir()
        (d / "inner" / "secret").write_text("the caller's file\n")
        (d / "program.py").write_text(PROGRAM)
        for p in (d, d / "inner", d / "inner" / "secret", d / "program.py"):
            os.chown(p, NOBODY, NOBODY)
        yield d
    finally:
        shutil.rmtree(d)


def run_as_nobody(work: Path, secfilt: list[str]) -> dict[str, object]:
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 for the unprivileged run")
    for sock in (work / "inner").glob("*.sock"):
        sock.unlink()
    cli = [python, "-m", "secfilt_runtime.secfilt_cli", *secfilt, "--"] if secfilt else []
    # an empty network namespace: 192.0.2.1 is unreachable in any case
    argv = [*EMPTY_NETNS, *as_nobody(), "HOME=/nonexistent", *cli, python,
            str(work / "program.py")]
    # the supervisor stays in the work directory, the program moves to inner/: a name
    # resolved from the supervisor's directory would miss
    p = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(REPO / "runtime")))
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout.splitlines()[-1])


def test_performed_calls_mean_what_they_mean_to_the_caller(work: Path) -> None:
    bare = run_as_nobody(work, [])
    supervised = run_as_nobody(work, ["--allowed-netmask=127.0.0.0/8"])
    # no route out of the empty namespace; the policy refuses before that
    assert bare.pop("udp to a forbidden address") == "OSError"
    assert supervised.pop("udp to a forbidden address") == "PermissionError", supervised
    assert supervised == bare
    assert bare["threads"] == 2
    assert bare["sendto relative"] == "ping d.sock"
    assert bare["scm_rights"] == "the caller's file\n"
    assert bare["closed peer"] == ["EPIPE", "SIGPIPE to this thread"]
    assert bare["closed peer nosignal"] == ["EPIPE", "no signal here"]
    assert bare["tcp ignores the address"] == "tcp"
    assert bare["a blocked send holds nothing"] == ["meanwhile", False]
