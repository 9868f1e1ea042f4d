"""Each container gets a session keyring of its own ("_ses.<id>", as runc names it): the one it
would otherwise inherit is the session keyring of whoever ran the runtime, whose keys the
container's processes would then possess. --no-new-keyring keeps the caller's, as in runc."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import uuid

import pytest
from test_lifecycle import create

from conftest import BASE_CONFIG, needs_root

# x86_64 / aarch64
SYSCALLS = {"x86_64": (248, 250), "aarch64": (217, 219)}  # add_key, keyctl
KEYCTL_JOIN_SESSION_KEYRING = 1
KEY_SPEC_SESSION_KEYRING = -3

PROBE_C = r"""
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* prints the session keyring's description, then whether a user key of argv[1] is in it */
int main(int argc, char **argv)
{
	char desc[256] = "";
	long ring = syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0);
	if (ring < 0 || syscall(SYS_keyctl, 6 /* DESCRIBE */, ring, desc, sizeof desc - 1) < 0)
		snprintf(desc, sizeof desc, "describe: %s", strerror(errno));
	long key = syscall(SYS_keyctl, 10 /* SEARCH */, -3, "user", argc > 1 ? argv[1] : "", 0);
	printf("%s\n%s\n", desc, key >= 0 ? "found" : strerror(errno));
	return 0;
}
"""

pytestmark = pytest.mark.skipif(os.uname().machine not in SYSCALLS,
                                reason="keyctl numbers known for x86_64 and aarch64 only")


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("keyring-probe")
    (d / "probe.c").write_text(PROBE_C)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(d / "probe"), str(d / "probe.c")],
                   check=True)
    return str(d)


def _in_a_session_holding(secret: str):
    """preexec_fn: the runtime starts in a fresh session keyring holding a user key named
    `secret` (so this test neither reads nor changes the machine's own keyrings)."""
    add_key, keyctl = SYSCALLS[os.uname().machine]

    def enter() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        if libc.syscall(ctypes.c_long(keyctl), KEYCTL_JOIN_SESSION_KEYRING, None) < 0 or \
                libc.syscall(ctypes.c_long(add_key), b"user", secret.encode(), b"s3cret",
                             ctypes.c_size_t(6), KEY_SPEC_SESSION_KEYRING) < 0:
            os._exit(99)

    return enter


def _bundle(make_bundle, probe_dir: str, args: list[str]):
    probe_mount = {"destination": "/probe", "type": "bind", "source": probe_dir,
                   "options": ["rbind", "ro"]}
    return make_bundle(args, mounts=BASE_CONFIG["mounts"] + [probe_mount])


@needs_root
@pytest.mark.e2e
@pytest.mark.parametrize("no_new_keyring", [False, True], ids=["default", "no-new-keyring"])
def test_the_container_does_not_possess_its_caller_s_keys(runtime, make_bundle, probe_dir,
                                                          no_new_keyring):
    secret = f"secfilt-test-{uuid.uuid4().hex[:8]}"
    bundle = _bundle(make_bundle, probe_dir, ["/probe/probe", secret])
    flags = ["--no-new-keyring"] if no_new_keyring else []
    r = subprocess.run(runtime.argv("run", *flags, "--bundle", str(bundle), runtime.cid),
                       capture_output=True, text=True, env=runtime.env(), timeout=60,
                       preexec_fn=_in_a_session_holding(secret))
    assert r.returncode == 0, r.stderr
    description, search = r.stdout.splitlines()
    if no_new_keyring:
        assert search == "found"  # runc's --no-new-keyring: the caller's keyring, as asked
        assert not description.endswith(f";_ses.{runtime.cid}")
    else:
        assert search == os.strerror(126), r.stdout  # ENOKEY
        assert description.startswith("keyring;0;0;3f1b0000;"), description
        assert description.endswith(f";_ses.{runtime.cid}"), description


@needs_root
@pytest.mark.e2e
def test_exec_joins_the_container_s_keyring_not_its_caller_s(runtime, make_bundle, probe_dir):
    secret = f"secfilt-test-{uuid.uuid4().hex[:8]}"
    bundle = _bundle(make_bundle, probe_dir, ["sleep", "30"])
    enter = _in_a_session_holding(secret)
    created = create(runtime, runtime.cid, "--bundle", str(bundle), preexec_fn=enter)
    assert created.returncode == 0, created.stderr
    try:
        assert runtime("start", runtime.cid).returncode == 0
        r = subprocess.run(runtime.argv("exec", runtime.cid, "/probe/probe", secret),
                           capture_output=True, text=True, env=runtime.env(), timeout=60,
                           preexec_fn=enter)
        assert r.returncode == 0, r.stderr
        description, search = r.stdout.splitlines()
        assert search == os.strerror(126), r.stdout
        assert description.endswith(f";_ses.{runtime.cid}"), description
        state = json.loads((runtime.state_root / runtime.cid / "state.json").read_text())
        assert state["session_keyring"] == f"_ses.{runtime.cid}"
    finally:
        runtime("delete", "--force", runtime.cid)
