"""The NOTIFY hand-over page (seccomp.notify.Handoff) serves one hand-over: hand_to_agent
closes its memfd and unmaps it whether the agent got the listener or the process failed
first, so a runtime that lives on (run, exec without --detach) keeps neither."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from secfilt_runtime import kernel
from secfilt_runtime import seccomp as seccomp_mod
from secfilt_runtime.seccomp.notify import hand_to_agent

from conftest import needs_root

pytestmark = [needs_root]  # pidfd_getfd on a child needs ptrace rights: root here

PROFILE = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/unused",
           "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]}
PAGE = "secfilt-seccomp-handoff"


def pages_held() -> tuple[int, int]:
    """(descriptors, mappings) of hand-over memfds in this process."""
    fds = sum(PAGE in os.readlink(f"/proc/self/fd/{n}")
              for n in os.listdir("/proc/self/fd")
              if os.path.exists(f"/proc/self/fd/{n}"))
    maps = Path("/proc/self/maps").read_text().count(PAGE)
    return fds, maps


def agent(path: Path) -> tuple[socket.socket, list]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    got: list = []

    def serve():
        conn, _ = server.accept()
        with conn:
            msg, fds, _, _ = socket.recv_fds(conn, 65536, 1)
            got.append((msg, fds))

    threading.Thread(target=serve, daemon=True).start()
    return server, got


def child_loading_the_filter(filters, report: socket.socket) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
            seccomp_mod.install(filters)  # publishes, waits for the page to say "taken"
            os.write(report.fileno(), b"released")
        finally:
            os._exit(0)
    return pid


def test_the_page_is_closed_after_the_agent_has_the_listener(tmp_path):
    before = pages_held()
    filters = seccomp_mod.prepare(PROFILE, None, cache_dir=None)
    held = pages_held()  # the memfd, mmap's own duplicate of it, one mapping
    assert held[0] > before[0] and held[1] == before[1] + 1, (before, held)
    server, got = agent(tmp_path / "agent.sock")
    ours, theirs = socket.socketpair()
    pid = child_loading_the_filter(filters, theirs)
    try:
        hand_to_agent(filters.handoff, str(tmp_path / "agent.sock"), None, pid,
                      {"status": "running"}, ours.fileno())
        assert ours.recv(16) == b"released"  # the child went on only after the hand-over
        assert pages_held() == before
        assert filters.handoff.fileno() == -1
        filters.handoff.close()  # again: nothing happens
    finally:
        os.waitpid(pid, 0)
        server.close()
    for _, fds in got:
        for fd in fds:
            os.close(fd)
    assert len(got) == 1 and len(got[0][1]) == 1


def test_the_page_is_closed_when_the_process_fails_first(tmp_path):
    before = pages_held()
    filters = seccomp_mod.prepare(PROFILE, None, cache_dir=None)
    ours, theirs = socket.socketpair()
    theirs.close()  # the process "reported" (end-of-file) before publishing anything
    hand_to_agent(filters.handoff, str(tmp_path / "nobody.sock"), None, os.getpid(),
                  {}, ours.fileno())
    assert pages_held() == before
    ours.close()


def test_the_page_is_closed_when_the_agent_is_unreachable(tmp_path):
    before = pages_held()
    filters = seccomp_mod.prepare(PROFILE, None, cache_dir=None)
    ours, theirs = socket.socketpair()
    pid = child_loading_the_filter(filters, theirs)
    try:
        with pytest.raises(Exception, match="cannot hand the seccomp listener"):
            hand_to_agent(filters.handoff, str(tmp_path / "nobody.sock"), None, pid, {},
                          ours.fileno())
        assert pages_held() == before
    finally:
        os.kill(pid, 9)  # never released: it would spin until its deadline
        os.waitpid(pid, 0)
