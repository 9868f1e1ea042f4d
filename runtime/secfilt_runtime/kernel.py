"""Every ctypes call and raw syscall of the runtime, in one place.

Functions raise OSError with errno and a short description, like the os module does, so callers
can add the file, field or path that makes the message useful. Only x86_64 syscall numbers are
needed for the raw calls that glibc 2.36 does not wrap.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct


def _load_libc() -> ctypes.CDLL:
    # find_library runs `ldconfig -p` in a subprocess: only when the usual name fails
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes.util import find_library  # imports subprocess: only when needed

        return ctypes.CDLL(find_library("c"), use_errno=True)


_libc = _load_libc()

_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "clone": 56, "capget": 125, "capset": 126, "openat2": 437,
               "mount_setattr": 442, "pidfd_open": 434, "pidfd_send_signal": 424,
               "close_range": 436, "ioprio_set": 251, "seccomp": 317, "pidfd_getfd": 438,
               "open_tree": 428, "move_mount": 429, "statx": 332, "clone3": 435,
               "keyctl": 250},
    "aarch64": {"pivot_root": 41, "clone": 220, "capget": 90, "capset": 91, "openat2": 437,
                "mount_setattr": 442, "pidfd_open": 434, "pidfd_send_signal": 424,
                "close_range": 436, "ioprio_set": 30, "seccomp": 277, "pidfd_getfd": 438,
                "open_tree": 428, "move_mount": 429, "statx": 291, "clone3": 435,
                "keyctl": 219},
}
_MACHINE = os.uname().machine  # platform.machine() is the same, for a 3 ms import
_NR = _SYSCALLS[_MACHINE]

# clone/unshare/setns flags
CLONE_FS = 0x00000200
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_PARENT = 0x00008000

NAMESPACE_FLAGS = {
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "mount": CLONE_NEWNS,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
    "time": CLONE_NEWTIME,
}

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000
MS_I_VERSION = 0x800000

# mount_setattr(2) attributes (struct mount_attr), for the recursive rro, rnosuid, ... options
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000
AT_RECURSIVE = 0x8000
AT_EMPTY_PATH = 0x1000

# statfs(2) f_type values
PROC_SUPER_MAGIC = 0x9FA0
CGROUP2_SUPER_MAGIC = 0x63677270

MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

# prctl(2) options
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# openat2 resolve flags
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _check(ret: int, what: str) -> int:
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _syscall(name: str, *args: object) -> int:
    _libc.syscall.restype = ctypes.c_long
    return _check(_libc.syscall(ctypes.c_long(_NR[name]), *args), name)


def _b(s: str | bytes | None) -> bytes | None:
    if s is None:
        return None
    return os.fsencode(s)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    ret = _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source or fstype or ''} on {target}: {os.strerror(err)}")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    _syscall("pivot_root", _b(new_root), _b(put_old))


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def clone_process(flags: int) -> int:
    """fork(2) with extra clone flags (CLONE_PARENT, CLONE_NEW*). Returns 0 in the child.

    The raw syscall bypasses Python's at-fork handlers, so call it only from a process with one
    thread that will exec or exit soon.
    """
    sigchld = 17
    return _syscall("clone", ctypes.c_ulong(flags | sigchld), None, None, None, ctypes.c_ulong(0))


CLONE_INTO_CGROUP = 0x200000000


class _CloneArgs(ctypes.Structure):
    # struct clone_args up to `cgroup` (CLONE_ARGS_SIZE_VER2)
    _fields_ = [("flags", ctypes.c_uint64), ("pidfd", ctypes.c_uint64),
                ("child_tid", ctypes.c_uint64), ("parent_tid", ctypes.c_uint64),
                ("exit_signal", ctypes.c_uint64), ("stack", ctypes.c_uint64),
                ("stack_size", ctypes.c_uint64), ("tls", ctypes.c_uint64),
                ("set_tid", ctypes.c_uint64), ("set_tid_size", ctypes.c_uint64),
                ("cgroup", ctypes.c_uint64)]


def clone_into_cgroup(cgroup_fd: int) -> int:
    """fork(2) straight into the cgroup2 directory `cgroup_fd` (clone3 CLONE_INTO_CGROUP):
    the child never runs elsewhere, and no cgroup.procs write moves it, which would wait for
    an RCU grace period (~10 ms here). Returns 0 in the child. Same caveat as clone_process:
    the raw syscall skips Python's and libc's at-fork handlers, so call it only from a process
    with one thread whose child will exec or exit soon."""
    args = _CloneArgs(flags=CLONE_INTO_CGROUP, exit_signal=17, cgroup=cgroup_fd)
    return _syscall("clone3", ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))


def sethostname(name: str) -> None:
    b = name.encode()
    _check(_libc.sethostname(b, len(b)), "sethostname")


def setdomainname(name: str) -> None:
    b = name.encode()
    _check(_libc.setdomainname(b, len(b)), "setdomainname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(
        _libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(arg4),
                    ctypes.c_ulong(arg5)),
        f"prctl({option})",
    )


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def capget(pid: int = 0) -> tuple[int, int, int]:
    """Return (effective, permitted, inheritable) as 64-bit masks."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_CapData * 2)()
    _syscall("capget", ctypes.byref(hdr), data)
    return tuple(data[0].__getattribute__(f) | (data[1].__getattribute__(f) << 32)
                 for f in ("effective", "permitted", "inheritable"))  # type: ignore[return-value]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        data[i].effective = (effective >> (32 * i)) & 0xFFFFFFFF
        data[i].permitted = (permitted >> (32 * i)) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
    _syscall("capset", ctypes.byref(hdr), data)


