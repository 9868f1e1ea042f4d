"""Verdicts of the config schema kept on disk, so a config.json already found valid is not
validated again: jsonschema and its dependencies cost ~80 ms to import, a third of `run`.

An entry says "this exact config.json passed config.schema.json": its name is the digest of
the document's bytes and of every schema file (a changed schema is a different key), and its
content repeats that key. It is trusted only when the directory and the file are owned by us
and writable by no one else; anything else (another owner, a group- or world-writable mode, a
symlink, content naming another key) is a miss and the document is validated again: only a
process with our own uid (which could change the runtime itself) can make a bad config pass.
Only a verdict of "valid" is stored; the checks that code makes after the schema
(schema.config_problem) run every time.

Standard library only, and little of it: this runs on every `run` and `create`.
"""

from __future__ import annotations

import os
import stat

try:  # the builtin module: hashlib would load OpenSSL, ~12 ms on its own here
    from _sha256 import sha256
except ImportError:  # pragma: no cover - other Pythons name or build it differently
    from hashlib import sha256

from .log import log

# bump when what the schema check accepts changes without a schema file changing (e.g. a
# newer validator): older entries then stop matching
VERSION = 1
DIR_NAME = "validation-cache"
_SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")
_MAX_ENTRIES = 256  # distinct configs remembered; engines give each container its own
_ENTRY_SIZE = 128


def key(document: bytes, schema_files: tuple[str, ...]) -> str | None:
    """The digest naming the verdict for `document`, or None when a schema cannot be read
    (then nothing is cached: the validator reports the problem itself)."""
    h = sha256(f"secfilt-config-verdict {VERSION}\0".encode())
    for name in schema_files:
        try:
            with open(os.path.join(_SCHEMA_DIR, name), "rb") as f:
                data = f.read()
        except OSError:
            return None
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    h.update(b"\0document\0")
    h.update(document)
    return h.hexdigest()


def _ours(st: os.stat_result, kind: int) -> bool:
    # not 0o077 as for compiled filters: a verdict is not a secret, only its integrity matters
    return (stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.geteuid()
            and not st.st_mode & 0o022)


def _entry(cache_key: str) -> bytes:
    return f"valid {cache_key}\n".encode()


def known_valid(cache_dir: str, cache_key: str) -> bool:
    """Whether a trusted entry says the document of `cache_key` is valid."""
    try:
        if not _ours(os.lstat(cache_dir), stat.S_IFDIR):
            log.debug(f"validation cache {cache_dir}: not a directory of ours alone; not used")
            return False
        fd = os.open(os.path.join(cache_dir, cache_key),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        if not _ours(os.fstat(fd), stat.S_IFREG):
            log.debug(f"validation cache entry {cache_key}: wrong owner or mode; ignored")
            return False
        data = os.read(fd, _ENTRY_SIZE)
    except OSError:
        return False
    finally:
        os.close(fd)
    return data == _entry(cache_key)


def remember(cache_dir: str, cache_key: str) -> None:
    """Record that the document of `cache_key` is valid. Best effort: a cache that cannot be
    written only costs the next start a validation."""
    tmp = None
    try:
        # the runtime's --root may not exist yet: made as StateStore.reserve makes it
        os.makedirs(os.path.dirname(cache_dir), 0o711, exist_ok=True)
        try:
            os.mkdir(cache_dir, 0o700)
        except FileExistsError:
            pass
        if not _ours(os.lstat(cache_dir), stat.S_IFDIR):
            return
        _prune(cache_dir)
        path = os.path.join(cache_dir, cache_key)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, _entry(cache_key))
            os.fchmod(fd, 0o600)  # whatever the umask took or left
        finally:
            os.close(fd)
        os.rename(tmp, path)  # a reader sees the whole entry or none
    except OSError as e:
        log.debug(f"validation cache {cache_dir}: not written: {e}")
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _prune(cache_dir: str) -> None:
    """Keep the directory bounded: past _MAX_ENTRIES, drop the older half (by mtime)."""
    with os.scandir(cache_dir) as it:
        entries = [e for e in it if e.is_file(follow_symlinks=False)]
    if len(entries) < _MAX_ENTRIES:
        return
    entries.sort(key=lambda e: e.stat(follow_symlinks=False).st_mtime_ns)
    for e in entries[: len(entries) // 2]:
        try:
            os.unlink(e.path)
        except OSError:
            pass
