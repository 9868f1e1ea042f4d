"""Pure parts of the container process setup: lookup, environment, rlimits, checks."""

from __future__ import annotations

import os
import resource
from collections.abc import Callable

import pytest

from secfilt_runtime.container import process
from secfilt_runtime.errors import ConfigError, ContainerError
from secfilt_runtime.spec import Capabilities, Process, Rlimit


def _exe(path, mode=0o755):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


def test_lookup_in_path_order(tmp_path):
    _exe(tmp_path / "a" / "tool")
    _exe(tmp_path / "b" / "tool")
    path_env = f"{tmp_path}/none:{tmp_path}/a:{tmp_path}/b"
    assert process.find_executable("tool", path_env) == f"{tmp_path}/a/tool"


def test_lookup_skips_directories_and_non_executables(tmp_path):
    (tmp_path / "a" / "tool").mkdir(parents=True)
    _exe(tmp_path / "b" / "tool", 0o644)
    _exe(tmp_path / "c" / "tool")
    path_env = f"{tmp_path}/a:{tmp_path}/b:{tmp_path}/c"
    assert process.find_executable("tool", path_env) == f"{tmp_path}/c/tool"


def test_lookup_not_found(tmp_path):
    with pytest.raises(ContainerError) as e:
        process.find_executable("foo", str(tmp_path))
    assert str(e.value) == 'process.args[0]: executable file "foo" not found in $PATH'


def test_lookup_reports_a_non_executable_match(tmp_path):
    _exe(tmp_path / "tool", 0o644)
    with pytest.raises(ContainerError) as e:
        process.find_executable("tool", str(tmp_path))
    assert str(e.value) == f'process.args[0]: executable file "{tmp_path}/tool": permission denied'


def test_slash_names_are_not_searched(tmp_path):
    _exe(tmp_path / "bin" / "tool")
    assert process.find_executable(f"{tmp_path}/bin/tool", "/nonexistent") == \
        f"{tmp_path}/bin/tool"
    assert process.find_executable("bin/tool", "", cwd=str(tmp_path)) == "bin/tool"
    with pytest.raises(ContainerError) as e:
        process.find_executable(str(tmp_path / "bin"), None)
    assert str(e.value) == f'process.args[0]: executable file "{tmp_path}/bin" is a directory'
    _exe(tmp_path / "data", 0o600)
    with pytest.raises(ContainerError) as e:
        process.find_executable("./data", None, cwd=str(tmp_path))
    assert str(e.value) == 'process.args[0]: executable file "./data": permission denied'
    with pytest.raises(ContainerError) as e:
        process.find_executable("./nope", None, cwd=str(tmp_path))
    assert str(e.value) == 'process.args[0]: executable file "./nope": No such file or directory'


def test_empty_path_entry_means_cwd(tmp_path):
    _exe(tmp_path / "tool")
    assert process.find_executable("tool", "/nonexistent:", cwd=str(tmp_path)) == "./tool"


def test_default_path_when_env_has_none():
    # The host's /bin/sh stands in for a container's: DEFAULT_PATH holds /bin.
    assert process.find_executable("sh", None).endswith("/sh")
    assert "/usr/bin" in process.DEFAULT_PATH.split(":")


def test_env_lookup_last_wins():
    assert process.env_lookup(["PATH=/a", "X=1", "PATH=/b"], "PATH") == "/b"
    assert process.env_lookup(["PATHX=/a"], "PATH") is None


def test_prepare_env_dedups_and_adds_home():
    env = process.prepare_env(["A=1", "B=2", "A=3", "C=x=y"], lambda: "/home/u")
    assert env == ("B=2", "A=3", "C=x=y", "HOME=/home/u")
    assert process.prepare_env(["HOME=/r"], lambda: "/x") == ("HOME=/r",)
    assert process.prepare_env(["HOME=", "A=1"], lambda: "/x") == ("A=1", "HOME=/x")


