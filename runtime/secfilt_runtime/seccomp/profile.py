"""A seccomp filter as data: what linux.seccomp describes, and what the secfilter policy's own
filter is built as. Both are compiled by seccomp.compiler the same way.

Names follow the OCI spec (SCMP_ACT_*, SCMP_CMP_*, SCMP_ARCH_*, SECCOMP_FILTER_FLAG_*).
"""

from __future__ import annotations

import errno as errno_mod

from .. import jsonio, records
from ..errors import ConfigError
from ..records import record

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@record(frozen=True)
class Action:
    name: str                 # "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", ...
    errno: int | None = None  # SCMP_ACT_ERRNO (errnoRet / defaultErrnoRet); None = EPERM
    data: int = 0             # SCMP_ACT_TRACE's data (policy.filter: which refusal it is)


@record(frozen=True)
class ArgCondition:
    index: int                # 0..5
    value: int
    op: str                   # "SCMP_CMP_EQ", ..., "SCMP_CMP_MASKED_EQ"
    value_two: int = 0


@record(frozen=True)
class Rule:
    names: tuple[str, ...]
    action: Action
    args: tuple[ArgCondition, ...] = ()


@record(frozen=True)
class Profile:
    default_action: Action
    rules: tuple[Rule, ...] = ()
    architectures: tuple[str, ...] = ()   # besides the native one
    flags: tuple[str, ...] = ()
    listener_path: str | None = None
    listener_metadata: str | None = None


# ---- names the OCI spec uses, and what they mean to the kernel ---------------------------------

ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
           "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
           "SCMP_ACT_NOTIFY")
OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
             "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")
ARCHITECTURES = (
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
    "SCMP_ARCH_SH", "SCMP_ARCH_SHEB", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
)
# seccomp(2) SECCOMP_FILTER_FLAG_* bits the spec lets a profile ask for
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
}
FLAG_NEW_LISTENER = 8

# AUDIT_ARCH_* values (<linux/audit.h>): what seccomp_data.arch holds for each SCMP_ARCH_*
_EM = {"386": 3, "68K": 4, "MIPS": 8, "PARISC": 15, "PPC": 20, "PPC64": 21, "S390": 22,
       "ARM": 40, "SH": 42, "X86_64": 62, "AARCH64": 183, "RISCV": 243, "LOONGARCH": 258}
_B64, _LE, _N32 = 0x80000000, 0x40000000, 0x20000000
AUDIT_ARCH = {
    "SCMP_ARCH_X86": _EM["386"] | _LE,
    "SCMP_ARCH_X86_64": _EM["X86_64"] | _B64 | _LE,
    "SCMP_ARCH_X32": _EM["X86_64"] | _LE,
    "SCMP_ARCH_ARM": _EM["ARM"] | _LE,
    "SCMP_ARCH_AARCH64": _EM["AARCH64"] | _B64 | _LE,
    "SCMP_ARCH_LOONGARCH64": _EM["LOONGARCH"] | _B64 | _LE,
    "SCMP_ARCH_M68K": _EM["68K"],
    "SCMP_ARCH_MIPS": _EM["MIPS"],
    "SCMP_ARCH_MIPS64": _EM["MIPS"] | _B64,
    "SCMP_ARCH_MIPS64N32": _EM["MIPS"] | _B64 | _N32,
    "SCMP_ARCH_MIPSEL": _EM["MIPS"] | _LE,
    "SCMP_ARCH_MIPSEL64": _EM["MIPS"] | _B64 | _LE,
    "SCMP_ARCH_MIPSEL64N32": _EM["MIPS"] | _B64 | _LE | _N32,
    "SCMP_ARCH_PPC": _EM["PPC"],
    "SCMP_ARCH_PPC64": _EM["PPC64"] | _B64,
    "SCMP_ARCH_PPC64LE": _EM["PPC64"] | _B64 | _LE,
    "SCMP_ARCH_S390": _EM["S390"],
    "SCMP_ARCH_S390X": _EM["S390"] | _B64,
    "SCMP_ARCH_SH": _EM["SH"] | _LE,
    "SCMP_ARCH_SHEB": _EM["SH"],
    "SCMP_ARCH_PARISC": _EM["PARISC"],
    "SCMP_ARCH_PARISC64": _EM["PARISC"] | _B64,
    "SCMP_ARCH_RISCV64": _EM["RISCV"] | _B64 | _LE,
}
NATIVE_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}
MAX_ARGS = 6
NOTIFY = "SCMP_ACT_NOTIFY"
ERRNO = "SCMP_ACT_ERRNO"
TRACE = "SCMP_ACT_TRACE"


def _choice(value: object, known: tuple[str, ...] | dict[str, int], field: str, what: str
            ) -> str:
    if not isinstance(value, str) or value not in known:
        raise ConfigError(f"{field}: unknown {what} {jsonio.dumps(value)}")
    return value


