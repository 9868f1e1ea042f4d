"""What the start-up paths import: `run` (with and without a policy), `secfilt`, `state`.

Each standard module costs milliseconds to import on the project's VM (issue 7): these tests
fail when someone puts a heavy import back on a path that does not use it. The lists say what
each path must not load; a module moves off a list only with a reason the path needs it.
"""

from __future__ import annotations

import datetime

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