@pytest.mark.parametrize("bad,msg", [
    ("NOEQUALS", 'process.env[1]: "NOEQUALS" is not NAME=VALUE'),
    ("=v", 'process.env[1]: "=v" has an empty name'),
])
def test_prepare_env_rejects(bad, msg):
    with pytest.raises(ConfigError) as e:
        process.prepare_env(["A=1", bad], lambda: "/")
    assert str(e.value) == msg


def test_passwd_home(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\nbad line\n")
    assert process.passwd_home(0, str(passwd)) == "/root"
    assert process.passwd_home(1000, str(passwd)) == "/home/u"
    assert process.passwd_home(5, str(passwd)) == "/"
    assert process.passwd_home(0, str(tmp_path / "missing")) == "/"


def test_rlimit_names():
    assert process.rlimit_resource("RLIMIT_NOFILE", "f") == resource.RLIMIT_NOFILE
    assert process.rlimit_resource("RLIMIT_LOCKS", "f") == 10
    assert len(process.RLIMITS) == 16
    with pytest.raises(ConfigError) as e:
        process.rlimit_resource("RLIMIT_FOO", "process.rlimits[2]")
    assert str(e.value) == 'process.rlimits[2]: unknown rlimit type "RLIMIT_FOO"'


def in_child(fn: Callable[[], str]) -> str:
    """Run fn in a forked child (so this process keeps its own limits) and return what it
    returned, or the message of what it raised."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        msg = "?"
        try:
            os.close(r)
            msg = fn()
        except BaseException as e:  # noqa: BLE001 - the child must never return into pytest
            msg = str(e)
        finally:
            os.write(w, msg.encode())
            os._exit(0)
    os.close(w)
    msg = os.read(r, 4096).decode()
    os.close(r)
    os.waitpid(pid, 0)
    return msg


def test_apply_rlimits_error_names_the_field():
    # Raising the hard limit needs CAP_SYS_RESOURCE, which root lacks here.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("hard RLIMIT_NOFILE is unlimited")

    def raise_above_hard() -> str:
        # Lower first (always allowed), then try to raise above the old hard limit.
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard - 1), hard - 1))
        process.apply_rlimits(Process(args=("x",), cwd="/", rlimits=(
            Rlimit("RLIMIT_NOFILE", hard, hard),)))
        return "no error"

    assert in_child(raise_above_hard) == (
        f"process.rlimits[0] (RLIMIT_NOFILE): cannot set soft={hard} hard={hard}: "
        "Operation not permitted")


def test_apply_rlimits_sets_limits_and_infinity():
    def apply() -> str:
        process.apply_rlimits(Process(args=("x",), cwd="/", rlimits=(
            Rlimit("RLIMIT_NOFILE", 100, 200), Rlimit("RLIMIT_CORE", 2**64 - 1, 2**64 - 1))))
        return repr((resource.getrlimit(resource.RLIMIT_NOFILE),
                     resource.getrlimit(resource.RLIMIT_CORE)))

    inf = resource.RLIM_INFINITY
    assert in_child(apply) == repr(((100, 200), (inf, inf)))


def test_check():
    p = Process(args=("x",), cwd="/", rlimits=(Rlimit("RLIMIT_NOFILE", 10, 5),))
    with pytest.raises(ConfigError, match=r"process.rlimits\[0\] \(RLIMIT_NOFILE\): soft limit"):
        process.check(p)
    p = Process(args=("x",), cwd="/", capabilities=Capabilities(bounding=("CAP_NOPE",)))
    with pytest.raises(ConfigError, match='bounding: unknown capability "CAP_NOPE"'):
        process.check(p)
    p = Process(args=("x",), cwd="/", capabilities=Capabilities(
        bounding=("CAP_KILL", "CAP_BPF"), permitted=("CAP_KILL",), ambient=("CAP_KILL",)))
    warnings = process.check(p, kernel_last_cap=38)
    assert warnings == [
        "process.capabilities: ignoring capabilities this kernel does not support: CAP_BPF",
        "process.capabilities.ambient: not in both permitted and inheritable, will not be "
        "raised: CAP_KILL",
    ]
    assert process.check(Process(args=("x",), cwd="/")) == []