def statfs_type(path: str) -> int:
    """f_type of statfs(2): the filesystem's magic number (os.statvfs does not report it)."""
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    _check(_libc.statfs(_b(path), buf), f"statfs {path}")
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF  # f_type comes first


RLIM_INFINITY = 2**64 - 1


class _Rlimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_uint64), ("max", ctypes.c_uint64)]


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """setrlimit(2) with the kernel's errno (Python's resource module turns EPERM into a
    ValueError) and the full unsigned range (2**64-1 is infinity)."""
    lim = _Rlimit(soft, hard)
    _check(_libc.prlimit(0, resource, ctypes.byref(lim), None), "setrlimit")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    return _syscall("openat2", dirfd, _b(path), ctypes.byref(how), ctypes.sizeof(how))


class Openat2:
    """openat2(2) for a hot loop (the tracer): one open_how reused and every argument but the
    dirfd and the path built once as a ctypes object; the generic wrapper above costs about as
    much again as the syscall, and so do argtypes (each argument converted at every call).
    Returns the fd, or -errno (a missing name is an answer there, not an exception). One per
    thread."""

    def __init__(self) -> None:
        self._how = _OpenHow(0, 0, 0)
        self._how_ref = ctypes.byref(self._how)
        self._size = ctypes.c_size_t(ctypes.sizeof(self._how))
        # untyped, a function pointer of its own: the dirfd goes as a C int (what openat2
        # reads), the path as a char *, the rest as the objects built here
        self._fn = _libc["syscall"]
        self._fn.restype = ctypes.c_long
        self._nr = ctypes.c_long(_NR["openat2"])

    def __call__(self, dirfd: int, path: bytes, flags: int, resolve: int) -> int:
        how = self._how
        how.flags = flags | os.O_CLOEXEC
        how.resolve = resolve
        fd = self._fn(self._nr, dirfd, path, self._how_ref, self._size)
        return fd if fd >= 0 else -ctypes.get_errno()


STATX_MNT_ID_UNIQUE = 0x4000  # Linux 6.8: 64 bits, never reused (STATX_MNT_ID's are)
STATX_ATTR_MOUNT_ROOT = 0x2000
_STATX_SIZE = 256
# struct statx's stx_mask (0), stx_attributes (8), stx_attributes_mask (56), stx_mnt_id (144)
_STATX_FIELDS = struct.Struct("<I4xQ40xQ80xQ")


