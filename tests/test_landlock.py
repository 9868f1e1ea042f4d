"""policy.landlock for real: a forked child restricts itself, tries writes, reports errnos."""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from secfilt_runtime import kernel
from secfilt_runtime.policy import landlock
from secfilt_runtime.policy.model import Policy

pytestmark = pytest.mark.skipif(landlock.abi() < 3, reason="needs Landlock ABI 3 or later")

DENIED = {errno.EACCES, errno.EXDEV, errno.EPERM}

Ops = dict[str, Callable[[], object]]

# audit mode: every rule observed, none enforced
AUDIT_WRITES = Policy(read_only=True, allow_write=("/nonexistent-allowed",), ports=(1,),
                      mode="audit")


def in_restricted_child(policy: Policy, ops: Ops, root: str = "/") -> dict[str, int]:
    """Fork; the child sets no_new_privs, restricts itself, runs each op and reports 0 or the
    errno it got. Nothing of the restriction touches the test process."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
            landlock.restrict_self(policy, root)
            results = {}
            for name, op in ops.items():
                try:
                    op()
                    results[name] = 0
                except OSError as e:
                    results[name] = e.errno
            os.write(w, json.dumps(results).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    assert data, "the child failed before reporting"
    return json.loads(data)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for d in ("allowed", "allowed-not", "outside"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "existing").write_text("x")
    (tmp_path / "allowed" / "sub").mkdir()
    (tmp_path / "outside" / "dir").mkdir()
    return tmp_path


def write(path: Path) -> None:
    with open(path, "w") as f:
        f.write("y")


def test_writes_inside_allow_write_succeed(tree: Path) -> None:
    a = tree / "allowed"
    got = in_restricted_child(Policy(read_only=True, allow_write=(str(a),)), {
        "create": lambda: write(a / "new"),
        "create-deep": lambda: write(a / "sub" / "new"),
        "overwrite": lambda: write(a / "existing"),
        "truncate": lambda: os.truncate(a / "existing", 0),
        "mkdir": lambda: os.mkdir(a / "d"),
        "symlink": lambda: os.symlink("x", a / "l"),
        "fifo": lambda: os.mkfifo(a / "fifo"),
        "rename": lambda: os.rename(a / "new", a / "sub" / "moved"),
        "link": lambda: os.link(a / "existing", a / "sub" / "hard"),
        "unlink": lambda: os.unlink(a / "sub" / "hard"),
        "rmdir": lambda: os.rmdir(a / "d"),
    })
    assert got == dict.fromkeys(got, 0)


def test_writes_outside_allow_write_are_denied(tree: Path) -> None:
    a, o, n = tree / "allowed", tree / "outside", tree / "allowed-not"
    got = in_restricted_child(Policy(allow_write=(str(a),)), {
        "create": lambda: write(o / "new"),
        "sibling-prefix": lambda: write(n / "new"),  # /allowed never covers /allowed-not
        "overwrite": lambda: write(o / "existing"),
        "append": lambda: open(o / "existing", "a").close(),
        "truncate": lambda: os.truncate(o / "existing", 0),
        "mkdir": lambda: os.mkdir(o / "d"),
        "rmdir": lambda: os.rmdir(o / "dir"),
        "unlink": lambda: os.unlink(o / "existing"),
        "symlink": lambda: os.symlink("x", o / "l"),
        "fifo": lambda: os.mkfifo(o / "fifo"),
        "rename-out": lambda: os.rename(a / "existing", o / "stolen"),
        "rename-in": lambda: os.rename(o / "existing", a / "stolen"),
        "link-in": lambda: os.link(o / "existing", a / "hard"),
        "link-out": lambda: os.link(a / "existing", o / "hard"),
        "parent-of-allowed": lambda: write(tree / "new"),
    })
    assert all(e in DENIED for e in got.values()), got
    assert (o / "existing").read_text() == "x"
    assert (a / "existing").exists() and not (a / "stolen").exists()


def test_reads_are_not_restricted(tree: Path) -> None:
    o = tree / "outside"
    got = in_restricted_child(Policy(read_only=True), {
        "read": lambda: (o / "existing").read_text(),
        "list": lambda: os.listdir(o),
    })
    assert got == {"read": 0, "list": 0}


def test_read_only_without_allow_write_grants_nothing(tree: Path) -> None:
    got = in_restricted_child(Policy(read_only=True), {
        "create": lambda: write(tree / "allowed" / "new"),
        "tmp": lambda: write(Path("/tmp") / f"secfilt-landlock-{os.getpid()}"),
        "devnull": lambda: write(Path("/dev/null")),
    })
    assert all(e in DENIED for e in got.values()), got


def test_a_file_entry_allows_that_file_only(tree: Path) -> None:
    f = tree / "outside" / "existing"
    got = in_restricted_child(Policy(read_only=True, allow_write=(str(f), "/dev/null")), {
        "the-file": lambda: write(f),
        "devnull": lambda: write(Path("/dev/null")),
        "sibling": lambda: write(tree / "outside" / "new"),
    })
    assert got["the-file"] == 0 and got["devnull"] == 0
    assert got["sibling"] in DENIED


def test_symlink_swap_cannot_redirect_a_write_outside(tree: Path) -> None:
    """A link inside the writable tree that is made to point outside: the kernel judges the
    inode the write really reaches, so no path check can be raced."""
    a, o = tree / "allowed", tree / "outside"
    link = a / "link"
    link.symlink_to(a / "existing")

    def swap() -> None:
        os.symlink(o / "existing", a / "tmp-link")
        os.rename(a / "tmp-link", link)  # atomic replacement, allowed inside the tree

    got = in_restricted_child(Policy(allow_write=(str(a),)), {
        "through-link-before": lambda: write(link),
        "swap": swap,
        "through-link-after": lambda: write(link),
        "dir-link": lambda: os.symlink(o, a / "escape"),
        "through-dir-link": lambda: write(a / "escape" / "new"),
    })
    assert got["through-link-before"] == 0 and got["swap"] == 0 and got["dir-link"] == 0
    assert got["through-link-after"] in DENIED and got["through-dir-link"] in DENIED
    assert (o / "existing").read_text() == "x" and not (o / "new").exists()


def test_paths_are_taken_inside_root(tree: Path) -> None:
    """root= is the container's root: /allowed means <root>/allowed."""
    got = in_restricted_child(Policy(allow_write=("/allowed",)), {
        "inside": lambda: write(tree / "allowed" / "new"),
        "outside": lambda: write(tree / "outside" / "new"),
    }, root=str(tree))
    assert got["inside"] == 0 and got["outside"] in DENIED


