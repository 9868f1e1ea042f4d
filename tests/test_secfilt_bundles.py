"""The original secfilter's README examples as sample bundles (bundles/secfilter-*): each runs
with its org.secfilter.* annotations (denied as the README shows) and without them (the same
command works), in a network namespace the test builds and the container joins by path."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_secfilt import NETNS

from conftest import REPO, needs_root

pytestmark = [needs_root]


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[str]:
    """The path of a network namespace with the test hosts and a DNS server for ds9a.nl."""
    script = tmp_path / "netns.py"
    script.write_text(NETNS)
    env = dict(os.environ, PYTHONPATH=str(REPO / "runtime"))
    env.pop("NETNS_RESOLV", None)
    holder = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        yield f"/proc/{holder.pid}/ns/net"
    finally:
        holder.kill()
        holder.wait()


def sample(name: str, rootfs: Path, tmp_path: Path, netns: str, *,
           policy: bool = True) -> Path:
    config = json.loads((REPO / "bundles" / name / "config.json").read_text())
    config = copy.deepcopy(config)
    config["root"]["path"] = str(rootfs)
    if not policy:
        config["annotations"] = {k: v for k, v in config["annotations"].items()
                                 if not k.startswith("org.secfilter.")}
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.53\noptions timeout:1 attempts:1\n")
    for m in config["mounts"]:
        if m["destination"] == "/etc/resolv.conf":
            m["source"] = str(resolv)
    spaces = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
    config["linux"]["namespaces"] = [*spaces, {"type": "network", "path": netns}]
    bundle = tmp_path / f"{name}-{'policy' if policy else 'none'}"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


NAMES = ["secfilter-read-only", "secfilter-no-outbound-network", "secfilter-netmask",
         "secfilter-ssh-one-host"]


@pytest.mark.parametrize("name", NAMES)
def test_sample_bundle_is_valid(name: str) -> None:
    from secfilt_runtime import schema
    from secfilt_runtime.policy import parse

    config = json.loads((REPO / "bundles" / name / "config.json").read_text())
    schema.validate_config(config, name)
    policy = parse.from_annotations(config["annotations"], str(REPO / "bundles" / "busybox"))
    assert policy is not None and not policy.is_empty


def test_read_only(runtime, rootfs: Path, tmp_path: Path, netns: str) -> None:
    base = runtime.run(sample("secfilter-read-only", rootfs, tmp_path, netns, policy=False))
    assert base.returncode == 0 and base.stdout == "/dev/null is writable\n", base.stderr
    runtime.cid = f"t-{uuid.uuid4().hex[:12]}"  # a second container, an id of its own
    got = runtime.run(sample("secfilter-read-only", rootfs, tmp_path, netns))
    assert got.stdout == "/dev/null is writable\n"
    assert got.returncode != 0 and "b: Operation not permitted" in got.stderr, got.stderr


def test_no_outbound_network(runtime, rootfs: Path, tmp_path: Path, netns: str) -> None:
    name = "secfilter-no-outbound-network"
    base = runtime.run(sample(name, rootfs, tmp_path, netns, policy=False))
    assert "Connected to ds9a.nl" in base.stdout + base.stderr, base
    runtime.cid = f"t-{uuid.uuid4().hex[:12]}"  # a second container, an id of its own
    got = runtime.run(sample(name, rootfs, tmp_path, netns))
    assert got.returncode != 0 and "bad address 'ds9a.nl'" in got.stderr, got


def test_netmask(runtime, rootfs: Path, tmp_path: Path, netns: str) -> None:
    base = runtime.run(sample("secfilter-netmask", rootfs, tmp_path, netns, policy=False))
    assert base.stdout.count("Connected to") == 2, base
    runtime.cid = f"t-{uuid.uuid4().hex[:12]}"  # a second container, an id of its own
    got = runtime.run(sample("secfilter-netmask", rootfs, tmp_path, netns))
    assert "Connected to 192.168.1.2" in got.stdout, got
    assert "bad address 'ds9a.nl'" in got.stderr, got


def test_ssh_one_host(runtime, rootfs: Path, tmp_path: Path, netns: str) -> None:
    base = runtime.run(sample("secfilter-ssh-one-host", rootfs, tmp_path, netns, policy=False))
    assert base.stdout.count("Connected to") == 2, base
    runtime.cid = f"t-{uuid.uuid4().hex[:12]}"  # a second container, an id of its own
    got = runtime.run(sample("secfilter-ssh-one-host", rootfs, tmp_path, netns))
    assert "Connected to 82.94.213.34" in got.stdout, got
    assert "82.94.213.35" in got.stderr and "Operation not permitted" in got.stderr, got
