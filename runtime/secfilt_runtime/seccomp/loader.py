"""Raw loading with seccomp(2): the warm path and the container init need no libseccomp.

Flags follow what libseccomp would pass: NEW_LISTENER when a program has NOTIFY rules,
TSYNC_ESRCH beside TSYNC when there is a listener (the kernel refuses TSYNC with NEW_LISTENER
alone), WAIT_KILLABLE_RECV only with a listener (meaningless, and refused, without one).
"""

from __future__ import annotations

from .. import kernel
from ..errors import ConfigError
from .profile import FLAG_NEW_LISTENER, FLAGS

_WAIT_KILLABLE_RECV = FLAGS["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]


def program_flags(names: tuple[str, ...], listener: bool) -> int:
    """The seccomp(2) flags for a program from the profile's flag names."""
    flags = 0
    for name in names:
        flags |= FLAGS[name]
    if listener:
        flags |= FLAG_NEW_LISTENER
        if flags & kernel.SECCOMP_FILTER_FLAG_TSYNC:
            flags |= kernel.SECCOMP_FILTER_FLAG_TSYNC_ESRCH
    else:
        flags &= ~_WAIT_KILLABLE_RECV
    return flags


def check_supported(names: tuple[str, ...], field: str = "linux.seccomp.flags") -> None:
    """Refuse, before anything starts, a flag the running kernel does not know."""
    for i, name in enumerate(names):
        bit = FLAGS[name]
        if bit == _WAIT_KILLABLE_RECV:
            bit |= FLAG_NEW_LISTENER  # the kernel judges it only together with a listener
        if not kernel.seccomp_flag_supported(bit):
            raise ConfigError(f"{field}[{i}]: {name} is not supported by this kernel")
