"""The policy's write rules as a Landlock ruleset: enforced by the kernel on the inode it
actually uses, so the tracer's check-then-use races (a symlink swapped, a path buffer rewritten
by another thread) cannot widen what is writable.

What Landlock covers here: writing and truncating files, creating every kind of node, removing
files and directories, renaming and linking (REFER). What it does not: chmod, chown, utimes,
xattrs; the tracer judges those. LANDLOCK_ACCESS_FS_IOCTL_DEV is not handled: device ioctls
that change data need a descriptor opened for writing, which WRITE_FILE already governs, while
handling it would break terminal ioctls on a freshly opened /dev/tty.

A path that does not exist when the ruleset is built, or that the process cannot reach, gets
no rule (Landlock needs an inode): creating it stays denied, stricter than the tracer, never
wider.

Any non-empty policy gets a domain, audit mode included, if only for Landlock's ptrace scoping:
a process in it cannot ptrace, open /proc/PID/mem of, or take descriptors from a process
outside it, such as its tracer, even as root. Where the policy leaves nothing for Landlock to
restrict (network-only rules, audit mode) the domain handles one right and grants it on "/"
(_scoping_only). A rule is on an inode, and Landlock walks from the file used up to the root of
the mount namespace whatever the process's root, so that grant reaches every mount of the tree,
files named through /proc/self/fd or a descriptor opened before, a chroot, a mount namespace of
the process's own. What it cannot reach are mounts detached from the tree (lazily unmounted,
open_tree clones), where that right alone is refused. And a domain that handles any file-system
right refuses the mount calls themselves (mount, umount, move_mount, pivot_root), audit mode
included.

allowed-port is enforced the same way for TCP connect (ABI 4): a port rule applies to every
INET destination, loopback included, exactly what Landlock's port rules express. Addresses
(netmasks, no-outbound-network) and UDP have no Landlock rule: the tracer alone judges them.
"""

from __future__ import annotations

import errno
import os
import stat

from .. import kernel
from ..container import paths
from ..errors import warn
from .model import Policy

# include/uapi/linux/landlock.h
ACCESS_FS_WRITE_FILE = 1 << 1
ACCESS_FS_REMOVE_DIR = 1 << 4
ACCESS_FS_REMOVE_FILE = 1 << 5
ACCESS_FS_MAKE_CHAR = 1 << 6
ACCESS_FS_MAKE_DIR = 1 << 7
ACCESS_FS_MAKE_REG = 1 << 8
ACCESS_FS_MAKE_SOCK = 1 << 9
ACCESS_FS_MAKE_FIFO = 1 << 10
ACCESS_FS_MAKE_BLOCK = 1 << 11
ACCESS_FS_MAKE_SYM = 1 << 12
ACCESS_FS_REFER = 1 << 13      # ABI 2
ACCESS_FS_TRUNCATE = 1 << 14   # ABI 3
ACCESS_NET_CONNECT_TCP = 1 << 1  # ABI 4

_WRITE_ABI1 = (ACCESS_FS_WRITE_FILE | ACCESS_FS_REMOVE_DIR | ACCESS_FS_REMOVE_FILE
               | ACCESS_FS_MAKE_CHAR | ACCESS_FS_MAKE_DIR | ACCESS_FS_MAKE_REG
               | ACCESS_FS_MAKE_SOCK | ACCESS_FS_MAKE_FIFO | ACCESS_FS_MAKE_BLOCK
               | ACCESS_FS_MAKE_SYM)
# the rights that make sense on a file (not a directory) as a rule's parent
_FILE_RIGHTS = ACCESS_FS_WRITE_FILE | ACCESS_FS_TRUNCATE


def _scoping_only(abi_version: int) -> int:
    """The right a domain wanted for its ptrace scoping alone handles, granted on "/": REFER
    (ABI 2) governs nothing but moving a file to another directory, which a domain that does
    not handle it refuses outright (EXDEV) even where every other right is granted; ABI 1 has
    no REFER (every such domain refuses those moves) and MAKE_BLOCK is the least used right."""
    return ACCESS_FS_REFER if abi_version >= 2 else ACCESS_FS_MAKE_BLOCK


def abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is absent or disabled."""
    try:
        return kernel.landlock_abi_version()
    except OSError:
        return 0


def write_access(abi_version: int) -> int:
    """Every write-type filesystem right the ABI knows (best effort: older ABIs know fewer)."""
    if abi_version < 1:
        return 0
    rights = _WRITE_ABI1
    if abi_version >= 2:
        rights |= ACCESS_FS_REFER
    if abi_version >= 3:
        rights |= ACCESS_FS_TRUNCATE
    return rights


def restrict_self(policy: Policy, root: str = "/") -> None:
    """Put the calling process (and what it execs) in a Landlock domain: writes only under
    allow-write, TCP connections only to allowed ports, and in every case no ptrace access
    (ptrace, /proc/PID/mem, pidfd_getfd, process_vm_writev) to processes outside the domain,
    the tracer above all.

    Call after no_new_privs is set, or while holding CAP_SYS_ADMIN. `root` is where the
    policy's paths live (the container's view: "/" once inside it). No-op for an empty policy.
    In audit mode the domain restricts no access: the tracer observes the rules, the domain
    only scopes ptrace. Without Landlock, a warning (none in audit mode, which enforces
    nothing): the tracer still judges every call.
    """
    if policy.is_empty:
        return
    version = abi()
    if version == 0:
        if not policy.audit:
            warn("Landlock is not available: the tracer alone judges writes and ports")
        return
    enforce = not policy.audit
    if not enforce and version < 2:
        # every ABI 1 domain refuses moving a file to another directory (no REFER right):
        # audit mode, which must let the process run as it would, installs none there (and
        # so has no ptrace scoping on such a kernel)
        return
    handled_fs = write_access(version) if policy.restricts_writes and enforce else 0
    handled_net = ACCESS_NET_CONNECT_TCP if policy.ports and version >= 4 and enforce else 0
    grants: list[tuple[str, int]] = [(path, handled_fs) for path in policy.allow_write]
    if not (handled_fs or handled_net):
        # network-only rules and audit mode still need the domain for its ptrace scoping (a
        # root process could otherwise rewrite the tracer through /proc/TRACER/mem or take its
        # descriptors with pidfd_getfd); a domain must handle some right: one granted on "/",
        # so nothing else changes
        handled_fs = _scoping_only(version)
        grants = [("/", handled_fs)]
    ruleset = kernel.landlock_create_ruleset(handled_fs, handled_net)
    try:
        for path, rights in grants:
            _add_rule(ruleset, rights, root, path)
        for port in policy.ports if handled_net else ():
            kernel.landlock_add_net_port(ruleset, handled_net, port)
        kernel.landlock_restrict_self(ruleset)
    finally:
        os.close(ruleset)


def _add_rule(ruleset: int, handled: int, root: str, path: str) -> None:
    try:
        fd = _open_path(root, path)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.ELOOP):
            return  # nothing to grant on (out of reach, or a link): see the module doc
        raise
    try:
        allowed = handled if stat.S_ISDIR(os.fstat(fd).st_mode) else handled & _FILE_RIGHTS
        if allowed:  # the kernel refuses an empty grant
            kernel.landlock_add_path_beneath(ruleset, allowed, fd)
    finally:
        os.close(fd)


def _open_path(root: str, path: str) -> int:
    # no symlink on the way: a link planted at an allow-write path must not widen the rule
    # beyond what the tracer judges (it resolves, and denies, the link's target)
    return paths.open_under(root, path, resolve=kernel.RESOLVE_NO_SYMLINKS)
