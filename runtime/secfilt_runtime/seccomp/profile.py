"""A seccomp filter as data: what linux.seccomp describes, and what the secfilter policy's own
filter is built as. Both are compiled by seccomp.compiler the same way.

Names follow the OCI spec (SCMP_ACT_*, SCMP_CMP_*, SCMP_ARCH_*, SECCOMP_FILTER_FLAG_*).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Action:
    name: str                 # "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", ...
    errno: int | None = None  # SCMP_ACT_ERRNO (errnoRet / defaultErrnoRet); None = EPERM
    data: int = 0             # SCMP_ACT_TRACE's data (the tracer never trusts it)


@dataclass(frozen=True)
class ArgCondition:
    index: int                # 0..5
    value: int
    op: str                   # "SCMP_CMP_EQ", ..., "SCMP_CMP_MASKED_EQ"
    value_two: int = 0


@dataclass(frozen=True)
class Rule:
    names: tuple[str, ...]
    action: Action
    args: tuple[ArgCondition, ...] = ()


@dataclass(frozen=True)
class Profile:
    default_action: Action
    rules: tuple[Rule, ...] = ()
    architectures: tuple[str, ...] = ()   # besides the native one
    flags: tuple[str, ...] = ()
    listener_path: str | None = None
    listener_metadata: str | None = None
