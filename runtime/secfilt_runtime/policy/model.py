"""The secfilter policy, as parsed from org.secfilter.* annotations or secfilt's flags.

One immutable value that everything downstream reads: the BPF filter builder (policy.filter),
the Landlock ruleset (policy.landlock), the tracer's decisions (policy.decide).
"""

from __future__ import annotations

import errno as errno_mod

from ..records import field, record

# annotations are strings: typing and ipaddress (~8 ms of imports here) for the type checker
# only; the modules that build networks import ipaddress themselves
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipaddress import IPv4Network, IPv6Network
    from typing import Literal

    Mode = Literal["enforce", "audit"]


@record(frozen=True)
class Policy:
    read_only: bool = False
    # canonical absolute paths, no trailing slash (except "/"); writes allowed at or below them
    allow_write: tuple[str, ...] = ()
    no_outbound_network: bool = False
    netmasks: tuple[IPv4Network | IPv6Network, ...] = ()
    ports: tuple[int, ...] = ()
    allow_resolv: bool = False
    # nameservers found when the policy was resolved (allow_resolv); already merged into
    # netmasks/ports where those are restricted, kept for the log and `show`
    nameservers: tuple[IPv4Network | IPv6Network, ...] = ()
    mainstream_network_families: bool = False
    log_path: str | None = None
    mode: Mode = "enforce"
    errno: int = errno_mod.EPERM
    # where each key's value came from, for messages ('annotations["org.secfilter.log"]', "--log")
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def restricts_writes(self) -> bool:
        return self.read_only or bool(self.allow_write)

    @property
    def restricts_destinations(self) -> bool:
        return self.no_outbound_network or bool(self.netmasks) or bool(self.ports)

    @property
    def is_empty(self) -> bool:
        return not (self.restricts_writes or self.restricts_destinations
                    or self.mainstream_network_families)

    @property
    def audit(self) -> bool:
        return self.mode == "audit"
