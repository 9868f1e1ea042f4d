"""A fault of the supervisor's own (an exception that is neither a refusal nor an OSError)
must refuse the call it was serving, with the policy's errno and a log line naming the fault:
before, the worker thread died with it and the caller waited for an answer for ever."""

from __future__ import annotations

import errno
import os
import threading

from secfilt_runtime import kernel, supervisor
from secfilt_runtime.policy import parse
from secfilt_runtime.policy.filter import HARDENING_RULE


class _Caller:
    closed = False

    def close(self) -> None:
        self.closed = True


def _supervisor(monkeypatch, tmp_path, fault: Exception) -> tuple[supervisor.Supervisor, list]:
    policy = parse.from_annotations({"org.secfilter.allowed-netmask": "127.0.0.0/8",
                                     "org.secfilter.errno": "EACCES"}, str(tmp_path))
    sup = supervisor.Supervisor(-1, policy, None)
    answers: list = []

    def perform_on(notif, caller):
        raise fault

    monkeypatch.setattr(sup, "_perform_on", perform_on)
    monkeypatch.setattr(sup, "_answer", lambda notif, outcome: answers.append(outcome))
    return sup, answers


def test_a_fault_while_performing_refuses_the_call(monkeypatch, tmp_path):
    sup, answers = _supervisor(monkeypatch, tmp_path, ValueError("a bug"))
    caller = _Caller()
    sup._perform(kernel.SeccompNotif(1, os.getpid(), 42, 0xC000003E, (0,) * 6), caller)
    assert caller.closed
    [refused] = answers
    assert isinstance(refused, supervisor.Refused)
    assert refused.err == errno.EACCES and refused.rule == HARDENING_RULE
    assert "the supervisor failed: ValueError: a bug" in refused.reason


def test_a_worker_survives_a_fault_and_serves_the_next_call(monkeypatch, tmp_path):
    sup, answers = _supervisor(monkeypatch, tmp_path, KeyError("x"))
    workers = supervisor._Workers(sup._perform)
    for _ in range(3):
        workers.submit(kernel.SeccompNotif(1, os.getpid(), 42, 0xC000003E, (0,) * 6), _Caller())
    for _ in range(200):
        if len(answers) == 3:
            break
        threading.Event().wait(0.01)
    assert len(answers) == 3 and all(isinstance(a, supervisor.Refused) for a in answers)


def test_a_fault_while_logging_a_refusal_still_answers(monkeypatch, tmp_path, capsys):
    """The answer goes first: a log line that cannot be made must not leave the caller
    waiting (here the listener is no descriptor, so the answer itself fails quietly, as for a
    caller that is gone)."""
    policy = parse.from_annotations({"org.secfilter.allowed-netmask": "127.0.0.0/8"},
                                    str(tmp_path))
    sup = supervisor.Supervisor(-1, policy, None)

    def log(notif, refused):
        raise ValueError("cannot format")

    monkeypatch.setattr(sup, "_log", log)
    sup._answer(kernel.SeccompNotif(1, os.getpid(), 42, 0xC000003E, (0,) * 6),
                supervisor.Refused(errno.EPERM, "rule", "reason"))
    assert "could not log a refusal: ValueError: cannot format" in capsys.readouterr().err
