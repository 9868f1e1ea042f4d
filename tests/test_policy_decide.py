"""policy.decide and policy.sockaddr: the pure decisions, both sides of every rule."""

from __future__ import annotations

import random
import socket
import struct
from ipaddress import IPv4Address, IPv6Address, ip_network

import pytest

from secfilt_runtime.policy import decide, sockaddr
from secfilt_runtime.policy.model import Policy


def encode(address: str, port: int) -> bytes:
    """A sockaddr_in / sockaddr_in6, as a process would pass it."""
    if ":" in address:
        packed = socket.inet_pton(socket.AF_INET6, address)
        return (struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, 0) + packed
                + b"\0" * 4)
    packed = socket.inet_pton(socket.AF_INET, address)
    return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + packed + b"\0" * 8


def nets(*texts: str) -> tuple:
    return tuple(ip_network(t) for t in texts)


def dest(address: str, port: int):
    raw = encode(address, port)
    return sockaddr.parse(raw, len(raw))


# --- writes --------------------------------------------------------------------------------


def test_no_write_rule_allows_everything() -> None:
    assert decide.write(Policy(), "/etc/passwd").allowed
    assert decide.write(Policy(no_outbound_network=True), "/x").allowed


def test_read_only_denies_every_path() -> None:
    v = decide.write(Policy(read_only=True), "/tmp/x")
    assert not v.allowed and v.rule == "read-only" and "/tmp/x" in v.reason


@pytest.mark.parametrize(("path", "allowed"), [
    ("/allowed", True),
    ("/allowed/x", True),
    ("/allowed/x/y/z", True),
    ("/allowed-not", False),
    ("/allowed-not/x", False),
    ("/allowedx", False),
    ("/", False),
    ("/other/allowed", False),
    ("/dev/null", True),
    ("/dev/null2", False),
    ("/dev", False),
])
def test_allow_write_on_whole_components(path: str, allowed: bool) -> None:
    policy = Policy(read_only=True, allow_write=("/allowed", "/dev/null"))
    assert decide.write(policy, path).allowed is allowed


def test_allow_write_alone_implies_read_only() -> None:
    v = decide.write(Policy(allow_write=("/a",)), "/b")
    assert not v.allowed and v.rule == "allow-write" and "/a" in v.reason


def test_allow_write_root_allows_all() -> None:
    assert decide.write(Policy(allow_write=("/",)), "/anything/at/all").allowed


@pytest.mark.parametrize("path", [
    "/allowed/../etc/passwd", "/allowed/./x", "allowed/x", "/allowed//x", "/allowed/x/",
    "", "/allowed/\0/x",
])
def test_non_canonical_paths_are_denied(path: str) -> None:
    v = decide.write(Policy(allow_write=("/allowed",)), path)
    assert not v.allowed and "canonical" in v.reason


# --- sockaddr ------------------------------------------------------------------------------


def test_parse_inet_and_inet6() -> None:
    d4 = dest("192.0.2.7", 25)
    assert (d4.family, d4.address, d4.port, d4.inet) == (socket.AF_INET,
                                                         IPv4Address("192.0.2.7"), 25, True)
    d6 = dest("2001:db8::1", 443)
    assert (d6.family, d6.address, d6.port) == (socket.AF_INET6, IPv6Address("2001:db8::1"), 443)
    assert dest("::ffff:192.0.2.1", 1).judged_as == IPv4Address("192.0.2.1")


def test_parse_accepts_rfc2133_length_for_inet6() -> None:
    raw = encode("2001:db8::1", 80)[:24]
    assert sockaddr.parse(raw, 24).address == IPv6Address("2001:db8::1")


@pytest.mark.parametrize(("raw", "addrlen"), [
    (b"", 0), (b"\x02", 1), (encode("192.0.2.1", 80), 15), (encode("192.0.2.1", 80)[:8], 16),
    (encode("2001:db8::1", 80), 23), (b"\x0a\x00" + b"\xff" * 6, 8),
    (encode("192.0.2.1", 80), -5),
])
def test_parse_never_raises_and_truncated_inet_has_no_address(raw: bytes, addrlen: int) -> None:
    d = sockaddr.parse(raw, addrlen)
    assert d.address is None


