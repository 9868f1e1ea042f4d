"""Fuzzing the policy's three spellings with hypothesis: org.secfilter.* annotations, secfilt's
command line, and secfilt config files.  Whatever comes in, the loaders return a Policy or raise
a SecfiltError whose message names where the bad value came from; never another exception."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from secfilt_runtime import secfilt_cli
from secfilt_runtime.errors import ConfigError, SecfiltError
from secfilt_runtime.policy import parse
from secfilt_runtime.policy.model import Policy

from conftest import REPO

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

KEYS = [*parse.KEYS, *parse.ALIASES]
# values that sit near the edges of what each key accepts
EDGE_VALUES = [
    "", " ", "true", "false", "1", "0", "yes", "TRUE", "on", "2", "-1", "65535", "65536", "0080",
    "+80", "٣", "80,", ",80", "80,,81", "/", "//", "/work", "/work/", "/../..", "relative",
    "/a:/b", "/a,/b", "/with\0nul", "/loop", "/loop/x", "/deep/../../etc", "10.0.0.0/8",
    "10.0.0.1/33", "::ffff:10.0.0.0/104", "fe80::1%lo", "1.2.3.4/-1", "2001:db8::/129",
    "0.0.0.0/0", "::/0", "EPERM", "EACCES", "ENOTANERRNO", "E", "errno", "enforce", "audit",
    "Enforce", "\udcff", "\u202e/work", "x" * 300,
]
values = st.one_of(st.sampled_from(EDGE_VALUES), st.text(max_size=40),
                   st.lists(st.sampled_from(EDGE_VALUES), max_size=4).map(",".join))
known_keys = st.sampled_from(KEYS).map(lambda k: parse.PREFIX + k)
any_keys = st.one_of(known_keys, st.text(max_size=20).map(lambda k: parse.PREFIX + k),
                     st.text(max_size=20))


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rootfs with the traps a path resolver meets: symlink loops, absolute and climbing
    links, a resolv.conf with odd lines."""
    root = tmp_path_factory.mktemp("fuzz-rootfs")
    (root / "etc").mkdir()
    (root / "etc/resolv.conf").write_text("nameserver 10.0.0.53\nnameserver bogus\n"
                                          "nameserver fe80::1%eth0\n# comment\nsearch x\n")
    (root / "work").mkdir()
    os.symlink("loop", root / "loop")
    os.symlink("/../../../work", root / "up")
    os.symlink("/work", root / "abs")
    return root


def assert_clear(e: Exception, *mentions: str) -> None:
    text = str(e)
    assert text and "Traceback" not in text
    assert any(m in text for m in mentions), f"{text!r} names none of {mentions}"


@FUZZ
@given(annotations=st.dictionaries(any_keys, values, max_size=6))
@example(annotations={"org.secfilter.allow-write": "/loop/x"})
@example(annotations={"org.secfilter.allow-write": "/up/x,/abs"})
@example(annotations={"org.secfilter.allow-resolv": "true",
                      "org.secfilter.allowed-netmask": "10.0.0.0/8"})
def test_annotations_give_a_policy_or_a_clear_error(annotations: dict[str, str],
                                                    rootfs: Path) -> None:
    try:
        policy = parse.from_annotations(annotations, str(rootfs))
    except ConfigError as e:
        # the error names the annotation it is about
        assert_clear(e, *(k for k in annotations if k.startswith(parse.PREFIX)))
        return
    if not any(k.startswith(parse.PREFIX) for k in annotations):
        assert policy is None
        return
    assert isinstance(policy, Policy)
    for path in policy.allow_write:
        # canonical and inside the container's root, whatever links were on the way
        assert path.startswith("/") and "/../" not in path + "/" and "//" not in path


@FUZZ
@given(annotations=st.dictionaries(known_keys, st.one_of(st.integers(), st.none(),
                                                         st.lists(st.text(max_size=3)),
                                                         st.booleans()), min_size=1))
