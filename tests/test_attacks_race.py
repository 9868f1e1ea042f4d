"""Time-of-check/time-of-use races, each hammering for RACE_SECONDS (SECFILT_RACE_SECONDS, 2 by
default): the path buffer rewritten by a thread, by another process through shared memory or
process_vm_writev, the cwd changed by a sibling thread, a symlink swapped by another process, the
path of a chmod (which Landlock does not cover), openat2's flags under plain read-only, and the
socket address rewritten by a thread.  A tracer that reads the argument, decides, and lets the
kernel read it again loses these; what closes them is enforcement inside the kernel (Landlock) or
a tracer that performs the call itself.  Marked `race` (`-m "not race"` skips them)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from attacks.harness import (
    ALLOWED_PEER,
    CONTAINER_BIN,
    FORBIDDEN_PEER,
    MODES,
    NET_MODES,
    NET_POLICY,
    PORT,
    ContainerRunner,
    HostRunner,
    Peer,
    Tree,
    peer_netns,
    runner_for,
    running_container,
)

from conftest import needs_root

pytestmark = [needs_root, pytest.mark.race]

RACE_SECONDS = os.environ.get("SECFILT_RACE_SECONDS", "2")
CGROUP2_ROOT = "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") \
    else "/sys/fs/cgroup"


# The flipped names are one byte apart ('/' against '-'): race.c rewrites that byte alone, so
# the buffer always holds one whole name, never a torn one. allowed-not is outside allow-write
# (which is judged on whole components), allowed/not inside it.
FLIPPED = {"x": ("allowed/not/x", "allowed-not/x"),
           "victim": ("allowed/not/victim", "allowed-not/victim")}


def race_args(kind: str, path) -> list[str]:
    if kind in ("buf", "shm", "vmwrite"):
        return [kind, RACE_SECONDS, *map(path, FLIPPED["x"])]
    if kind == "cwd":
        return [kind, RACE_SECONDS, path("allowed"), path("forbidden"), "x"]
    if kind == "chmod":
        return [kind, RACE_SECONDS, *map(path, FLIPPED["victim"])]
    if kind == "how":
        return [kind, RACE_SECONDS, path("forbidden/x")]
    return [kind, RACE_SECONDS, path("allowed/l"), path("allowed/sub"), path("forbidden"), "x"]


def changed(kind: str, tree: Tree) -> bool:
    if kind == "chmod":
        return (tree / FLIPPED["victim"][1]).stat().st_mode & 0o777 == 0o600
    if kind in ("buf", "shm", "vmwrite"):
        return (tree / FLIPPED["x"][1]).exists()
    return (tree / "forbidden/x").exists()


def make_tree(tmp_path: Path) -> Tree:
    tree = Tree.make(tmp_path)
    (tree / "allowed/sub").mkdir()
    (tree / "allowed/not").mkdir()
    for name in FLIPPED["victim"]:  # chmod's files, neither 0600 yet
        (tree / name).write_text("victim\n")
        (tree / name).chmod(0o644)
    return tree


# chmod (metadata: no Landlock right) is stopped by the read-only mounts, the container's and
# secfilt's own (policy.mounts)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["buf", "shm", "vmwrite", "cwd", "symlink", "chmod", "how"])
def test_path_race(kind: str, mode: str, tmp_path: Path, request) -> None:
    host = HostRunner(make_tree(tmp_path))
    out = host.run("race", *race_args(kind, host.path), policy=None)
    assert out.claimed and changed(kind, host.tree), \
        f"the race does not work without a policy:\n{out}"
    runner = runner_for(mode, make_tree(tmp_path), request)
    # openat2's flags are only read by the tracer under plain read-only
    policy = {"read-only": True} if kind == "how" else runner.write_policy()
    out = runner.run("race", *race_args(kind, runner.path), policy=policy)
    assert not changed(kind, runner.tree), f"BYPASS ({mode}): race {kind}\n{out}"


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Peer]:
    with peer_netns(tmp_path) as p:
        yield p


class NoCgroupRunner(HostRunner):
    """secfilt run by root where it cannot make a cgroup (its cgroup2 mount read-only, as in
    a container): the supervisor must take over from the cgroup programs."""

    def argv(self, program: str, args: list[str], policy) -> list[str]:
        inner = super().argv(program, args, policy)
        script = f'mount -o remount,bind,ro {CGROUP2_ROOT} && exec "$@"'
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *inner]


# containers and root's secfilt: cgroup programs; a user's secfilt, or root's where no cgroup
# can be made: the supervisor
SOCKADDR_MODES = [*NET_MODES, "secfilt-no-cgroup"]


@pytest.mark.parametrize("mode", SOCKADDR_MODES)
def test_fd_swap_race(mode: str, peer: Peer, tmp_path: Path, request) -> None:
    """A thread swaps descriptor 50 between a unix and an INET datagram socket while the main
    thread sends to the forbidden peer through it: whoever checks the socket and then lets
    the kernel run the call may have looked at the other one. The cgroup programs judge the
    kernel's own send (containers, root's secfilt); where the supervisor holds the rules
    (secfilt run by a user, or where no cgroup can be made) performs such a call itself when
    the caller has other threads (gap 10)."""
    _race_reaches_nothing(mode, peer, tmp_path, request,
                          ("fd_swap", FORBIDDEN_PEER, str(PORT), RACE_SECONDS))


@pytest.mark.parametrize("mode", SOCKADDR_MODES)
def test_fd_swap_race_from_a_process_sharing_the_table(mode: str, peer: Peer, tmp_path: Path,
                                                      request) -> None:
    """The same swap from a process made with clone(CLONE_FILES): the sender is the one
    thread of its group, whose calls on a unix socket the supervisor lets the kernel run. The
    filter refuses a descriptor table shared beyond a thread group where a supervisor holds the
    rules."""
    out = _race_reaches_nothing(mode, peer, tmp_path, request,
                                ("fd_swap_proc", FORBIDDEN_PEER, str(PORT), RACE_SECONDS))
    if mode in ("secfilt-user", "secfilt-no-cgroup"):
        assert "clone(CLONE_FILES): blocked" in out.stdout, str(out)


def _race_reaches_nothing(mode: str, peer: Peer, tmp_path: Path, request,
                          args: tuple[str, ...]):
    """`net ARGS` reaches the forbidden peer without a policy and not under NET_POLICY, each
    run on a fresh tree; the second run's outcome."""
    def runner():
        tree = Tree.make(tmp_path)
        if mode == "secfilt-no-cgroup":
            return NoCgroupRunner(tree, peer)
        return runner_for(mode, tree, request, peer)

    out = runner().run("net", *args, policy=None)
    assert peer.received(FORBIDDEN_PEER), f"the race does not work without a policy:\n{out}"
    peer.record.write_text("")
    out = runner().run("net", *args, policy=NET_POLICY)
    got = peer.received(FORBIDDEN_PEER)
    assert not got, f"BYPASS ({mode}): {len(got)} datagrams reached the forbidden peer\n{out}"
    return out


