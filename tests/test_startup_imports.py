"""What the start-up paths import: `run` (with and without a policy), `secfilt`, `state`.

Each standard module costs milliseconds to import on the project's VM (issue 7): these tests
fail when someone puts a heavy import back on a path that does not use it. The lists say what
each path must not load; a module moves off a list only with a reason the path needs it.
"""

from __future__ import annotations

import datetime
import io
import socket
import sys
import traceback

from secfilt_runtime import errors, records, state
from secfilt_runtime import log as log_mod


def test_utc_now_is_written_as_datetime_writes_it(monkeypatch) -> None:
    """The timestamp of state.json's "created" and of the log, formatted without datetime."""
    for ns in (1_764_403_511_261_866_123,  # microseconds truncated, as datetime.now does
               1_764_403_511_000_000_000,  # an exact second: no fraction at all
               1_764_403_511_000_000_999,
               1_764_403_511_000_001_000,
               946_684_799_999_999_999):
        monkeypatch.setattr(log_mod.time, "time_ns", lambda ns=ns: ns)
        seconds, micros = divmod(ns // 1000, 1_000_000)
        expected = datetime.datetime.fromtimestamp(seconds, datetime.UTC).replace(
            microsecond=micros).isoformat()
        assert log_mod.utc_now() == expected


def test_remove_tree_removes_what_rmtree_would_and_follows_no_link(tmp_path) -> None:
    """state.remove_tree stands in for shutil.rmtree(ignore_errors=True) on state directories."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    victim = tmp_path / "state" / "c1"
    victim.mkdir(parents=True)
    (victim / "state.json").write_text("{}")
    (victim / "link").symlink_to(outside)
    (victim / "file-link").symlink_to(outside / "keep")
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.bind(str(victim / "start.sock"))
    (victim / "sub" / "deeper").mkdir(parents=True)
    (victim / "sub" / "deeper" / "f").write_text("x")
    (victim / "sub" / "link").symlink_to(outside)
    state.remove_tree(str(victim))
    assert not victim.exists() and not victim.is_symlink()
    assert (outside / "keep").read_text() == "x"

    state.remove_tree(str(victim))  # gone already: nothing to do, no error
    linked = tmp_path / "state" / "c2"
    linked.symlink_to(outside)
    state.remove_tree(str(linked))  # a link to a directory is not a tree to remove (as rmtree)
    assert linked.is_symlink() and (outside / "keep").exists()


def test_warn_prints_the_bare_line_logging_printed(capsys) -> None:
    errors.warn("Landlock is not available: the tracer alone judges writes and ports")
    assert capsys.readouterr().err == (
        "Landlock is not available: the tracer alone judges writes and ports\n")


def test_warn_survives_a_stderr_that_cannot_be_written(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stderr", None)
    errors.warn("nowhere to go")
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    errors.warn("nowhere to go")


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_the_init_words_an_internal_error_as_traceback_does() -> None:
    """container.init reports an unexpected exception without the traceback module."""
    from secfilt_runtime.container import init

    for exc in (ValueError("bad value"), KeyError("process"), AssertionError(),
                records.FrozenRecordError("frozen"), _Unprintable()):
        expected = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        assert init._exception_only(exc) == expected