def test_missing_allow_write_path_is_skipped_not_widened(tree: Path) -> None:
    got = in_restricted_child(Policy(allow_write=(str(tree / "absent"),)), {
        "create-it": lambda: os.mkdir(tree / "absent"),
        "elsewhere": lambda: write(tree / "outside" / "new"),
    })
    assert got["create-it"] in DENIED and got["elsewhere"] in DENIED


@pytest.fixture
def listeners() -> Iterator[dict[str, int]]:
    """Two TCP listeners on loopback: one on a port the policy allows, one it does not."""
    socks = {}
    for name in ("allowed", "other"):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        socks[name] = s
    yield {name: s.getsockname()[1] for name, s in socks.items()}
    for s in socks.values():
        s.close()


def tcp(port: int, family: int = socket.AF_INET) -> None:
    with socket.socket(family) as s:
        s.connect(("127.0.0.1" if family == socket.AF_INET else "::ffff:127.0.0.1", port))


@pytest.mark.skipif(landlock.abi() < 4, reason="needs Landlock ABI 4 (TCP ports)")
def test_allowed_port_is_enforced_for_tcp_connect(listeners: dict[str, int]) -> None:
    allowed, other = listeners["allowed"], listeners["other"]
    got = in_restricted_child(Policy(ports=(allowed,)), {
        "allowed": lambda: tcp(allowed),
        "allowed-v6-mapped": lambda: tcp(allowed, socket.AF_INET6),
        "other": lambda: tcp(other),
        "other-v6-mapped": lambda: tcp(other, socket.AF_INET6),
    })
    assert got["allowed"] == 0 and got["allowed-v6-mapped"] == 0
    assert got["other"] == errno.EACCES and got["other-v6-mapped"] == errno.EACCES


@pytest.mark.skipif(landlock.abi() < 4, reason="needs Landlock ABI 4 (TCP ports)")
def test_ports_and_writes_together(tree: Path, listeners: dict[str, int]) -> None:
    got = in_restricted_child(Policy(allow_write=(str(tree / "allowed"),),
                                     ports=(listeners["allowed"],)), {
        "write-in": lambda: write(tree / "allowed" / "new"),
        "write-out": lambda: write(tree / "outside" / "new"),
        "port-ok": lambda: tcp(listeners["allowed"]),
        "port-no": lambda: tcp(listeners["other"]),
    })
    assert got["write-in"] == 0 and got["port-ok"] == 0
    assert got["write-out"] in DENIED and got["port-no"] == errno.EACCES


