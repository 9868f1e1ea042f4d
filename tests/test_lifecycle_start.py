"""`start` as the created init judges it: a peer the init does not take for root or its
creator is refused out loud (a refusal reply, a non-zero exit, the container still created),
never a silent end-of-file that `start` would take for a successful execve."""

from __future__ import annotations

import pytest
from test_lifecycle import container, status, wait_for

from conftest import BASE_CONFIG, needs_root

pytestmark = [needs_root, pytest.mark.e2e]

ALL_NEW = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "user")]


def out_mount(tmp_path) -> list[dict]:
    """The test's directory at /tmp/out, where the process leaves its mark."""
    tmp_path.chmod(0o777)  # written by the container's root: another host uid
    return [*BASE_CONFIG["mounts"], {"destination": "/tmp/out", "type": "bind",
                                     "source": str(tmp_path), "options": ["rbind"]}]


def userns(host_id: int) -> dict:
    maps = [{"containerID": 0, "hostID": host_id, "size": 65536}]
    return {"namespaces": ALL_NEW, "uidMappings": maps, "gidMappings": maps}


def test_start_refused_by_the_peer_check_fails_loudly(runtime, make_bundle, tmp_path):
    """The container's user namespace does not map the host's root: the init sees `start`'s
    uid as the overflow uid, neither root nor its creator, and refuses it."""
    marker = tmp_path / "ran"
    bundle = make_bundle(["sh", "-c", "echo ran > /tmp/out/ran"], linux=userns(100000),
                         mounts=out_mount(tmp_path))
    with container(runtime, bundle, started=False) as cid:
        r = runtime("start", cid)
        assert r.returncode == 1, (r.returncode, r.stderr)
        assert "start refused: peer uid 65534 is neither root nor the container's creator" \
            in r.stderr, r.stderr
        assert not marker.exists()  # the process never ran
        # still waiting for a start it will accept: created, not "running"
        assert status(runtime, cid) == "created"
        r = runtime("start", cid)  # asked again: refused again, the same way
        assert r.returncode == 1 and "start refused" in r.stderr, r.stderr
        assert not marker.exists()


def test_start_accepted_when_the_user_namespace_maps_root(runtime, make_bundle, tmp_path):
    """The control: the same container with the host's root mapped starts and runs."""
    bundle = make_bundle(["sh", "-c", "echo ran > /tmp/out/ran"], linux=userns(0),
                         mounts=out_mount(tmp_path))
    with container(runtime, bundle):  # started: `start` succeeded
        wait_for(lambda: (tmp_path / "ran").exists(), what="the process's mark")
        assert (tmp_path / "ran").read_text() == "ran\n"
