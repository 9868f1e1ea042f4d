"""Policy from its three spellings: org.secfilter.* annotations, secfilt's options, and the
original secfilter's key=value config files.

All three become a list of Settings (key, value, where it came from) and go through one builder,
so a value means the same whatever its spelling. Errors name where the value came from and the
value: `annotations["org.secfilter.allowed-port"]: 70000 is not a port (1-65535)`.
"""

from __future__ import annotations

import errno as errno_mod
import os
import posixpath

from .. import jsonio
from ..errors import ConfigError, warn
from ..records import record
from . import resolv
from .model import Policy

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PREFIX = "org.secfilter."
BOOL_KEYS = ("read-only", "no-outbound-network", "allow-resolv", "mainstream-network-families")
LIST_KEYS = ("allow-write", "allowed-netmask", "allowed-port")
SCALAR_KEYS = ("log", "mode", "errno")
KEYS = (*BOOL_KEYS, *LIST_KEYS, *SCALAR_KEYS)
# the original's spellings: --allowed-netmasks in its README, --write-allow in its docs,
# --write-directory and --allowed-ports in its code
ALIASES = {
    "allowed-netmasks": "allowed-netmask",
    "allowed-ports": "allowed-port",
    "write-allow": "allow-write",
    "write-directory": "allow-write",
}
MODES = ("enforce", "audit")
RESOLV_CONF = "/etc/resolv.conf"
_SYMLINK_LIMIT = 40

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from ipaddress import IPv4Network, IPv6Network

    Network = IPv4Network | IPv6Network


@record(frozen=True)
class Setting:
    key: str      # canonical key, without prefix
    value: str
    source: str   # for messages: 'annotations["org.secfilter.x"]', "--x", "file.conf:3: x"


# --- the three spellings -------------------------------------------------------------------


def from_annotations(annotations: dict[str, str], rootfs: str, *,
                     resolv_conf: str | None = None, mounts: Sequence[Any] = ()
                     ) -> Policy | None:
    """The policy of a config.json's annotations; None when no org.secfilter.* key is set.

    `rootfs` is the container's root on the host: allow-write paths are made canonical inside
    it and allow-resolv reads its /etc/resolv.conf, unless `resolv_conf` names the host file
    that will be mounted there, or `mounts` (spec.Mount-like: destination, type, source,
    options) bind one there, as engines do.
    """
    if resolv_conf is None:
        resolv_conf = bind_source(mounts, RESOLV_CONF)
    settings = []
    for key in sorted(annotations):
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX):]
        source = f'annotations["{key}"]'
        value = annotations[key]
        if name not in KEYS:
            raise ConfigError(f"{source}: unknown secfilter policy annotation "
                              f"(known: {', '.join(KEYS)})")
        if not isinstance(value, str):
            raise ConfigError(f"{source}: must be a string, got {value!r}")
        if name in LIST_KEYS:
            settings += [Setting(name, item.strip(), source) for item in _split_list(name, value)]
        else:
            settings.append(Setting(name, value, source))
    if not settings:
        return None
    return build(settings, rootfs=rootfs, strict_bools=True, resolv_conf=resolv_conf,
                 relative_log=False)


def bind_source(mounts: Sequence[Any], destination: str) -> str | None:
    """The host file the last bind mount onto `destination` puts there, if any."""
    found = None
    for m in mounts:
        is_bind = m.type == "bind" or any(o in ("bind", "rbind") for o in m.options)
        target = posixpath.normpath("/" + m.destination.lstrip("/"))
        if is_bind and m.source and target == destination:
            found = m.source
    return found


def _split_list(name: str, value: str) -> list[str]:
    # allow-write also takes ":" between paths, as the schema always has
    if name == "allow-write":
        return value.replace(":", ",").split(",")
    return value.split(",")


CONFIG_FILE_MAX_CHARS = 16 << 20


def read_config_file(path: str) -> list[Setting]:
    """The original's config files: `key=value` lines, keys repeatable, `# comments`,
    `key=` meaning true for a boolean."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = jsonio.read_bounded(f, CONFIG_FILE_MAX_CHARS).splitlines()
    except OSError as e:
        raise ConfigError(f"--config={path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    settings = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        where = f"{path}:{number}"
        if "=" not in text:
            raise ConfigError(f"{where}: expected key=value, got {show(text)}")
        key, value = (part.strip() for part in text.split("=", 1))
        name = ALIASES.get(key, key)
        if name not in KEYS:
            raise ConfigError(f"{where}: unknown key {show(key)} (known: {', '.join(KEYS)})")
        source = f"{where}: {key}"
        if name in LIST_KEYS:
            settings += [Setting(name, v.strip(), source) for v in _split_list(name, value)]
        else:
            settings.append(Setting(name, value, source))
    return settings


# --- values --------------------------------------------------------------------------------


def show(value: str) -> str:
    """A value in a message: as typed, quoted only when it would not read as one word."""
    if value and value.isprintable() and not any(c.isspace() or c == '"' for c in value):
        return value
    return jsonio.dumps(value)


_TRUE = ("true", "1")
_FALSE = ("false", "0")
# boost::program_options, which the original used, also took these (and "" in config files)
_LOOSE_TRUE = (*_TRUE, "yes", "on", "")
_LOOSE_FALSE = (*_FALSE, "no", "off")


def parse_bool(value: str, source: str, strict: bool) -> bool:
    word = value if strict else value.strip().lower()
    if word in (_TRUE if strict else _LOOSE_TRUE):
        return True
    if word in (_FALSE if strict else _LOOSE_FALSE):
        return False
    raise ConfigError(f"{source}: {show(value)} is not a boolean (true, false, 1 or 0)")


def parse_port(value: str, source: str) -> int:
    # digits only, no sign, no leading zero: what the annotation schema accepts too
    number = int(value) if value.isascii() and value.isdigit() else -1
    if str(number) == value and 1 <= number <= 65535:
        return number
    raise ConfigError(f"{source}: {show(value)} is not a port (1-65535)")


def parse_netmask(value: str, source: str) -> Network:
    """A CIDR or a bare address (one host); an IPv4-mapped IPv6 network is its IPv4 network,
    as destinations are judged."""
    # ~3 ms with functools: only a policy with a netmask needs it
    from ipaddress import IPv4Network, IPv6Network, ip_network

    try:
        if "%" in value:  # a scoped address names an interface, not a network
            raise ValueError(value)
        net = ip_network(value, strict=False)
    except ValueError:
        raise ConfigError(f"{source}: {show(value)} is not an IPv4 or IPv6 network") from None
    if isinstance(net, IPv6Network) and net.prefixlen >= 96 and net.network_address.ipv4_mapped:
        net = IPv4Network((net.network_address.ipv4_mapped, net.prefixlen - 96))
    return net


def parse_errno(value: str, source: str) -> int:
    number = getattr(errno_mod, value, None) if value.startswith("E") else None
    if not isinstance(number, int) or errno_mod.errorcode.get(number) is None:
        raise ConfigError(f"{source}: {show(value)} is not an errno name (such as EPERM or EACCES)")
    return number


def parse_mode(value: str, source: str) -> str:
    if value not in MODES:
        raise ConfigError(f"{source}: {show(value)} is not a mode (enforce or audit)")
    return value


def check_path(value: str, source: str) -> str:
    if not value.startswith("/") or "\0" in value:
        raise ConfigError(f"{source}: {show(value)} is not an absolute path")
    return value


# --- paths ---------------------------------------------------------------------------------


def canonical_in_root(root: str, path: str,
                      readlink: Callable[[str], str] = os.readlink) -> str:
    """`path` with its symlinks resolved as the kernel would inside `root`, clamped at `root`
    (an absolute link target or too many `..` stay inside). Components that do not exist are
    kept as written; the result has no `.`, `..`, `//` or trailing slash."""
    pending = [p for p in path.split("/") if p not in ("", ".")]
    pending.reverse()
    done: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = "/" + "/".join([*done, part])
        try:
            target = readlink(posixpath.join(root, candidate.lstrip("/")))
        except OSError:
            done.append(part)  # not a link (or not there): kept as written
            continue
        links += 1
        if links > _SYMLINK_LIMIT:
            raise ConfigError(f"{show(path)}: too many levels of symbolic links")
        if target.startswith("/"):
            done = []
        pending.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
    return "/" + "/".join(done)


def _no_link(path: str) -> str:
    raise OSError(path)  # canonical_in_root then normalizes the names as written


def _as_named_in_image(path: str, rootfs: str, s: Setting) -> str:
    """An allow-write path of a container, `path` its canonical form in the image: the image's
    symlinks are the image author's, who may make "/scratch" name "/". A path that goes
    through one stays as named, and so read-only, as the layers keep one they meet when they
    set up (policy.mounts.freeze, landlock); the host's (secfilt) are the host's own, and
    followed by the caller."""
    named = canonical_in_root(rootfs, s.value, readlink=_no_link)
    if path == named:
        return path
    if ".." in s.value.split("/"):
        # the names as written would drop the component a link stands for
        raise ConfigError(f"{s.source}: {s.value} goes through a symlink in the container's "
                          "root and then '..': name the directory itself")
    warn(f"{s.source}: {s.value} goes through a symlink in the container's root (to {path}); "
         "it stays read-only (name the link's target to allow writes there)")
    return named


# --- the builder ---------------------------------------------------------------------------


def build(settings: Iterable[Setting], *, rootfs: str = "/", strict_bools: bool = False,
          resolv_conf: str | None = None, relative_log: bool = True) -> Policy:
    """One Policy from settings in order: later scalars win, list values accumulate."""
    bools: dict[str, bool] = {}
    allow_write: list[str] = []
    netmasks: list[Network] = []
    ports: list[int] = []
    sources: dict[str, str] = {}
    mode = "enforce"
    err = errno_mod.EPERM
    log_path: str | None = None
    for s in settings:
        sources[s.key] = s.source
        if s.key in BOOL_KEYS:
            bools[s.key] = parse_bool(s.value, s.source, strict_bools)
        elif s.key == "allow-write":
            if s.value == "" and not strict_bools:
                continue  # a stray comma in a list of the original's files
            check_path(s.value, s.source)
            try:
                path = canonical_in_root(rootfs, s.value)
            except ConfigError as e:
                raise ConfigError(f"{s.source}: {e}") from None
            if rootfs != "/":
                path = _as_named_in_image(path, rootfs, s)
            if path not in allow_write:
                allow_write.append(path)
        elif s.key == "allowed-netmask":
            net = parse_netmask(s.value, s.source)
            if net not in netmasks:
                netmasks.append(net)
        elif s.key == "allowed-port":
            port = parse_port(s.value, s.source)
            if port not in ports:
                ports.append(port)
        elif s.key == "mode":
            mode = parse_mode(s.value, s.source)
        elif s.key == "errno":
            err = parse_errno(s.value, s.source)
        elif s.key == "log":
            if relative_log and s.value and not s.value.startswith("/"):
                log_path = os.path.abspath(s.value)
            else:
                log_path = check_path(s.value, s.source)
    nameservers: tuple[Network, ...] = ()
    allow_resolv = bools.get("allow-resolv", False)
    if allow_resolv:
        try:
            nameservers = (resolv.read_nameservers_file(resolv_conf) if resolv_conf
                           else resolv.read_nameservers(rootfs))
        except OSError as e:
            where = resolv_conf or posixpath.join(rootfs, RESOLV_CONF.lstrip("/"))
            raise ConfigError(f"{sources['allow-resolv']}: cannot read the nameservers of "
                              f"{where}: {e.strerror}") from None
        # the resolvers join only the rules that restrict: an empty list means "any"
        if netmasks:
            netmasks += [n for n in nameservers if n not in netmasks]
        if ports and 53 not in ports:
            ports.append(53)
    return Policy(
        read_only=bools.get("read-only", False),
        allow_write=tuple(allow_write),
        no_outbound_network=bools.get("no-outbound-network", False),
        netmasks=tuple(netmasks),
        ports=tuple(ports),
        allow_resolv=allow_resolv,
        nameservers=nameservers,
        mainstream_network_families=bools.get("mainstream-network-families", False),
        log_path=log_path,
        mode=mode,  # type: ignore[arg-type]
        errno=err,
        sources=sources,
    )
