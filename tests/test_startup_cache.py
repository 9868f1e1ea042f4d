"""The config-verdict cache (validcache): a config.json already found valid skips jsonschema on
the next run; an entry that is not ours alone, or that names another document, is never
trusted, so a bad config is refused with the same message whatever the cache holds."""

from __future__ import annotations

import copy
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from secfilt_runtime import schema, spec, validcache
from secfilt_runtime.errors import ConfigError

from conftest import BASE_CONFIG, REPO, Runtime, needs_root

BAD_MESSAGE = "process.args: must be a non-empty array"


def write_bundle(tmp_path: Path, name: str, args: list[str]) -> Path:
    bundle = tmp_path / name
    bundle.mkdir()
    config = copy.deepcopy(BASE_CONFIG)
    config["process"]["args"] = args
    config["root"]["path"] = str(tmp_path)  # load_bundle does not look at the rootfs
    (bundle / "config.json").write_text(json.dumps(config, indent=1))
    return bundle


def key_of(bundle: Path) -> str:
    k = validcache.key((bundle / "config.json").read_bytes(), schema.SCHEMA_FILES)
    assert k is not None
    return k


def forge(cache: Path, bundle: Path, *, mode: int = 0o600, dir_mode: int = 0o700,
          content: str | None = None, owner: int | None = None) -> Path:
    """An entry claiming the bundle's config is valid, as an attacker would write it."""
    cache.mkdir(mode=dir_mode, exist_ok=True)
    cache.chmod(dir_mode)
    k = key_of(bundle)
    entry = cache / k
    entry.write_text(content if content is not None else f"valid {k}\n")
    entry.chmod(mode)
    if owner is not None:
        os.chown(entry, owner, owner)
    return entry


def refusal(bundle: Path, cache: Path | None) -> str:
    with pytest.raises(ConfigError) as info:
        spec.load_bundle(str(bundle), validation_cache=None if cache is None else str(cache))
    return str(info.value)


# --- the verdict is recorded, and used -----------------------------------------------------


def test_a_valid_config_is_recorded_privately(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path, "good", ["true"])
    root = tmp_path / "root"  # not there yet: made as StateStore.reserve makes it
    cache = root / validcache.DIR_NAME
    parsed = spec.load_bundle(str(bundle), validation_cache=str(cache))
    assert parsed.process is not None and parsed.process.args == ("true",)
    entries = list(cache.iterdir())
    assert [e.name for e in entries] == [key_of(bundle)]
    st_dir, st_entry = cache.lstat(), entries[0].lstat()
    assert stat.S_IMODE(st_dir.st_mode) == 0o700 and st_dir.st_uid == os.geteuid()
    assert stat.S_IMODE(st_entry.st_mode) == 0o600 and st_entry.st_uid == os.geteuid()
    assert stat.S_IMODE(root.stat().st_mode) == 0o711
    # same document again: the same single entry, and the same Spec
    assert spec.load_bundle(str(bundle), validation_cache=str(cache)) == parsed
    assert len(list(cache.iterdir())) == 1


def test_an_invalid_config_is_never_recorded(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path, "bad", [])
    cache = tmp_path / validcache.DIR_NAME
    assert refusal(bundle, cache) == f"{bundle}/config.json: {BAD_MESSAGE}"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_a_changed_schema_or_document_is_another_key(tmp_path: Path) -> None:
    doc, files = b'{"ociVersion": "1.2.0"}', schema.SCHEMA_FILES
    assert validcache.key(doc, files) != validcache.key(doc + b" ", files)
    assert validcache.key(doc, files) != validcache.key(doc, files[:-1])
    assert validcache.key(doc, ("no-such.schema.json",)) is None  # unreadable: no caching


LOAD_TWICE = """
import sys
sys.path.insert(0, {runtime!r})
from secfilt_runtime import spec
spec.load_bundle({bundle!r}, validation_cache={cache!r})
print("jsonschema" in sys.modules)
"""


def _loads_jsonschema(bundle: Path, cache: Path) -> bool:
    code = LOAD_TWICE.format(runtime=str(REPO / "runtime"), bundle=str(bundle), cache=str(cache))
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip() == "True"


def test_the_second_load_does_not_import_jsonschema(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path, "good", ["true"])
    cache = tmp_path / validcache.DIR_NAME
    assert _loads_jsonschema(bundle, cache)  # first: validated for real
    assert not _loads_jsonschema(bundle, cache)  # then: the verdict stands in
    (bundle / "config.json").write_text((bundle / "config.json").read_text() + "\n")
    assert _loads_jsonschema(bundle, cache)  # one byte more: another document


