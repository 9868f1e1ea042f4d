"""OCI mount options -> mount(2) flags, propagation changes and filesystem data. Pure."""

from __future__ import annotations

from .. import kernel as k
from ..records import record

# option -> (flag, set it?) ; an option that clears a flag wins over an earlier one that set it
_FLAG_OPTIONS: dict[str, tuple[int, bool]] = {
    "ro": (k.MS_RDONLY, True), "rw": (k.MS_RDONLY, False),
    "nosuid": (k.MS_NOSUID, True), "suid": (k.MS_NOSUID, False),
    "nodev": (k.MS_NODEV, True), "dev": (k.MS_NODEV, False),
    "noexec": (k.MS_NOEXEC, True), "exec": (k.MS_NOEXEC, False),
    "sync": (k.MS_SYNCHRONOUS, True), "async": (k.MS_SYNCHRONOUS, False),
    "dirsync": (k.MS_DIRSYNC, True),
    "remount": (k.MS_REMOUNT, True),
    "mand": (k.MS_MANDLOCK, True), "nomand": (k.MS_MANDLOCK, False),
    "noatime": (k.MS_NOATIME, True), "atime": (k.MS_NOATIME, False),
    "nodiratime": (k.MS_NODIRATIME, True), "diratime": (k.MS_NODIRATIME, False),
    "relatime": (k.MS_RELATIME, True), "norelatime": (k.MS_RELATIME, False),
    "strictatime": (k.MS_STRICTATIME, True), "nostrictatime": (k.MS_STRICTATIME, False),
    "nosymfollow": (k.MS_NOSYMFOLLOW, True), "symfollow": (k.MS_NOSYMFOLLOW, False),
    "silent": (k.MS_SILENT, True), "loud": (k.MS_SILENT, False),
    "lazytime": (k.MS_LAZYTIME, True), "nolazytime": (k.MS_LAZYTIME, False),
    "iversion": (k.MS_I_VERSION, True), "noiversion": (k.MS_I_VERSION, False),
}

