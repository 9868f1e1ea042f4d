"""secfilt's filter cache (/var/cache/secfilt) out of its commands' reach.

A warm start loads the compiled filters from that directory. The command runs as the same user,
so a program it wrote there (an allow-all filter, with the right owner, mode, key and digest)
would be loaded by the next run in place of its filters: found by an adversarial review, with
--allow-write=$HOME. Every sandboxed command now has the directory read-only in its mount
namespace, whatever its policy, with no way to rename a directory of its own making into its
place; a user's secfilt, whose namespace the kernel may refuse, keeps no cache at all."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, needs_root

CACHE_DIR = "/var/cache/secfilt"

POISON = textwrap.dedent("""\
    import os, sys
    cache = sys.argv[1]
    parent = os.path.dirname(cache)
    done = []
    def attempt(what, fn):
        try:
            fn()
            done.append(what)
        except OSError as e:
            print(what, e.strerror)
    for name in os.listdir(cache):
        attempt("rewrite", lambda: open(os.path.join(cache, name), "r+b").write(b"{}"))
        attempt("unlink", lambda: os.unlink(os.path.join(cache, name)))
    attempt("create", lambda: open(os.path.join(cache, "planted"), "w").write("{}"))
    # a directory of the command's own where the next run looks: each rename that works is
    # undone at once (a regression must not leave the host's /var/cache moved)
    for what, old, new in (("rename cache", cache, cache + ".old"),
                           ("rename parent", parent, parent + ".moved")):
        attempt(what, lambda: os.rename(old, new))
        if what in done:
            os.rename(new, old)
    print("changed:", " ".join(done) or "nothing")
""")

# (allow-write paths, the name the command attacks the cache by); ALIAS: a bind of /var
POLICIES = {
    "allow-write /": (["/"], CACHE_DIR),
    "allow-write /var": (["/var"], CACHE_DIR),
    "a bind of /var": (["{alias}"], "{alias}/cache/secfilt"),
}


def secfilt(home: Path, *argv: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(REPO / "runtime"))
    env.pop("XDG_CACHE_HOME", None)
    return subprocess.run([*prefix, sys.executable, "-m", "secfilt_runtime.secfilt_cli", *argv],
                          capture_output=True, text=True, env=env, timeout=60)


def snapshot(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


@needs_root
@pytest.mark.parametrize("policy", POLICIES)
def test_a_command_cannot_change_the_filter_cache(policy: str, tmp_path: Path) -> None:
    cache = Path(CACHE_DIR)
    alias = tmp_path / "alias"
    alias.mkdir()
    paths, target = POLICIES[policy]
    args = ["--read-only=1", *(f"--allow-write={p.format(alias=alias)}" for p in paths)]
    target = target.format(alias=alias)
    # the alias exists in a mount namespace of the test's own, where secfilt runs
    prefix = ("unshare", "-m", "--propagation", "private", "sh", "-c",
              f'mount --bind /var "{alias}" && exec "$@"', "sh")
    first = secfilt(tmp_path, *args, "true", prefix=prefix)
    assert first.returncode == 0, first.stderr
    before = snapshot(cache)
    assert before, "the first run cached nothing"
    script = tmp_path / "poison.py"
    script.write_text(POISON)
    # the baseline: unsandboxed, the same script changes everything it tries
    copy = tmp_path / "copy" / "cache" / "secfilt"
    shutil.copytree(cache, copy)
    bare = subprocess.run([sys.executable, str(script), str(copy)], capture_output=True,
                          text=True, check=True)
    assert "rewrite" in bare.stdout and "rename parent" in bare.stdout, bare.stdout
    assert copy.is_dir()  # the renames were undone
    out = secfilt(tmp_path, *args, sys.executable, str(script), target, prefix=prefix)
    assert "changed: nothing" in out.stdout, f"{policy}:\n{out.stdout}{out.stderr}"
    assert snapshot(cache) == before
    assert not Path(CACHE_DIR + ".old").exists() and not Path("/var/cache.moved").exists()


def test_an_entry_with_another_name_is_not_loaded(tmp_path: Path) -> None:
    """A hard link made where a sandbox could write would let it rewrite the entry past the
    directory's protection: an entry must have one name."""
    sys.path.insert(0, str(REPO / "runtime"))
    from secfilt_runtime.seccomp import cache

    directory = tmp_path / "cache"
    entry = cache.Entry(programs=(("policy", b"\x06\x00\x00\x00\x00\x00\xff\x7f", 0),))
    cache.store(str(directory), "k", entry)
    assert cache.load(str(directory), "k") == entry
    os.link(directory / "k", tmp_path / "elsewhere")
    assert cache.load(str(directory), "k") is None


@needs_root
def test_a_user_keeps_no_filter_cache() -> None:
    """A user's command gets a mount namespace only where the kernel grants a user namespace,
    which may change between runs: a run without one could write what the next would load."""
    # not under pytest's tmp_path, which nobody cannot reach
    home = Path(tempfile.mkdtemp(prefix="secfilt-home-"))
    try:
        home.chmod(0o755)
        os.chown(home, 65534, 65534)
        code = "from secfilt_runtime.secfilt_cli import cache_dir; print(cache_dir())"
        as_nobody = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
             "-c", code], capture_output=True, text=True,
            env=dict(os.environ, HOME=str(home), XDG_CACHE_HOME="",
                     PYTHONPATH=str(REPO / "runtime")))
        assert as_nobody.stdout.strip() == "None", as_nobody.stderr
        assert not (home / ".cache").exists()
        home.chmod(0o700)
        os.chown(home, 0, 0)
        as_root = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env=dict(os.environ, HOME=str(home), XDG_CACHE_HOME="",
                                          PYTHONPATH=str(REPO / "runtime")))
        assert as_root.stdout.strip() == CACHE_DIR, as_root.stderr  # not the environment's
    finally:
        shutil.rmtree(home)


@needs_root
def test_audit_mode_logs_the_mount_it_refuses(tmp_path: Path) -> None:
    """Audit mode's Landlock domain (for its ptrace scoping) refuses every mount call; the
    log must say so ("deny"), not that the call was let through (a review's finding)."""
    log = tmp_path / "audit.jsonl"
    target = tmp_path / "mnt"
    target.mkdir()
    out = secfilt(tmp_path, "--mode=audit", "--read-only=1", f"--log={log}", "unshare", "-m",
                  "--propagation", "private", "mount", "-t", "tmpfs", "none", str(target))
    assert out.returncode != 0, out.stderr
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    mounts = [e for e in entries if e["syscall"] == "mount"]
    assert mounts and all(e["action"] == "deny" for e in mounts), entries