def _uint(value: object, field: str, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ConfigError(f"{field}: must be an integer from 0 to {(1 << bits) - 1}, "
                          f"not {jsonio.dumps(value)}")
    return value


def _action(name: object, errno_ret: object, field: str, errno_field: str) -> Action:
    act = _choice(name, ACTIONS, field, "seccomp action")
    if errno_ret is not None:
        code = _uint(errno_ret, errno_field, 16)  # the kernel keeps 16 bits of SECCOMP_RET_DATA
        if act == ERRNO:
            return Action(act, errno=code)
        if act == TRACE:
            return Action(act, data=code)
        # other actions carry no data: ignored, as runc ignores it
    # runc: a TRACE without errnoRet carries EPERM as its data
    return Action(act, data=errno_mod.EPERM if act == TRACE else 0)


def parse(section: dict[str, Any]) -> Profile:
    """linux.seccomp (already schema-checked, but checked again here: the policy and tests call
    this directly) into a Profile. Unknown names are errors; unknown syscalls are not (a profile
    is written for many kernels, they are skipped when compiling, as runc does)."""
    f = "linux.seccomp"
    if not isinstance(section, dict):
        raise ConfigError(f"{f}: must be an object")
    default = _action(section.get("defaultAction"), section.get("defaultErrnoRet"),
                      f"{f}.defaultAction", f"{f}.defaultErrnoRet")
    if default.name == NOTIFY:
        raise ConfigError(f"{f}.defaultAction: SCMP_ACT_NOTIFY cannot be the default action")
    archs = tuple(_choice(a, ARCHITECTURES, f"{f}.architectures[{i}]", "architecture")
                  for i, a in enumerate(section.get("architectures") or ()))
    flags = tuple(_choice(x, FLAGS, f"{f}.flags[{i}]", "seccomp flag")
                  for i, x in enumerate(section.get("flags") or ()))
    rules = tuple(_rule(r, f"{f}.syscalls[{i}]")
                  for i, r in enumerate(section.get("syscalls") or ()))
    notify = any(r.action.name == NOTIFY for r in rules)
    listener_path = section.get("listenerPath") or None
    if notify and not listener_path:
        raise ConfigError(f"{f}.listenerPath: required when a rule uses SCMP_ACT_NOTIFY")
    return Profile(default_action=default, rules=rules,
                   architectures=tuple(dict.fromkeys(archs)), flags=tuple(dict.fromkeys(flags)),
                   listener_path=listener_path,
                   listener_metadata=section.get("listenerMetadata") or None)


def _rule(doc: object, field: str) -> Rule:
    if not isinstance(doc, dict):
        raise ConfigError(f"{field}: must be an object")
    names = doc.get("names")
    if not isinstance(names, list) or not names or not all(
            isinstance(n, str) and n for n in names):
        raise ConfigError(f"{field}.names: must be a non-empty array of syscall names")
    action = _action(doc.get("action"), doc.get("errnoRet"), f"{field}.action",
                     f"{field}.errnoRet")
    if action.name == NOTIFY and "write" in names:
        # the agent could never answer a write it must log: runc refuses it for that reason
        raise ConfigError(f"{field}: SCMP_ACT_NOTIFY cannot be used for the write syscall")
    args = []
    for j, a in enumerate(doc.get("args") or ()):
        af = f"{field}.args[{j}]"
        if not isinstance(a, dict):
            raise ConfigError(f"{af}: must be an object")
        index = _uint(a.get("index"), f"{af}.index", 32)
        if index >= MAX_ARGS:
            raise ConfigError(f"{af}.index: {index} is out of range (a syscall has arguments "
                              f"0 to {MAX_ARGS - 1})")
        args.append(ArgCondition(
            index=index, value=_uint(a.get("value"), f"{af}.value", 64),
            op=_choice(a.get("op"), OPERATORS, f"{af}.op", "seccomp operator"),
            value_two=_uint(a.get("valueTwo", 0), f"{af}.valueTwo", 64)))
    return Rule(names=tuple(names), action=action, args=tuple(args))


def without_tracer(profile: Profile) -> Profile:
    """`profile` as it acts in a container with no tracer (runc's, crun's): a
    SCMP_ACT_TRACE there fails the call with ENOSYS. Under a secfilter policy the runtime's
    tracer receives every TRACE stop, the profile's included, and would judge such a call
    (and let most through): the profile's TRACE is given as that ENOSYS instead."""
    def plain(action: Action) -> Action:
        return Action("SCMP_ACT_ERRNO", errno=errno_mod.ENOSYS) if action.name == TRACE \
            else action

    if profile.default_action.name != TRACE and all(r.action.name != TRACE
                                                    for r in profile.rules):
        return profile
    return records.replace(profile, default_action=plain(profile.default_action),
                           rules=tuple(records.replace(r, action=plain(r.action))
                                       for r in profile.rules))


def condition_groups(args: tuple[ArgCondition, ...]) -> list[tuple[ArgCondition, ...]]:
    """The argument conditions of one rule as the filter tests them: all together, or each on
    its own when an index repeats (runc's behaviour: an AND of them could never match)."""
    if not args:
        return [()]
    indexes = [a.index for a in args]
    if len(set(indexes)) < len(indexes):
        return [(a,) for a in args]
    return [args]


def condition_holds(condition: ArgCondition, value: int) -> bool:
    """Whether a syscall argument (as seccomp_data holds it) meets `condition`, as the compiled
    filter decides it."""
    op, datum = condition.op, condition.value
    if op == "SCMP_CMP_MASKED_EQ":
        return value & datum == condition.value_two
    if op == "SCMP_CMP_EQ":
        return value == datum
    if op == "SCMP_CMP_NE":
        return value != datum
    if op == "SCMP_CMP_GT":
        return value > datum
    if op == "SCMP_CMP_GE":
        return value >= datum
    if op == "SCMP_CMP_LT":
        return value < datum
    return value <= datum  # SCMP_CMP_LE


def to_json(profile: Profile) -> dict[str, Any]:
    """A canonical, JSON-able form of a Profile (the cache key hashes it)."""
    return records.asdict(profile)
