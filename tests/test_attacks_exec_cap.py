"""Capabilities `exec` adds against the destination rules (known gap 10, third bullet).

`exec --cap CAP_NET_ADMIN` (runc's flag), or `exec --process FILE` whose process lists it (podman
exec --privileged / --cap-add), gave a process of a container whose bundle did not grant it the
network administrator's power over the container's network namespace. With it an nftables DNAT
rule sends a datagram the process addresses to 127.0.0.1 (allowed: the cgroup programs and the
tracer judge that address and pass it) to 192.0.2.1 (forbidden), rewritten by the kernel after
every check. The judge is the peer of the attack suite (tests/attacks/harness.py), in the
network namespace the test made, which watches 192.0.2.1. exec now refuses such a process
unless the bundle granted the capability (confinement.refused_capabilities).

The DNAT is set by the host's own `nft`, bound read-only into the container and started through
its dynamic loader (the busybox root has neither nft nor its libraries).

`CAP_NET_RAW` stays allowed: what it adds (raw and packet sockets, the routing socket options) is
refused by the policy's filter under destination rules, which the last test shows with the
attacks that need it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from attacks.harness import (
    ALLOWED_PEER,
    CONTAINER_BIN,
    CONTAINER_TREE,
    FORBIDDEN_PEER,
    NET_POLICY,
    PORT,
    ContainerRunner,
    HostRunner,
    Peer,
    Tree,
    peer_netns,
    running_container,
)

from conftest import needs_root

pytestmark = [needs_root, pytest.mark.e2e]

HOST_USR = "/run/host-usr"  # the host's /usr, read-only, for nft and its libraries
LIBS = f"{HOST_USR}/lib/x86_64-linux-gnu"
NFT = f"{LIBS}/ld-linux-x86-64.so.2 --library-path {LIBS} {HOST_USR}/sbin/nft"
DNAT = ("table ip exec_cap {\n chain out {\n  type nat hook output priority -100;\n"
        f"  ip daddr {ALLOWED_PEER} udp dport {PORT} dnat to {FORBIDDEN_PEER}\n }}\n}}\n")
RULES = "dnat.nft"  # in the tree, which the container sees at CONTAINER_TREE
# set the DNAT, then send a datagram to the allowed peer: "attack udp_sendto" is its payload
ATTACK = (f"{NFT} -f {CONTAINER_TREE}/{RULES} && echo dnat-set; "
          f"{CONTAINER_BIN}/net udp_sendto {ALLOWED_PEER} {PORT}")
PROCESS = {"args": ["sh", "-c", ATTACK], "cwd": "/", "env": ["PATH=/bin:/usr/bin"],
           "user": {"uid": 0, "gid": 0}}


class NftRunner(ContainerRunner):
    """The attack suite's container, with the host's /usr bound read-only at HOST_USR."""

    def __init__(self, *args, grant: tuple[str, ...] = (), **kw) -> None:
        super().__init__(*args, **kw)
        self.grant = grant

    def bundle(self, program: str, args: list[str], policy) -> Path:
        bundle = super().bundle(program, args, policy)
        path = bundle / "config.json"
        config = json.loads(path.read_text())
        config["mounts"].append({"destination": HOST_USR, "type": "bind", "source": "/usr",
                                 "options": ["rbind", "ro"]})
        for caps in config["process"]["capabilities"].values():
            caps.extend(self.grant)
        path.write_text(json.dumps(config))
        return bundle


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Peer]:
    with peer_netns(tmp_path) as p:
        yield p


def tree_with_rules(tmp_path: Path) -> Tree:
    tree = Tree.make(tmp_path)
    (tree / RULES).write_text(DNAT)
    return tree


def exec_attack(runtime, cid: str, how: str, tmp_path: Path):
    if how == "cap":
        return runtime("exec", "--cap", "CAP_NET_ADMIN", cid, "sh", "-c", ATTACK)
    path = tmp_path / "process.json"
    caps = ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"]
    path.write_text(json.dumps({**PROCESS, "capabilities": {
        k: caps for k in ("bounding", "effective", "permitted")}}))
    return runtime("exec", "--process", str(path), cid)


def test_the_dnat_reaches_the_forbidden_peer_where_the_bundle_grants_net_admin(
        runtime, make_bundle, peer: Peer, tmp_path: Path) -> None:
    """The attack works here: with CAP_NET_ADMIN granted by the bundle (the container's own
    choice, which exec keeps honouring), the allowed address's datagram arrives at the
    forbidden peer. Without this the refusals below would prove nothing."""
    host = HostRunner(Tree.make(tmp_path), peer)
    host.run("net", "udp_sendto", ALLOWED_PEER, str(PORT), policy=None)
    assert peer.received(ALLOWED_PEER, "udp_sendto") and not peer.received(FORBIDDEN_PEER)
    runner = NftRunner(tree_with_rules(tmp_path), runtime, make_bundle, peer,
                       grant=("CAP_NET_ADMIN",))
    with running_container(runtime, runner, NET_POLICY) as cid:
        r = runtime("exec", cid, "sh", "-c", ATTACK)
        assert "dnat-set" in r.stdout, (r.stdout, r.stderr)
        assert peer.received(FORBIDDEN_PEER, "udp_sendto"), (r.stdout, r.stderr)


@pytest.mark.parametrize("how", ["cap", "process"])
def test_exec_cannot_add_net_admin_against_the_destination_rules(
        runtime, make_bundle, peer: Peer, tmp_path: Path, how: str) -> None:
    runner = NftRunner(tree_with_rules(tmp_path), runtime, make_bundle, peer)
    with running_container(runtime, runner, NET_POLICY) as cid:
        r = exec_attack(runtime, cid, how, tmp_path)
        got = peer.received(FORBIDDEN_PEER)
        assert not got, f"BYPASS (exec {how}): the forbidden peer received {got}\n" \
            f"{r.stdout}\n{r.stderr}"
        assert r.returncode != 0 and "CAP_NET_ADMIN" in r.stderr, (r.stdout, r.stderr)
        assert "dnat-set" not in r.stdout, r.stdout


@pytest.mark.parametrize("attack", ["raw_hdrincl", "packet", "source_route"])
def test_net_raw_added_by_exec_stays_within_the_destination_rules(
        runtime, make_bundle, peer: Peer, tmp_path: Path, attack: str) -> None:
    """CAP_NET_RAW's own powers (raw and packet sockets, a source route set with
    setsockopt(IP_OPTIONS)) are what the filter refuses under destination rules: exec may
    add it. Each attack reaches the forbidden peer without a policy (on the host)."""
    args = [attack, FORBIDDEN_PEER, str(PORT), *([ALLOWED_PEER] if attack == "source_route"
                                                 else [])]
    host = HostRunner(Tree.make(tmp_path), peer)
    out = host.run("net", *args, policy=None)
    assert peer.received(FORBIDDEN_PEER), f"the attack does not work without a policy:\n{out}"
    peer.record.write_text("")
    runner = NftRunner(Tree.make(tmp_path), runtime, make_bundle, peer)
    with running_container(runtime, runner, NET_POLICY) as cid:
        r = runtime("exec", "--cap", "CAP_NET_RAW", cid, f"{CONTAINER_BIN}/net", *args)
        assert "attack-start:" in r.stdout, (r.stdout, r.stderr)
        got = peer.received(FORBIDDEN_PEER)
        assert not got, f"BYPASS (exec --cap CAP_NET_RAW): {attack}: {got}\n{r.stdout}"
