"""policy.cgroup_net: the destination rules as cgroup sock_addr programs.

Pure: the emitted program, run in tests/ebpf.py's interpreter, agrees with decide.destination on
every address hypothesis finds (IPv4, IPv6, IPv4-mapped, at and around the netmasks' edges).
Kernel: the programs load and attach to a cgroup2 directory made here, and a process in it, with
no tracer at all, gets EPERM for forbidden destinations and through for allowed ones, by
connect (TCP and UDP), sendto and sendmsg, IPv4, IPv6 and IPv4-mapped, inside a network namespace
of its own (nothing leaves it)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from pathlib import Path

import ebpf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secfilt_runtime import kernel
from secfilt_runtime.policy import cgroup_net, decide
from secfilt_runtime.policy.model import Policy
from secfilt_runtime.policy.sockaddr import AF_INET, AF_INET6, Destination

from conftest import needs_root

# --- pure: the program against decide.destination --------------------------------------------


def verdict(policy: Policy, address: IPv4Address | IPv6Address, port: int) -> bool:
    program = cgroup_net.build(policy, address.version)
    return ebpf.run(program, ebpf.context(address, port)) == 1


def decided(policy: Policy, address: IPv4Address | IPv6Address, port: int) -> bool:
    family = AF_INET if address.version == 4 else AF_INET6
    dest = Destination(family, address, port, 16 if family == AF_INET else 28, inet=True)
    return decide.destination(policy, dest).allowed


v4_nets = st.builds(lambda a, p: IPv4Network((a, p), strict=False),
                    st.integers(0, 2**32 - 1), st.integers(0, 32))
v6_nets = st.builds(lambda a, p: IPv6Network((a, p), strict=False),
                    st.integers(0, 2**128 - 1), st.integers(0, 128))
nets = st.one_of(v4_nets, v6_nets)
policies = st.builds(
    Policy,
    no_outbound_network=st.booleans(),
    netmasks=st.lists(nets, max_size=4).map(tuple),
    ports=st.lists(st.integers(1, 65535), max_size=3).map(tuple),
    nameservers=st.lists(nets, max_size=2).map(tuple),
)


@st.composite
def near(draw, policy: Policy) -> IPv4Address | IPv6Address:
    """An address at, inside or just outside one of the policy's networks, or anywhere."""
    pool = [*policy.netmasks, *policy.nameservers, *cgroup_net.LOOPBACK]
    choice = draw(st.integers(0, 3))
    if choice == 0 or not pool:
        return draw(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)))
    net = draw(st.sampled_from(pool))
    edge = draw(st.sampled_from([net.network_address, net.broadcast_address]))
    delta = draw(st.integers(-1, 1))
    value = (int(edge) + delta) % (2 ** edge.max_prefixlen)
    address = type(edge)(value)
    if choice == 3 and address.version == 4:  # the same, IPv4-mapped
        return IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed)
    return address


@settings(max_examples=400, deadline=None)
@given(data=st.data(), policy=policies)
def test_program_agrees_with_decide(data, policy: Policy) -> None:
    if not policy.restricts_destinations:
        policy = Policy(no_outbound_network=True, netmasks=policy.netmasks)
    address = data.draw(near(policy))
    port = data.draw(st.one_of(st.sampled_from([*policy.ports, 53, 1]), st.integers(0, 65535)))
    assert verdict(policy, address, port) == decided(policy, address, port), \
        f"{policy} {address} {port}"


@pytest.mark.parametrize(("policy", "address", "port", "allowed"), [
    (Policy(no_outbound_network=True), "127.0.0.1", 80, True),
    (Policy(no_outbound_network=True), "127.255.0.9", 1, True),
    (Policy(no_outbound_network=True), "192.0.2.1", 80, False),
    (Policy(no_outbound_network=True), "::1", 80, True),
    (Policy(no_outbound_network=True), "::ffff:127.0.0.1", 80, True),
    (Policy(no_outbound_network=True), "::ffff:192.0.2.1", 80, False),
    (Policy(no_outbound_network=True), "2001:db8::1", 80, False),
    (Policy(no_outbound_network=True, nameservers=(ip_network("192.0.2.53/32"),)),
     "192.0.2.53", 53, True),
    (Policy(no_outbound_network=True, nameservers=(ip_network("192.0.2.53/32"),)),
     "192.0.2.53", 54, False),
    (Policy(netmasks=(ip_network("198.51.100.0/24"),)), "198.51.100.200", 9, True),
    (Policy(netmasks=(ip_network("198.51.100.0/24"),)), "198.51.101.1", 9, False),
    (Policy(netmasks=(ip_network("198.51.100.0/24"),)), "::ffff:198.51.100.7", 9, True),
    (Policy(netmasks=(ip_network("198.51.100.0/24"),)), "2001:db8::1", 9, False),
    (Policy(netmasks=(ip_network("2001:db8::/33"),)), "2001:db8:7fff::1", 9, True),
    (Policy(netmasks=(ip_network("2001:db8::/33"),)), "2001:db8:8000::1", 9, False),
    (Policy(ports=(443,)), "192.0.2.1", 443, True),
    (Policy(ports=(443,)), "192.0.2.1", 444, False),
    (Policy(ports=(443,)), "2001:db8::1", 443, True),
    (Policy(netmasks=(ip_network("0.0.0.0/0"),)), "203.0.113.9", 1, True),
    (Policy(netmasks=(ip_network("0.0.0.0/0"),)), "2001:db8::1", 1, False),
])
def test_program_examples(policy: Policy, address: str, port: int, allowed: bool) -> None:
    from ipaddress import ip_address

    addr = ip_address(address)
    assert decided(policy, addr, port) == allowed  # the reference itself, for the reader
    assert verdict(policy, addr, port) == allowed


