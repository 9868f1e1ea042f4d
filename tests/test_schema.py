"""Our JSON Schemas (specs/) and the messages schema.py renders from them. Pure: no processes."""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from secfilt_runtime import schema
from secfilt_runtime.errors import ConfigError

from conftest import REPO

SPEC_TESTS = REPO / "tests/data/reference/oci-runtime-spec-v1.3.0-tests"
REAL_CONFIGS = REPO / "tests/data/reference/real-configs"

GOOD = {
    "ociVersion": "1.2.0",
    "root": {"path": "rootfs"},
    "process": {
        "args": ["sh"],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}],
        "capabilities": {"bounding": ["CAP_KILL"]},
    },
    "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
    "linux": {
        "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "user"}],
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
        "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
    },
    "annotations": {"org.secfilter.read-only": "true", "com.example": "x"},
}


def message_for(doc: Any, validate=schema.validate_config, source: str = "config.json") -> str:
    with pytest.raises(ConfigError) as info:
        validate(doc, source)
    return str(info.value)


def with_change(path: str, value: Any, base: dict = GOOD) -> dict:
    """A copy of `base` with the dotted `path` set to `value` (a `-` value deletes the key)."""
    doc = copy.deepcopy(base)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = doc
    for p in parents:
        node = node[p]
    if value == "-":
        del node[last]
    else:
        node[last] = value
    return doc


# --- the OCI reference documents --------------------------------------------------------------


def _reference(kind: str, verdict: str, pattern: str = "*.json") -> list[Path]:
    return sorted((SPEC_TESTS / kind / verdict).glob(pattern)) if SPEC_TESTS.is_dir() else []


LINUX_GOOD_CONFIGS = [
    p
    for p in _reference("config", "good")
    if p.name.startswith(("linux-", "minimal")) or p.name == "spec-example.json"
]


@pytest.mark.parametrize("path", LINUX_GOOD_CONFIGS + sorted(REAL_CONFIGS.glob("*.json")),
                         ids=lambda p: p.name)
def test_good_configs_validate(path: Path) -> None:
    schema.validate_config(json.loads(path.read_text()), str(path))


def test_reference_sets_are_not_empty() -> None:
    if not SPEC_TESTS.is_dir():
        pytest.skip("reference documents not present")
    assert len(LINUX_GOOD_CONFIGS) >= 5
    assert len(list(REAL_CONFIGS.glob("*.json"))) == 2


@pytest.mark.parametrize(
    "name", [p.name for p in _reference("config", "bad") if p.name != "invalid-json.json"]
)
def test_bad_configs_are_rejected(name: str) -> None:
    # freebsd-vnet-disable.json is bad only through its freebsd section ("disable" is not a
    # sharing mode vnet accepts). We never act on that section, but the document still breaks
    # the spec, and the spec's test suite calls it invalid for every reader: so our schema
    # checks the spec's enumerated freebsd.jail values and refuses it like any other bad config.
    doc = json.loads((SPEC_TESTS / "config" / "bad" / name).read_text())
    msg = message_for(doc, source=name)
    assert msg.startswith(f"{name}: ")


def test_freebsd_vnet_disable_names_the_field() -> None:
    doc = json.loads((SPEC_TESTS / "config/bad/freebsd-vnet-disable.json").read_text())
    expected = 'config.json: freebsd.jail.vnet: "disable" is not one of new, inherit'
    assert message_for(doc) == expected