def test_unspec_is_a_disconnect_for_connect_but_inet_for_send() -> None:
    raw = struct.pack("=H", socket.AF_UNSPEC) + encode("192.0.2.9", 53)[2:]
    assert sockaddr.parse(raw, 16, "connect").address is None
    sent = sockaddr.parse(raw, 16)
    assert sent.inet and sent.address == IPv4Address("192.0.2.9") and sent.port == 53


def test_random_bytes_never_raise_and_never_pass_unread() -> None:
    rng = random.Random(4)
    policy = Policy(no_outbound_network=True)
    for _ in range(3000):
        family = rng.choice([0, 1, 2, 10, 16, 17, rng.randrange(65536)])
        raw = struct.pack("=H", family) + rng.randbytes(rng.randrange(0, 40))
        d = sockaddr.parse(raw[: rng.randrange(0, len(raw) + 1)], rng.randrange(-4, 64),
                           rng.choice(["connect", "send"]))
        v = decide.destination(policy, d)
        if d.inet and (d.address is None or not d.judged_as.is_loopback):
            assert not v.allowed, d
        if v.allowed and d.inet:
            assert d.address is not None and decide.is_loopback(d.judged_as)


def test_garbage_family_parses() -> None:
    d = sockaddr.parse(b"\xff\xff" + b"\x00" * 200, 16)
    assert d.family == 0xFFFF and not d.inet and d.address is None


# --- destinations --------------------------------------------------------------------------

NO_OUT = Policy(no_outbound_network=True)


