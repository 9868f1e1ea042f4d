"""The policy log is opened by the tracer, as root, where the sandbox may have written: it
follows no symlink and writes only a regular file (found by a review: a container that made its
log's name a symlink to a protected host file had the next run's tracer append to that file)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, needs_root

sys.path.insert(0, str(REPO / "runtime"))

from secfilt_runtime.tracer.log import (  # noqa: E402
    NOT_A_FILE,
    THROUGH_A_SYMLINK,
    cannot_open,
    open_log,
)


def test_a_new_log_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "log"
    assert cannot_open(str(path)) is None
    assert not path.exists()  # the check creates nothing
    os.close(open_log(str(path)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_existing_log_is_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_text("before\n")
    fd = open_log(str(path))
    os.write(fd, b"after\n")
    os.close(fd)
    assert path.read_text() == "before\nafter\n"


@pytest.mark.parametrize("where", ["name", "parent"])
def test_a_symlink_on_the_way_is_refused(tmp_path: Path, where: str) -> None:
    protected = tmp_path / "protected"
    protected.mkdir()
    (protected / "log").write_text("precious\n")
    if where == "name":
        (tmp_path / "log").symlink_to(protected / "log")
        path = tmp_path / "log"
    else:
        (tmp_path / "logs").symlink_to(protected)
        path = tmp_path / "logs" / "log"
    assert cannot_open(str(path)) == THROUGH_A_SYMLINK
    with pytest.raises(OSError):
        open_log(str(path))
    assert (protected / "log").read_text() == "precious\n"


def test_only_a_regular_file_is_written(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert cannot_open(str(fifo)) == NOT_A_FILE
    with pytest.raises(OSError):
        open_log(str(fifo))


def test_the_opener_s_own_descriptors_are_opened_as_named() -> None:
    r, w = os.pipe()
    try:
        path = f"/proc/self/fd/{w}"
        assert cannot_open(path) is None
        fd = open_log(path)
        os.write(fd, b"x")
        os.close(fd)
        assert os.read(r, 1) == b"x"
    finally:
        os.close(r)
        os.close(w)


@needs_root
def test_a_sandbox_cannot_point_its_next_log_elsewhere(tmp_path: Path) -> None:
    """The first run's command makes its log's name a symlink to a file the policy protects;
    the next run refuses the log (naming the setting) instead of appending to that file."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    protected = tmp_path / "protected"
    protected.write_text("precious\n")
    log = allowed / "refusals.log"
    env = dict(os.environ, PYTHONPATH=str(REPO / "runtime"))

    def secfilt(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "secfilt_runtime.secfilt_cli",
                               "--read-only=1", f"--allow-write={allowed}", f"--log={log}",
                               *command], capture_output=True, text=True, env=env, timeout=60)

    first = secfilt("sh", "-c", f'rm -f "{log}" && ln -s "{protected}" "{log}" && '
                    f'echo x > "{protected}"')
    assert log.is_symlink(), first.stderr
    second = secfilt("sh", "-c", f'echo x > "{protected}"')
    assert second.returncode != 0
    assert "--log" in second.stderr and "symlink" in second.stderr, second.stderr
    assert protected.read_text() == "precious\n"
