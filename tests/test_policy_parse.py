"""policy.parse, policy.resolv and secfilt's argv parser: every key's values, good and bad."""

from __future__ import annotations

import errno
from ipaddress import ip_network
from pathlib import Path

import pytest

from secfilt_runtime import schema
from secfilt_runtime.errors import ConfigError
from secfilt_runtime.policy import parse, resolv
from secfilt_runtime.secfilt_cli import Invocation, UsageError, parse_argv, policy_of

from conftest import REPO

P = "org.secfilter."


def ann(tmp_path: Path, **keys: str):
    return parse.from_annotations({P + k.replace("_", "-"): v for k, v in keys.items()},
                                  str(tmp_path))


# --- annotations ---------------------------------------------------------------------------


def test_no_secfilter_key_is_no_policy(tmp_path: Path) -> None:
    assert parse.from_annotations({}, str(tmp_path)) is None
    assert parse.from_annotations({"com.example": "x", "org.secfilterx": "1"},
                                  str(tmp_path)) is None


def test_every_key(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    p = ann(tmp_path, read_only="1", allow_write="/data/,/dev/null", no_outbound_network="true",
            allowed_netmask="10.1.2.3/8, 2001:db8::/32,192.0.2.7",
            allowed_port="22, 443", mainstream_network_families="0", log="/var/log/x.jsonl",
            mode="audit", errno="EACCES")
    assert p.read_only and p.no_outbound_network and not p.mainstream_network_families
    assert p.allow_write == ("/data", "/dev/null")
    assert p.netmasks == (ip_network("10.0.0.0/8"), ip_network("2001:db8::/32"),
                          ip_network("192.0.2.7/32"))
    assert p.ports == (22, 443)
    assert (p.log_path, p.mode, p.errno, p.audit) == ("/var/log/x.jsonl", "audit",
                                                      errno.EACCES, True)
    assert p.sources["allowed-port"] == 'annotations["org.secfilter.allowed-port"]'


def test_defaults(tmp_path: Path) -> None:
    p = ann(tmp_path, read_only="false")
    assert not p.restricts_writes and p.mode == "enforce" and p.errno == errno.EPERM
    assert p.is_empty and p.log_path is None


@pytest.mark.parametrize(("key", "value", "message"), [
    ("read-only", "yes", 'annotations["org.secfilter.read-only"]: yes is not a boolean'),
    ("read-only", "True", "True is not a boolean"),
    ("allow-resolv", "", '"" is not a boolean'),
    ("allow-write", "tmp", "tmp is not an absolute path"),
    ("allow-write", "/tmp,", '"" is not an absolute path'),
    ("allowed-port", "70000", "70000 is not a port (1-65535)"),
    ("allowed-port", "0", "0 is not a port"),
    ("allowed-port", "022", "022 is not a port"),
    ("allowed-port", "+22", "+22 is not a port"),
    ("allowed-port", "22;80", "22;80 is not a port"),
    ("allowed-netmask", "10.0.0.0/33", "10.0.0.0/33 is not an IPv4 or IPv6 network"),
    ("allowed-netmask", "fe80::1%eth0", "is not an IPv4 or IPv6 network"),
    ("allowed-netmask", "example.org", "example.org is not an IPv4 or IPv6 network"),
    ("mode", "permissive", "permissive is not a mode (enforce or audit)"),
    ("errno", "EWHATEVER", "EWHATEVER is not an errno name"),
    ("errno", "1", "1 is not an errno name"),
    ("errno", "errorcode", "errorcode is not an errno name"),
    ("log", "relative.log", "relative.log is not an absolute path"),
    ("allow-writes", "/tmp", "unknown secfilter policy annotation"),
])
def test_bad_annotation_names_key_and_value(tmp_path: Path, key: str, value: str,
                                            message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse.from_annotations({P + key: value}, str(tmp_path))
    assert str(e.value).startswith(f'annotations["{P}{key}"]: '), str(e.value)
    assert message in str(e.value)


@pytest.mark.parametrize(("key", "value"), [
    ("read-only", "1"), ("read-only", "false"), ("allow-write", "/a,/b"),
    ("allow-write", "/a:/b"), ("allowed-port", "1,65535"), ("allowed-port", "0"),
    ("allowed-port", "65536"), ("allowed-port", "022"), ("allowed-netmask", "::ffff:1.2.3.4/120"),
    ("allowed-netmask", "1.2.3.4/40"), ("mode", "audit"), ("mode", "Audit"), ("errno", "EACCES"),
    ("log", "/x"), ("log", "x"), ("read-only", "yes"), ("no-outbound-network", "0"),
])
def test_schema_and_parser_agree(tmp_path: Path, key: str, value: str) -> None:
    def accepted(check) -> bool:
        try:
            check()
        except ConfigError:
            return False
        return True

    by_schema = accepted(lambda: schema.validate_annotations({P + key: value}))
    by_parser = accepted(lambda: parse.from_annotations({P + key: value}, str(tmp_path)))
    assert by_schema == by_parser


def test_mapped_ipv6_netmask_becomes_ipv4(tmp_path: Path) -> None:
    assert ann(tmp_path, allowed_netmask="::ffff:10.0.0.0/104").netmasks == (
        ip_network("10.0.0.0/8"),)


def test_allow_write_through_an_image_symlink_stays_as_named(tmp_path: Path, capsys) -> None:
    """A link in the image is its author's: followed, /scratch -> / would make allow-write the
    whole root. The path is kept as named (normalized), which every layer then keeps
    read-only, and a warning names the link's target."""
    (tmp_path / "run").mkdir()
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "run").symlink_to("/run")          # absolute: inside the rootfs
    (tmp_path / "escape").symlink_to("../../../../etc")     # clamped at the rootfs
    p = ann(tmp_path, allow_write="/var/run/,/escape/x,/a/./b/../c,/missing/dir,/run/x")
    assert p.allow_write == ("/var/run", "/escape/x", "/a/c", "/missing/dir", "/run/x")
    err = capsys.readouterr().err
    assert "/var/run/ goes through a symlink in the container's root (to /run)" in err
    assert "/escape/x goes through a symlink in the container's root (to /etc/x)" in err
    assert "/a/./b/../c" not in err and "/run/x" not in err


def test_secfilt_follows_the_host_s_own_symlinks(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    p = parse.build([parse.Setting("allow-write", str(tmp_path / "link"), "--allow-write")],
                    rootfs="/")
    assert p.allow_write == (str(tmp_path / "real"),)


def test_symlink_loop_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(ConfigError) as e:
        ann(tmp_path, allow_write="/loop")
    assert str(e.value) == ('annotations["org.secfilter.allow-write"]: /loop: too many levels '
                            "of symbolic links")


# --- allow-resolv --------------------------------------------------------------------------


@pytest.fixture
def rootfs_with_resolv(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "resolv.conf").write_text(
        "# comment\nsearch example\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n"
        "nameserver fe80::1%eth0\nnameserver ::ffff:198.51.100.53\nnameserver bogus\n")
    # absolute, as images often have it: must resolve inside the rootfs, not on the host
    (tmp_path / "etc" / "resolv.conf").symlink_to("/elsewhere/resolv.conf")
    return tmp_path


NS = tuple(ip_network(n) for n in ("192.0.2.53", "2001:db8::53", "fe80::1", "198.51.100.53"))


def test_nameservers_are_read_inside_the_rootfs(rootfs_with_resolv: Path) -> None:
    assert resolv.read_nameservers(str(rootfs_with_resolv)) == NS
    assert resolv.read_nameservers(str(rootfs_with_resolv / "elsewhere")) == ()


def test_allow_resolv_joins_only_restricted_rules(rootfs_with_resolv: Path) -> None:
    p = ann(rootfs_with_resolv, allow_resolv="true", no_outbound_network="true")
    assert p.nameservers == NS and p.netmasks == () and p.ports == ()
    p = ann(rootfs_with_resolv, allow_resolv="1", allowed_netmask="10.0.0.0/8",
            allowed_port="22")
    assert p.netmasks == (ip_network("10.0.0.0/8"), *NS) and p.ports == (22, 53)
    p = ann(rootfs_with_resolv, allow_resolv="1", allowed_port="53")
    assert p.ports == (53,) and p.netmasks == ()


def test_allow_resolv_from_a_host_file(rootfs_with_resolv: Path, tmp_path: Path) -> None:
    other = tmp_path / "bind-source"
    other.write_text("nameserver 203.0.113.1\n")
    p = parse.from_annotations({P + "allow-resolv": "true", P + "allowed-netmask": "::1"},
                               str(rootfs_with_resolv), resolv_conf=str(other))
    assert p.netmasks == (ip_network("::1"), ip_network("203.0.113.1"))


def test_allow_resolv_from_a_bind_mount(rootfs_with_resolv: Path, tmp_path: Path) -> None:
    from secfilt_runtime.spec import Mount

    other = tmp_path / "engine-resolv.conf"
    other.write_text("nameserver 203.0.113.9\n")
    mounts = [Mount("/etc/resolv.conf", None, str(tmp_path / "first"), ("rbind", "ro")),
              Mount("/etc/hosts", "bind", str(tmp_path / "hosts")),
              Mount("//etc/./resolv.conf", "bind", str(other))]
    p = parse.from_annotations({P + "allow-resolv": "true"}, str(rootfs_with_resolv),
                               mounts=mounts)
    assert p.nameservers == (ip_network("203.0.113.9"),)
    tmpfs = [Mount("/etc/resolv.conf", "tmpfs", "tmpfs")]
    p = parse.from_annotations({P + "allow-resolv": "true"}, str(rootfs_with_resolv),
                               mounts=tmpfs)
    assert p.nameservers == NS


def test_unreadable_resolv_conf_is_an_error(rootfs_with_resolv: Path) -> None:
    (rootfs_with_resolv / "elsewhere" / "resolv.conf").unlink()
    (rootfs_with_resolv / "elsewhere" / "resolv.conf").mkdir()
    with pytest.raises(ConfigError) as e:
        ann(rootfs_with_resolv, allow_resolv="true")
    assert str(e.value).startswith('annotations["org.secfilter.allow-resolv"]: cannot read')


def test_allow_resolv_without_resolv_conf(tmp_path: Path) -> None:
    p = ann(tmp_path, allow_resolv="true", allowed_netmask="10.0.0.0/8")
    assert p.nameservers == () and p.netmasks == (ip_network("10.0.0.0/8"),)


# --- config files --------------------------------------------------------------------------


def test_the_samples_read() -> None:
    ssh = parse.build(parse.read_config_file(str(REPO / "bundles" / "ssh-one-host.conf")))
    assert ssh.read_only and ssh.mainstream_network_families
    assert ip_network("127.0.0.0/8") in ssh.netmasks and 22 in ssh.ports and 53 in ssh.ports
    pdns = parse.build(parse.read_config_file(str(REPO / "bundles" / "pdns_recursor.conf")))
    assert "/run" in pdns.allow_write and "/dev/null" in pdns.allow_write
    assert pdns.restricts_writes and pdns.mainstream_network_families


def test_config_file_syntax(tmp_path: Path) -> None:
    f = tmp_path / "c.conf"
    f.write_text("# a comment\n\nallow-write=/tmp/   # trailing comment\nallow-write = /var/tmp\n"
                 "mainstream-network-families=\nallowed-netmasks=192.0.2.1\nallowed-port=22\n"
                 "allowed-port=53\nread-only=0\n")
    p = parse.build(parse.read_config_file(str(f)))
    assert p.allow_write == ("/tmp", "/var/tmp") and p.mainstream_network_families
    assert p.netmasks == (ip_network("192.0.2.1/32"),) and p.ports == (22, 53)
    assert p.restricts_writes  # allow-write implies read-only elsewhere


@pytest.mark.parametrize(("text", "message"), [
    ("read-only\n", "c.conf:1: expected key=value, got read-only"),
    ("\nbogus=1\n", "c.conf:2: unknown key bogus"),
    ("allowed-port=99999\n", "c.conf:1: allowed-port: 99999 is not a port"),
    ("read-only=maybe\n", "c.conf:1: read-only: maybe is not a boolean"),
])
def test_bad_config_file(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "c.conf"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        parse.build(parse.read_config_file(str(f)))
    assert message in str(e.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        parse.read_config_file(str(tmp_path / "nope.conf"))


# --- secfilt's command line ----------------------------------------------------------------


def policy_for(*argv: str):
    inv = parse_argv(argv)
    assert isinstance(inv, Invocation)
    return inv, policy_of(inv)


def test_argv_forms() -> None:
    inv, p = policy_for("--read-only=1", "--write-allow=/dev/null", "--allowed-netmasks",
                        "192.0.2.0/24", "--allowed-port=22", "--allowed-port", "80,443",
                        "--mainstream-network-families", "--no-outbound-network=0",
                        "bash", "-c", "--read-only")
    assert inv.command == ["bash", "-c", "--read-only"]
    assert p.read_only and p.allow_write == ("/dev/null",) and p.ports == (22, 80, 443)
    assert p.netmasks == (ip_network("192.0.2.0/24"),) and p.mainstream_network_families
    assert not p.no_outbound_network


def test_bare_bool_does_not_eat_the_command() -> None:
    inv, p = policy_for("--read-only", "true")
    assert p.read_only and inv.command == ["true"]


def test_double_dash_ends_options() -> None:
    inv, _ = policy_for("--", "--weird-command")
    assert inv.command == ["--weird-command"]


def test_help_and_version() -> None:
    assert parse_argv(["--help"]) == "help" and parse_argv(["-h", "x"]) == "help"
    assert parse_argv(["--version"]) == "version"


def test_verbose_logs_to_stderr_unless_log_given(tmp_path: Path) -> None:
    assert policy_for("--verbose", "x")[1].log_path == "/dev/stderr"
    log = tmp_path / "l.jsonl"
    assert policy_for("--verbose", f"--log={log}", "x")[1].log_path == str(log)


def test_relative_log_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert policy_for("--log", "d.jsonl", "x")[1].log_path == str(tmp_path / "d.jsonl")


def test_command_line_applies_on_top_of_config(tmp_path: Path) -> None:
    f = tmp_path / "c.conf"
    f.write_text("read-only=1\nallowed-port=22\nmode=audit\n")
    _, p = policy_for("--allowed-port=80", "--read-only=0", f"--config={f}", "--mode=enforce",
                      "x")
    assert p.ports == (22, 80) and not p.read_only and p.mode == "enforce"


@pytest.mark.parametrize(("argv", "message"), [
    (["--allowed-port=70000", "x"], "--allowed-port: 70000 is not a port (1-65535)"),
    (["--read-only=2", "x"], "--read-only: 2 is not a boolean"),
    (["--allowed-netmask=300.0.0.1", "x"], "--allowed-netmask: 300.0.0.1 is not an IPv4"),
    (["--allow-write=rel", "x"], "--allow-write: rel is not an absolute path"),
    (["--errno=ENOPE", "x"], "--errno: ENOPE is not an errno name"),
    (["--frobnicate", "x"], "--frobnicate: unknown option"),
    (["-x", "cmd"], "-x: unknown option"),
    (["--allowed-port"], "--allowed-port: needs a value"),
    (["--read-only=1"], "no command given"),
    ([], "no command given"),
])
def test_bad_command_lines(argv: list[str], message: str) -> None:
    with pytest.raises((UsageError, ConfigError)) as e:
        inv = parse_argv(argv)
        assert isinstance(inv, Invocation)
        policy_of(inv)
    assert str(e.value) == message or str(e.value).startswith(message), str(e.value)
