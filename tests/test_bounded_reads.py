"""Files named on the command line are read with a bound: /dev/zero (or any endless stream)
given as `exec --process` or `secfilt --config` filled the memory. Pipes stay accepted
(`--config <(...)`)."""

from __future__ import annotations

import os
import threading

import pytest

from secfilt_runtime import execproc
from secfilt_runtime.errors import ConfigError
from secfilt_runtime.policy import parse


def test_exec_process_file_that_never_ends():
    with pytest.raises(ConfigError, match=r"--process /dev/zero: cannot read: larger than"):
        execproc._load_process_file("/dev/zero")


def test_secfilt_config_file_that_never_ends():
    with pytest.raises(ConfigError, match=r"--config=/dev/zero: cannot read: larger than"):
        parse.read_config_file("/dev/zero")


def test_secfilt_config_from_a_pipe_still_reads():
    r, w = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(w, b"read-only=1\n"), os.close(w)))
    writer.start()
    try:
        settings = parse.read_config_file(f"/dev/fd/{r}")
    finally:
        writer.join()
        os.close(r)
    assert [(s.key, s.value) for s in settings] == [("read-only", "1")]