@pytest.mark.parametrize("kind", ["config", "state"])
def test_invalid_json_fails_at_parsing(kind: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads((SPEC_TESTS / kind / "bad" / "invalid-json.json").read_text())


@pytest.mark.parametrize("path", _reference("state", "good"), ids=lambda p: p.name)
def test_good_state_validates(path: Path) -> None:
    schema.validate_state(json.loads(path.read_text()))


@pytest.mark.parametrize("path", _reference("features", "good"), ids=lambda p: p.name)
def test_good_features_validate(path: Path) -> None:
    schema.validate_features(json.loads(path.read_text()))


def test_bad_features_rejected() -> None:
    doc = json.loads((SPEC_TESTS / "features/bad/missing-ociVersionMax.json").read_text())
    assert (
        message_for(doc, schema.validate_features, "features.json")
        == 'features.json: missing required field "ociVersionMax"'
    )


# --- bad config documents: exact path, plain words -----------------------------------------

BAD_CONFIGS = [
    # (change, dotted path reported, fragment of the message)
    ("ociVersion", "-", "", 'missing required field "ociVersion"'),
    ("ociVersion", "1.2", "ociVersion", "must be a SemVer 2.0.0 version"),
    ("ociVersion", 1, "ociVersion", "must be a SemVer 2.0.0 version such as \"1.2.0\", got 1"),
    ("root", "-", "", 'missing required field "root"'),
    ("root.path", "-", "root", 'missing required field "path"'),
    ("root.readonly", "yes", "root.readonly", "must be a boolean, not a string"),
    ("process.args", [], "process.args", "must be a non-empty array"),
    ("process.args", "sh", "process.args", "must be an array, not a string"),
    ("process.args", "-", "process", 'missing required field "args"'),
    ("process.args.0", 7, "process.args[0]", "must be a string, not an integer"),
    ("process.cwd", "tmp", "process.cwd", 'must be an absolute path (starting with /), got "tmp"'),
    ("process.env", ["PATH"], "process.env[0]", "must have the form NAME=value"),
    ("process.terminal", 1, "process.terminal", "must be a boolean, not an integer"),
    ("process.user.uid", -1, "process.user.uid", "must be an integer from 0 to 4294967295, got -1"),
    ("process.user.gid", "0", "process.user.gid", 'from 0 to 4294967295, got "0"'),
    ("process.user.gid", 2**32, "process.user.gid", "got 4294967296"),
    ("process.user.uid", "-", "process.user", 'missing required field "uid"'),
    ("process.user.additionalGids", [1, -5], "process.user.additionalGids[1]", "got -5"),
    ("process.capabilities.bounding", ["KILL"], "process.capabilities.bounding[0]",
     'must be a capability name such as "CAP_CHOWN", got "KILL"'),
    ("process.rlimits.0.type", "RLIMIT_FOO", "process.rlimits[0].type",
     '"RLIMIT_FOO" is not one of RLIMIT_AS, RLIMIT_CORE'),
    ("process.rlimits.0.soft", -1, "process.rlimits[0].soft", "got -1"),
    ("process.rlimits.0.hard", "-", "process.rlimits[0]", 'missing required field "hard"'),
    ("process.oomScoreAdj", 1001, "process.oomScoreAdj", "from -1000 to 1000, got 1001"),
    ("mounts.0.destination", "-", "mounts[0]", 'missing required field "destination"'),
    ("mounts.0.destination", "", "mounts[0].destination", "must be a non-empty string"),
    ("mounts.0.options", "ro", "mounts[0].options", "must be an array, not a string"),
    ("mounts", {"destination": "/x"}, "mounts", "must be an array, not an object"),
    ("hooks", {"prestart": [{"path": "hook"}]}, "hooks.prestart[0].path", "must be an absolute"),
    ("hooks", {"poststop": [{"path": "/h", "timeout": 0}]}, "hooks.poststop[0].timeout",
     "must be at least 1, got 0"),
    ("hostname", 5, "hostname", "must be a string, not an integer"),
    ("linux.namespaces.1.type", "foo", "linux.namespaces[1].type",
     '"foo" is not one of pid, network, mount, ipc, uts, user, cgroup, time'),
    ("linux.namespaces.1.path", "proc/1/ns/mnt", "linux.namespaces[1].path", "absolute path"),
    ("linux.namespaces.1", {"path": "/x"}, "linux.namespaces[1]", 'missing required field "type"'),
    ("linux.uidMappings.0.size", "-", "linux.uidMappings[0]", 'missing required field "size"'),
    ("linux.uidMappings.0.hostID", -1, "linux.uidMappings[0].hostID", "got -1"),
    ("linux.devices.0.type", "x", "linux.devices[0].type", '"x" is not one of c, b, u, p'),
    ("linux.devices.0.major", "-", "linux.devices[0]", 'needs "major" and "minor"'),
    ("linux.devices.0.path", "dev/fuse", "linux.devices[0].path", "absolute path"),
    ("linux.devices.0.fileMode", 0o200000, "linux.devices[0].fileMode", "from 0 to 65535"),
    ("linux.maskedPaths", ["proc/kcore"], "linux.maskedPaths[0]", "absolute path"),
    ("linux.sysctl", {"net.ipv4.ip_forward": 1}, 'linux.sysctl["net.ipv4.ip_forward"]',
     "must be a string, not an integer"),
    ("linux.rootfsPropagation", "rshared", "linux.rootfsPropagation",
     '"rshared" is not one of private, shared, slave, unbindable'),
    ("linux.resources", {"pids": {"limit": "10"}}, "linux.resources.pids.limit",
     "must be a signed 64-bit integer"),
    ("linux.resources", {"hugepageLimits": [{"pageSize": "2M", "limit": 1}]},
     "linux.resources.hugepageLimits[0].pageSize", 'such as "2MB"'),
    ("linux.resources", {"devices": [{"access": "rwm"}]}, "linux.resources.devices[0]",
     'missing required field "allow"'),
    ("linux.seccomp", {"syscalls": []}, "linux.seccomp", 'missing required field "defaultAction"'),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_NOPE"}, "linux.seccomp.defaultAction",
     '"SCMP_ACT_NOPE" is not one of SCMP_ACT_KILL'),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW",
                       "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]},
     "linux.seccomp.syscalls[0].names", "must be a non-empty array of syscall names"),
    ("linux.personality", {"domain": "LINUX64"}, "linux.personality.domain", "not one of LINUX"),
    ("linux.timeOffsets", {"monotonic": {"nanosecs": -1}}, "linux.timeOffsets.monotonic.nanosecs",
     "got -1"),
    ("annotations", {"org.secfilter.read-only": "yes"}, 'annotations["org.secfilter.read-only"]',
     'must be "true" or "false", got "yes"'),
    ("annotations", {"org.secfilter.readonly": "true"}, 'annotations["org.secfilter.readonly"]',
     "unknown secfilter policy annotation"),
    ("annotations", {"com.example": 1}, 'annotations["com.example"]', "must be a string"),
]


