"""The syscalls the secfilter policy checks, and how to read each one: the single table that
both the BPF filter builder (policy.filter) and the tracer (tracer.judge) read, so the two can
never disagree on what a call does.

Numbers are kept here for x86_64 and i386 (the `int 0x80` entry an x86_64 process can use):
the tracer dispatches on (arch, nr) from PTRACE_GET_SYSCALL_INFO. NUMBERS also names the calls
the filter refuses without the tracer ever judging them (chroot, setns, bpf): the tracer checks
a refusal's data against the filter's own rule for the call (tracer.refusals).
Some calls are newer than the installed libseccomp (setxattrat, removexattrat, file_setattr,
open_tree_attr): the filter names them all, the compiler skips what libseccomp cannot resolve
(reported by seccomp.compiler as `skipped`).
"""

from __future__ import annotations

from ..records import record

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
AT_SYMLINK_FOLLOW = 0x400
AT_EMPTY_PATH = 0x1000

O_ACCMODE = 0o3
O_CREAT = 0o100
O_EXCL = 0o200
O_TRUNC = 0o1000
O_NOFOLLOW = 0o400000
O_TMPFILE_MASK = 0o20000000 | 0o200000  # __O_TMPFILE | O_DIRECTORY

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
CLONE_UNTRACED = 0x00800000
CLONE_FILES = 0x00000400
CLONE_THREAD = 0x00010000
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 8
PR_SET_SECCOMP = 22
FS_IOC_SETFLAGS = 0x40086602
FS_IOC32_SETFLAGS = 0x40046602
FS_IOC_FSSETXATTR = 0x401C5820
# terminal ioctls that push input into a terminal the sandbox shares with its starter
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
TTY_INJECTION = (TIOCSTI, TIOCLINUX)
# /dev/userfaultfd's ioctl that returns a userfaultfd: the userfaultfd call by another door
USERFAULTFD_IOC_NEW = 0xAA00  # _IO(0xAA, 0x00)
# Options that choose a packet's first hop, which is then where it goes, not (only) the
# sockaddr's host: source routes, and IPv6's explicit next hop (CAP_NET_RAW).
# (level, optname) for setsockopt, (level, type) for sendmsg control messages -> name
IPPROTO_IP, IPPROTO_IPV6 = 0, 41
ROUTING_SOCKOPTS = {
    (IPPROTO_IP, 4): "IP_OPTIONS",              # LSRR/SSRR source routes
    (IPPROTO_IPV6, 57): "IPV6_RTHDR",           # segment routing
    (IPPROTO_IPV6, 5): "IPV6_2292RTHDR",
    (IPPROTO_IPV6, 6): "IPV6_2292PKTOPTIONS",   # a whole option block, routing header included
    (IPPROTO_IPV6, 9): "IPV6_NEXTHOP",
}
ROUTING_CMSGS = {
    (IPPROTO_IP, 7): "IP_RETOPTS",              # ip_cmsg_send takes IP options from it
    (IPPROTO_IPV6, 57): "IPV6_RTHDR",
    (IPPROTO_IPV6, 5): "IPV6_2292RTHDR",
    (IPPROTO_IPV6, 9): "IPV6_NEXTHOP",
}


