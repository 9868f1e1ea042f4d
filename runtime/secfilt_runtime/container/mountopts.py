"""OCI mount options -> mount(2) flags, propagation changes and filesystem data. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from .. import kernel as k

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
}

PROPAGATION: dict[str, int] = {
    "private": k.MS_PRIVATE, "rprivate": k.MS_PRIVATE | k.MS_REC,
    "shared": k.MS_SHARED, "rshared": k.MS_SHARED | k.MS_REC,
    "slave": k.MS_SLAVE, "rslave": k.MS_SLAVE | k.MS_REC,
    "unbindable": k.MS_UNBINDABLE, "runbindable": k.MS_UNBINDABLE | k.MS_REC,
}

# Options that only steer how the runtime mounts; they are not for the kernel.
_RUNTIME_ONLY = frozenset({"tmpcopyup", "idmap", "ridmap", "copy-symlink", "src-nofollow"})

# Flags a bind mount only takes from a second, remounting call.
BIND_REMOUNT_FLAGS = (
    k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC | k.MS_NOATIME | k.MS_NODIRATIME
    | k.MS_RELATIME | k.MS_STRICTATIME | k.MS_NOSYMFOLLOW
)


@dataclass(frozen=True)
class MountOptions:
    flags: int = 0  # MS_* for mount(2), without MS_BIND/MS_REC
    bind: bool = False
    recursive: bool = False  # rbind
    propagation: tuple[int, ...] = ()  # applied one by one after the mount
    data: str = ""  # filesystem-specific options, comma separated

    @property
    def bind_remount_flags(self) -> int:
        return self.flags & BIND_REMOUNT_FLAGS


def parse(options: tuple[str, ...] | list[str], mount_type: str | None = None) -> MountOptions:
    flags = 0
    bind = mount_type == "bind"
    recursive = False
    propagation: list[int] = []
    data: list[str] = []
    for opt in options:
        if opt in _FLAG_OPTIONS:
            flag, on = _FLAG_OPTIONS[opt]
            flags = flags | flag if on else flags & ~flag
        elif opt == "bind":
            bind = True
        elif opt == "rbind":
            bind = recursive = True
        elif opt in PROPAGATION:
            propagation.append(PROPAGATION[opt])
        elif opt in _RUNTIME_ONLY:
            continue
        else:
            data.append(opt)
    return MountOptions(flags, bind, recursive, tuple(propagation), ",".join(data))


def root_propagation(value: str | None) -> int:
    """linux.rootfsPropagation -> flags for "/" before the rootfs is set up (rslave if unset)."""
    if not value:
        return k.MS_SLAVE | k.MS_REC
    return PROPAGATION[value]


# statvfs(3) f_flag bits (ST_*) -> mount(2) flags: what a remount must keep
_ST_TO_MS = {
    0x0001: k.MS_RDONLY, 0x0002: k.MS_NOSUID, 0x0004: k.MS_NODEV, 0x0008: k.MS_NOEXEC,
    0x0400: k.MS_NOATIME, 0x0800: k.MS_NODIRATIME, 0x1000: k.MS_RELATIME,
    0x2000: k.MS_NOSYMFOLLOW,
}


def flags_from_statvfs(f_flag: int) -> int:
    out = 0
    for st, ms in _ST_TO_MS.items():
        if f_flag & st:
            out |= ms
    return out