@pytest.mark.parametrize(
    ("path", "value", "reported", "fragment"),
    BAD_CONFIGS,
    ids=[f"{b[0]}={b[1]!r}" for b in BAD_CONFIGS],
)
def test_bad_config_message(path: str, value: Any, reported: str, fragment: str) -> None:
    msg = message_for(with_change(path, value))
    prefix = f"config.json: {reported}: " if reported else "config.json: "
    assert msg.startswith(prefix), msg
    rest = msg[len(prefix):]
    assert fragment in rest, msg
    # the path is named once, in front: the rest is the problem itself
    assert not rest.startswith(("[", ".")), msg


def test_top_level_must_be_an_object() -> None:
    assert message_for([1, 2]) == "config.json: must be an object, not an array"


def test_source_is_the_prefix() -> None:
    msg = message_for(with_change("process.args", []), source="/b/config.json")
    assert msg == "/b/config.json: process.args: must be a non-empty array"


def test_first_error_is_deterministic() -> None:
    doc = with_change("process.args", [])
    doc = with_change("linux.namespaces.0.type", "foo", doc)
    doc = with_change("process.user.uid", -1, doc)
    first = message_for(doc)
    # same answer every time, and whatever order the fields were written in
    reordered = json.loads(json.dumps(doc, sort_keys=True))
    reordered["process"] = dict(reversed(list(reordered["process"].items())))
    assert {message_for(doc) for _ in range(3)} == {first}
    assert message_for(reordered) == first


def test_shallowest_error_wins() -> None:
    doc = with_change("linux.namespaces.0.type", "foo")
    doc = with_change("ociVersion", "-", doc)
    assert message_for(doc) == 'config.json: missing required field "ociVersion"'


# --- unknown fields are accepted ------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["x-vendor", "process.x", "process.user.x", "root.x", "mounts.0.x", "linux.x",
     "linux.namespaces.0.x", "linux.devices.0.x", "linux.resources", "process.rlimits.0.x"],
)
def test_unknown_fields_are_accepted(path: str) -> None:
    schema.validate_config(with_change(path, {"anything": [1, "two"]}), "config.json")


def test_other_platform_sections_and_optional_process_accepted() -> None:
    doc = with_change("process", "-")
    doc.update(windows={"layerFolders": []}, solaris={}, vm={}, zos={}, freebsd={})
    schema.validate_config(doc, "config.json")


def test_relative_mount_destination_accepted() -> None:
    # deprecated but legal since runtime-spec#1225: runc and crun take it relative to /
    schema.validate_config(with_change("mounts.0.destination", "proc"), "config.json")