class _Constant:
    """An enum.Enum member's face (name, value, repr, str) without `enum`, which the tracer's
    start would import for these two classes alone (~2 ms, issue 7). One instance per name,
    compared with `is` as enum members are."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self.name}: {self.value!r}>"

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


def _constants(cls: type[_Constant]) -> type[_Constant]:
    """Each upper-case class attribute becomes an instance of the class (as enum.Enum does)."""
    for name, value in list(vars(cls).items()):
        if name.isupper():
            setattr(cls, name, cls(name, value))
    return cls


@_constants
class Group(_Constant):
    __slots__ = ()
    WRITE = "write"          # changes the file system: judged on its path(s) or fd
    OPEN = "open"            # an open: a write only when its flags say so
    MOUNT = "mount"          # changes the mount tree: denied outright when writes are restricted
    BIND = "bind"            # bind(): an AF_UNIX path creates a socket file
    NET = "net"              # carries a destination address
    SOCKET = "socket"        # socket(): family and type are integers, decided in BPF
    HARDEN = "harden"        # would let the process escape the tracer or the checks


@_constants
class Follow(_Constant):
    __slots__ = ()
    YES = "yes"              # the last symlink is followed
    NO = "no"                # never followed (unlink, rename, symlink's new name, lchown, ...)
    UNLESS_FLAG = "unless"   # followed unless flags & bit (AT_SYMLINK_NOFOLLOW, O_NOFOLLOW)
    IF_FLAG = "if"           # followed only if flags & bit (linkat's AT_SYMLINK_FOLLOW)


@record(frozen=True)
class PathArg:
    """One path operand: `path` and `dirfd` are argument indexes (dirfd None: relative to
    the cwd, as the non-*at calls are)."""

    path: int
    dirfd: int | None = None
    follow: Follow = Follow.YES
    flags: int | None = None       # argument index holding the flags that decide following
    bit: int = 0                   # the flag bit Follow.UNLESS_FLAG / IF_FLAG looks at
    empty_bit: int = 0             # AT_EMPTY_PATH: "" names the dirfd itself
    null_is_fd: bool = False       # utimensat/futimesat: a NULL path names the dirfd itself
    creates: bool = False          # fails with EEXIST when the name exists


@record(frozen=True)
class Syscall:
    name: str
    group: Group
    paths: tuple[PathArg, ...] = ()
    fd: int | None = None          # an fd operand whose file is changed (fchmod, ftruncate, ...)
    open_flags: int | None = None  # argument index of open(2)-style flags
    how: int | None = None         # openat2: argument index of struct open_how
    sockaddr: tuple[int, int] | None = None   # (pointer index, length index)
    msghdr: int | None = None      # sendmsg: argument index of struct msghdr
    mmsghdr: tuple[int, int] | None = None    # sendmmsg: (vector index, count index)
    sockopt: tuple[int, int] | None = None    # setsockopt: (level index, optname index)
    # only these values of an argument make the call checked: (index, values) (ioctl requests)
    only_if: tuple[int, tuple[int, ...]] | None = None


def _p(path: int, dirfd: int | None = None, follow: Follow = Follow.YES, **kw: object
       ) -> PathArg:
    return PathArg(path, dirfd, follow, **kw)  # type: ignore[arg-type]


_NO, _UNLESS, _IF = Follow.NO, Follow.UNLESS_FLAG, Follow.IF_FLAG
_W = Group.WRITE

# name -> (x86_64 number, i386 number); None where the architecture has no such call
NUMBERS: dict[str, tuple[int | None, int | None]] = {
    "open": (2, 5), "openat": (257, 295), "openat2": (437, 437), "creat": (85, 8),
    "mkdir": (83, 39), "mkdirat": (258, 296), "mknod": (133, 14), "mknodat": (259, 297),
    "unlink": (87, 10), "unlinkat": (263, 301), "rmdir": (84, 40),
    "rename": (82, 38), "renameat": (264, 302), "renameat2": (316, 353),
    "link": (86, 9), "linkat": (265, 303), "symlink": (88, 83), "symlinkat": (266, 304),
    "chmod": (90, 15), "fchmod": (91, 94), "fchmodat": (268, 306), "fchmodat2": (452, 452),
    "chown": (92, 182), "fchown": (93, 95), "fchownat": (260, 298), "lchown": (94, 16),
    "chown32": (None, 212), "fchown32": (None, 207), "lchown32": (None, 198),
    "truncate": (76, 92), "truncate64": (None, 193), "ftruncate": (77, 93),
    "ftruncate64": (None, 194), "fallocate": (285, 324),
    "utime": (132, 30), "utimes": (235, 271), "futimesat": (261, 299),
    "utimensat": (280, 320), "utimensat_time64": (None, 412),
    "setxattr": (188, 226), "lsetxattr": (189, 227), "fsetxattr": (190, 228),
    "removexattr": (197, 235), "lremovexattr": (198, 236), "fremovexattr": (199, 237),
    "setxattrat": (463, 463), "removexattrat": (466, 466), "file_setattr": (469, 469),
    "mount": (165, 21), "umount": (None, 22), "umount2": (166, 52), "move_mount": (429, 429),
    "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433),
    "open_tree": (428, 428), "open_tree_attr": (467, 467), "mount_setattr": (442, 442),
    "pivot_root": (155, 217), "acct": (163, 51), "swapon": (167, 87), "swapoff": (168, 115),
    "quotactl": (179, 131), "quotactl_fd": (443, 443),
    "bind": (49, 361), "connect": (42, 362), "sendto": (44, 369), "sendmsg": (46, 370),
    "sendmmsg": (307, 345), "socket": (41, 359), "socketcall": (None, 102),
    "ptrace": (101, 26), "clone": (56, 120), "clone3": (435, 435), "seccomp": (317, 354),
    "prctl": (157, 172), "process_vm_writev": (311, 348), "open_by_handle_at": (304, 342),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427), "ioctl": (16, 54), "userfaultfd": (323, 374),
    "setsockopt": (54, 366), "chroot": (161, 61), "setns": (308, 346), "bpf": (321, 357),
}

_TABLE: tuple[Syscall, ...] = (
    # opens: a write when O_WRONLY/O_RDWR/O_CREAT/O_TRUNC (BPF checks the flags register)
    Syscall("open", Group.OPEN, (_p(0, None, _UNLESS, flags=1, bit=O_NOFOLLOW),), open_flags=1),
    Syscall("openat", Group.OPEN, (_p(1, 0, _UNLESS, flags=2, bit=O_NOFOLLOW),), open_flags=2),
    # openat2's flags are in a struct BPF cannot read: always traced, the tracer reads open_how
    Syscall("openat2", Group.OPEN, (_p(1, 0, _UNLESS, bit=O_NOFOLLOW),), how=2),
    Syscall("creat", _W, (_p(0),)),
    Syscall("mkdir", _W, (_p(0, None, _NO, creates=True),)),
    Syscall("mkdirat", _W, (_p(1, 0, _NO, creates=True),)),
    Syscall("mknod", _W, (_p(0, None, _NO, creates=True),)),
    Syscall("mknodat", _W, (_p(1, 0, _NO, creates=True),)),
    Syscall("unlink", _W, (_p(0, None, _NO),)),
    Syscall("unlinkat", _W, (_p(1, 0, _NO),)),
    Syscall("rmdir", _W, (_p(0, None, _NO),)),
    Syscall("rename", _W, (_p(0, None, _NO), _p(1, None, _NO))),
    Syscall("renameat", _W, (_p(1, 0, _NO), _p(3, 2, _NO))),
    Syscall("renameat2", _W, (_p(1, 0, _NO), _p(3, 2, _NO))),
    # link: the existing name is followed only with AT_SYMLINK_FOLLOW; the new one never
    Syscall("link", _W, (_p(0, None, _NO), _p(1, None, _NO, creates=True))),
    Syscall("linkat", _W, (_p(1, 0, _IF, flags=4, bit=AT_SYMLINK_FOLLOW, empty_bit=AT_EMPTY_PATH),
                           _p(3, 2, _NO, creates=True))),
    # symlink: only the new name is a file system operand; the target is free text
    Syscall("symlink", _W, (_p(1, None, _NO, creates=True),)),
    Syscall("symlinkat", _W, (_p(2, 1, _NO, creates=True),)),
    Syscall("chmod", _W, (_p(0),)),
    Syscall("fchmod", _W, fd=0),
    Syscall("fchmodat", _W, (_p(1, 0),)),
    Syscall("fchmodat2", _W, (_p(1, 0, _UNLESS, flags=3, bit=AT_SYMLINK_NOFOLLOW,
                                 empty_bit=AT_EMPTY_PATH),)),
    Syscall("chown", _W, (_p(0),)),
    Syscall("chown32", _W, (_p(0),)),
    Syscall("fchown", _W, fd=0),
    Syscall("fchown32", _W, fd=0),
    Syscall("fchownat", _W, (_p(1, 0, _UNLESS, flags=4, bit=AT_SYMLINK_NOFOLLOW,
                                empty_bit=AT_EMPTY_PATH),)),
    Syscall("lchown", _W, (_p(0, None, _NO),)),
    Syscall("lchown32", _W, (_p(0, None, _NO),)),
    Syscall("truncate", _W, (_p(0),)),
    Syscall("truncate64", _W, (_p(0),)),
    Syscall("ftruncate", _W, fd=0),
    Syscall("ftruncate64", _W, fd=0),
    Syscall("fallocate", _W, fd=0),
    # chattr's ioctls change a file through a read-only descriptor
    Syscall("ioctl", _W, fd=0, only_if=(1, (FS_IOC_SETFLAGS, FS_IOC32_SETFLAGS,
                                                FS_IOC_FSSETXATTR))),
    Syscall("utime", _W, (_p(0),)),
    Syscall("utimes", _W, (_p(0),)),
    Syscall("futimesat", _W, (_p(1, 0, null_is_fd=True),)),
    Syscall("utimensat", _W, (_p(1, 0, _UNLESS, flags=3, bit=AT_SYMLINK_NOFOLLOW,
                                 empty_bit=AT_EMPTY_PATH, null_is_fd=True),)),
    Syscall("utimensat_time64", _W, (_p(1, 0, _UNLESS, flags=3, bit=AT_SYMLINK_NOFOLLOW,
                                        empty_bit=AT_EMPTY_PATH, null_is_fd=True),)),
    Syscall("setxattr", _W, (_p(0),)),
    Syscall("lsetxattr", _W, (_p(0, None, _NO),)),
    Syscall("fsetxattr", _W, fd=0),
    Syscall("removexattr", _W, (_p(0),)),
    Syscall("lremovexattr", _W, (_p(0, None, _NO),)),
    Syscall("fremovexattr", _W, fd=0),
    Syscall("setxattrat", _W, (_p(1, 0, _UNLESS, flags=2, bit=AT_SYMLINK_NOFOLLOW,
                                  empty_bit=AT_EMPTY_PATH),)),
    Syscall("removexattrat", _W, (_p(1, 0, _UNLESS, flags=2, bit=AT_SYMLINK_NOFOLLOW,
                                     empty_bit=AT_EMPTY_PATH),)),
    Syscall("file_setattr", _W, (_p(1, 0, _UNLESS, flags=4, bit=AT_SYMLINK_NOFOLLOW,
                                    empty_bit=AT_EMPTY_PATH),)),
    # the mount tree and other whole-system changes: never judged by path
    *(Syscall(n, Group.MOUNT) for n in (
        "mount", "umount", "umount2", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
        "open_tree", "open_tree_attr", "mount_setattr", "pivot_root", "acct", "swapon",
        "swapoff", "quotactl", "quotactl_fd")),
    Syscall("bind", Group.BIND, sockaddr=(1, 2)),
    Syscall("connect", Group.NET, sockaddr=(1, 2)),
    Syscall("sendto", Group.NET, sockaddr=(4, 5)),
    Syscall("sendmsg", Group.NET, msghdr=1),
    Syscall("sendmmsg", Group.NET, mmsghdr=(1, 2)),
    Syscall("setsockopt", Group.NET, sockopt=(1, 2)),
    Syscall("socket", Group.SOCKET),
    *(Syscall(n, Group.HARDEN) for n in (
        "ptrace", "clone", "clone3", "seccomp", "process_vm_writev",
        "open_by_handle_at", "io_uring_setup", "io_uring_enter", "io_uring_register",
        "userfaultfd")),
)

BY_NAME: dict[str, Syscall] = {s.name: s for s in _TABLE}

# i386 socketcall(2) sub-call numbers (<linux/net.h>) -> the direct call they stand for
SOCKETCALL = {1: "socket", 2: "bind", 3: "connect", 11: "sendto", 14: "setsockopt",
              16: "sendmsg", 20: "sendmmsg"}
SOCKETCALL_NARGS = {1: 3, 2: 3, 3: 3, 11: 6, 14: 5, 16: 3, 20: 4}


def names(group: Group) -> tuple[str, ...]:
    return tuple(s.name for s in _TABLE if s.group is group)


def _by_number(arch_index: int) -> dict[int, Syscall]:
    table: dict[int, Syscall] = {}
    for s in _TABLE:
        nr = NUMBERS[s.name][arch_index]
        if nr is not None:
            table[nr] = s
    return table


# (audit arch) -> nr -> Syscall: what the tracer looks a stop up in
BY_ARCH: dict[int, dict[int, Syscall]] = {
    AUDIT_ARCH_X86_64: _by_number(0),
    AUDIT_ARCH_I386: _by_number(1),
}
SOCKETCALL_NR_I386 = NUMBERS["socketcall"][1]


def open_is_write(flags: int) -> bool:
    """Whether open(2) flags can change the file system (the BPF rules test the same bits)."""
    return bool(flags & O_ACCMODE) or bool(flags & (O_CREAT | O_TRUNC))


def open_creates_exclusive(flags: int) -> bool:
    return flags & (O_CREAT | O_EXCL) == O_CREAT | O_EXCL


def follows(arg: PathArg, flags: int) -> bool:
    """Whether the kernel follows a symlink in the last component of this operand."""
    if arg.follow is Follow.YES:
        return True
    if arg.follow is Follow.NO:
        return False
    if arg.follow is Follow.UNLESS_FLAG:
        return not flags & arg.bit
    return bool(flags & arg.bit)


def _self_check() -> None:
    missing = [s.name for s in _TABLE if s.name not in NUMBERS]
    if missing:
        raise RuntimeError(f"syscalls without numbers: {missing}")


_self_check()
