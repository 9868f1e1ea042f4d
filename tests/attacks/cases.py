"""The attacks on the write rules as data: which program and operation, aimed where, and how the
host tells that the forbidden change happened.  Paths are relative to the attack's Tree;
`runner.path` turns them into what the attack sees (host path or container path)."""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from attacks.harness import ContainerRunner, HostRunner, Tree

VICTIM = "forbidden/victim"
OWN = "allowed/own"
PAST = 1000000  # the time every utime* attack sets


def created(rel: str) -> Callable[[Tree], bool]:
    return lambda t: os.path.lexists(t / rel)


def gone(rel: str) -> Callable[[Tree], bool]:
    return lambda t: not os.path.lexists(t / rel)


def content_changed(rel: str = VICTIM) -> Callable[[Tree], bool]:
    return lambda t: (t / rel).read_bytes() != b"victim\n"


def mode_changed(t: Tree) -> bool:
    return (t / VICTIM).stat().st_mode & 0o777 != 0o644


def owner_changed(t: Tree) -> bool:
    return (t / VICTIM).stat().st_uid != 0


def mtime_changed(t: Tree) -> bool:
    return int((t / VICTIM).stat().st_mtime) == PAST


def xattr_set(t: Tree) -> bool:
    return "trusted.attack" in os.listxattr(t / VICTIM)


def xattr_removed(t: Tree) -> bool:
    return "trusted.victim" not in os.listxattr(t / VICTIM)


FS_IOC_GETFLAGS, FS_NODUMP_FL = 0x80086601, 0x40


def flags_changed(t: Tree) -> bool:
    with open(t / VICTIM, "rb") as f:
        buf = fcntl.ioctl(f.fileno(), FS_IOC_GETFLAGS, b"\0" * 8)
    return bool(struct.unpack("q", buf)[0] & FS_NODUMP_FL)


def core_not_in_cwd() -> str | None:
    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    if pattern.startswith(("|", "/")) or "/" in pattern:
        return f"core_pattern {pattern!r} does not write into the cwd"
    if Path("/proc/sys/kernel/core_uses_pid").read_text().strip() != "0":
        return "core_uses_pid is set: the core file's name is not known"
    return None


@dataclass(frozen=True)
class FsCase:
    name: str
    op: str
    # each argument: "@rel" is a tree path, anything else is passed as it is
    args: tuple[str, ...]
    changed: Callable[[Tree], bool]
    setup: Callable[[Tree], None] | None = None
    # needs a capability the test bundle's process lacks (acct, open_by_handle, chroot)
    host_only: bool = False
    program: str = "fsops"
    # why the attack cannot work on this machine at all (then it is skipped), or None
    unavailable: Callable[[], str | None] | None = None

    def argv(self, path: Callable[[str], str]) -> list[str]:
        return [self.op, *(path(a[1:]) if a.startswith("@") else a for a in self.args)]


def _symlink(link: str, target: str) -> Callable[[Tree], None]:
    return lambda t: os.symlink(target, t / link)


NEW = "@forbidden/new"

