"""Which outright refusal of the policy's filter a seccomp stop is, if any.

With a log or in audit mode the filter sends the calls it refuses to the tracer as TRACE stops,
each with a data value naming the refusal (policy.filter: REFUSALS, refusals()). Such a call is
refused (audit mode: allowed, unless the refusal is a hardening one) and logged, never judged:
nothing in the tracer restates the filter's rules.

The data is a claim, not a proof. When several filters return TRACE the kernel reports the
newest one's data, and the process may load a filter of its own (escape.c trace_data): it could
report 0 ("judge it") for a call ours refused, or a write refusal, which audit mode lets
through, for a call ours refused as hardening. So a stop counts as one of our refusals only
where a refusal rule of our filter covers the call (number, architecture, argument
conditions): the same Rule objects the BPF is compiled from, read here, not mirrored. The data
chooses among the rules that cover the call; hardening ones come first whatever it says.
"""

from __future__ import annotations

from ..policy import filter as policy_filter
from ..policy.model import Policy
from ..policy.syscalls import AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, NUMBERS
from ..records import record
from ..seccomp.profile import ArgCondition, condition_groups, condition_holds

_ARCH_COLUMNS = ((AUDIT_ARCH_X86_64, 0), (AUDIT_ARCH_I386, 1))
# what the log calls the arguments a refusal rule tests (others: arg<index>)
_ARG_NAMES = {("socket", 0): "family", ("socket", 1): "type", ("setns", 1): "nstype",
              ("ioctl", 1): "request", ("setsockopt", 1): "level", ("setsockopt", 2): "option",
              ("clone", 0): "flags", ("seccomp", 0): "operation", ("seccomp", 1): "flags",
              ("open", 1): "flags", ("openat", 2): "flags"}


@record(frozen=True)
class Covered:
    """One refusal rule of the filter, as it applies to one syscall number."""

    data: int
    refusal: policy_filter.Refusal
    name: str                             # the syscall, for the log
    conditions: tuple[ArgCondition, ...]  # all must hold (an empty tuple: every call)

    def covers(self, args: list[int]) -> bool:
        return all(condition_holds(c, args[c.index]) for c in self.conditions)

    def details(self, args: list[int]) -> dict[str, int]:
        """The arguments the rule looked at, for the log."""
        return {_ARG_NAMES.get((self.name, c.index), f"arg{c.index}"): args[c.index]
                for c in self.conditions}


class Refusals:
    def __init__(self, policy: Policy, supervised: bool = False) -> None:
        meanings = policy_filter.refusals(policy)
        self._by_call: dict[int, dict[int, list[Covered]]] = {a: {} for a, _ in _ARCH_COLUMNS}
        if not policy_filter.needs_tracer_for_denials(policy):
            # every refusal is an ERRNO, which outranks any TRACE: none reaches a tracer, and
            # building the filter again would only cost the start
            return
        for rule in policy_filter.build(policy, supervised).rules:
            data = rule.action.data if rule.action.name == "SCMP_ACT_TRACE" else 0
            if data == policy_filter.JUDGE:
                continue
            for conditions in condition_groups(rule.args):
                for name in rule.names:
                    # KeyError for a call without numbers: a refusal the tracer could not
                    # recognise must stop the tracer from starting, not be judged as allowed
                    for arch, column in _ARCH_COLUMNS:
                        nr = NUMBERS[name][column]
                        if nr is not None:
                            self._by_call[arch].setdefault(nr, []).append(
                                Covered(data, meanings[data], name, conditions))
        for calls in self._by_call.values():
            for covered in calls.values():
                covered.sort(key=lambda c: not c.refusal.hardening)  # stable: filter order

    def __bool__(self) -> bool:
        """Whether any refusal reaches the tracer (a log or audit mode): asked at every stop."""
        return any(self._by_call.values())

    def find(self, arch: int, nr: int, args: list[int], data: int) -> Covered | None:
        """The refusal this stop is (args as seccomp_data holds them: an i386 call's low
        halves), or None: the call is the judge's."""
        rules = self._by_call[arch].get(nr)
        if rules is None:
            return None  # refused by no rule of ours: whatever the data, the judge decides
        first = None
        for rule in rules:
            if rule.covers(args):
                if rule.data == data or rule.refusal.hardening:
                    return rule
                first = first or rule
        return first
