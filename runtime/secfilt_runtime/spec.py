"""The parsed OCI runtime configuration: typed records built from a validated config.json.

`load_bundle` is the one entry point: it reads the file, validates it against our schemas
(`schema.validate_config`), and converts the document into a `Spec`. Fields the runtime does not
act on are still kept in `Spec.raw` so nothing the user wrote is silently lost.
"""

from __future__ import annotations

import errno
import os
import stat

from . import jsonio
from .errors import ConfigError
from .records import field, fields, record

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")


@record(frozen=True)
class User:
    uid: int = 0
    gid: int = 0
    umask: int | None = None
    additional_gids: tuple[int, ...] = ()


@record(frozen=True)
class Capabilities:
    bounding: tuple[str, ...] = ()
    effective: tuple[str, ...] = ()
    inheritable: tuple[str, ...] = ()
    permitted: tuple[str, ...] = ()
    ambient: tuple[str, ...] = ()


@record(frozen=True)
class Rlimit:
    type: str
    soft: int
    hard: int


@record(frozen=True)
class Process:
    args: tuple[str, ...]
    cwd: str
    env: tuple[str, ...] = ()
    terminal: bool = False
    user: User = field(default_factory=User)
    capabilities: Capabilities | None = None
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    oom_score_adj: int | None = None
    scheduler: dict[str, Any] | None = None
    io_priority: dict[str, Any] | None = None
    apparmor_profile: str | None = None
    selinux_label: str | None = None


@record(frozen=True)
class Root:
    path: str  # absolute, resolved against the bundle directory
    readonly: bool = False


@record(frozen=True)
class Mount:
    destination: str
    type: str | None = None
    source: str | None = None
    options: tuple[str, ...] = ()


@record(frozen=True)
class Namespace:
    type: str
    path: str | None = None


@record(frozen=True)
class IdMapping:
    container_id: int
    host_id: int
    size: int


@record(frozen=True)
class Device:
    path: str
    type: str  # c, b, u or p
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


@record(frozen=True)
class Linux:
    namespaces: tuple[Namespace, ...] = ()
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()
    devices: tuple[Device, ...] = ()
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    sysctl: dict[str, str] = field(default_factory=dict)
    rootfs_propagation: str | None = None
    cgroups_path: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    seccomp: dict[str, Any] | None = None
    time_offsets: dict[str, dict[str, int]] = field(default_factory=dict)
    personality: dict[str, Any] | None = None
    mount_label: str | None = None

    def namespace(self, ns_type: str) -> Namespace | None:
        for ns in self.namespaces:
            if ns.type == ns_type:
                return ns
        return None


CREATE_HOOK_PHASES = ("prestart", "createRuntime", "createContainer")


@record(frozen=True)
class Spec:
    oci_version: str
    bundle: str  # absolute path of the bundle directory
    root: Root
    process: Process | None
    hostname: str | None = None
    domainname: str | None = None
    mounts: tuple[Mount, ...] = ()
    linux: Linux = field(default_factory=Linux)
    annotations: dict[str, str] = field(default_factory=dict)
    hooks: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # not config.json's: the session keyring the container's processes join, "_ses.<id>" as
    # runc names it, set by create and run; None keeps the caller's (--no-new-keyring)
    session_keyring: str | None = None

    @property
    def has_create_hooks(self) -> bool:
        """Whether hooks run during create, with the container's mounts made and its root not
        yet pivoted: the init pauses there for them (runtime-spec: createRuntime and
        createContainer "before pivot_root"; prestart with createRuntime)."""
        return any(self.hooks.get(phase) for phase in CREATE_HOOK_PHASES)


