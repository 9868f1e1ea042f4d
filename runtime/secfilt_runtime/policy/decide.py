"""The policy's decisions, as pure functions: the tracer asks, the BPF filter builder reads the
same data (socket_rules) so both ends agree.

Decisions ignore the mode: in audit mode the caller allows the call and logs the Verdict.

Sockets and destinations: the destination rules (no-outbound-network, allowed-netmask,
allowed-port) can only be judged on addresses the tracer sees, i.e. the sockaddr of connect,
sendto, sendmsg and sendmmsg. Sockets whose traffic leaves the host without such an address are
therefore refused while a destination rule is set:
- families other than AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK (AF_PACKET and AF_XDP send raw
  frames, AF_RDS and AF_TIPC run over IP, AF_VSOCK reaches the hypervisor, ...);
- INET sockets other than stream and datagram ones (SOCK_RAW writes its own IP header,
  SOCK_PACKET is AF_PACKET under another name, SOCK_SEQPACKET is SCTP);
- protocols that take addresses outside the sockaddr argument: SCTP (connectx and bindx through
  setsockopt) and MPTCP (extra subflows to addresses the peer announces);
- ICMP echo sockets and UDP-Lite: the kernel's cgroup hooks that hold the destination rules
  without a race (policy.cgroup_net) do not see an ICMP echo's sendto address nor a UDP-Lite
  connect, so only the racy tracer would judge them.
Options that route a packet through other hosts than its destination (IPv4 source routing,
IPv6 routing headers and next hops), by setsockopt or by a sendmsg control message, are refused
under the same rules: the first hop is a destination no sockaddr names.
"""

from __future__ import annotations

from _socket import (  # socket.py adds ~5 ms to every start; its enums only name refusals
    AF_INET,
    AF_INET6,
    AF_NETLINK,
    AF_UNIX,
    IPPROTO_TCP,
    IPPROTO_UDP,
    SOCK_DGRAM,
    SOCK_STREAM,
)

from ..records import record
from .model import Policy
from .sockaddr import Destination
from .syscalls import ROUTING_CMSGS, ROUTING_SOCKOPTS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv6Address

SOCK_TYPE_MASK = 0xF  # socket()'s type also carries SOCK_NONBLOCK | SOCK_CLOEXEC

MAINSTREAM_FAMILIES = frozenset(
    {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK}
)
INET_FAMILIES = frozenset({AF_INET, AF_INET6})
INET_TYPES = frozenset({SOCK_STREAM, SOCK_DGRAM})
IPPROTO_ICMP, IPPROTO_ICMPV6 = 1, 58
IPPROTO_SCTP, IPPROTO_MPTCP = 132, 262
# protocol 0 picks the family/type default (TCP, UDP)
_ADDRESSED_PROTOCOLS = frozenset({0, IPPROTO_TCP, IPPROTO_UDP})

DNS_PORT = 53


@record(frozen=True)
class Verdict:
    allowed: bool
    rule: str      # the policy rule that decided ("" when no rule applies)
    reason: str    # for the log


ALLOW = Verdict(True, "", "no rule applies")


@record(frozen=True)
class SocketRules:
    """Which socket(family, type, protocol) calls a policy admits, as data for BPF.

    `families` None: any family. For INET families, `inet_types` / `inet_protocols` None: any.
    """

    families: frozenset[int] | None
    family_rule: str
    inet_types: frozenset[int] | None
    inet_protocols: frozenset[int] | None
    inet_rule: str


# --- writes --------------------------------------------------------------------------------


def write_rule(policy: Policy) -> str:
    return "read-only" if policy.read_only else "allow-write"


def write(policy: Policy, path: str) -> Verdict:
    """May the file system be changed at `path` (canonical, absolute, in the container's view)?"""
    if not policy.restricts_writes:
        return ALLOW
    rule = write_rule(policy)
    if not is_canonical(path):
        return Verdict(False, rule, f"{path!r} is not a canonical absolute path")
    for entry in policy.allow_write:
        if is_beneath(path, entry):
            return Verdict(True, "allow-write", f"{path} is at or below {entry}")
    if policy.allow_write:
        return Verdict(False, rule, f"{path} is outside {', '.join(policy.allow_write)}")
    return Verdict(False, rule, f"{path}: the file system is read-only")


def is_canonical(path: str) -> bool:
    if path == "/":
        return True
    if not path.startswith("/") or path.endswith("/") or "\0" in path:
        return False
    return all(part not in ("", ".", "..") for part in path[1:].split("/"))


def is_beneath(path: str, directory: str) -> bool:
    """`path` is `directory` or inside it, on whole components (/a never covers /ab)."""
    if directory == "/":
        return path.startswith("/")
    return path == directory or path.startswith(directory + "/")


