"""The nameservers of a resolv.conf, for allow-resolv.

The file is read inside the container's root (openat2 RESOLVE_IN_ROOT): images often make
/etc/resolv.conf an absolute symlink, which must point into the image, not the host.
"""

from __future__ import annotations

import os

from ..container import paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipaddress import IPv4Network, IPv6Network

    Network = IPv4Network | IPv6Network


def parse_nameservers(text: str) -> tuple[Network, ...]:
    """Each `nameserver ADDRESS` line as a one-host network (IPv4-mapped read as IPv4).

    Lines the C library would ignore (comments, unparsable addresses) are ignored too.
    """
    from ipaddress import ip_address, ip_network  # ~3 ms: only allow-resolv needs it

    found: list[Network] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "nameserver":
            continue
        text_addr = words[1].split("%", 1)[0]  # fe80::1%eth0: the scope is not an address
        try:
            address = ip_address(text_addr)
        except ValueError:
            continue
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        net = ip_network(address)
        if net not in found:
            found.append(net)
    return tuple(found)


def read_nameservers(rootfs: str, path: str = "/etc/resolv.conf") -> tuple[Network, ...]:
    """The nameservers of `path` resolved inside `rootfs`; none if it does not exist."""
    try:
        fd = paths.open_under(rootfs, path, os.O_RDONLY)
    except FileNotFoundError:
        return ()
    with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
        return parse_nameservers(f.read(1 << 20))


def read_nameservers_file(host_path: str) -> tuple[Network, ...]:
    """The nameservers of a file given by its host path (e.g. the source of a bind mount)."""
    try:
        with open(host_path, encoding="utf-8", errors="replace") as f:
            return parse_nameservers(f.read(1 << 20))
    except FileNotFoundError:
        return ()