@needs_root
@pytest.mark.e2e
def test_run_twice_imports_jsonschema_once(runtime: Runtime, make_bundle) -> None:
    """The whole `run` path, as the hot-path tests check theirs: the second run of the same
    bundle imports neither jsonschema nor its dependencies."""
    bundle = make_bundle(["true"])
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'runtime')!r})\n"
        "from secfilt_runtime import cli\n"
        f"code = cli.dispatch(['--root', {str(runtime.state_root)!r}, 'run', '--bundle',\n"
        f"                     {str(bundle)!r}, sys.argv[1]])\n"
        "heavy = ('jsonschema', 'referencing', 'jsonschema_specifications', 'pyseccomp')\n"
        "print(code, sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy}))\n"
    )
    seen = []
    for i in range(2):
        r = subprocess.run([sys.executable, "-I", "-c", code, f"{runtime.cid}-{i}"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        seen.append(r.stdout.strip().splitlines()[-1])
    assert seen[0] == "0 ['jsonschema', 'jsonschema_specifications', 'referencing']"
    assert seen[1] == "0 []"
    entries = list((runtime.state_root / validcache.DIR_NAME).iterdir())
    assert [e.name for e in entries] == [key_of(bundle)]


# --- what is not trusted -------------------------------------------------------------------


def test_a_forged_entry_of_ours_is_what_the_cache_trusts(tmp_path: Path) -> None:
    """The control for the refusals below: an entry that passes every check is believed (so
    those tests fail if the cache stops being consulted). Only we can write one: the
    directory is ours, 0700."""
    bundle = write_bundle(tmp_path, "bad", [])
    cache = tmp_path / validcache.DIR_NAME
    forge(cache, bundle)
    parsed = spec.load_bundle(str(bundle), validation_cache=str(cache))
    assert parsed.process is not None and parsed.process.args == ()


@pytest.mark.parametrize("how", ["group-writable", "world-writable", "writable-dir",
                                 "other-key", "trailing-bytes", "symlink", "directory"])
def test_an_untrusted_entry_is_a_miss(tmp_path: Path, how: str) -> None:
    bundle = write_bundle(tmp_path, "bad", [])
    expected = refusal(bundle, None)
    assert expected == f"{bundle}/config.json: {BAD_MESSAGE}"
    cache = tmp_path / validcache.DIR_NAME
    if how == "group-writable":
        forge(cache, bundle, mode=0o620)
    elif how == "world-writable":
        forge(cache, bundle, mode=0o602)
    elif how == "writable-dir":
        forge(cache, bundle, dir_mode=0o777)
    elif how == "other-key":
        forge(cache, bundle, content=f"valid {'0' * 64}\n")
    elif how == "trailing-bytes":
        forge(cache, bundle, content=f"valid {key_of(bundle)}\nvalid\n")
    elif how == "symlink":
        real = forge(tmp_path / "elsewhere", bundle)
        cache.mkdir(mode=0o700)
        (cache / real.name).symlink_to(real)
    elif how == "directory":
        cache.mkdir(mode=0o700)
        (cache / key_of(bundle)).mkdir()
    assert refusal(bundle, cache) == expected


@needs_root
def test_a_foreign_owned_entry_or_directory_is_a_miss(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path, "bad", [])
    expected = refusal(bundle, None)
    cache = tmp_path / validcache.DIR_NAME
    entry = forge(cache, bundle, owner=12345)
    assert refusal(bundle, cache) == expected
    os.chown(entry, 0, 0)
    os.chown(cache, 12345, 12345)
    assert refusal(bundle, cache) == expected
    os.chown(cache, 0, 0)
    assert spec.load_bundle(str(bundle), validation_cache=str(cache)).process is not None


def test_a_symlinked_cache_directory_is_not_used(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path, "bad", [])
    expected = refusal(bundle, None)
    forge(tmp_path / "real", bundle)
    (tmp_path / validcache.DIR_NAME).symlink_to(tmp_path / "real")
    assert refusal(bundle, tmp_path / validcache.DIR_NAME) == expected
    # and a valid config is not recorded through the link either
    good = write_bundle(tmp_path, "good", ["true"])
    spec.load_bundle(str(good), validation_cache=str(tmp_path / validcache.DIR_NAME))
    assert not (tmp_path / "real" / key_of(good)).exists()


def test_the_cache_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validcache, "_MAX_ENTRIES", 8)
    cache = tmp_path / validcache.DIR_NAME
    cache.mkdir(mode=0o700)
    for i in range(8):
        (cache / f"{i:064x}").write_text("x")
        os.utime(cache / f"{i:064x}", ns=(i * 10**9, i * 10**9))
    bundle = write_bundle(tmp_path, "good", ["true"])
    spec.load_bundle(str(bundle), validation_cache=str(cache))
    names = sorted(p.name for p in cache.iterdir())
    # the four oldest went, the newest four and the new verdict stayed
    assert names == sorted([f"{i:064x}" for i in range(4, 8)] + [key_of(bundle)])