class MountOf:
    """The mount a file is on, by statx(2): (unique mount id, whether the file is that mount's
    root), or None where the kernel gives no unique id (before 6.8) or the call fails. Built
    for a hot loop as Openat2 is: one buffer, untyped arguments. One per thread."""

    def __init__(self) -> None:
        self._buf = ctypes.create_string_buffer(_STATX_SIZE)
        self._fn = _libc["syscall"]
        self._fn.restype = ctypes.c_long
        self._nr = ctypes.c_long(_NR["statx"])
        self._mask = ctypes.c_uint(STATX_MNT_ID_UNIQUE)

    def __call__(self, dirfd: int, path: bytes, flags: int) -> tuple[int, bool] | None:
        buf = self._buf
        if self._fn(self._nr, dirfd, path, flags, self._mask, buf) < 0:
            return None
        mask, attributes, known, mnt_id = _STATX_FIELDS.unpack_from(buf)
        if not mask & STATX_MNT_ID_UNIQUE:
            return None
        return mnt_id, bool(attributes & known & STATX_ATTR_MOUNT_ROOT)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr(path: str, attr_set: int, attr_clr: int, flags: int = 0, dirfd: int = -100
                  ) -> None:
    """mount_setattr(2) on the mount at `path` (AT_RECURSIVE in flags: the whole subtree)."""
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    _syscall("mount_setattr", dirfd, _b(path), ctypes.c_uint(flags), ctypes.byref(attr),
             ctypes.sizeof(attr))


OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
AT_EMPTY_PATH = 0x1000


def open_tree(path: str, flags: int, dirfd: int = -100) -> int:
    """open_tree(2): with OPEN_TREE_CLONE, a detached copy of the mount (tree) at `path`."""
    return _syscall("open_tree", dirfd, _b(path), ctypes.c_uint(flags))


def move_mount_fd(from_fd: int, to_fd: int) -> None:
    """move_mount(2) of the detached tree `from_fd` onto the file open as `to_fd`."""
    _syscall("move_mount", from_fd, b"", to_fd, b"",
             ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH))


IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_SHIFT = 13


def ioprio_set(io_class: int, level: int) -> None:
    """The I/O priority of the calling process."""
    _syscall("ioprio_set", IOPRIO_WHO_PROCESS, 0, (io_class << IOPRIO_CLASS_SHIFT) | level)


PER_LINUX = 0x0000
PER_LINUX32 = 0x0008


def personality(persona: int) -> None:
    _check(_libc.personality(ctypes.c_ulong(persona)), "personality")


CLOSE_RANGE_CLOEXEC = 1 << 2


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    _syscall("close_range", ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_uint(flags))


KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_SETPERM = 5


def join_session_keyring(name: str) -> int:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING): join the keyring of that name the caller may
    search, else a new one of that name; its serial."""
    return _syscall("keyctl", ctypes.c_int(KEYCTL_JOIN_SESSION_KEYRING), _b(name))


def set_key_permissions(key: int, permissions: int) -> None:
    _syscall("keyctl", ctypes.c_int(KEYCTL_SETPERM), ctypes.c_int32(key),
             ctypes.c_uint32(permissions))


def pidfd_open(pid: int) -> int:
    return _syscall("pidfd_open", pid, 0)


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    _syscall("pidfd_send_signal", pidfd, sig, None, 0)


def pidfd_getfd(pidfd: int, targetfd: int) -> int:
    """A copy of another process's descriptor (close-on-exec in ours)."""
    return _syscall("pidfd_getfd", pidfd, targetfd, 0)


SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 8
SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 16


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class BpfProgram:
    """A classic BPF program ready for seccomp(2): built before any filter is loaded, so that
    loading several in a row allocates nothing in between."""

    def __init__(self, code: bytes) -> None:
        if not code or len(code) % 8:
            raise ValueError(f"a BPF program is a non-empty array of 8-byte instructions, "
                             f"not {len(code)} bytes")
        self._buf = ctypes.create_string_buffer(code, len(code))
        self._prog = _SockFprog(len(code) // 8, ctypes.addressof(self._buf))
        self.ref = ctypes.byref(self._prog)


def seccomp_load(prog: BpfProgram, flags: int) -> int:
    """seccomp(SECCOMP_SET_MODE_FILTER): 0, or the listener fd with FLAG_NEW_LISTENER (the
    kernel opens it close-on-exec)."""
    return _syscall("seccomp", SECCOMP_SET_MODE_FILTER, ctypes.c_uint(flags), prog.ref)


def seccomp_flag_supported(flag: int) -> bool:
    """Whether the running kernel knows a SECCOMP_FILTER_FLAG_*: with no program it answers
    EFAULT for a flag it knows and EINVAL for one it does not."""
    try:
        _syscall("seccomp", SECCOMP_SET_MODE_FILTER, ctypes.c_uint(flag), None)
    except OSError as e:
        return e.errno == errno.EFAULT
    return True  # not reached: a NULL program is never accepted


class _ScmpVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


def libseccomp_version() -> str:
    """The installed libseccomp's version, asked of the library itself (dlopen, no Python
    binding: the cache key needs it on the warm path)."""
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_version.restype = ctypes.POINTER(_ScmpVersion)
    v = lib.seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"


# Landlock: the same numbers on every architecture (syscalls added after the unified table)
_NR.update({"landlock_create_ruleset": 444, "landlock_add_rule": 445,
            "landlock_restrict_self": 446})
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
LANDLOCK_RULE_NET_PORT = 2


class _LandlockRulesetAttr(ctypes.Structure):
    # no `scoped` field: the kernel accepts a shorter struct and takes the rest as zero
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64)]


class _LandlockPathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the uapi header
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi_version() -> int:
    """The Landlock ABI the kernel speaks; raises OSError (ENOSYS, EOPNOTSUPP) without it."""
    return _syscall("landlock_create_ruleset", None, ctypes.c_size_t(0),
                    ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))


class _LandlockNetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


def landlock_create_ruleset(handled_access_fs: int, handled_access_net: int = 0) -> int:
    attr = _LandlockRulesetAttr(handled_access_fs, handled_access_net)
    if not handled_access_net:  # ABI 1-3 kernels know only the first field
        return _syscall("landlock_create_ruleset", ctypes.byref(attr), ctypes.c_size_t(8),
                        ctypes.c_uint32(0))
    # the kernel opens the ruleset fd close-on-exec
    return _syscall("landlock_create_ruleset", ctypes.byref(attr),
                    ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0))


def landlock_add_path_beneath(ruleset_fd: int, allowed_access: int, parent_fd: int) -> None:
    attr = _LandlockPathBeneathAttr(allowed_access, parent_fd)
    _syscall("landlock_add_rule", ruleset_fd, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(attr),
             ctypes.c_uint32(0))


def landlock_add_net_port(ruleset_fd: int, allowed_access: int, port: int) -> None:
    attr = _LandlockNetPortAttr(allowed_access, port)
    _syscall("landlock_add_rule", ruleset_fd, LANDLOCK_RULE_NET_PORT, ctypes.byref(attr),
             ctypes.c_uint32(0))


def landlock_restrict_self(ruleset_fd: int) -> None:
    _syscall("landlock_restrict_self", ruleset_fd, ctypes.c_uint32(0))


# ---- ptrace(2), waitpid(2), process_vm_readv(2): the tracer's calls -----------------------------

PTRACE_CONT = 7
PTRACE_SYSCALL = 24
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_GETEVENTMSG = 0x4201
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_GET_SYSCALL_INFO = 0x420E
PTRACE_SYSCALL_INFO_EXIT = 2
PTRACE_SYSCALL_INFO_SECCOMP = 3