@pytest.mark.parametrize("mode", SOCKADDR_MODES)
def test_sockaddr_race(mode: str, peer: Peer, tmp_path: Path, request) -> None:
    out = _race_reaches_nothing(mode, peer, tmp_path, request,
                                ("race", FORBIDDEN_PEER, str(PORT), ALLOWED_PEER, RACE_SECONDS))
    assert peer.received(ALLOWED_PEER), f"not one datagram reached the allowed peer:\n{out}"


# a socket the destination rules refuse (policy.filter: socket_rules), which the baseline can
# make: a packet socket needs CAP_NET_RAW, which root's secfilt has and a container has not;
# a vsock socket needs no privilege (but a kernel with vsock)
RACED_SOCKETS = {"secfilt": (17, 2), "container": (40, 1)}  # (AF_PACKET, SOCK_DGRAM), AF_VSOCK


@pytest.mark.parametrize("mode", MODES)
def test_socket_family_race_through_i386_socketcall(mode: str, tmp_path: Path, request) -> None:
    """socketcall(SOCKET)'s family and type are in memory, where BPF cannot see them: the
    tracer judged its copy and the kernel read the block again, which a thread had rewritten
    to a family the filter refuses for the direct call (a packet socket sends past every
    destination check). The tracer now makes the allowed call the direct one, with what it
    judged in the registers."""
    family, type_ = RACED_SOCKETS[mode]
    args = ("int80", "socket_race", str(family), str(type_), RACE_SECONDS)
    out = runner_for(mode, Tree.make(tmp_path), request).run("entry", *args, policy=None)
    if out.returncode != 0 and mode == "container":
        pytest.skip(f"no vsock socket here to race for:\n{out}")
    assert out.returncode == 0, f"the race does not work without a policy:\n{out}"
    out = runner_for(mode, Tree.make(tmp_path), request).run("entry", *args,
                                                             policy=NET_POLICY)
    assert "socket_race: blocked" in out.stdout, f"BYPASS ({mode}):\n{out}"
    assert "refused" in out.stdout and " 0 refused" not in out.stdout, str(out)
    # the rewritten call returns to a process whose registers are as int 0x80 leaves them
    out = runner_for(mode, Tree.make(tmp_path), request).run(
        "entry", "int80", "socketcall_regs", "x", policy=NET_POLICY)
    assert out.returncode == 0, f"socketcall changed the caller's registers:\n{out}"


