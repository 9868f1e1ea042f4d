"""Signal names without the `signal` module: it builds its IntEnums (Signals, Handlers,
Sigmasks) with `enum`, ~6 ms of every start on the project's VM (issue 7). The start paths
call `_signal` directly, which has the same functions returning plain ints; this module
answers what they asked signal.Signals: a name's number and a number's name.

The table is read from `_signal` as signal.Signals is built from it, so the two agree on
every platform: the names are SIG* (not SIG_*), and where several name one number (SIGABRT
and SIGIOT, SIGCHLD and SIGCLD, SIGIO and SIGPOLL) the canonical one is the first in
alphabetical order, as IntEnum._convert_ picks it.
"""

from __future__ import annotations

import _signal

_by_name: dict[str, int] = {}
_by_number: dict[int, str] = {}


def _table() -> tuple[dict[str, int], dict[int, str]]:
    if not _by_name:
        for name, value in sorted(vars(_signal).items(), key=lambda kv: kv[0]):
            if name.isupper() and name.startswith("SIG") and not name.startswith("SIG_"):
                _by_name[name] = value
                _by_number.setdefault(value, name)
    return _by_name, _by_number


def number(name: str) -> int:
    """int(signal.Signals[name]): aliases too; KeyError for what is not a name."""
    return _table()[0][name]


def name(signum: int) -> str:
    """signal.Signals(signum).name; a real-time signal signal.Signals has no member for is
    SIGRTMIN+n (runc's form, which `kill` parses), anything else "signal N"."""
    found = _table()[1].get(signum)
    if found is not None:
        return found
    if _signal.SIGRTMIN < signum < _signal.SIGRTMAX:
        return f"SIGRTMIN+{signum - _signal.SIGRTMIN}"
    return f"signal {signum}"


def named() -> frozenset[int]:
    """The numbers signal.Signals has members for: set(signal.Signals)."""
    return frozenset(_table()[1])