# --- destinations --------------------------------------------------------------------------


def destination_rule(policy: Policy) -> str:
    """The rule named when a destination is refused before its address could be judged."""
    if policy.no_outbound_network:
        return "no-outbound-network"
    return "allowed-netmask" if policy.netmasks else "allowed-port"


def is_loopback(address: IPv4Address | IPv6Address) -> bool:
    """127.0.0.0/8 or ::1 (ipaddress's own is_loopback: this module does not import
    ipaddress, ~3 ms with functools, which a policy without destination rules never needs)."""
    return address.is_loopback


def destination(policy: Policy, dest: Destination) -> Verdict:
    """May a connect/sendto/sendmsg/sendmmsg go to `dest`?"""
    if not policy.restricts_destinations:
        return ALLOW
    if not dest.inet:
        # AF_UNIX paths, netlink, a connect(AF_UNSPEC) disconnect: no INET destination here;
        # socket_family keeps families that could reach the network elsewhere out
        return Verdict(True, "", f"family {dest.family} carries no INET destination")
    address = dest.judged_as
    if address is None or dest.port is None:
        return Verdict(False, destination_rule(policy),
                       f"address too short ({dest.length} bytes) for family {dest.family}")
    shown = f"{address}:{dest.port}" if address.version == 4 else f"[{address}]:{dest.port}"
    if policy.no_outbound_network and not is_loopback(address):
        nameserver = dest.port == DNS_PORT and any(address in n for n in policy.nameservers)
        if not nameserver:
            return Verdict(False, "no-outbound-network", f"{shown} is not loopback")
    if policy.netmasks and not any(address in net for net in policy.netmasks):
        return Verdict(False, "allowed-netmask", f"{shown} is in none of the allowed netmasks")
    if policy.ports and dest.port not in policy.ports:
        return Verdict(False, "allowed-port", f"{shown}: port {dest.port} is not allowed")
    return Verdict(True, destination_rule(policy), f"{shown} is allowed")


def sockopt(policy: Policy, level: int, optname: int) -> Verdict:
    """May setsockopt(level, optname) be called? Only rerouting options are ever refused."""
    return _rerouting(policy, ROUTING_SOCKOPTS.get((level, optname)))


def control_message(policy: Policy, level: int, type_: int) -> Verdict:
    """May a sendmsg/sendmmsg carry a control message of (level, type_)?"""
    return _rerouting(policy, ROUTING_CMSGS.get((level, type_)))


def _rerouting(policy: Policy, name: str | None) -> Verdict:
    if name is None or not policy.restricts_destinations:
        return ALLOW
    return Verdict(False, destination_rule(policy),
                   f"{name} would route packets via hosts no destination check sees")


# --- sockets -------------------------------------------------------------------------------


def socket_rules(policy: Policy) -> SocketRules:
    families: frozenset[int] | None = None
    family_rule = ""
    if policy.mainstream_network_families:
        families, family_rule = MAINSTREAM_FAMILIES, "mainstream-network-families"
    if not policy.restricts_destinations:
        return SocketRules(families, family_rule, None, None, "")
    rule = destination_rule(policy)
    if families is None:
        families, family_rule = MAINSTREAM_FAMILIES, rule
    return SocketRules(families, family_rule, INET_TYPES, _ADDRESSED_PROTOCOLS, rule)


def socket_family(policy: Policy, family: int, type_: int, protocol: int | None = None
                  ) -> Verdict:
    """May socket(family, type_, protocol) be created? (protocol None: not known, not judged)"""
    rules = socket_rules(policy)
    if rules.families is not None and family not in rules.families:
        return Verdict(False, rules.family_rule, f"{_family_name(family)} sockets are not allowed")
    if family not in INET_FAMILIES:
        return ALLOW
    base = type_ & SOCK_TYPE_MASK
    if rules.inet_types is not None and base not in rules.inet_types:
        return Verdict(False, rules.inet_rule,
                       f"{_type_name(base)} INET sockets bypass the destination checks")
    if (protocol is not None and rules.inet_protocols is not None
            and protocol not in rules.inet_protocols):
        return Verdict(False, rules.inet_rule,
                       f"INET protocol {protocol} is not one whose destinations can be judged")
    return ALLOW


def _family_name(family: int) -> str:
    import socket

    try:
        return socket.AddressFamily(family).name
    except ValueError:
        return f"family {family}"


def _type_name(type_: int) -> str:
    import socket

    try:
        return socket.SocketKind(type_).name
    except ValueError:
        return f"type {type_}"
