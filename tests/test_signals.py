"""signals answers what the start paths asked signal.Signals, without the signal module."""

from __future__ import annotations

import signal

import pytest

from secfilt_runtime import ops, signals
from secfilt_runtime.errors import StateError


def test_every_member_has_its_canonical_name() -> None:
    for member in signal.Signals:
        assert signals.name(member.value) == member.name
    assert (signals.name(6), signals.name(17), signals.name(29)) == ("SIGABRT", "SIGCHLD",
                                                                     "SIGIO")


def test_every_name_and_alias_has_its_number() -> None:
    for name, member in signal.Signals.__members__.items():  # SIGIOT, SIGCLD, SIGPOLL too
        assert signals.number(name) == member.value
    for bad in ("SIG_DFL", "SIG_BLOCK", "NSIG", "sigterm", "TERM", "SIGRTMIN+1", ""):
        with pytest.raises(KeyError):
            signals.number(bad)


def test_named_is_the_set_of_members() -> None:
    assert signals.named() == set(signal.Signals)


def test_signals_without_a_member_still_get_a_name() -> None:
    """signal.Signals(35).name raises ValueError; a message naming the signal should not."""
    unnamed = sorted(set(signal.valid_signals()) - set(signal.Signals))
    assert unnamed
    for num in unnamed:
        assert signals.name(num) == f"SIGRTMIN+{num - signal.SIGRTMIN}"
        assert ops.parse_signal(signals.name(num)) == num  # the form `kill` reads
    assert signals.name(0) == "signal 0"


@pytest.mark.parametrize("text", ["9", "KILL", "kill", "SIGKILL", "sigterm", "IOT", "SIGCLD",
                                  "POLL", "RTMIN", "SIGRTMAX", "SIGRTMIN+3", "64", "1"])
def test_kill_parses_as_with_signal_signals(text) -> None:
    name = text.upper() if text.upper().startswith("SIG") else "SIG" + text.upper()
    if text.isdigit():
        expected = int(text)
    elif name.startswith("SIGRTMIN+"):
        expected = signal.SIGRTMIN + int(name[9:])
    else:
        expected = int(signal.Signals[name])
    assert ops.parse_signal(text) == expected


@pytest.mark.parametrize("text", ["0", "65", "NOPE", "SIGRTMIN+31", "SIG_DFL", ""])
def test_kill_refuses_what_it_refused(text) -> None:
    with pytest.raises(StateError, match="invalid signal"):
        ops.parse_signal(text)