# every system call that changes a file system, each aimed at the forbidden side
SYSCALLS: tuple[FsCase, ...] = (
    FsCase("open(O_CREAT)", "open_creat", (NEW,), created("forbidden/new")),
    FsCase("creat", "creat", (NEW,), created("forbidden/new")),
    FsCase("openat(O_CREAT)", "openat_creat", ("@forbidden", "new"), created("forbidden/new")),
    FsCase("openat2(O_CREAT)", "openat2_creat", (NEW,), created("forbidden/new")),
    FsCase("open(O_TRUNC)", "open_trunc", ("@" + VICTIM,), content_changed()),
    FsCase("open(O_APPEND)", "open_append", ("@" + VICTIM,), content_changed()),
    FsCase("open(O_RDWR)", "open_rdwr", ("@" + VICTIM,), content_changed()),
    FsCase("mkdir", "mkdir", (NEW,), created("forbidden/new")),
    FsCase("mkdirat", "mkdirat", ("@forbidden", "new"), created("forbidden/new")),
    FsCase("mknod", "mknod", (NEW,), created("forbidden/new")),
    FsCase("mknodat", "mknodat", ("@forbidden", "new"), created("forbidden/new")),
    FsCase("unlink", "unlink", ("@" + VICTIM,), gone(VICTIM)),
    FsCase("unlinkat", "unlinkat", ("@forbidden", "victim"), gone(VICTIM)),
    FsCase("rmdir", "rmdir", ("@forbidden/dir",), gone("forbidden/dir")),
    FsCase("unlinkat(AT_REMOVEDIR)", "unlinkat_rmdir", ("@forbidden", "dir"),
           gone("forbidden/dir")),
    FsCase("rename out of", "rename", ("@" + VICTIM, "@allowed/stolen"), gone(VICTIM)),
    FsCase("rename into", "rename", ("@" + OWN, NEW), created("forbidden/new")),
    FsCase("renameat out of", "renameat", ("@" + VICTIM, "@allowed/stolen"), gone(VICTIM)),
    FsCase("renameat2 into", "renameat2", ("@" + OWN, NEW), created("forbidden/new")),
    FsCase("renameat2(RENAME_EXCHANGE)", "exchange", ("@" + OWN, "@" + VICTIM),
           content_changed()),
    FsCase("link", "link", ("@" + OWN, NEW), created("forbidden/new")),
    FsCase("linkat", "linkat", ("@" + OWN, NEW), created("forbidden/new")),
    FsCase("symlink", "symlink", ("/etc/passwd", NEW), created("forbidden/new")),
    FsCase("symlinkat", "symlinkat", ("/etc/passwd", NEW), created("forbidden/new")),
    FsCase("chmod", "chmod", ("@" + VICTIM,), mode_changed),
    FsCase("fchmodat", "fchmodat", ("@" + VICTIM,), mode_changed),
    FsCase("fchmodat2", "fchmodat2", ("@" + VICTIM,), mode_changed),
    FsCase("fchmod (read-only fd)", "fchmod", ("@" + VICTIM,), mode_changed),
    FsCase("chown", "chown", ("@" + VICTIM,), owner_changed),
    FsCase("lchown", "lchown", ("@" + VICTIM,), owner_changed),
    FsCase("fchownat", "fchownat", ("@" + VICTIM,), owner_changed),
    FsCase("fchown (read-only fd)", "fchown", ("@" + VICTIM,), owner_changed),
    FsCase("truncate", "truncate", ("@" + VICTIM,), content_changed()),
    FsCase("utime", "utime", ("@" + VICTIM,), mtime_changed),
    FsCase("utimes", "utimes", ("@" + VICTIM,), mtime_changed),
    FsCase("futimesat", "futimesat", ("@" + VICTIM,), mtime_changed),
    FsCase("utimensat", "utimensat", ("@" + VICTIM,), mtime_changed),
    FsCase("futimens (read-only fd)", "futimens", ("@" + VICTIM,), mtime_changed),
    FsCase("setxattr", "setxattr", ("@" + VICTIM,), xattr_set),
    FsCase("lsetxattr", "lsetxattr", ("@" + VICTIM,), xattr_set),
    FsCase("fsetxattr (read-only fd)", "fsetxattr", ("@" + VICTIM,), xattr_set),
    FsCase("removexattr", "removexattr", ("@" + VICTIM,), xattr_removed),
    FsCase("lremovexattr", "lremovexattr", ("@" + VICTIM,), xattr_removed),
    FsCase("fremovexattr (read-only fd)", "fremovexattr", ("@" + VICTIM,), xattr_removed),
    FsCase("ioctl(FS_IOC_SETFLAGS) (read-only fd)", "setflags", ("@" + VICTIM,), flags_changed),
    FsCase("core dump (written by the kernel)", "core_dump", ("@forbidden",),
           created("forbidden/core"), unavailable=core_not_in_cwd),
    FsCase("open_by_handle_at", "open_by_handle", ("@" + VICTIM, "@forbidden"),
           content_changed(), host_only=True),
    FsCase("acct", "acct", ("@" + VICTIM,), content_changed(), host_only=True),
    FsCase("mount --bind over the allowed dir", "mount_bind",
           ("@forbidden", "@allowed", "new"), created("forbidden/new")),
    FsCase("O_TMPFILE linked in", "tmpfile_link", ("@allowed", NEW), created("forbidden/new")),
)