def test_device_of_type_p_needs_no_numbers() -> None:
    schema.validate_config(
        with_change("linux.devices", [{"path": "/dev/fifo", "type": "p"}]), "config.json"
    )


# --- checks beyond the schema ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("linux.namespaces", [{"type": "pid"}, {"type": "user"}, {"type": "pid", "path": "/p"}],
         'linux.namespaces[2].type: "pid" is listed twice (also at linux.namespaces[0])'),
        ("linux.namespaces", [{"type": "pid"}],
         "linux.uidMappings: needs a user namespace"),
        ("process.rlimits", [{"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
                             {"type": "RLIMIT_CORE", "soft": 1, "hard": 1}],
         'process.rlimits[1].type: "RLIMIT_CORE" is listed twice (also at process.rlimits[0])'),
        ("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}],
         "process.rlimits[0]: soft limit 2048 is above the hard limit 1024"),
        ("annotations", {"org.secfilter.allowed-netmask": "10.0.0.0/8,300.1.1.1/32"},
         'annotations["org.secfilter.allowed-netmask"]: "300.1.1.1/32" is not an IPv4 or IPv6'),
    ],
)
def test_semantic_checks(path: str, value: Any, expected: str) -> None:
    assert message_for(with_change(path, value)).startswith(f"config.json: {expected}")


def test_gid_mappings_alone_need_a_user_namespace() -> None:
    doc = with_change("linux.namespaces", [])
    doc = with_change("linux.uidMappings", "-", doc)
    doc["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 0, "size": 1}]
    assert message_for(doc).startswith("config.json: linux.gidMappings: needs a user namespace")


# --- annotations alone ----------------------------------------------------------------------

GOOD_POLICY = {
    "org.secfilter.read-only": "true",
    "org.secfilter.allow-write": "/tmp:/var/cache,/home/user",
    "org.secfilter.no-outbound-network": "false",
    "org.secfilter.allowed-netmask": "10.0.0.0/8, 192.168.1.7, fd00::/8,::1/128",
    "org.secfilter.allowed-port": "53,443, 8080,65535",
    "org.secfilter.allow-resolv": "true",
    "org.secfilter.mainstream-network-families": "false",
    "io.kubernetes.cri.sandbox-id": "abc",
    "org.secfilterx": "not ours: other keys are free",
}


def test_good_policy_annotations() -> None:
    schema.validate_annotations(GOOD_POLICY)
    schema.validate_annotations({})


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("org.secfilter.read-only", "True", 'must be "true" or "false", got "True"'),
        ("org.secfilter.allow-resolv", "2", 'must be "true" or "false"'),
        ("org.secfilter.no-outbound-network", "", 'must be "true" or "false"'),
        ("org.secfilter.mainstream-network-families", "no", 'must be "true" or "false"'),
        ("org.secfilter.allow-write", "tmp", 'absolute paths separated by ":" or ","'),
        ("org.secfilter.allow-write", "/tmp:var", 'absolute paths separated by ":" or ","'),
        ("org.secfilter.allowed-port", "0", "ports from 1 to 65535"),
        ("org.secfilter.allowed-port", "65536", "ports from 1 to 65535"),
        ("org.secfilter.allowed-port", "80;443", "ports from 1 to 65535"),
        ("org.secfilter.allowed-netmask", "10.0.0.0/8;10.1.0.0/16", "comma separated list"),
        ("org.secfilter.allowed-netmask", "10.0.0.0/33", '"10.0.0.0/33" is not an IPv4 or IPv6'),
        ("org.secfilter.allowed-netmask", "fd00:::1/64", "is not an IPv4 or IPv6 network"),
        ("org.secfilter.allow-writes", "/tmp", "unknown secfilter policy annotation (known:"),
        ("org.secfilter.read-only", True, 'must be "true" or "false", got true'),
    ],
)
def test_bad_policy_annotations(key: str, value: Any, fragment: str) -> None:
    msg = message_for({**GOOD_POLICY, key: value}, schema.validate_annotations)
    assert msg.startswith(f'config.json: annotations["{key}"]: '), msg
    assert fragment in msg, msg


def test_parse_netmasks_applies_the_mask() -> None:
    nets = schema.parse_netmasks("10.1.2.3/8, ::1")
    assert [str(n) for n in nets] == ["10.0.0.0/8", "::1/128"]