def test_address_rules_alone_leave_tcp_alone(listeners: dict[str, int]) -> None:
    got = in_restricted_child(Policy(no_outbound_network=True), {
        "other": lambda: tcp(listeners["other"])})
    assert got == {"other": 0}


@pytest.mark.skipif(os.geteuid() != 0, reason="opening another process's memory needs root")
@pytest.mark.parametrize("policy", [Policy(no_outbound_network=True), Policy(read_only=True),
                                    Policy(mainstream_network_families=True), AUDIT_WRITES,
                                    Policy(no_outbound_network=True, mode="audit")])
def test_any_policy_keeps_the_process_off_its_parents_memory(policy: Policy) -> None:
    """The tracer is the parent under secfilt: as root, without a domain, the sandboxed process
    could rewrite it through /proc/PARENT/mem."""
    parent_mem = f"/proc/{os.getpid()}/mem"
    assert in_restricted_child(Policy(), {"mem": lambda: open(parent_mem, "r+b").close()}) == {
        "mem": 0}
    got = in_restricted_child(policy, {
        "mem": lambda: open(parent_mem, "r+b").close(),
        "parent-mem-read": lambda: open(parent_mem, "rb").close(),  # ptrace scoping, not RO
        "own-mem": lambda: open("/proc/self/mem", "rb").close(),
    })
    assert got == {"mem": errno.EACCES, "parent-mem-read": errno.EACCES, "own-mem": 0}


@pytest.mark.parametrize("policy", [AUDIT_WRITES, Policy(no_outbound_network=True), Policy()],
                         ids=["audit", "network-only", "empty"])
def test_a_domain_for_scoping_alone_restricts_no_file_system_access(
        tree: Path, policy: Policy, listeners: dict[str, int]) -> None:
    """Audit mode and network-only rules get a domain for its ptrace scoping alone: nothing the
    process can reach on the file system may change, through another mount, a descriptor
    opened before, /proc/self/fd, a chroot or a mount namespace of its own. (A rule on "/" is
    on its inode: Landlock walks up to the root of the mount namespace, whatever the process's
    root; only mounts detached from the tree and the mount calls themselves stay refused.)"""
    a, o = tree / "allowed", tree / "outside"
    (tree / "jail").mkdir()
    shm = Path("/dev/shm") / f"secfilt-landlock-{os.getpid()}"
    dirfd = os.open(o, os.O_RDONLY | os.O_DIRECTORY)  # opened before the domain
    ops: Ops = {
        "create": lambda: write(o / "new"),
        "truncate": lambda: os.truncate(o / "existing", 0),
        # moving to another directory needs LANDLOCK_ACCESS_FS_REFER, which no rule grants
        # unless the domain handles it
        "rename-across": lambda: os.rename(a / "existing", o / "moved"),
        "link-across": lambda: os.link(o / "moved", a / "hard"),
        "mkdir": lambda: os.mkdir(o / "d"),
        "other-mount": lambda: write(shm),
        "dirfd": lambda: os.close(os.open("by-dirfd", os.O_WRONLY | os.O_CREAT, dir_fd=dirfd)),
        "proc-self-fd": lambda: write(Path(f"/proc/self/fd/{dirfd}/by-proc")),
        "tcp": lambda: tcp(listeners["other"]),
    }
    if os.geteuid() == 0:
        def chroot_and_write() -> None:
            os.chroot(tree / "jail")
            write(Path("/in-jail"))

        ops["own-mount-namespace"] = lambda: (kernel.unshare(kernel.CLONE_NEWNS),
                                             write(o / "in-ns"))
        ops["chroot"] = chroot_and_write  # last: the ops after it would see the jail
    try:
        got = in_restricted_child(policy, ops)
    finally:
        os.close(dirfd)
        shm.unlink(missing_ok=True)
    assert got == dict.fromkeys(ops, 0), got
    assert (o / "by-proc").exists() and (a / "hard").exists()
    if os.geteuid() == 0:
        assert (tree / "jail" / "in-jail").exists()


def test_write_access_follows_the_abi() -> None:
    assert landlock.write_access(0) == 0
    assert not landlock.write_access(1) & (landlock.ACCESS_FS_REFER | landlock.ACCESS_FS_TRUNCATE)
    assert landlock.write_access(2) & landlock.ACCESS_FS_REFER
    assert landlock.write_access(7) & landlock.ACCESS_FS_TRUNCATE
    assert landlock.write_access(7) & landlock.ACCESS_FS_MAKE_SYM
