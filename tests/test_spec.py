"""config.json -> Spec: conversion of each field, and load_bundle's errors. Pure: no processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from secfilt_runtime import schema, spec
from secfilt_runtime.errors import ConfigError

FULL = {
    "ociVersion": "1.2.0",
    "root": {"path": "rootfs", "readonly": True},
    "process": {
        "terminal": True,
        "args": ["sh", "-c", "true"],
        "env": ["PATH=/bin", "HOME=/root"],
        "cwd": "/work",
        "user": {"uid": 1000, "gid": 100, "umask": 18, "additionalGids": [5, 6]},
        "capabilities": {
            "bounding": ["CAP_KILL", "CAP_CHOWN"],
            "effective": ["CAP_KILL"],
            "permitted": ["CAP_KILL", "CAP_CHOWN"],
        },
        "rlimits": [
            {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        ],
        "noNewPrivileges": True,
        "oomScoreAdj": -17,
    },
    "hostname": "box",
    "domainname": "example.test",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/data", "type": "bind", "source": "/srv/data",
         "options": ["rbind", "ro"]},
        {"destination": "/empty"},
    ],
    "hooks": {"poststop": [{"path": "/bin/cleanup"}]},
    "annotations": {"org.secfilter.read-only": "true"},
    "linux": {
        "namespaces": [
            {"type": "pid"},
            {"type": "network", "path": "/var/run/netns/blue"},
            {"type": "user"},
        ],
        "uidMappings": [
            {"containerID": 0, "hostID": 100000, "size": 65536},
            {"containerID": 65536, "hostID": 0, "size": 1},
        ],
        "gidMappings": [{"containerID": 0, "hostID": 200000, "size": 1000}],
        "devices": [
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438,
             "uid": 0, "gid": 0},
            {"path": "/dev/fifo", "type": "p"},
        ],
        "maskedPaths": ["/proc/kcore"],
        "readonlyPaths": ["/proc/sys"],
        "sysctl": {"net.ipv4.ip_forward": "1"},
        "rootfsPropagation": "slave",
        "cgroupsPath": "/secfilt/c1",
        "resources": {"pids": {"limit": 64}},
        "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"},
        "personality": {"domain": "LINUX"},
    },
}


@pytest.fixture
def parsed() -> spec.Spec:
    schema.validate_config(FULL, "config.json")  # the fixture itself must be a valid config
    return spec.parse(FULL, "/bundles/b1")


def test_root_relative_path_is_resolved_against_the_bundle(parsed: spec.Spec) -> None:
    assert parsed.bundle == "/bundles/b1"
    assert parsed.root == spec.Root(path="/bundles/b1/rootfs", readonly=True)


@pytest.mark.parametrize(
    ("root_path", "expected"),
    [("/abs/rootfs", "/abs/rootfs"), ("./a/../rootfs/", "/bundles/b1/rootfs"),
     ("../shared/rootfs", "/bundles/shared/rootfs")],
)
def test_root_path_forms(root_path: str, expected: str) -> None:
    doc = {**FULL, "root": {"path": root_path}}
    parsed = spec.parse(doc, "/bundles/b1")
    assert parsed.root.path == expected
    assert parsed.root.readonly is False


def test_relative_bundle_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    parsed = spec.parse(FULL, "b1")
    assert parsed.bundle == os.path.join(str(tmp_path), "b1")
    assert parsed.root.path == os.path.join(str(tmp_path), "b1", "rootfs")


def test_process_fields(parsed: spec.Spec) -> None:
    p = parsed.process
    assert p is not None
    assert p.args == ("sh", "-c", "true")
    assert p.env == ("PATH=/bin", "HOME=/root")
    assert p.cwd == "/work"
    assert p.terminal is True
    assert p.user == spec.User(uid=1000, gid=100, umask=18, additional_gids=(5, 6))
    assert p.no_new_privileges is True
    assert p.oom_score_adj == -17


def test_capabilities_missing_sets_are_empty(parsed: spec.Spec) -> None:
    assert parsed.process is not None
    assert parsed.process.capabilities == spec.Capabilities(
        bounding=("CAP_KILL", "CAP_CHOWN"),
        effective=("CAP_KILL",),
        inheritable=(),
        permitted=("CAP_KILL", "CAP_CHOWN"),
        ambient=(),
    )


def test_no_capabilities_object_means_none() -> None:
    process = {k: v for k, v in FULL["process"].items() if k != "capabilities"}
    parsed = spec.parse({**FULL, "process": process}, "/b")
    assert parsed.process is not None and parsed.process.capabilities is None


def test_rlimits_keep_order(parsed: spec.Spec) -> None:
    assert parsed.process is not None
    assert parsed.process.rlimits == (
        spec.Rlimit("RLIMIT_NOFILE", 512, 1024),
        spec.Rlimit("RLIMIT_CORE", 0, 0),
    )


def test_process_defaults() -> None:
    doc = {"ociVersion": "1.0.0", "root": {"path": "r"}, "process": {"args": ["x"], "cwd": "/"}}
    schema.validate_config(doc, "config.json")
    p = spec.parse(doc, "/b").process
    assert p == spec.Process(args=("x",), cwd="/")
    assert p.user == spec.User(uid=0, gid=0, umask=None, additional_gids=())
    assert p.rlimits == () and p.capabilities is None and p.terminal is False


def test_mounts(parsed: spec.Spec) -> None:
    assert parsed.mounts == (
        spec.Mount("/proc", "proc", "proc", ()),
        spec.Mount("/data", "bind", "/srv/data", ("rbind", "ro")),
        spec.Mount("/empty", None, None, ()),
    )


def test_namespaces_and_lookup(parsed: spec.Spec) -> None:
    lx = parsed.linux
    assert lx.namespaces == (
        spec.Namespace("pid"),
        spec.Namespace("network", "/var/run/netns/blue"),
        spec.Namespace("user"),
    )
    assert lx.namespace("network") == spec.Namespace("network", "/var/run/netns/blue")
    assert lx.namespace("time") is None


def test_id_mappings(parsed: spec.Spec) -> None:
    assert parsed.linux.uid_mappings == (
        spec.IdMapping(container_id=0, host_id=100000, size=65536),
        spec.IdMapping(container_id=65536, host_id=0, size=1),
    )
    assert parsed.linux.gid_mappings == (spec.IdMapping(0, 200000, 1000),)


def test_devices(parsed: spec.Spec) -> None:
    assert parsed.linux.devices == (
        spec.Device("/dev/fuse", "c", 10, 229, file_mode=438, uid=0, gid=0),
        spec.Device("/dev/fifo", "p", 0, 0, file_mode=None, uid=None, gid=None),
    )


def test_other_linux_fields(parsed: spec.Spec) -> None:
    lx = parsed.linux
    assert lx.masked_paths == ("/proc/kcore",)
    assert lx.readonly_paths == ("/proc/sys",)
    assert lx.sysctl == {"net.ipv4.ip_forward": "1"}
    assert lx.rootfs_propagation == "slave"
    assert lx.cgroups_path == "/secfilt/c1"
    assert lx.resources == {"pids": {"limit": 64}}
    assert lx.seccomp == {"defaultAction": "SCMP_ACT_ALLOW"}


def test_top_level_fields_and_raw(parsed: spec.Spec) -> None:
    assert parsed.oci_version == "1.2.0"
    assert parsed.hostname == "box" and parsed.domainname == "example.test"
    assert parsed.annotations == {"org.secfilter.read-only": "true"}
    assert parsed.hooks == {"poststop": [{"path": "/bin/cleanup"}]}
    # fields the dataclasses do not model are still reachable
    assert parsed.raw["linux"]["personality"] == {"domain": "LINUX"}


def test_minimal_config_has_empty_linux() -> None:
    parsed = spec.parse({"ociVersion": "1.0.0", "root": {"path": "rootfs"}}, "/b")
    assert parsed.process is None
    assert parsed.linux == spec.Linux()
    assert parsed.mounts == () and parsed.annotations == {} and parsed.hostname is None


# --- require_process ------------------------------------------------------------------------


def test_require_process() -> None:
    with_process = spec.parse(FULL, "/b")
    assert schema.require_process(with_process) is with_process.process
    without = spec.parse({"ociVersion": "1.0.0", "root": {"path": "rootfs"}}, "/b")
    with pytest.raises(ConfigError, match=r'^/b/config.json: missing required field "process"'):
        schema.require_process(without)
    with pytest.raises(ConfigError, match=r"^x.json: "):
        schema.require_process(without, "x.json")


# --- load_bundle ----------------------------------------------------------------------------


def _bundle(tmp_path: Path, content: str | bytes) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    data = content.encode() if isinstance(content, str) else content
    (bundle / "config.json").write_bytes(data)
    return bundle


def test_load_bundle(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, json.dumps(FULL))
    parsed = spec.load_bundle(str(bundle))
    assert parsed.bundle == str(bundle)
    assert parsed.root.path == str(bundle / "rootfs")  # not required to exist at parse time
    assert parsed == spec.parse(FULL, str(bundle))


def test_load_bundle_missing_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config.json: no such file \(is .* an OCI bundle\?\)"):
        spec.load_bundle(str(tmp_path))


@pytest.mark.parametrize("content", ["{]", b"\xff\xfe{}", ""])
def test_load_bundle_invalid_json(tmp_path: Path, content: str | bytes) -> None:
    bundle = _bundle(tmp_path, content)
    with pytest.raises(ConfigError, match=rf"^{bundle}/config.json: invalid JSON: "):
        spec.load_bundle(str(bundle))


def test_load_bundle_reports_the_json_path(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(FULL))
    doc["process"]["args"] = []
    bundle = _bundle(tmp_path, json.dumps(doc))
    with pytest.raises(ConfigError) as info:
        spec.load_bundle(str(bundle))
    assert str(info.value) == f"{bundle}/config.json: process.args: must be a non-empty array"


def test_load_bundle_runs_the_semantic_checks(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(FULL))
    doc["linux"]["namespaces"].append({"type": "pid"})
    bundle = _bundle(tmp_path, json.dumps(doc))
    with pytest.raises(ConfigError, match=r"linux.namespaces\[3\].type: \"pid\" is listed twice"):
        spec.load_bundle(str(bundle))
