"""The tracer and the policy filter against real processes: destinations and socket families.

Each run happens in a fresh network namespace with only loopback up: an allowed datagram to
192.0.2.1 (TEST-NET-1) fails with ENETUNREACH, a denied one with the policy's errno, so the
two outcomes can be told apart without any traffic leaving the namespace."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest
from test_tracer_harness import HAVE_GCC, log_records, run_traced

from secfilt_runtime.policy.model import Policy

pytestmark = pytest.mark.skipif(not HAVE_GCC, reason="needs gcc to build the helper")
EPERM = f"ERR {errno.EPERM}"
UNREACH = f"ERR {errno.ENETUNREACH}"


def test_no_outbound_network_on_every_sending_call(helper: str) -> None:
    ops = []
    for op in ("connect", "sendto", "sendmsg", "sendmmsg"):
        ops += [op, "127.0.0.1", "9", op, "192.0.2.1", "53"]
    out = run_traced(Policy(no_outbound_network=True), [helper, *ops], netns=True)
    for op in ("connect", "sendto", "sendmsg"):
        assert out.answer(op, 0) == "OK", op
        assert out.answer(op, 1) == EPERM, op
    # the harmless first message of the vector does not carry the second one through
    assert out.answer("sendmmsg", 0) == "OK"
    assert out.answer("sendmmsg", 1) == EPERM


def test_ipv6_and_ipv4_mapped_addresses(helper: str) -> None:
    policy = Policy(no_outbound_network=True)
    out = run_traced(policy, [helper, "sendto", "::1", "9", "sendto", "2001:db8::1", "9",
                              "sendto", "::ffff:192.0.2.1", "9"], netns=True)
    assert out.answer("sendto", 0) == "OK"
    assert out.answer("sendto", 1) == EPERM
    assert out.answer("sendto", 2) == EPERM


def test_netmask_and_port_must_both_match(helper: str) -> None:
    from ipaddress import ip_network

    policy = Policy(netmasks=(ip_network("192.0.2.0/24"),), ports=(53,))
    out = run_traced(policy, [helper, "connect", "192.0.2.1", "53", "connect", "192.0.2.1", "80",
                              "connect", "198.51.100.1", "53",
                              "connect", "::ffff:192.0.2.7", "53"], netns=True)
    # allowed destinations reach the kernel, which has no route in this namespace
    assert out.answer("connect", 0) == UNREACH
    assert out.answer("connect", 1) == EPERM
    assert out.answer("connect", 2) == EPERM
    assert out.answer("connect", 3) == UNREACH


def test_sendto_without_address_passes_in_bpf(helper: str) -> None:
    out = run_traced(Policy(no_outbound_network=True),
                     [helper, "sendto_null", "127.0.0.1", "9"], netns=True)
    assert out.answer("sendto_null") == "OK"


def test_i386_socketcall_is_judged(helper: str) -> None:
    out = run_traced(Policy(no_outbound_network=True), [
        helper, "socketcall", "3", "192.0.2.1", "53", "socketcall", "11", "192.0.2.1", "53",
        "socketcall", "11", "127.0.0.1", "9"], netns=True)
    assert out.answer("socketcall", 0) == EPERM
    assert out.answer("socketcall", 1) == EPERM
    assert out.answer("socketcall", 2) == "OK"


def test_garbage_address_pointer_is_efault(helper: str) -> None:
    out = run_traced(Policy(no_outbound_network=True), [helper, "badptr_connect"], netns=True)
    assert out.answer("badptr_connect") == f"ERR {errno.EFAULT}"


def test_socket_families_decided_in_bpf(helper: str) -> None:
    out = run_traced(Policy(mainstream_network_families=True), [
        helper, "socket", str(socket.AF_INET), str(socket.SOCK_DGRAM),
        "socket", str(socket.AF_PACKET), str(socket.SOCK_DGRAM),
        "socket", str(socket.AF_UNIX), str(socket.SOCK_STREAM),
        "socket", "45", "1"], netns=True)
    assert [out.answer("socket", i) for i in range(4)] == ["OK", EPERM, "OK", EPERM]


def test_raw_inet_sockets_refused_under_destination_rules(helper: str) -> None:
    out = run_traced(Policy(no_outbound_network=True), [
        helper, "socket", str(socket.AF_INET), str(socket.SOCK_RAW),
        "socket", str(socket.AF_INET6), str(socket.SOCK_STREAM)], netns=True)
    assert out.answer("socket", 0) == EPERM
    assert out.answer("socket", 1) == "OK"


def test_network_denials_are_logged(helper: str, tmp_path: Path) -> None:
    log = str(tmp_path / "net.log")
    run_traced(Policy(no_outbound_network=True, log_path=log),
               [helper, "connect", "192.0.2.1", "443", "socket", "17", "3"],
               log_path=log, netns=True)
    records = log_records(log)
    assert records[0]["syscall"] == "connect"
    assert records[0]["args"]["address"] == "192.0.2.1" and records[0]["args"]["port"] == 443
    assert records[0]["rule"] == "no-outbound-network"
    # with a log, a socket family denial reaches the tracer to be written down
    assert records[1]["syscall"] == "socket" and records[1]["args"]["family"] == 17


def test_source_routes_are_refused(helper: str) -> None:
    # a datagram to loopback routed through 192.0.2.1 goes to 192.0.2.1 first
    out = run_traced(Policy(no_outbound_network=True), [
        helper, "ip_options", "127.0.0.1", "192.0.2.1", "cmsg_route", "127.0.0.1", "192.0.2.1",
        "sendmsg", "127.0.0.1", "9"], netns=True)
    assert out.answer("ip_options") == EPERM
    assert out.answer("cmsg_route") == EPERM
    assert out.answer("sendmsg") == "OK"


def test_source_routes_pass_without_destination_rules(helper: str) -> None:
    out = run_traced(Policy(read_only=True), [
        helper, "ip_options", "127.0.0.1", "192.0.2.1"], netns=True)
    assert out.answer("ip_options") == "OK"