@pytest.mark.parametrize(("address", "allowed"), [
    ("127.0.0.1", True), ("127.255.0.9", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("192.0.2.1", False), ("2001:db8::1", False), ("::ffff:192.0.2.1", False),
    ("0.0.0.0", False), ("::", False), ("::127.0.0.1", False),
])
def test_no_outbound_network_allows_loopback_only(address: str, allowed: bool) -> None:
    v = decide.destination(NO_OUT, dest(address, 80))
    assert v.allowed is allowed
    if not allowed:
        assert v.rule == "no-outbound-network"


def test_netmask_both_families_and_mapped() -> None:
    p = Policy(netmasks=nets("192.0.2.0/24", "2001:db8::/32"))
    assert decide.destination(p, dest("192.0.2.200", 22)).allowed
    assert decide.destination(p, dest("::ffff:192.0.2.200", 22)).allowed
    assert decide.destination(p, dest("2001:db8:1::5", 22)).allowed
    for outside in ("198.51.100.1", "2001:db9::1", "::ffff:198.51.100.1", "127.0.0.1"):
        v = decide.destination(p, dest(outside, 22))
        assert not v.allowed and v.rule == "allowed-netmask", outside


def test_mapped_address_is_not_matched_by_an_ipv6_netmask() -> None:
    # ::ffff:192.0.2.1 goes out as IPv4: only IPv4 netmasks may admit it
    p = Policy(netmasks=nets("::/0"))
    assert not decide.destination(p, dest("::ffff:192.0.2.1", 1)).allowed
    assert decide.destination(p, dest("2001:db8::1", 1)).allowed


def test_ports() -> None:
    p = Policy(ports=(22, 53))
    assert decide.destination(p, dest("198.51.100.1", 22)).allowed
    v = decide.destination(p, dest("198.51.100.1", 23))
    assert not v.allowed and v.rule == "allowed-port"
    assert not decide.destination(p, dest("127.0.0.1", 0)).allowed


def test_netmask_and_port_must_both_match() -> None:
    p = Policy(netmasks=nets("192.0.2.0/24"), ports=(22,))
    assert decide.destination(p, dest("192.0.2.1", 22)).allowed
    assert decide.destination(p, dest("192.0.2.1", 80)).rule == "allowed-port"
    assert decide.destination(p, dest("198.51.100.1", 22)).rule == "allowed-netmask"


def test_no_outbound_network_still_applies_ports_and_nameservers_on_53() -> None:
    p = Policy(no_outbound_network=True, allow_resolv=True, nameservers=nets("192.0.2.53/32"))
    assert decide.destination(p, dest("192.0.2.53", 53)).allowed
    assert not decide.destination(p, dest("192.0.2.53", 54)).allowed
    assert not decide.destination(p, dest("192.0.2.54", 53)).allowed
    p2 = Policy(no_outbound_network=True, ports=(22,))
    assert not decide.destination(p2, dest("127.0.0.1", 80)).allowed


@pytest.mark.parametrize("policy", [NO_OUT, Policy(ports=(80,)),
                                    Policy(netmasks=nets("0.0.0.0/0", "::/0"))])
def test_truncated_inet_address_is_denied(policy: Policy) -> None:
    d = sockaddr.parse(encode("127.0.0.1", 80), 8)
    v = decide.destination(policy, d)
    assert not v.allowed and "too short" in v.reason


def test_unspec_send_is_judged_as_ipv4() -> None:
    raw = struct.pack("=H", socket.AF_UNSPEC) + encode("192.0.2.9", 53)[2:]
    assert not decide.destination(NO_OUT, sockaddr.parse(raw, 16)).allowed
    assert decide.destination(NO_OUT, sockaddr.parse(raw, 16, "connect")).allowed


def test_non_inet_destinations_are_left_to_other_rules() -> None:
    unix = struct.pack("=H", socket.AF_UNIX) + b"/run/x\0"
    assert decide.destination(NO_OUT, sockaddr.parse(unix, len(unix))).allowed


def test_no_destination_rule_allows_all() -> None:
    assert decide.destination(Policy(read_only=True), dest("192.0.2.1", 1)).allowed


# --- sockets -------------------------------------------------------------------------------

AF_PACKET = 17
AF_VSOCK = 40


def test_mainstream_families() -> None:
    p = Policy(mainstream_network_families=True)
    for fam in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK):
        assert decide.socket_family(p, fam, socket.SOCK_STREAM).allowed
    for fam in (AF_PACKET, AF_VSOCK, 9999):
        v = decide.socket_family(p, fam, socket.SOCK_DGRAM)
        assert not v.allowed and v.rule == "mainstream-network-families"
    # raw INET sockets are a mainstream family: without a destination rule they stay allowed
    assert decide.socket_family(p, socket.AF_INET, socket.SOCK_RAW).allowed


def test_no_rule_allows_any_socket() -> None:
    assert decide.socket_family(Policy(), AF_PACKET, socket.SOCK_RAW).allowed


@pytest.mark.parametrize("policy", [NO_OUT, Policy(ports=(22,)),
                                    Policy(netmasks=nets("192.0.2.0/24"))])
def test_destination_rules_refuse_sockets_that_bypass_them(policy: Policy) -> None:
    flags = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    for fam, typ, proto in [(AF_PACKET, socket.SOCK_RAW, None), (AF_VSOCK, 1, None),
                            (socket.AF_INET, socket.SOCK_RAW, None),
                            (socket.AF_INET6, socket.SOCK_RAW | flags, None),
                            (socket.AF_INET, 10, None),  # SOCK_PACKET
                            (socket.AF_INET, socket.SOCK_SEQPACKET, 132),
                            (socket.AF_INET, socket.SOCK_STREAM, 132),  # SCTP
                            (socket.AF_INET6, socket.SOCK_STREAM, 262)]:  # MPTCP
        v = decide.socket_family(policy, fam, typ, proto)
        assert not v.allowed, (fam, typ, proto)
        assert v.rule == decide.destination_rule(policy)
    for fam, typ, proto in [(socket.AF_INET, socket.SOCK_STREAM | flags, 0),
                            (socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_UDP),
                            (socket.AF_UNIX, socket.SOCK_STREAM, 0),
                            (socket.AF_NETLINK, socket.SOCK_RAW, 0)]:
        assert decide.socket_family(policy, fam, typ, proto).allowed, (fam, typ, proto)


