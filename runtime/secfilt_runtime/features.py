"""`features` (the runtime-spec features document) and `spec` (a default config.json).

Everything listed is read from the tables the runtime itself enforces with, so the document
cannot claim what the code does not do.
"""

from __future__ import annotations

import os

from . import jsonio
from .errors import ConfigError

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

OCI_MIN = "1.0.0"
OCI_MAX = "1.2.0"
# what libseccomp on x86_64 builds natively; the policy's filter covers the i386 entry too
SECCOMP_ARCHS = ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")


def features() -> dict[str, Any]:
    from . import hooks
    from .container import mountopts
    from .container.capabilities import CAPABILITY_NAMES
    from .policy.parse import KEYS, PREFIX
    from .seccomp.profile import ACTIONS, FLAGS, OPERATORS
    from .spec import NAMESPACE_TYPES

    # bind, rbind and the runtime's own options it honours (runc lists them too: an engine
    # may check for tmpcopyup before asking for it)
    mount_options = sorted({*mountopts._FLAG_OPTIONS, *mountopts._REC_ATTR_OPTIONS,
                            *mountopts.PROPAGATION, "bind", "rbind", "tmpcopyup", "defaults"})
    return {
        "ociVersionMin": OCI_MIN,
        "ociVersionMax": OCI_MAX,
        "hooks": list(hooks.PHASES),
        "mountOptions": mount_options,
        "linux": {
            "namespaces": list(NAMESPACE_TYPES),
            "capabilities": list(CAPABILITY_NAMES),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": False},
            "seccomp": {
                "enabled": True,
                "actions": list(ACTIONS),
                "operators": list(OPERATORS),
                "archs": list(SECCOMP_ARCHS),
                "knownFlags": list(FLAGS),
                "supportedFlags": list(FLAGS),
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {
            "io.github.secfilt-runtime.version": "0.1.0",
            **{f"{PREFIX}{k}": "supported" for k in KEYS},
        },
        # the policy's keys change what the container may do: engines that copy pod
        # annotations must be told, as runc does for its own
        "potentiallyUnsafeConfigAnnotations": [PREFIX],
    }


_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def default_spec(rootless: bool = False) -> dict[str, Any]:
    """runc spec's defaults: sh in a busybox-like rootfs, the usual mounts and masks."""
    doc: dict[str, Any] = {
        "ociVersion": OCI_MAX,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(_CAPS) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "secfilt",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount",
                                                 "cgroup")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }
    if rootless:
        uid, gid = os.getuid(), os.getgid()
        linux = doc["linux"]
        linux.pop("resources")
        linux["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup",
                                                     "user")]
        linux["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": gid, "size": 1}]
        # a user namespace may not mount sysfs without a network namespace of its own
        doc["mounts"] = [m for m in doc["mounts"] if m["destination"] != "/sys"] + [
            {"destination": "/sys", "type": "none", "source": "/sys",
             "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}]
    return doc


def write_default_spec(bundle: str, rootless: bool = False) -> None:
    path = os.path.join(bundle, "config.json")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise ConfigError(f"{path}: already exists (remove it first)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot create: {e.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(jsonio.dumps(default_spec(rootless), indent=2))
        f.write("\n")