PTRACE_O_TRACESYSGOOD = 0x1
PTRACE_O_TRACEFORK = 0x2
PTRACE_O_TRACEVFORK = 0x4
PTRACE_O_TRACECLONE = 0x8
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_TRACESECCOMP = 0x80
PTRACE_O_EXITKILL = 0x100000

PTRACE_EVENT_FORK = 1
PTRACE_EVENT_VFORK = 2
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_SECCOMP = 7
PTRACE_EVENT_STOP = 128

WALL = 0x40000000  # __WALL: threads and clone children too

_libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_libc.ptrace.restype = ctypes.c_long
_libc.waitpid.argtypes = (ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int)
_libc.waitpid.restype = ctypes.c_int


class SyscallInfo(ctypes.Structure):
    """struct ptrace_syscall_info, seccomp flavour (op == PTRACE_SYSCALL_INFO_SECCOMP)."""

    _fields_ = [("op", ctypes.c_uint8), ("_pad", ctypes.c_uint8 * 3), ("arch", ctypes.c_uint32),
                ("instruction_pointer", ctypes.c_uint64), ("stack_pointer", ctypes.c_uint64),
                ("nr", ctypes.c_uint64), ("args", ctypes.c_uint64 * 6),
                ("ret_data", ctypes.c_uint32), ("_pad2", ctypes.c_uint32)]


class UserRegs(ctypes.Structure):
    """x86_64 struct user_regs_struct (also what an i386 task's registers are read as)."""

    _fields_ = [(n, ctypes.c_ulonglong) for n in (
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
        "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds",
        "es", "fs", "gs")]


def ptrace(request: int, pid: int, addr: int = 0, data: object = 0) -> int:
    ret = _libc.ptrace(request, pid, addr, data)
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"ptrace({request:#x}, {pid}): {os.strerror(err)}")
    return ret


def ptrace_seize(pid: int, options: int) -> None:
    ptrace(PTRACE_SEIZE, pid, 0, options)


def ptrace_cont(pid: int, sig: int = 0) -> None:
    ptrace(PTRACE_CONT, pid, 0, sig)


def ptrace_syscall(pid: int, sig: int = 0) -> None:
    """Resume to the next syscall stop: from a seccomp stop, the exit of that call."""
    ptrace(PTRACE_SYSCALL, pid, 0, sig)


def ptrace_listen(pid: int) -> None:
    ptrace(PTRACE_LISTEN, pid, 0, 0)


_eventmsg = ctypes.c_ulong()


def ptrace_geteventmsg(pid: int) -> int:
    ptrace(PTRACE_GETEVENTMSG, pid, 0, ctypes.addressof(_eventmsg))
    return _eventmsg.value


def ptrace_syscall_info(pid: int, info: SyscallInfo) -> None:
    """Fill `info` (reused by the caller: no allocation per stop)."""
    ptrace(PTRACE_GET_SYSCALL_INFO, pid, ctypes.sizeof(info), ctypes.addressof(info))


def ptrace_getregs(pid: int, regs: UserRegs) -> None:
    ptrace(PTRACE_GETREGS, pid, 0, ctypes.addressof(regs))


def ptrace_setregs(pid: int, regs: UserRegs) -> None:
    ptrace(PTRACE_SETREGS, pid, 0, ctypes.addressof(regs))


_wstatus = ctypes.c_int()


def wait_any(options: int = WALL) -> tuple[int, int]:
    """waitpid(-1): (pid, status). Unlike os.waitpid it is not retried after a signal handler
    ran: InterruptedError lets the caller look at what the handler queued."""
    ret = _libc.waitpid(-1, ctypes.byref(_wstatus), options)
    if ret == -1:
        err = ctypes.get_errno()
        if err == errno.EINTR:
            raise InterruptedError(err, "waitpid: interrupted")
        raise OSError(err, f"waitpid: {os.strerror(err)}")
    return ret, _wstatus.value


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_PAGE = os.sysconf("SC_PAGE_SIZE")