def test_the_bytes_are_the_program() -> None:
    policy = Policy(no_outbound_network=True, netmasks=(ip_network("10.0.0.0/8"),
                                                        ip_network("2001:db8::/48")),
                    ports=(22, 443), nameservers=(ip_network("192.0.2.53/32"),))
    for family in (4, 6):
        program = cgroup_net.build(policy, family)
        assert ebpf.encoded_matches(program)
        assert len(program.encode()) < 4096 * 8  # the verifier's limit for unprivileged


def test_audit_and_write_only_policies_get_no_programs() -> None:
    assert not cgroup_net.applies(Policy(read_only=True))
    assert not cgroup_net.applies(Policy(no_outbound_network=True, mode="audit"))
    assert cgroup_net.applies(Policy(ports=(1,)))


# --- the kernel -----------------------------------------------------------------------------

UNIFIED = Path("/sys/fs/cgroup/unified")
CGROUP2 = UNIFIED if UNIFIED.is_dir() else Path("/sys/fs/cgroup")

PROBE = textwrap.dedent("""
    import errno, os, socket, sys
    procs, = sys.argv[1:]
    with open(procs, "w") as f:
        f.write(str(os.getpid()))
    os.system("ip link set lo up; ip addr add 192.0.2.1/32 dev lo; "
              "ip addr add 198.51.100.1/32 dev lo; ip addr add 2001:db8::1/128 dev lo nodad")
    listeners = []
    for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        for typ in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(fam, typ)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, 4000))
            if typ == socket.SOCK_STREAM:
                s.listen()
            listeners.append(s)
    def attempt(how, fam, host):
        s = socket.socket(fam, socket.SOCK_STREAM if how == "tcp" else socket.SOCK_DGRAM)
        try:
            if how in ("tcp", "udpconnect"):
                s.connect((host, 4000))
            elif how == "sendto":
                s.sendto(b"x", (host, 4000))
            elif how == "route":  # a loose source route through 192.0.2.1, per datagram
                route = bytes([0x83, 7, 4, 192, 0, 2, 1, 1])
                s.sendmsg([b"x"], [(socket.IPPROTO_IP, 7, route)], 0, (host, 4000))
            else:
                s.sendmsg([b"x"], [], 0, (host, 4000))
            return "ok"
        except OSError as e:
            return errno.errorcode[e.errno]
        finally:
            s.close()
    for line in sys.stdin:
        how, fam, host = line.split()
        print(how, fam, host, attempt(how, int(fam), host), flush=True)
""")

A4, A6 = AF_INET, AF_INET6
CASES = [(how, fam, host) for how in ("tcp", "udpconnect", "sendto", "sendmsg")
         for fam, host in ((A4, "198.51.100.1"), (A4, "192.0.2.1"), (A6, "::ffff:198.51.100.1"),
                           (A6, "::ffff:192.0.2.1"), (A6, "2001:db8::1"), (A4, "127.0.0.1"))]
CASES.append(("route", A4, "127.0.0.1"))  # IP_RETOPTS: the egress program's


@pytest.fixture
def cgroup2() -> Iterator[Path]:
    path = CGROUP2 / f"secfilt-test-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        for _ in range(100):
            try:
                path.rmdir()
                break
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
                import time
                time.sleep(0.05)


