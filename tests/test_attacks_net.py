"""Attacks on the destination rules (no-outbound-network + allowed-netmask 127.0.0.0/8): every
system call that carries an address, both address families, IPv4-mapped IPv6, raw and packet
sockets, a source route, other entry points, bad pointers and lengths.  The judge is the peer in
the test's own network namespace: it listens on 127.0.0.1 (allowed) and on 192.0.2.1 and
2001:db8::1 (forbidden), and records what arrives there and what crosses lo addressed to them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from attacks.harness import (
    ALLOWED_PEER,
    FORBIDDEN_PEER,
    FORBIDDEN_PEER6,
    NET_MODES,
    NET_POLICY,
    PORT,
    HostRunner,
    Peer,
    Tree,
    peer_netns,
    runner_for,
)

from conftest import needs_root

pytestmark = [needs_root]


@dataclass(frozen=True)
class NetCase:
    name: str
    program: str
    args: tuple[str, ...]
    target: str = FORBIDDEN_PEER
    # needs CAP_NET_RAW, which the test bundle's process lacks
    host_only: bool = False


def net(op: str, target: str = FORBIDDEN_PEER, *extra: str, host_only: bool = False) -> NetCase:
    name = op if target == FORBIDDEN_PEER else f"{op} {target}"
    return NetCase(name, "net", (op, target, str(PORT), *extra), target, host_only)


ATTACKS = (
    net("tcp_connect"), net("tcp_connect", FORBIDDEN_PEER6),
    net("udp_connect"), net("tcp_fastopen"), net("tcp_fastopen", FORBIDDEN_PEER6),
    net("tcp_fastopen_mmsg"),
    net("udp_sendto"), net("udp_sendto", FORBIDDEN_PEER6),
    net("udp_sendmsg"), net("udp_sendmsg", FORBIDDEN_PEER6),
    net("udp_sendmmsg"), net("udp_sendmmsg", FORBIDDEN_PEER6),
    net("mapped"), net("udp_redirect", FORBIDDEN_PEER, ALLOWED_PEER),
    net("long_addrlen"), net("bad_pointers"),
    net("raw_hdrincl", host_only=True), net("packet", host_only=True),
    # setsockopt(IP_OPTIONS) with a source route needs CAP_NET_RAW; the control message not
    net("source_route", FORBIDDEN_PEER, ALLOWED_PEER, host_only=True),
    net("cmsg_route", FORBIDDEN_PEER, ALLOWED_PEER),
    NetCase("int 0x80 connect", "entry", ("int80", "connect", FORBIDDEN_PEER, str(PORT))),
    NetCase("int 0x80 socketcall(CONNECT)", "entry",
            ("int80", "socketcall_connect", FORBIDDEN_PEER, str(PORT))),
    NetCase("int 0x80 socketcall(SENDTO)", "entry",
            ("int80", "socketcall_sendto", FORBIDDEN_PEER, str(PORT))),
    NetCase("io_uring connect", "uring", ("connect", FORBIDDEN_PEER, str(PORT))),
)

# a policy that cuts every connection would pass every attack: these must still arrive
CONTROLS = (
    net("tcp_connect", ALLOWED_PEER), net("udp_sendto", ALLOWED_PEER),
    net("udp_sendmsg", ALLOWED_PEER),
    # the tracer survived the bad pointers and still judges
    net("bad_pointers", ALLOWED_PEER),
)


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Peer]:
    with peer_netns(tmp_path) as p:
        yield p


@pytest.mark.parametrize("mode", NET_MODES)
@pytest.mark.parametrize("case", ATTACKS, ids=lambda c: c.name)
def test_network_attack(case: NetCase, mode: str, peer: Peer, tmp_path: Path, request) -> None:
    if case.host_only and mode != "secfilt":
        pytest.skip("needs CAP_NET_RAW")
    host = HostRunner(Tree.make(tmp_path), peer)
    out = host.run(case.program, *case.args, policy=None)
    assert peer.received(case.target), f"the attack does not work without a policy:\n{out}"
    peer.record.write_text("")
    runner = runner_for(mode, Tree.make(tmp_path), request, peer)
    out = runner.run(case.program, *case.args, policy=NET_POLICY)
    got = peer.received(case.target)
    assert not got, f"BYPASS ({mode}): {case.name}: the forbidden peer received {got}\n{out}"


@pytest.mark.parametrize("mode", NET_MODES)
@pytest.mark.parametrize("case", CONTROLS, ids=lambda c: c.name)
def test_allowed_destination_still_works(case: NetCase, mode: str, peer: Peer, tmp_path: Path,
                                         request) -> None:
    runner = runner_for(mode, Tree.make(tmp_path), request, peer)
    out = runner.run(case.program, *case.args, policy=NET_POLICY)
    assert peer.received(case.target), f"an allowed destination was refused:\n{out}"


@pytest.mark.parametrize("mode", NET_MODES)
def test_af_unspec_neither_crashes_nor_passes(mode: str, peer: Peer, tmp_path: Path,
                                              request) -> None:
    """connect(AF_UNSPEC) carrying a forbidden address's bytes: the call is answered (the
    program reports it, no tracer died under it) and nothing reaches the peer."""
    runner = runner_for(mode, Tree.make(tmp_path), request, peer)
    out = runner.run("net", "unspec", FORBIDDEN_PEER, str(PORT), policy=NET_POLICY)
    assert "connect(AF_UNSPEC):" in out.stdout and out.returncode == 1, str(out)
    assert not peer.received(FORBIDDEN_PEER), str(out)


@pytest.mark.parametrize("op", ["socketcall_connect", "socketcall_sendto"])
def test_user_secfilt_with_a_log_refuses_i386_socketcall(op: str, peer: Peer, tmp_path: Path,
                                                         request) -> None:
    """secfilt run by a user has no cgroup programs: the supervisor holds the destinations and
    the filter refuses i386 socketcall, whose sockaddr nothing could judge race-free. With a
    log, that refusal becomes a tracer stop: the tracer must refuse it too, even toward an
    allowed peer (judging it would leave the rewrite race open)."""
    runner = runner_for("secfilt-user", Tree.make(tmp_path), request, peer)
    quiet = runner.run("entry", "int80", op, ALLOWED_PEER, str(PORT), policy=NET_POLICY)
    logged = runner.run("entry", "int80", op, ALLOWED_PEER, str(PORT),
                        policy={**NET_POLICY, "verbose": True})
    assert not peer.received(ALLOWED_PEER), f"{quiet}\n{logged}"
    assert "socketcall" in logged.stderr and "supervisor" in logged.stderr, str(logged)