class RemoteReader:
    """Reads another process's memory into one reused buffer with process_vm_readv, split on
    page boundaries so that a read running into an unmapped page returns what came before it.

    The tracer's hot path (one read per judged call): a function pointer of its own without
    argtypes and every argument but the pid built once, as Openat2 does; converting six typed
    arguments cost more than the syscall."""

    MAX_PAGES = 34  # 128 KiB + a page: the largest read the tracer asks for

    def __init__(self, size: int) -> None:
        self.buf = ctypes.create_string_buffer(size)
        self._size = size
        self._local = _Iovec(ctypes.addressof(self.buf), size)
        self._remote = (_Iovec * self.MAX_PAGES)()
        self._local_ref = ctypes.byref(self._local)
        self._first = self._remote[0]  # a view of the array's first element
        self._remote_ref = ctypes.byref(self._first)
        self._fn = _libc["process_vm_readv"]
        self._fn.restype = ctypes.c_ssize_t
        self._counts = [ctypes.c_ulong(n) for n in range(self.MAX_PAGES + 1)]
        self._no_flags = ctypes.c_ulong(0)

    def read(self, pid: int, addr: int, length: int) -> int:
        """Bytes read into self.buf (fewer than `length` when a page is not mapped)."""
        if length > self._size:
            length = self._size
        end = addr + length
        if length and addr // _PAGE == (end - 1) // _PAGE:
            # within one page, what nearly every path and address is
            first = self._first
            first.base = addr
            first.len = self._local.len = length
            return self._call(pid, self._remote_ref, 1)
        n, pos = 0, addr
        while pos < end and n < self.MAX_PAGES:
            chunk = min(end, (pos // _PAGE + 1) * _PAGE) - pos
            self._remote[n].base, self._remote[n].len = pos, chunk
            pos += chunk
            n += 1
        self._local.len = pos - addr
        return self._call(pid, self._remote, n)

    def _call(self, pid: int, remote: object, count: int) -> int:
        """process_vm_readv: bytes read, 0 when the first page is not mapped."""
        ret = self._fn(pid, self._local_ref, self._counts[1], remote, self._counts[count],
                       self._no_flags)
        if ret >= 0:
            return ret
        err = ctypes.get_errno()
        if err == errno.EFAULT:
            return 0
        raise OSError(err, f"process_vm_readv({pid}): {os.strerror(err)}")


# bpf(2): cgroup programs (the policy's destination rules checked by the kernel on the address
# it really uses). The same number everywhere but x86_64.
_NR["bpf"] = {"x86_64": 321}.get(_MACHINE, 280)
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_QUERY = 16
BPF_F_ALLOW_MULTI = 1 << 1
BPF_PROG_TYPE_CGROUP_SKB = 8
BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18


def bpf_prog_load(prog_type: int, expected_attach_type: int, insns: bytes, license_: str,
                  name: str = "") -> int:
    """Load an eBPF program; its fd. On a refusal the verifier's last word is in the message
    (asked for only then: a log that overflows fails the load on older kernels)."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license_.encode())
    _libc.syscall.restype = ctypes.c_long
    for log_size in (0, 1 << 20):
        log = ctypes.create_string_buffer(max(log_size, 1))
        # union bpf_attr for BPF_PROG_LOAD, up to expected_attach_type (offset 68)
        attr = ctypes.create_string_buffer(72)
        struct.pack_into("=IIQQIIQII16sII", attr, 0, prog_type, len(insns) // 8,
                         ctypes.addressof(code), ctypes.addressof(lic), int(log_size > 0),
                         log_size, ctypes.addressof(log) if log_size else 0, 0, 0,
                         name.encode()[:15], 0, expected_attach_type)
        fd = _libc.syscall(ctypes.c_long(_NR["bpf"]), BPF_PROG_LOAD, attr, len(attr))
        if fd != -1:
            return fd
        err = ctypes.get_errno()
        if err != errno.EACCES and err != errno.EINVAL:
            break  # not the verifier (EPERM: no privilege): its log would add nothing
    # the verifier's complaint precedes its statistics ("processed N insns ...")
    lines = [ln for ln in log.value.decode(errors="replace").strip().splitlines()
             if not ln.startswith(("processed ", "verification time"))]
    raise OSError(err, f"bpf(PROG_LOAD {name}): {os.strerror(err)}"
                  + (f": {lines[-1]}" if lines else ""))


def bpf_prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int) -> None:
    attr = ctypes.create_string_buffer(20)
    struct.pack_into("=IIIII", attr, 0, target_fd, prog_fd, attach_type, flags, 0)
    _syscall("bpf", BPF_PROG_ATTACH, attr, len(attr))


def bpf_prog_count(target_fd: int, attach_type: int) -> int:
    """How many programs of `attach_type` are attached to the cgroup `target_fd` itself."""
    # bpf_attr.query: target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt
    attr = ctypes.create_string_buffer(40)
    struct.pack_into("=IIII", attr, 0, target_fd, attach_type, 0, 0)
    _syscall("bpf", BPF_PROG_QUERY, attr, len(attr))
    return struct.unpack_from("=I", attr, 24)[0]


# seccomp user notification: the supervisor's side (include/uapi/linux/seccomp.h)
SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100    # _IOWR('!', 0, struct seccomp_notif)
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101    # _IOWR('!', 1, struct seccomp_notif_resp)
SECCOMP_IOCTL_NOTIF_ID_VALID = 0x40082102  # _IOW('!', 2, __u64)
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
PIDFD_THREAD = os.O_EXCL  # pidfd_open(2): the thread itself, not its thread group (6.9)
_NOTIF = struct.Struct("=QIIiIQ6Q")      # id, pid, flags, data.nr, data.arch, ip, args
_NOTIF_RESP = struct.Struct("=QqiI")     # id, val, error, flags
_libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)


class SeccompNotif:
    __slots__ = ("id", "pid", "nr", "arch", "args")

    def __init__(self, id_: int, pid: int, nr: int, arch: int, args: tuple[int, ...]) -> None:
        self.id, self.nr, self.arch, self.args = id_, nr, arch, args
        self.pid = pid  # the calling thread, in the listener's pid namespace


def seccomp_notif_recv(listener: int) -> SeccompNotif:
    """The next notification (blocks; ctypes lets other threads run meanwhile)."""
    buf = ctypes.create_string_buffer(_NOTIF.size)
    _check(_libc.ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, buf), "SECCOMP_IOCTL_NOTIF_RECV")
    id_, pid, _flags, nr, arch, _ip, *args = _NOTIF.unpack(buf.raw)
    return SeccompNotif(id_, pid, nr, arch, tuple(args))


def seccomp_notif_send(listener: int, notif_id: int, val: int = 0, error: int = 0,
                       flags: int = 0) -> None:
    """Answer a notification: `val` as the call's return, or -`error`, or let it run
    (flags=CONTINUE)."""
    buf = ctypes.create_string_buffer(_NOTIF_RESP.pack(notif_id, val, -error if error else 0,
                                                       flags), _NOTIF_RESP.size)
    _check(_libc.ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, buf), "SECCOMP_IOCTL_NOTIF_SEND")


def seccomp_notif_id_valid(listener: int, notif_id: int) -> bool:
    """Is the caller still waiting in this notification (so its pid still names it)?"""
    buf = ctypes.c_uint64(notif_id)
    return _libc.ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, ctypes.byref(buf)) == 0


def pidfd_open_thread(tid: int) -> int:
    """A pidfd for the thread `tid` itself (its own descriptor table, if it has one)."""
    try:
        return _syscall("pidfd_open", tid, PIDFD_THREAD)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        return _syscall("pidfd_open", tid, 0)  # before 6.9: only a thread-group leader


PIDFD_SIGNAL_THREAD = 1


def pidfd_signal_thread(pidfd: int, sig: int) -> None:
    """`sig` to the thread a PIDFD_THREAD pidfd holds, as the kernel sends a SIGPIPE to the
    sender."""
    try:
        _syscall("pidfd_send_signal", pidfd, sig, None, PIDFD_SIGNAL_THREAD)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        _syscall("pidfd_send_signal", pidfd, sig, None, 0)  # before 6.9: the process


def procfs_is_own_pid_namespace() -> bool:
    """Does /proc show the pids of this process's pid namespace (what waitpid, ptrace and
    seccomp notifications give)? Not where a pid namespace was entered without a procfs of
    its own (`unshare -p -f` without --mount-proc): /proc/PID is then another task. NSpid
    lists this process's pid in /proc's namespace and each below it: one entry, its own."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"NSpid:"):
                    return line.split()[1:] == [str(os.getpid()).encode()]
    except OSError:
        return False
    return False


_libc.connect.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
_libc.sendto.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int,
                         ctypes.c_char_p, ctypes.c_uint)