# Recursive mount attributes (runtime-spec 1.1: "rro", "rnosuid", ...), applied to the mount and
# every mount below it with mount_setattr(AT_RECURSIVE). option -> (attr to set, attr to clear)
_REC_ATTR_OPTIONS: dict[str, tuple[int, int]] = {
    "rro": (k.MOUNT_ATTR_RDONLY, 0), "rrw": (0, k.MOUNT_ATTR_RDONLY),
    "rnosuid": (k.MOUNT_ATTR_NOSUID, 0), "rsuid": (0, k.MOUNT_ATTR_NOSUID),
    "rnodev": (k.MOUNT_ATTR_NODEV, 0), "rdev": (0, k.MOUNT_ATTR_NODEV),
    "rnoexec": (k.MOUNT_ATTR_NOEXEC, 0), "rexec": (0, k.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (k.MOUNT_ATTR_NODIRATIME, 0), "rdiratime": (0, k.MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (k.MOUNT_ATTR_NOSYMFOLLOW, 0), "rsymfollow": (0, k.MOUNT_ATTR_NOSYMFOLLOW),
    # The atime attributes are one enum: the kernel wants all of MOUNT_ATTR__ATIME cleared
    # whenever one is set. "ratime"/"rnostrictatime" mean the default (relatime), "rnorelatime"
    # means strictatime, as their non-recursive mount(8) counterparts do.
    "rrelatime": (k.MOUNT_ATTR_RELATIME, k.MOUNT_ATTR__ATIME),
    "ratime": (k.MOUNT_ATTR_RELATIME, k.MOUNT_ATTR__ATIME),
    "rnostrictatime": (k.MOUNT_ATTR_RELATIME, k.MOUNT_ATTR__ATIME),
    "rnoatime": (k.MOUNT_ATTR_NOATIME, k.MOUNT_ATTR__ATIME),
    "rstrictatime": (k.MOUNT_ATTR_STRICTATIME, k.MOUNT_ATTR__ATIME),
    "rnorelatime": (k.MOUNT_ATTR_STRICTATIME, k.MOUNT_ATTR__ATIME),
}

PROPAGATION: dict[str, int] = {
    "private": k.MS_PRIVATE, "rprivate": k.MS_PRIVATE | k.MS_REC,
    "shared": k.MS_SHARED, "rshared": k.MS_SHARED | k.MS_REC,
    "slave": k.MS_SLAVE, "rslave": k.MS_SLAVE | k.MS_REC,
    "unbindable": k.MS_UNBINDABLE, "runbindable": k.MS_UNBINDABLE | k.MS_REC,
}

# Options that steer how the runtime mounts, not the kernel. They are kept in
# MountOptions.extra; the runtime decides which ones it honours or refuses.
_RUNTIME_ONLY = frozenset({"tmpcopyup", "notmpcopyup", "idmap", "ridmap", "copy-symlink",
                           "src-nofollow", "defaults"})

# Flags a bind mount only takes from a second, remounting call.
BIND_REMOUNT_FLAGS = (
    k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC | k.MS_NOATIME | k.MS_NODIRATIME
    | k.MS_RELATIME | k.MS_STRICTATIME | k.MS_NOSYMFOLLOW
)


@record(frozen=True)
class MountOptions:
    flags: int = 0  # MS_* for mount(2), without MS_BIND/MS_REC
    cleared: int = 0  # MS_* flags an option asked to clear ("rw", "suid", "dev", ...)
    bind: bool = False
    recursive: bool = False  # rbind
    propagation: tuple[int, ...] = ()  # applied one by one after the mount
    data: str = ""  # filesystem-specific options, comma separated
    rec_attr_set: int = 0  # MOUNT_ATTR_* for mount_setattr(AT_RECURSIVE)
    rec_attr_clr: int = 0
    extra: tuple[str, ...] = ()  # runtime-only options, see _RUNTIME_ONLY

    @property
    def bind_remount_flags(self) -> int:
        return self.flags & BIND_REMOUNT_FLAGS


def parse(options: tuple[str, ...] | list[str], mount_type: str | None = None) -> MountOptions:
    """Split OCI mount options as runc does: known flags, bind/rbind, propagation, recursive
    attributes and runtime-only options are taken out; everything else is filesystem data, in
    order (mode=755, size=65536k, newinstance, ...). A later option overrides an earlier one."""
    flags = cleared = 0
    rec_set = rec_clr = 0
    bind = mount_type in ("bind", "rbind")
    recursive = mount_type == "rbind"
    propagation: list[int] = []
    data: list[str] = []
    extra: list[str] = []
    for opt in options:
        if opt in _FLAG_OPTIONS:
            flag, on = _FLAG_OPTIONS[opt]
            if on:
                flags, cleared = flags | flag, cleared & ~flag
            else:
                flags, cleared = flags & ~flag, cleared | flag
        elif opt == "bind":
            bind = True
        elif opt == "rbind":
            bind = recursive = True
        elif opt in PROPAGATION:
            propagation.append(PROPAGATION[opt])
        elif opt in _REC_ATTR_OPTIONS:
            on, off = _REC_ATTR_OPTIONS[opt]
            if off == k.MOUNT_ATTR__ATIME:
                rec_set = (rec_set & ~k.MOUNT_ATTR__ATIME) | on
                rec_clr |= off
            else:
                rec_set, rec_clr = (rec_set & ~off) | on, (rec_clr & ~on) | off
        elif opt in _RUNTIME_ONLY:
            extra.append(opt)
        else:
            data.append(opt)
    return MountOptions(flags=flags, cleared=cleared, bind=bind, recursive=recursive,
                        propagation=tuple(propagation), data=",".join(data),
                        rec_attr_set=rec_set, rec_attr_clr=rec_clr, extra=tuple(extra))


def root_propagation(value: str | None) -> int:
    """linux.rootfsPropagation -> flags for "/" before the rootfs is set up (rslave if unset)."""
    if not value:
        return k.MS_SLAVE | k.MS_REC
    return PROPAGATION[value]


# statvfs(3) f_flag bits (ST_*) -> mount(2) flags, as calculate_f_flags() in fs/statfs.c reports
_ST_TO_MS = {
    0x0001: k.MS_RDONLY, 0x0002: k.MS_NOSUID, 0x0004: k.MS_NODEV, 0x0008: k.MS_NOEXEC,
    0x0010: k.MS_SYNCHRONOUS, 0x0040: k.MS_MANDLOCK, 0x0400: k.MS_NOATIME,
    0x0800: k.MS_NODIRATIME, 0x1000: k.MS_RELATIME, 0x2000: k.MS_NOSYMFOLLOW,
}

ATIME_FLAGS = k.MS_NOATIME | k.MS_RELATIME | k.MS_STRICTATIME
# The per-mount flags the kernel locks (MNT_LOCK_*) on mounts inherited by a less privileged
# user namespace: a remount there must repeat them or fail with EPERM.
LOCKED_FLAGS = k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC | ATIME_FLAGS | k.MS_NODIRATIME


def flags_from_statvfs(f_flag: int) -> int:
    out = 0
    for st, ms in _ST_TO_MS.items():
        if f_flag & st:
            out |= ms
    # strictatime is not reported: it is what a mount with neither noatime nor relatime has
    if not out & (k.MS_NOATIME | k.MS_RELATIME):
        out |= k.MS_STRICTATIME
    return out
