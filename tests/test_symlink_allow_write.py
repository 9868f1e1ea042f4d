"""An allow-write path that is a symlink where the kernel layers meet it (a link in a bind-mounted
tree, which the policy's parsing in the bundle's rootfs cannot see): the read-only mounts
(rootfs.freeze_for_policy) and Landlock open allow-write paths with RESOLVE_NO_SYMLINKS, so
neither widens to the link's target. They do not refuse the container: the path simply gets
no writable clone and no Landlock rule, which is stricter than the policy, never wider, and the
tracer denies the link's target by its own judgement. Each layer is tried alone (in a forked
child, so nothing reaches the test process), then the whole container, judged from the host.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from test_landlock import DENIED, in_restricted_child, write

from secfilt_runtime import kernel
from secfilt_runtime.container import rootfs
from secfilt_runtime.policy import landlock
from secfilt_runtime.policy.model import Policy

from conftest import BASE_CONFIG, needs_root


def linked_tree(base: Path) -> Path:
    """forbidden/ (a victim inside), allowed/, and link -> forbidden (relative)."""
    tree = base / "tree"
    (tree / "forbidden").mkdir(parents=True)
    (tree / "forbidden" / "victim").write_text("victim\n")
    (tree / "allowed").mkdir()
    (tree / "link").symlink_to("forbidden")
    tree.chmod(0o755)
    return tree


@pytest.mark.skipif(landlock.abi() < 3, reason="needs Landlock ABI 3 or later")
def test_landlock_grants_nothing_through_a_linked_allow_write(tmp_path: Path) -> None:
    tree = linked_tree(tmp_path)
    policy = Policy(read_only=True, allow_write=(str(tree / "link"), str(tree / "allowed")))
    got = in_restricted_child(policy, {
        "through-link": lambda: write(tree / "link" / "new"),
        "target": lambda: write(tree / "forbidden" / "victim"),
        "allowed": lambda: write(tree / "allowed" / "new"),
    })
    assert got["allowed"] == 0  # the control: the ruleset grants a real directory
    assert got["through-link"] in DENIED and got["target"] in DENIED, got
    assert (tree / "forbidden" / "victim").read_text() == "victim\n"
    assert sorted(p.name for p in (tree / "forbidden").iterdir()) == ["victim"]


def _in_private_mounts(tree: Path, allow_write: tuple[str, ...]) -> dict[str, int]:
    """In a forked child (test_landlock's, with an empty policy: no Landlock domain): a
    private copy of the mount table with a tmpfs holding `tree`'s layout, frozen as the init
    freezes its mounts, then the writes. The mounts go with the child's namespace."""

    def layout() -> None:
        (tree / "forbidden").mkdir()
        (tree / "forbidden" / "victim").write_text("victim\n")
        (tree / "allowed").mkdir()
        (tree / "link").symlink_to("forbidden")

    return in_restricted_child(Policy(), {
        "unshare": lambda: kernel.unshare(kernel.CLONE_NEWNS),
        "private": lambda: kernel.mount("none", "/", None, kernel.MS_REC | kernel.MS_PRIVATE),
        "tmpfs": lambda: kernel.mount("tmpfs", str(tree), "tmpfs", 0, "mode=755"),
        "layout": layout,
        "freeze": lambda: rootfs.freeze_for_policy(allow_write),
        "through-link": lambda: write(tree / "link" / "new"),
        "target": lambda: write(tree / "forbidden" / "victim"),
        "allowed": lambda: write(tree / "allowed" / "new"),
    })


@needs_root
def test_read_only_mounts_clone_nothing_writable_through_a_link(tmp_path: Path) -> None:
    before = Path("/proc/self/mountinfo").read_text()
    tree = tmp_path / "frozen"
    tree.mkdir()
    got = _in_private_mounts(tree, (str(tree / "link"), str(tree / "allowed")))
    assert (got["unshare"], got["private"], got["tmpfs"], got["freeze"]) == (0, 0, 0, 0), got
    assert got["allowed"] == 0  # the control: a real directory gets its writable clone
    assert got["through-link"] == errno.EROFS and got["target"] == errno.EROFS, got
    assert Path("/proc/self/mountinfo").read_text() == before  # nothing reached the host
    assert list(tree.iterdir()) == []


# --- the whole container -------------------------------------------------------------------

TREE = "/work"
WRITES = (f"echo changed > {TREE}/link/new; echo link=$?; "
          f"echo changed > {TREE}/forbidden/victim; echo target=$?; "
          f"echo here > {TREE}/allowed/new; echo allowed=$?")


def _bundle(make_bundle, tree: Path, allow_write: str) -> Path:
    mounts = [*BASE_CONFIG["mounts"],
              {"destination": TREE, "type": "bind", "source": str(tree),
               "options": ["rbind", "rw"]}]
    return make_bundle(["sh", "-c", WRITES], mounts=mounts, annotations={
        "org.secfilter.read-only": "true", "org.secfilter.allow-write": allow_write})


def _verdicts(stdout: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split("=") for line in stdout.split())}


@needs_root
def test_container_with_a_linked_allow_write_writes_nowhere_else(runtime, make_bundle,
                                                                 tmp_path):
    tree = linked_tree(tmp_path)
    r = runtime.run(_bundle(make_bundle, tree, f"{TREE}/link,{TREE}/allowed"))
    got = _verdicts(r.stdout)
    assert got["allowed"] == 0, (r.stdout, r.stderr)
    assert got["link"] != 0 and got["target"] != 0, (r.stdout, r.stderr)
    assert f"org.secfilter.allow-write: {TREE}/link is reached through a symlink here; it " \
        "stays read-only" in r.stderr, r.stderr  # said, not silently narrowed
    assert (tree / "forbidden" / "victim").read_text() == "victim\n"
    assert sorted(p.name for p in (tree / "forbidden").iterdir()) == ["victim"]
    # the fixture checks that no state entry, mount or cgroup is left


@needs_root
def test_container_control_the_target_named_itself_is_writable(runtime, make_bundle,
                                                               tmp_path):
    """The control: naming the target directly allows the writes the link did not."""
    tree = linked_tree(tmp_path)
    r = runtime.run(_bundle(make_bundle, tree, f"{TREE}/forbidden,{TREE}/allowed"))
    assert _verdicts(r.stdout) == {"link": 0, "target": 0, "allowed": 0}, (r.stdout, r.stderr)
    assert (tree / "forbidden" / "victim").read_text() == "changed\n"


@needs_root
@pytest.mark.parametrize("link", ["/", "../.."])
def test_a_link_in_the_image_does_not_widen_allow_write(runtime, make_bundle, link) -> None:
    """The policy's paths are read in the image's root when the container is created: a link
    there (/scratch -> /, or one climbing out with ..) made allow-write=/scratch the whole
    root, writable by every layer (found by a review). It stays read-only, and says so."""
    bundle = make_bundle(["sh", "-c", "echo x > /scratch/planted; echo x > /planted; "
                          "chmod 777 /etc; echo done"], writable_rootfs=True, annotations={
        "org.secfilter.read-only": "true", "org.secfilter.allow-write": "/scratch"})
    root = bundle / "rootfs"
    (root / "scratch").symlink_to(link)
    mode = (root / "etc").stat().st_mode
    r = runtime.run(bundle)
    assert "done" in r.stdout, r.stderr
    assert 'annotations["org.secfilter.allow-write"]: /scratch goes through a symlink in ' \
        "the container's root" in r.stderr, r.stderr
    assert not (root / "planted").exists()
    assert (root / "etc").stat().st_mode == mode
