"""Socket addresses as the tracer reads them from a traced process: bytes -> Destination.

Pure and total: whatever bytes a hostile process hands to connect/sendto/sendmsg, parse()
returns a Destination, never raises. When the bytes are too short for the family they claim,
`address` is None and the decisions deny the call under any destination rule: the tracer must
never allow what it could not read.

The kernel's own reading is the reference, not the family field alone:
- connect() with AF_UNSPEC on an INET socket is a disconnect (inet_stream_connect,
  inet_dgram_connect): no destination.
- sendto()/sendmsg() on an IPv4 UDP socket treat an AF_UNSPEC address as AF_INET (udp_sendmsg
  accepts it for old BSD programs): there the bytes are a destination, decoded as IPv4.
"""

from __future__ import annotations

import struct
from _socket import AF_INET, AF_INET6, AF_UNSPEC  # socket.py adds ~5 ms to every start

from ..records import record

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv6Address
    from typing import Literal

    Call = Literal["connect", "send"]


SOCKADDR_IN_LEN = 16
# RFC 2133's sockaddr_in6 had no sin6_scope_id; the kernel still accepts that length
SOCKADDR_IN6_MIN_LEN = 24


@record(frozen=True)
class Destination:
    family: int                                    # -1: not even the family could be read
    address: IPv4Address | IPv6Address | None     # None: none given, or unreadable
    port: int | None
    length: int                                    # bytes the decision was made on
    # the bytes claim an INET destination (AF_INET/AF_INET6, or AF_UNSPEC read as AF_INET by
    # a send): when address is None for such a destination, it was truncated
    inet: bool = False

    @property
    def judged_as(self) -> IPv4Address | IPv6Address | None:
        """The address a netmask is matched against: IPv4-mapped IPv6 is IPv4."""
        if self.address is not None and self.address.version == 6 \
                and self.address.ipv4_mapped is not None:
            return self.address.ipv4_mapped
        return self.address

    def __str__(self) -> str:
        if self.address is None:
            return f"family {self.family}" + (" (truncated address)" if self.inet else "")
        if self.address.version == 6:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


def parse(raw: bytes, addrlen: int, call: Call = "send") -> Destination:
    """Decode `raw` (what could be read of the `addrlen` bytes the process passed).

    `call` is "connect" for connect(2), "send" for sendto/sendmsg/sendmmsg: they differ on
    AF_UNSPEC (see the module doc). Unknown, send is the safe default.
    """
    data = bytes(raw[: max(addrlen, 0)])
    length = len(data)
    if length < 2:
        return Destination(-1, None, None, length)
    family = struct.unpack_from("=H", data)[0]
    if family == AF_UNSPEC:
        if call == "connect":
            return Destination(AF_UNSPEC, None, None, length)
        return _inet4(data, AF_UNSPEC)
    if family == AF_INET:
        return _inet4(data, AF_INET)
    if family == AF_INET6:
        if length < SOCKADDR_IN6_MIN_LEN:
            return Destination(AF_INET6, None, None, length, inet=True)
        port = struct.unpack_from("!H", data, 2)[0]
        from ipaddress import IPv6Address  # here: a policy without destinations never needs it

        return Destination(AF_INET6, IPv6Address(data[8:24]), port, length, inet=True)
    return Destination(family, None, None, length)


def control_messages(data: bytes, compat: bool = False) -> list[tuple[int, int]] | None:
    """(level, type) of each control message in a sendmsg's control buffer, walked as the
    kernel's __scm_send / CMSG_NXTHDR walk it (`compat`: the i386 layout); None when one is
    malformed (the kernel answers EINVAL)."""
    spans = control_message_spans(data, compat)
    return None if spans is None else [(level, type_) for level, type_, _, _ in spans]


def control_message_spans(data: bytes, compat: bool = False
                          ) -> list[tuple[int, int, int, int]] | None:
    """(level, type, start, end) of each control message, [start:end] its data."""
    head, align, fmt = (12, 4, "<Iii") if compat else (16, 8, "<Qii")
    found: list[tuple[int, int, int, int]] = []
    offset = 0
    while offset + head <= len(data):
        cmsg_len, level, type_ = struct.unpack_from(fmt, data, offset)
        if cmsg_len < head or cmsg_len > len(data) - offset:
            return None
        found.append((level, type_, offset + head, offset + cmsg_len))
        offset += (cmsg_len + align - 1) & ~(align - 1)
    return found


def _inet4(data: bytes, family: int) -> Destination:
    if len(data) < SOCKADDR_IN_LEN:
        return Destination(family, None, None, len(data), inet=True)
    port = struct.unpack_from("!H", data, 2)[0]
    from ipaddress import IPv4Address  # here: a policy without destinations never needs it

    return Destination(family, IPv4Address(data[4:8]), port, len(data), inet=True)