_libc.sendto.restype = ctypes.c_ssize_t
_libc.sendmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
_libc.sendmsg.restype = ctypes.c_ssize_t


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("namelen", ctypes.c_uint),
                ("iov", ctypes.c_void_p), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_char_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


def raw_connect(fd: int, address: bytes) -> int:
    """connect(2) with exactly these address bytes: 0, or -errno."""
    ret = _libc.connect(fd, address, len(address))
    return ret if ret >= 0 else -ctypes.get_errno()


def raw_sendto(fd: int, data: bytes, flags: int, address: bytes) -> int:
    """sendto(2) of `data` to exactly these address bytes: the count sent, or -errno."""
    ret = _libc.sendto(fd, data, len(data), flags, address, len(address))
    return ret if ret >= 0 else -ctypes.get_errno()


def raw_sendmsg(fd: int, name: bytes | None, data: bytes, control: bytes, flags: int) -> int:
    """sendmsg(2) of one buffer with these name and control bytes: the count, or -errno."""
    payload = ctypes.create_string_buffer(data, len(data))
    iov = _Iovec(ctypes.addressof(payload), len(data))
    msg = _Msghdr(name, len(name) if name else 0, ctypes.addressof(iov), 1,
                  control or None, len(control), 0)
    ret = _libc.sendmsg(fd, ctypes.byref(msg), flags)
    return ret if ret >= 0 else -ctypes.get_errno()