# The kernel's half of the destination rules is a set of programs on a cgroup (the container's,
# or the one secfilt makes for its command). A process that could write another cgroup's
# cgroup.procs would leave them behind: here the container can write the host's cgroup2 root (a
# bundle that binds it writable, as a privileged engine might), and secfilt's command is root.
CONTAINER_CGROUP2 = "/hostcg"


class WritableCgroupRunner(ContainerRunner):
    def bundle(self, program: str, args: list[str], policy) -> Path:
        bundle = super().bundle(program, args, policy)
        config = json.loads((bundle / "config.json").read_text())
        config["mounts"].append({"destination": CONTAINER_CGROUP2, "type": "bind",
                                 "source": CGROUP2_ROOT, "options": ["rbind", "rw"]})
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle


@pytest.mark.parametrize("mode", MODES)
def test_sockaddr_race_after_leaving_the_cgroup(mode: str, peer: Peer, tmp_path: Path,
                                                request) -> None:
    procs = f"{CGROUP2_ROOT if mode == 'secfilt' else CONTAINER_CGROUP2}/cgroup.procs"
    args = ("race", FORBIDDEN_PEER, str(PORT), ALLOWED_PEER, RACE_SECONDS, procs)

    def runner():
        tree = Tree.make(tmp_path)
        if mode == "secfilt":
            return HostRunner(tree, peer)
        return WritableCgroupRunner(tree, request.getfixturevalue("runtime"),
                                    request.getfixturevalue("make_bundle"), peer)

    out = runner().run("net", *args, policy=None)
    assert "escape: now in" in out.stdout, f"the move does not work without a policy:\n{out}"
    assert peer.received(FORBIDDEN_PEER), f"the race does not work without a policy:\n{out}"
    peer.record.write_text("")
    out = runner().run("net", *args, policy=NET_POLICY)
    got = peer.received(FORBIDDEN_PEER)
    assert not got, f"BYPASS ({mode}): {len(got)} datagrams reached the forbidden peer\n{out}"
    assert "escape: now in" not in out.stdout, f"left the cgroup ({mode}):\n{out}"


@pytest.mark.parametrize("policy", [True, False], ids=["policy", "baseline"])
def test_sockaddr_race_from_an_exec_process(policy: bool, peer: Peer, tmp_path: Path, runtime,
                                            make_bundle) -> None:
    """A process `exec` adds to a running container is in the container's cgroup, under its
    programs, like the init."""
    runner = ContainerRunner(Tree.make(tmp_path), runtime, make_bundle, peer)
    with running_container(runtime, runner, NET_POLICY if policy else None) as cid:
        r = runtime("exec", cid, f"{CONTAINER_BIN}/net", "race", FORBIDDEN_PEER, str(PORT),
                    ALLOWED_PEER, RACE_SECONDS)
        assert "attack-start" in r.stdout, f"the exec never ran: {r}"
        got = peer.received(FORBIDDEN_PEER)
        if policy:
            assert not got, f"BYPASS: exec'd process, {len(got)} datagrams\n{r}"
            assert peer.received(ALLOWED_PEER), f"nothing reached the allowed peer:\n{r}"
        else:
            assert got, f"the race does not work without a policy:\n{r}"