def test_annotation_values_that_are_not_strings(annotations: dict, rootfs: Path) -> None:
    with pytest.raises(ConfigError) as e:
        parse.from_annotations(annotations, str(rootfs))
    assert_clear(e.value, *annotations)


options = st.one_of(
    st.tuples(st.sampled_from(KEYS), values).map(lambda kv: f"--{kv[0]}={kv[1]}"),
    st.sampled_from(KEYS).map(lambda k: f"--{k}"),
    st.sampled_from(["--", "-", "-x", "--config", "--verbose=maybe", "--help=no", "--=1",
                     "--read-only", "--allow-write", "--log"]),
    st.text(max_size=12),
)


@FUZZ
@given(argv=st.lists(options, max_size=6), command=st.lists(st.sampled_from(["true", "-c"]),
                                                              max_size=2))
def test_secfilt_argv_gives_a_policy_or_a_clear_error(argv: list[str], command: list[str],
                                                      tmp_path: Path) -> None:
    try:
        parsed = secfilt_cli.parse_argv([*argv, *command])
        if isinstance(parsed, str):
            assert parsed in ("help", "version")
            return
        policy = secfilt_cli.policy_of(parsed)
    except (SecfiltError, secfilt_cli.UsageError) as e:
        # the option or file it is about, or the missing command
        words = [*argv, *command]
        assert_clear(e, "command", *(part for a in words for part in a.split("=", 1) if part))
        return
    assert isinstance(policy, Policy)
    assert parsed.command


lines = st.one_of(
    st.tuples(st.sampled_from(KEYS), values).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.sampled_from(["# comment", "", "   ", "novalue", "=1", "read-only", "read-only =  1 # x",
                     "unknown=1", "allow-write=/a # /b"]),
    st.text(max_size=30).filter(lambda s: "\n" not in s and "\r" not in s),
)


@FUZZ
@given(body=st.one_of(st.lists(lines, max_size=8).map("\n".join)
                     .map(lambda text: text.encode("utf-8", "surrogateescape")),
                      st.binary(max_size=64)))
def test_config_files_give_settings_or_a_clear_error(body: bytes, tmp_path: Path) -> None:
    path = tmp_path / "policy.conf"
    path.write_bytes(body)
    try:
        policy = parse.build(parse.read_config_file(str(path)))
    except ConfigError as e:
        assert_clear(e, str(path))
        return
    assert isinstance(policy, Policy)


def test_unreadable_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        parse.read_config_file(str(tmp_path / "missing.conf"))
    assert_clear(e.value, str(tmp_path / "missing.conf"))


SECFILT_BAD_ARGS = st.one_of(
    st.tuples(st.sampled_from(["allowed-port", "allowed-netmask", "errno", "mode", "read-only",
                               "allow-write"]),
              st.sampled_from(["x", "70000", "10.0.0.1/40", "EFOO", "sometimes", "maybe",
                               "relative/dir", "", "٣"]))
    .map(lambda kv: [f"--{kv[0]}={kv[1]}", "true"]),
    st.sampled_from([["--nonsense", "true"], ["--read-only=1"], ["--config"], ["-z", "true"],
                     ["--config=/nonexistent/x.conf", "true"]]),
)


@settings(max_examples=12, deadline=None, database=None)
@given(argv=SECFILT_BAD_ARGS)
def test_secfilt_command_refuses_bad_flags_cleanly(argv: list[str]) -> None:
    """End to end: a bad flag is exit 2 with `secfilt: <message>`, no traceback, no child."""
    p = subprocess.run([sys.executable, "-m", "secfilt_runtime.secfilt_cli", *argv],
                       capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, PYTHONPATH=str(REPO / "runtime")))
    if p.returncode == 0:  # the value happened to be valid ("" for allow-write...)
        return
    assert p.returncode == 2, (argv, p.returncode, p.stderr)
    assert p.stderr.startswith("secfilt: ") and "Traceback" not in p.stderr, p.stderr
    assert p.stdout == ""