@pytest.mark.parametrize("policy", [NO_OUT, Policy(ports=(22,)),
                                    Policy(netmasks=nets("127.0.0.0/8"))])
def test_icmp_echo_and_udplite_sockets_are_refused_under_destination_rules(policy) -> None:
    # the kernel's sock_addr hooks see neither an ICMP echo's sendto address nor a UDP-Lite
    # connect: only the racy tracer would judge them
    for fam, proto in [(socket.AF_INET, decide.IPPROTO_ICMP), (socket.AF_INET6, 58),
                       (socket.AF_INET, 136), (socket.AF_INET6, 136)]:
        assert not decide.socket_family(policy, fam, socket.SOCK_DGRAM, proto).allowed
    assert decide.socket_family(Policy(), socket.AF_INET, socket.SOCK_DGRAM, 1).allowed


def test_socket_rules_as_data() -> None:
    assert decide.socket_rules(Policy()) == decide.SocketRules(None, "", None, None, "")
    r = decide.socket_rules(Policy(mainstream_network_families=True, ports=(1,)))
    assert r.families == decide.MAINSTREAM_FAMILIES
    assert r.family_rule == "mainstream-network-families" and r.inet_rule == "allowed-port"
    assert 1 not in r.inet_protocols


# --- rerouting options ---------------------------------------------------------------------


@pytest.mark.parametrize("policy", [NO_OUT, Policy(ports=(22,)),
                                    Policy(netmasks=nets("127.0.0.0/8"))])
def test_rerouting_options_are_refused_under_destination_rules(policy: Policy) -> None:
    for level, opt in [(0, 4), (41, 57), (41, 5), (41, 9), (41, 6)]:
        v = decide.sockopt(policy, level, opt)
        assert not v.allowed and v.rule == decide.destination_rule(policy), (level, opt)
    for level, typ in [(0, 7), (41, 57), (41, 9)]:
        assert not decide.control_message(policy, level, typ).allowed, (level, typ)
    # ordinary options and messages stay allowed: TCP_NODELAY, SO_REUSEADDR, IP_TTL,
    # IP_PKTINFO, SCM_RIGHTS
    for level, opt in [(6, 1), (1, 2), (0, 2)]:
        assert decide.sockopt(policy, level, opt).allowed
    for level, typ in [(0, 8), (1, 1)]:
        assert decide.control_message(policy, level, typ).allowed


def test_rerouting_options_are_free_without_destination_rules() -> None:
    p = Policy(read_only=True, mainstream_network_families=True)
    assert decide.sockopt(p, 0, 4).allowed and decide.control_message(p, 41, 57).allowed


# --- control messages ------------------------------------------------------------------------


def cmsg(level: int, type_: int, data: bytes, compat: bool = False) -> bytes:
    head, align, fmt = (12, 4, "<Iii") if compat else (16, 8, "<Qii")
    raw = struct.pack(fmt, head + len(data), level, type_) + data
    return raw + b"\0" * (-len(raw) % align)


@pytest.mark.parametrize("compat", [False, True])
def test_control_messages_are_walked_as_the_kernel_walks_them(compat: bool) -> None:
    route = bytes([0x83, 7, 4, 192, 0, 2, 1, 1])
    data = cmsg(1, 1, b"\1\0\0\0", compat) + cmsg(0, 7, route, compat)
    assert sockaddr.control_messages(data, compat) == [(1, 1), (0, 7)]
    # a length running past the buffer, or shorter than the header, is malformed (EINVAL)
    bad_len = struct.pack("<Qii" if not compat else "<Iii", 999, 0, 7)
    assert sockaddr.control_messages(bad_len, compat) is None
    short = struct.pack("<Qii" if not compat else "<Iii", 4, 0, 7)
    assert sockaddr.control_messages(short, compat) is None
    # trailing bytes too short for another header are ignored, as by CMSG_NXTHDR
    assert sockaddr.control_messages(data + b"\0" * 3, compat) == [(1, 1), (0, 7)]
    assert sockaddr.control_messages(b"", compat) == []
