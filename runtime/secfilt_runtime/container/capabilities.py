"""Linux capability names and the bit masks the kernel takes.

Pure except `last_cap`, which reads what the running kernel supports. A name we do not know is a
mistake in config.json (ConfigError); a name we know but the kernel is too old for is skipped
with a warning, as runc does, so one config works across kernel versions.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..records import record
from ..spec import Capabilities

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

# Numbers from <linux/capability.h>; a name's index is its capability number.
CAPABILITY_NAMES: tuple[str, ...] = (
    "CAP_CHOWN",  # 0
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",  # 5
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",  # 10
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",  # 15
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",  # 20
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",  # 25
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",  # 30
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",  # 35
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",  # 40
)

CAPABILITIES: dict[str, int] = {name: i for i, name in enumerate(CAPABILITY_NAMES)}
LAST_KNOWN_CAP = len(CAPABILITY_NAMES) - 1

SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")

_CAP_LAST_CAP = "/proc/sys/kernel/cap_last_cap"


def last_cap(path: str = _CAP_LAST_CAP) -> int:
    """The highest capability number the running kernel knows (never above ours)."""
    try:
        with open(path) as f:
            return min(int(f.read().strip()), LAST_KNOWN_CAP)
    except (OSError, ValueError):
        # /proc may be unavailable (e.g. after pivot_root before /proc is mounted):
        # assume the kernel knows every capability we do.
        return LAST_KNOWN_CAP


def cap_number(name: str, field: str) -> int:
    """The number of capability `name`; `field` names the config field for the error."""
    try:
        return CAPABILITIES[name]
    except KeyError:
        raise ConfigError(f'{field}: unknown capability "{name}"') from None


def to_mask(names: Iterable[str], field: str, kernel_last_cap: int = LAST_KNOWN_CAP,
            skipped: list[str] | None = None) -> int:
    """OR of the bits of `names`. Names above `kernel_last_cap` are left out and appended to
    `skipped` (the caller warns); unknown names raise ConfigError."""
    mask = 0
    for name in names:
        n = cap_number(name, field)
        if n > kernel_last_cap:
            if skipped is not None and name not in skipped:
                skipped.append(name)
            continue
        mask |= 1 << n
    return mask


def names_of(mask: int) -> list[str]:
    """Capability names of the bits set in `mask` (bits we have no name for are ignored)."""
    return [name for i, name in enumerate(CAPABILITY_NAMES) if mask >> i & 1]


def all_mask(kernel_last_cap: int = LAST_KNOWN_CAP) -> int:
    return (1 << (kernel_last_cap + 1)) - 1


@record(frozen=True)
class CapMasks:
    """The five sets of process.capabilities as masks, plus names skipped for an old kernel."""

    bounding: int
    effective: int
    inheritable: int
    permitted: int
    ambient: int
    skipped: tuple[str, ...] = ()


def masks(caps: Capabilities, kernel_last_cap: int = LAST_KNOWN_CAP,
          field: str = "process.capabilities") -> CapMasks:
    skipped: list[str] = []
    values = {
        s: to_mask(getattr(caps, s), f"{field}.{s}", kernel_last_cap, skipped) for s in SETS
    }
    return CapMasks(**values, skipped=tuple(skipped))