# --- state ----------------------------------------------------------------------------------

STATE = {"ociVersion": "1.3.0", "id": "c1", "status": "running", "pid": 42, "bundle": "/b"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"status": "frozen"},
         'status: "frozen" is not one of creating, created, running, stopped, paused'),
        ({"pid": -1}, "pid: must be a process id (an integer from 0 to 2147483647), got -1"),
        ({"pid": None}, "pid: must be a process id"),
        ({"bundle": "rel"}, 'bundle: must be an absolute path (starting with /), got "rel"'),
        ({"id": ""}, "id: must be a non-empty string"),
        ({"annotations": {"k": 1}}, "annotations.k: must be a string, not an integer"),
    ],
)
def test_bad_state(change: dict, expected: str) -> None:
    msg = message_for({**STATE, **change}, schema.validate_state, "state.json")
    assert msg.startswith(f"state.json: {expected}"), msg


def test_state_pid_required_while_running_only() -> None:
    no_pid = {k: v for k, v in STATE.items() if k != "pid"}
    assert message_for(no_pid, schema.validate_state, "state.json").startswith(
        'state.json: missing required field "pid"'
    )
    schema.validate_state({**no_pid, "status": "stopped"})
    schema.validate_state({**no_pid, "status": "creating"})


def test_bad_features() -> None:
    doc = {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "linux": {"namespaces": ["net"]}}
    assert message_for(doc, schema.validate_features, "features.json").startswith(
        'features.json: linux.namespaces[0]: "net" is not one of pid'
    )


# --- the schema files themselves ------------------------------------------------------------


@pytest.mark.parametrize("name", schema.SCHEMA_FILES)
def test_schemas_are_valid_2020_12(name: str) -> None:
    from jsonschema import Draft202012Validator

    doc = schema.load_schema(name)
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"].endswith("/" + name)


def test_package_sees_the_specs_directory() -> None:
    # runtime/secfilt_runtime/schemas -> ../../specs, so setuptools ships them as package data
    link = REPO / "runtime/secfilt_runtime/schemas"
    assert link.is_symlink() and link.resolve() == (REPO / "specs").resolve()
    assert sorted(p.name for p in (REPO / "specs").glob("*.json")) == sorted(schema.SCHEMA_FILES)


def test_spec_module_does_not_import_jsonschema_at_load() -> None:
    tree = ast.parse((REPO / "runtime/secfilt_runtime/spec.py").read_text())
    top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = {a.name for n in top_level for a in n.names} | {
        n.module or "" for n in top_level if isinstance(n, ast.ImportFrom)
    }
    assert not any("jsonschema" in n or n == "schema" for n in names), names


def test_format_path() -> None:
    assert schema.format_path(["linux", "namespaces", 2, "type"]) == "linux.namespaces[2].type"
    assert schema.format_path([]) == ""
    assert schema.format_path(["linux", "sysctl", "net.ipv4.ip_forward"]) == (
        'linux.sysctl["net.ipv4.ip_forward"]'
    )


def test_podman_device_modes_with_file_type_bits_are_accepted() -> None:
    """podman --privileged writes fileMode with S_IFCHR/S_IFBLK set (runc accepts it)."""
    from secfilt_runtime.container import devices
    from secfilt_runtime.spec import Device

    doc = {"ociVersion": "1.0.0", "root": {"path": "rootfs"},
           "linux": {"devices": [{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0,
                                  "fileMode": 0o60660},
                                 {"path": "/dev/tty1", "type": "c", "major": 4, "minor": 1,
                                  "fileMode": 0o20620}]}}
    schema.validate_config(doc, "config.json")
    node = Device(path="/dev/tty1", type="c", major=4, minor=1, file_mode=0o20620)
    assert devices.node_mode(node) == 0o20620
    assert devices.node_mode(Device(path="/dev/sda", type="b", major=8, minor=0,
                                    file_mode=0o20660)) == 0o60660


def test_state_paused_as_runc_prints_it() -> None:
    """`state` prints runc's "paused" (engines read it): our own schema must take it, with
    the pid a paused container still has."""
    schema.validate_state({**STATE, "status": "paused"}, "s")
    no_pid = {k: v for k, v in {**STATE, "status": "paused"}.items() if k != "pid"}
    assert "pid" in message_for(no_pid, schema.validate_state, "s")