def load_bundle(bundle: str, validation_cache: str | None = None) -> Spec:
    """Read, validate and parse `<bundle>/config.json`. Raises ConfigError naming the problem.

    `validation_cache`: a directory of verdicts (validcache) that spares a config.json already
    found valid the import of jsonschema."""
    bundle = os.path.abspath(bundle)
    path = os.path.join(bundle, "config.json")
    try:
        text = read_config(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (is {bundle} an OCI bundle?)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        doc = jsonio.loads(text)
    except (jsonio.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: invalid JSON: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid JSON: nested too deeply") from None
    except ValueError as e:  # an integer of more digits than Python converts
        raise ConfigError(f"{path}: invalid JSON: {e}") from None

    from . import schema  # jsonschema is heavy: only the create/run path pays for it

    schema.validate_config(doc, source=path, text=text, cache_dir=validation_cache)
    return parse(doc, bundle)


CONFIG_MAX_BYTES = 64 << 20  # far above any engine's config.json (tens of KiB)


def read_config(path: str) -> bytes:
    """config.json's bytes: a regular file, of bounded size. Opened without blocking: a FIFO
    would wait for a writer for ever, and a device (/dev/zero) never ends."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return jsonio.read_bounded(f, CONFIG_MAX_BYTES)  # type: ignore[return-value]


def parse(doc: dict[str, Any], bundle: str) -> Spec:
    """Convert an already validated config document into a Spec."""
    bundle = os.path.abspath(bundle)  # the spec wants root.path resolved against an absolute bundle
    root_doc = doc.get("root") or {}
    root_path = root_doc.get("path", "rootfs")
    if not os.path.isabs(root_path):
        root_path = os.path.join(bundle, root_path)
    linux_doc = doc.get("linux") or {}
    return Spec(
        oci_version=doc["ociVersion"],
        bundle=bundle,
        root=Root(path=os.path.normpath(root_path), readonly=bool(root_doc.get("readonly"))),
        process=_process(doc["process"]) if "process" in doc else None,
        hostname=doc.get("hostname"),
        domainname=doc.get("domainname"),
        mounts=tuple(
            Mount(
                destination=m["destination"],
                type=m.get("type"),
                source=m.get("source"),
                options=tuple(m.get("options") or ()),
            )
            for m in doc.get("mounts") or ()
        ),
        linux=_linux(linux_doc),
        annotations=dict(doc.get("annotations") or {}),
        hooks=dict(doc.get("hooks") or {}),
        raw=doc,
    )


def _process(p: dict[str, Any]) -> Process:
    user = p.get("user") or {}
    caps = p.get("capabilities")
    return Process(
        args=tuple(p.get("args") or ()),
        cwd=p["cwd"],
        env=tuple(p.get("env") or ()),
        terminal=bool(p.get("terminal", False)),
        user=User(
            uid=user.get("uid", 0),
            gid=user.get("gid", 0),
            umask=user.get("umask"),
            additional_gids=tuple(user.get("additionalGids") or ()),
        ),
        capabilities=None
        if caps is None
        else Capabilities(
            **{k: tuple(caps.get(k) or ()) for k in (f.name for f in fields(Capabilities))}
        ),
        rlimits=tuple(Rlimit(r["type"], r["soft"], r["hard"]) for r in p.get("rlimits") or ()),
        no_new_privileges=bool(p.get("noNewPrivileges", False)),
        oom_score_adj=p.get("oomScoreAdj"),
        scheduler=p.get("scheduler"),
        io_priority=p.get("ioPriority"),
        apparmor_profile=p.get("apparmorProfile"),
        selinux_label=p.get("selinuxLabel"),
    )


def _mappings(items: list[dict[str, int]] | None) -> tuple[IdMapping, ...]:
    return tuple(IdMapping(m["containerID"], m["hostID"], m["size"]) for m in items or ())


def _linux(lx: dict[str, Any]) -> Linux:
    return Linux(
        namespaces=tuple(Namespace(n["type"], n.get("path")) for n in lx.get("namespaces") or ()),
        uid_mappings=_mappings(lx.get("uidMappings")),
        gid_mappings=_mappings(lx.get("gidMappings")),
        devices=tuple(
            Device(
                path=d["path"],
                type=d["type"],
                major=d.get("major", 0),
                minor=d.get("minor", 0),
                file_mode=d.get("fileMode"),
                uid=d.get("uid"),
                gid=d.get("gid"),
            )
            for d in lx.get("devices") or ()
        ),
        masked_paths=tuple(lx.get("maskedPaths") or ()),
        readonly_paths=tuple(lx.get("readonlyPaths") or ()),
        sysctl=dict(lx.get("sysctl") or {}),
        rootfs_propagation=lx.get("rootfsPropagation"),
        cgroups_path=lx.get("cgroupsPath"),
        resources=dict(lx.get("resources") or {}),
        seccomp=lx.get("seccomp"),
        time_offsets=dict(lx.get("timeOffsets") or {}),
        personality=lx.get("personality"),
        mount_label=lx.get("mountLabel"),
    )