class PtraceStop:
    """The two ptrace calls of every stop the tracer serves (the syscall's registers, the
    resume) with their arguments built once: through `ptrace` above, whose argtypes convert
    each argument at every call, each costs about twice the syscall. The registers land in
    `info`, reused for every stop."""

    def __init__(self, info: SyscallInfo) -> None:
        # untyped, a function pointer of its own: the request, pid and signal go as C ints
        # (what ptrace(2) reads), the rest as the objects built here
        self._fn = _libc["ptrace"]
        self._fn.restype = ctypes.c_long
        self._size = ctypes.c_void_p(ctypes.sizeof(info))
        self._info_ref = ctypes.byref(info)
        self._null = ctypes.c_void_p(0)

    def syscall_info(self, pid: int) -> None:
        if self._fn(PTRACE_GET_SYSCALL_INFO, pid, self._size, self._info_ref) == -1:
            _ptrace_failed(PTRACE_GET_SYSCALL_INFO, pid)

    def cont(self, pid: int, sig: int = 0) -> None:
        if self._fn(PTRACE_CONT, pid, self._null, sig) == -1:
            _ptrace_failed(PTRACE_CONT, pid)


def _ptrace_failed(request: int, pid: int) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"ptrace({request:#x}, {pid}): {os.strerror(err)}")