# the same few calls through every way of naming the forbidden side from the allowed one
PATH_TRICKS: tuple[FsCase, ...] = (
    FsCase("..", "open_creat", ("@allowed/../forbidden/new",), created("forbidden/new")),
    FsCase("symlinked dir", "open_creat", ("@allowed/link/new",), created("forbidden/new"),
           setup=_symlink("allowed/link", "../forbidden")),
    FsCase("symlinked file", "open_append", ("@allowed/flink",), content_changed(),
           setup=_symlink("allowed/flink", "../forbidden/victim")),
    FsCase("dangling symlink created through", "open_creat", ("@allowed/dangling",),
           created("forbidden/new"), setup=_symlink("allowed/dangling", "../forbidden/new")),
    FsCase("dirfd", "openat_creat", ("@forbidden", "new"), created("forbidden/new")),
    FsCase("relative to the cwd", "cwd_creat", ("@forbidden", "new"), created("forbidden/new")),
    FsCase("/proc/self/cwd", "proc_cwd_creat", ("@forbidden", "new"), created("forbidden/new")),
    FsCase("/proc/self/root", "proc_root_creat", (NEW,), created("forbidden/new")),
    FsCase("/proc/self/fd/N/ (dirfd)", "proc_fd_dir_creat", ("@forbidden", "new"),
           created("forbidden/new")),
    FsCase("/proc/self/fd/N reopened for writing", "proc_fd_reopen", ("@" + VICTIM,),
           content_changed()),
    FsCase("prefix of the allowed dir", "open_creat", ("@allowed-not/new",),
           created("allowed-not/new")),
    FsCase("prefix of the allowed dir, mkdir", "mkdir", ("@allowed-not/new",),
           created("allowed-not/new")),
    FsCase("hard link into the allowed dir, written", "hardlink_write",
           ("@" + VICTIM, "@allowed/hl"), content_changed()),
    FsCase("chroot", "chroot_creat", ("@", "/forbidden/new"), created("forbidden/new"),
           host_only=True),
    # a chroot where the allowed directory's name leads somewhere forbidden: a tracer judging
    # the name in the process's own root would allow a chmod (which Landlock does not cover)
    FsCase("chroot, then chmod through the allowed name", "chroot_chmod",
           ("@forbidden/jail", "@allowed/victim"), lambda t: _jailed(t).stat().st_mode & 0o777
           != 0o644, setup=lambda t: _make_jailed(t), host_only=True),
)


def _jailed(t: Tree) -> Path:
    return t / "forbidden/jail" / str(t / "allowed/victim").lstrip("/")


def _make_jailed(t: Tree) -> None:
    victim = _jailed(t)
    victim.parent.mkdir(parents=True)
    victim.write_text("victim\n")
    victim.chmod(0o644)

# what the policy must still let through: a policy that breaks everything proves nothing
ALLOWED_CONTROLS: tuple[FsCase, ...] = (
    FsCase("create in the allowed dir", "open_creat", ("@allowed/new",), created("allowed/new")),
    FsCase("mkdir in the allowed dir", "mkdir", ("@allowed/d",), created("allowed/d")),
    FsCase("rename in the allowed dir", "rename", ("@" + OWN, "@allowed/own2"),
           created("allowed/own2")),
    FsCase("unlink in the allowed dir", "unlink", ("@" + OWN,), gone(OWN)),
)


def prepared(base: Path, case: FsCase) -> Tree:
    tree = Tree.make(base)
    if case.setup:
        case.setup(tree)
    return tree


def baseline(base: Path, case: FsCase) -> None:
    """Without the policy the attack must change the forbidden side, or it proves nothing."""
    reason = case.unavailable() if case.unavailable else None
    if reason:
        pytest.skip(reason)
    host = HostRunner(prepared(base, case))
    out = host.run(case.program, *case.argv(host.path), policy=None)
    assert out.claimed and case.changed(host.tree), \
        f"the attack does not work even without a policy:\n{out}"


def enforced(runner: HostRunner | ContainerRunner, case: FsCase) -> None:
    """Under the write policy the host must show no change."""
    out = runner.run(case.program, *case.argv(runner.path), policy=runner.write_policy())
    assert not case.changed(runner.tree), f"BYPASS ({runner.mode}): {case.name}\n{out}"
    assert not out.claimed, f"the host shows no change, yet the attack claims success:\n{out}"
