"""A fault of the supervisor's own, end to end: `secfilt` run by a user, whose supervisor
raises an exception that is neither a refusal nor an OSError while it routes a call (the
receiving loop) or performs it (a worker). The caller must get the policy's refusal at once,
not wait for ever for an answer no thread will send. The fault is injected into the
supervisor's own process by a wrapper that replaces one of its methods before secfilt starts."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from attacks.harness import EMPTY_NETNS, as_nobody

from conftest import needs_root

pytestmark = needs_root

WRAPPER = """
import sys
from secfilt_runtime import supervisor

def fault(self, *args):
    raise ValueError("injected")

setattr(supervisor.Supervisor, sys.argv[1], fault)
from secfilt_runtime.secfilt_cli import main
sys.argv = ["secfilt", *sys.argv[2:]]
main()
"""

CALLER = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(b"x", ("127.0.0.1", 9))
    print("sent")
except OSError as e:
    print(type(e).__name__)
"""


@pytest.fixture
def work() -> Iterator[Path]:
    """Where nobody can read the two programs (pytest's tmp_path is under root's 0700)."""
    d = Path(tempfile.mkdtemp(prefix="secfilt-fault-"))
    try:
        d.chmod(0o755)
        for name, text in (("wrapper.py", WRAPPER), ("caller.py", CALLER)):
            (d / name).write_text(text)
            (d / name).chmod(0o644)
        yield d
    finally:
        shutil.rmtree(d)


@pytest.mark.parametrize("method", ["_route", "_perform_on"])
def test_a_supervisor_fault_refuses_the_call(work: Path, method: str) -> None:
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 for the unprivileged run")
    # an allowed destination in an empty network namespace: only the fault can refuse it
    argv = [*EMPTY_NETNS, *as_nobody(), "HOME=/nonexistent", python, str(work / "wrapper.py"),
            method,
            "--allowed-netmask=127.0.0.0/8", "--", python, str(work / "caller.py")]
    p = subprocess.run(argv, cwd="/", capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.split() == ["PermissionError"], p.stdout + p.stderr