def probe(cgroup: Path) -> dict[tuple[str, int, str], str]:
    stdin = "".join(f"{how} {fam} {host}\n" for how, fam, host in CASES)
    p = subprocess.run(["unshare", "-n", sys.executable, "-c", PROBE,
                        str(cgroup / "cgroup.procs")], input=stdin, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = {}
    for line in p.stdout.splitlines():
        how, fam, host, result = line.split()
        out[(how, int(fam), host)] = result
    return out


@needs_root
def test_kernel_refuses_what_the_policy_forbids(cgroup2: Path) -> None:
    assert cgroup_net.available()
    without = probe(cgroup2)
    assert set(without.values()) == {"ok"}, f"the probe fails without programs: {without}"
    policy = Policy(netmasks=(ip_network("198.51.100.0/24"), ip_network("127.0.0.0/8")))
    cgroup_net.attach(str(cgroup2), policy)
    fd = os.open(cgroup2, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert all(kernel.bpf_prog_count(fd, hook) == 1
                   for hook in (*cgroup_net.HOOKS, cgroup_net.INET_EGRESS))
    finally:
        os.close(fd)
    got = probe(cgroup2)
    for (how, fam, host), result in got.items():
        allowed = ("198.51.100.1" in host or host == "127.0.0.1") and how != "route"
        assert result == ("ok" if allowed else "EPERM"), (how, fam, host, result)


@needs_root
def test_kernel_no_outbound_network_and_ports(cgroup2: Path) -> None:
    cgroup_net.attach(str(cgroup2), Policy(no_outbound_network=True, ports=(4001,)))
    got = probe(cgroup2)
    assert set(got.values()) == {"EPERM"}, got  # port 4000 is not allowed, loopback or not


@needs_root
def test_secfilt_gives_its_command_a_cgroup_and_removes_it() -> None:
    base = Path(cgroup_net.own_cgroup2_dir() or "/nonexistent")
    before = set(base.glob("secfilt-*"))
    # a background child too: secfilt waits for every traced process, then removes the cgroup
    script = "cat /proc/self/cgroup; (sleep 1 >/dev/null 2>&1 &); echo up"
    p = subprocess.run([sys.executable, "-m", "secfilt_runtime.secfilt_cli",
                        "--no-outbound-network", "sh", "-c", script],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "up" in p.stdout, p
    # rooted at its own cgroup: the host's hierarchy above it is out of its view
    assert "0::/\n" in p.stdout, p.stdout
    assert set(base.glob("secfilt-*")) == before, "secfilt left its cgroup behind"


@needs_root
def test_fork_into_starts_the_child_in_the_cgroup(cgroup2: Path) -> None:
    """clone3 CLONE_INTO_CGROUP: the child's first look at /proc/self/cgroup already shows the
    command's cgroup (no cgroup.procs write moved it), and the parent stays where it was."""
    with open("/proc/self/cgroup") as f:
        before = f.read()
    r, w = os.pipe()
    pid = cgroup_net.CommandCgroup(str(cgroup2)).fork_into()
    if pid is None:
        os.close(r)
        os.close(w)
        pytest.skip("no clone3 CLONE_INTO_CGROUP here")
    if pid == 0:
        try:
            with open("/proc/self/cgroup") as f:
                os.write(w, f.read().encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        seen = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert f"0::/{cgroup2.relative_to(CGROUP2)}\n" in seen, seen
    with open("/proc/self/cgroup") as f:
        assert f.read() == before


@needs_root
def test_a_killed_secfilt_s_cgroup_is_removed_by_the_next_one() -> None:
    """secfilt killed with SIGKILL cannot remove its command's cgroup: the next secfilt with
    destination rules removes an empty secfilt-PID whose PID is gone, and keeps one whose PID
    lives."""
    base = Path(cgroup_net.own_cgroup2_dir() or "/nonexistent")
    if not base.is_dir():
        pytest.skip("no cgroup2 directory of our own")
    dead_pid = _a_dead_pid()
    stale, young = base / f"secfilt-{dead_pid}", base / f"secfilt-{_a_dead_pid()}"
    alive, mine = base / f"secfilt-{os.getpid()}-not", base / f"secfilt-{os.getpid()}"
    for d in (stale, young, alive, mine):
        d.mkdir()
    old = time.time() - 2 * cgroup_net.STALE_AFTER_S
    for d in (stale, alive, mine):  # each kept one is kept by one rule alone
        os.utime(d, (old, old))
    try:
        p = subprocess.run([sys.executable, "-m", "secfilt_runtime.secfilt_cli",
                            "--no-outbound-network", "true"], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr
        assert not stale.exists()
        # just made (its owner may not have forked yet); not a pid; a live pid (this test's)
        assert young.exists() and alive.exists() and mine.exists()
    finally:
        for d in (stale, young, alive, mine):
            if d.exists():
                d.rmdir()


def _a_dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid
