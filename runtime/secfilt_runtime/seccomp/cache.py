"""Compiled BPF programs kept on disk, so a warm start loads bytes with seccomp(2) and never
imports libseccomp.

A cache entry is trusted only as far as a sandbox may be: the directory and the file must be
owned by us and closed to everyone else (0700 / 0600), the file must have no other name, and
the content must match the digest it records. None of that stops a sandbox of the same user
from writing one: the callers keep the directory out of their sandboxes' reach (secfilt:
cache_dir and mounts.keep_read_only; containers do not see the runtime's root). Anything else
is ignored (and recompiled), never loaded: a tampered program would be a sandbox bypass.
Entries are written to a temporary name and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import binascii  # base64's two calls without the module (~1 ms of imports here)
import os
import stat

from .. import jsonio
from ..log import log
from ..records import record
from ..validcache import sha256

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# bump when compiler.py or the loader flags change what a given profile compiles to
COMPILER_VERSION = 3
_MAX_ENTRY = 16 << 20


@record(frozen=True)
class Entry:
    programs: tuple[tuple[str, bytes, int], ...]  # (source, bpf, flags) in install order
    skipped: tuple[str, ...] = ()


def canonical(value: Any) -> bytes:
    return jsonio.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def key(*, profile: Any, policy_profile: Any, machine: str, libseccomp: str) -> str:
    """Everything that shapes the programs, hashed."""
    return sha256(canonical({
        "profile": profile, "policy": policy_profile, "machine": machine,
        "libseccomp": libseccomp, "compiler": COMPILER_VERSION,
    })).hexdigest()


def _body(entry: Entry, cache_key: str) -> dict[str, Any]:
    return {"key": cache_key, "skipped": list(entry.skipped),
            "programs": [{"source": s, "bpf": binascii.b2a_base64(b, newline=False).decode(),
                          "flags": f} for s, b, f in entry.programs]}


def encode(entry: Entry, cache_key: str) -> bytes:
    body = _body(entry, cache_key)
    return canonical({**body, "digest": sha256(canonical(body)).hexdigest()})


def decode(data: bytes, cache_key: str) -> Entry | None:
    """The entry in `data` if it is well-formed, for `cache_key`, and matches its digest."""
    try:
        doc = jsonio.loads(data)
        digest = doc.pop("digest")
        if doc.get("key") != cache_key or sha256(canonical(doc)).hexdigest() != digest:
            return None
        programs = tuple((str(p["source"]), binascii.a2b_base64(p["bpf"], strict_mode=True),
                          int(p["flags"])) for p in doc["programs"])
        return Entry(programs=programs, skipped=tuple(str(s) for s in doc["skipped"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _private(st: os.stat_result, kind: int) -> bool:
    return (stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.geteuid()
            and not st.st_mode & 0o077)


def usable_dir(cache_dir: str, create: bool) -> bool:
    """Whether cache_dir is ours alone (created 0700 when asked and missing)."""
    if create:
        try:
            os.makedirs(cache_dir, 0o700)
        except FileExistsError:
            pass
    try:
        st = os.lstat(cache_dir)
    except OSError:
        return False
    if not _private(st, stat.S_IFDIR):
        log.debug(f"seccomp cache {cache_dir}: not a private directory of ours; not used")
        return False
    return True


def load(cache_dir: str, cache_key: str) -> Entry | None:
    if not usable_dir(cache_dir, create=False):
        return None
    path = os.path.join(cache_dir, cache_key)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        # one name only: a hard link made elsewhere (where a sandbox could write) would let
        # the file be rewritten past the directory's protection
        if not _private(st, stat.S_IFREG) or st.st_size > _MAX_ENTRY or st.st_nlink != 1:
            log.debug(f"seccomp cache {path}: wrong owner, mode, size or links; ignored")
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(_MAX_ENTRY + 1)
    finally:
        os.close(fd)
    entry = decode(data, cache_key)
    if entry is None:
        log.debug(f"seccomp cache {path}: content does not match its digest; ignored")
    return entry


def store(cache_dir: str, cache_key: str, entry: Entry) -> None:
    """Best effort: a cache that cannot be written only costs the next start a compile."""
    try:
        if not usable_dir(cache_dir, create=True):
            return
        path = os.path.join(cache_dir, cache_key)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(encode(entry, cache_key))
            os.fchmod(fd, 0o600)  # the umask may have taken bits we did not mean to give
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as e:
        log.debug(f"seccomp cache {cache_dir}: not written: {e}")
        try:
            os.unlink(tmp)
        except (OSError, UnboundLocalError):
            pass
