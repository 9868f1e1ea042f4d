"""The attack suite's harness: builds the C attacks once, lays out the host tree an attack aims
at, runs an attack without a policy (the baseline), under `secfilt` on the host, or in a container
of `secfilt-runtime run`, and holds the network namespace with its peer.

An attack's verdict never rests on its own word alone: the tests look at the host's file system
and at what the peer received.  A run whose program never started (no banner) is an error, never a
"blocked".
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ATTACKS = Path(__file__).resolve().parent
REPO = ATTACKS.parent.parent
PROGRAMS = ("fsops", "race", "escape", "entry", "uring", "net")
BANNER = "attack-start:"
# the attack programs' exit codes (common.h): 1 is "blocked"
GOT_THROUGH, SETUP = 0, 2

# where a container sees the tree and the attack binaries
CONTAINER_TREE = "/work"
CONTAINER_BIN = "/attacks"

# the network attacks' peers: one allowed, the others forbidden by NET_POLICY
PORT = 7357
ALLOWED_PEER = "127.0.0.1"
FORBIDDEN_PEER = "192.0.2.1"
FORBIDDEN_PEER6 = "2001:db8::1"
NET_POLICY = {"no-outbound-network": True, "allowed-netmask": "127.0.0.0/8"}

Policy = dict[str, "bool | str"]


class HarnessError(AssertionError):
    """The attack could not be judged (it never ran, or its setup failed)."""


@functools.cache
def binaries() -> Path:
    """Build every attack with `gcc -static` once per test process; the directory holding them."""
    out = Path(tempfile.mkdtemp(prefix="secfilt-attacks-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    out.chmod(0o755)
    jobs = {name: subprocess.Popen(
        ["gcc", "-static", "-O2", "-pthread", "-Wall", "-o", str(out / name),
         str(ATTACKS / f"{name}.c")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name in PROGRAMS}
    for name, job in jobs.items():
        output, _ = job.communicate()
        if job.returncode != 0:
            raise RuntimeError(f"gcc -static {name}.c failed (CI installs gcc):\n{output}")
    return out


@dataclass
class Tree:
    """A host directory tree: `allowed` is writable under WRITE_POLICY, the rest is not."""

    root: Path

    @classmethod
    def make(cls, base: Path) -> Tree:
        root = base / f"tree-{uuid.uuid4().hex[:8]}"
        for d in ("allowed", "allowed-not", "forbidden/dir"):
            (root / d).mkdir(parents=True)
        (root / "forbidden" / "victim").write_text("victim\n")
        os.setxattr(root / "forbidden" / "victim", "trusted.victim", b"v")
        (root / "allowed" / "own").write_text("own\n")
        root.chmod(0o755)
        return cls(root)

    def __truediv__(self, rel: str) -> Path:
        return self.root / rel


@dataclass
class Outcome:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def claimed(self) -> bool:
        """The program's own word: it believes it got through."""
        return self.returncode == GOT_THROUGH

    def __str__(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit {self.returncode}\n"
                f"stdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}")


def _checked(argv: list[str], p: subprocess.CompletedProcess[str]) -> Outcome:
    out = Outcome(argv, p.returncode, p.stdout, p.stderr)
    if BANNER not in out.stdout:
        raise HarnessError(f"the attack never ran:\n{out}")
    if out.returncode == SETUP:
        raise HarnessError(f"the attack's own setup failed:\n{out}")
    return out


def secfilt_flags(policy: Policy) -> list[str]:
    return [f"--{k}={'1' if v is True else '0' if v is False else v}" for k, v in policy.items()]


def policy_annotations(policy: Policy) -> dict[str, str]:
    return {f"org.secfilter.{k}": ("true" if v is True else "false" if v is False else str(v))
            for k, v in policy.items()}


def secfilt_argv(policy: Policy) -> list[str]:
    """The `secfilt` command line: the console script's module, run by this interpreter."""
    return [sys.executable, "-m", "secfilt_runtime.secfilt_cli", *secfilt_flags(policy)]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO / "runtime"))


def netns_prefix(peer: Peer | None) -> list[str]:
    return ["nsenter", f"--net=/proc/{peer.pid}/ns/net"] if peer else []


class _Runner:
    def path(self, rel: str) -> str:
        raise NotImplementedError

    def write_policy(self) -> Policy:
        """read-only, with the tree's `allowed` directory as it is seen from inside."""
        return {"read-only": True, "allow-write": self.path("allowed")}


class HostRunner(_Runner):
    """Runs an attack on the host's root, under `secfilt` when given a policy."""

    mode = "secfilt"

    def __init__(self, tree: Tree, peer: Peer | None = None) -> None:
        self.tree, self.peer = tree, peer

    def path(self, rel: str) -> str:
        return str(self.tree / rel)

    def argv(self, program: str, args: list[str], policy: Policy | None) -> list[str]:
        inner = [str(binaries() / program), *args]
        return [*netns_prefix(self.peer), *(secfilt_argv(policy) if policy else []), *inner]

    def popen(self, program: str, args: list[str], policy: Policy | None) -> subprocess.Popen:
        return subprocess.Popen(self.argv(program, args, policy), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env(),
                                cwd=self.tree.root)

    def run(self, program: str, *args: str, policy: Policy | None, timeout: float = 60,
            stdin: int | None = None) -> Outcome:
        argv = self.argv(program, list(args), policy)
        # the attacks' relative names land in the tree, never in the caller's directory
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env(),
                           stdin=stdin, cwd=self.tree.root)
        return _checked(argv, p)


NOBODY = 65534
SETPRIV_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
SITE = Path(next(p for p in sys.path if p.endswith("site-packages")))


def copy_python_deps(dest: Path) -> None:
    """pyseccomp and python-ptrace into `dest`, where nobody can read them (root's pyenv is
    0700)."""
    dest.chmod(0o755)
    shutil.copy(SITE / "pyseccomp.py", dest)
    shutil.copytree(SITE / "ptrace", dest / "ptrace")


@functools.cache
def nobody_deps() -> Path:
    out = Path(tempfile.mkdtemp(prefix="secfilt-deps-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    copy_python_deps(out)
    return out


def as_nobody() -> list[str]:
    """argv prefix: what follows runs as nobody, with this tree's package and the Python
    modules nobody cannot read where root's interpreter keeps them (nobody_deps)."""
    return [*SETPRIV_NOBODY, "env", f"PYTHONPATH={REPO / 'runtime'}:{nobody_deps()}"]


# argv prefix: a network namespace of its own, with only lo (up): nothing leaves it
EMPTY_NETNS = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


class UserRunner(HostRunner):
    """Runs an attack as nobody, under `secfilt` run by nobody when given a policy: no cgroup
    programs for such a caller, the supervisor holds the destination rules."""

    def argv(self, program: str, args: list[str], policy: Policy | None) -> list[str]:
        inner = [str(binaries() / program), *args]
        python = shutil.which("python3", path="/usr/bin:/bin") or "python3"
        secfilt = [python, "-m", "secfilt_runtime.secfilt_cli", *secfilt_flags(policy)] \
            if policy else []
        return [*netns_prefix(self.peer), *as_nobody(), "HOME=/nonexistent", *secfilt,
                *inner]


class ContainerRunner(_Runner):
    """Runs an attack as the process of a `secfilt-runtime run` container (root, no user
    namespace: its writes to the bound tree are the host's), the policy in its annotations."""

    mode = "container"

    def __init__(self, tree: Tree, runtime, make_bundle: Callable[..., Path],
                 peer: Peer | None = None) -> None:
        self.tree, self.runtime, self.make_bundle, self.peer = tree, runtime, make_bundle, peer

    def path(self, rel: str) -> str:
        return f"{CONTAINER_TREE}/{rel}"

    def bundle(self, program: str, args: list[str], policy: Policy | None) -> Path:
        from conftest import BASE_CONFIG  # tests/ is on sys.path under pytest

        mounts = [*BASE_CONFIG["mounts"],
                  {"destination": CONTAINER_BIN, "type": "bind", "source": str(binaries()),
                   "options": ["rbind", "ro"]},
                  {"destination": CONTAINER_TREE, "type": "bind", "source": str(self.tree.root),
                   "options": ["rbind", "rw"]}]
        namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
        namespaces.append({"type": "network", "path": f"/proc/{self.peer.pid}/ns/net"}
                          if self.peer else {"type": "network"})
        changes: dict = {"mounts": mounts, "linux": {"namespaces": namespaces}}
        if policy:
            changes["annotations"] = policy_annotations(policy)
        return self.make_bundle(args=[f"{CONTAINER_BIN}/{program}", *args], **changes)

    def popen(self, program: str, args: list[str], policy: Policy | None) -> subprocess.Popen:
        bundle = self.bundle(program, args, policy)
        return self.runtime.popen("run", "--bundle", str(bundle),
                                  f"{self.runtime.cid}-{uuid.uuid4().hex[:6]}")

    def run(self, program: str, *args: str, policy: Policy | None, timeout: float = 60,
            stdin: int | None = None) -> Outcome:
        bundle = self.bundle(program, list(args), policy)
        argv = self.runtime.argv("run", "--bundle", str(bundle),
                                 f"{self.runtime.cid}-{uuid.uuid4().hex[:6]}")
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                           env=self.runtime.env(), stdin=stdin)
        return _checked(argv, p)


@dataclass
class Peer:
    """A network namespace held by the peer process that listens in it (no mount to clean)."""

    pid: int
    record: Path

    def received(self, addr: str, marker: str = "attack") -> list[str]:
        """What arrived at `addr` carrying `marker` (waits briefly for stragglers)."""
        time.sleep(0.2)
        lines = self.record.read_text().splitlines() if self.record.exists() else []
        return [ln for ln in lines if ln.split(" ", 2)[1:2] == [addr] and marker in ln]


@contextmanager
def peer_netns(base: Path) -> Iterator[Peer]:
    """A fresh network namespace with lo up, the documentation addresses on lo, and the peer
    listening on them and on 127.0.0.1 at PORT."""
    record = base / f"peer-{uuid.uuid4().hex[:8]}.log"
    script = ("set -e; ip link set lo up; "
              f"ip addr add {FORBIDDEN_PEER}/32 dev lo; "
              f"ip addr add {FORBIDDEN_PEER6}/128 dev lo nodad; "
              f'exec "{sys.executable}" "{ATTACKS / "peer.py"}" "{record}" {PORT} '
              f"{ALLOWED_PEER} {FORBIDDEN_PEER} {FORBIDDEN_PEER6}")
    proc = subprocess.Popen(["unshare", "-n", "sh", "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip() != "ready":
            proc.kill()
            raise HarnessError(f"the peer did not start: {line} {proc.stderr.read()}")
        yield Peer(proc.pid, record)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def host_pid_of(token: str, timeout: float = 10) -> int:
    """The host pid of the attack process whose argv holds `token` (seen from the host)."""
    deadline = time.monotonic() + timeout
    needle = token.encode()
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if needle in argv and argv[0].endswith(b"/escape"):
                return int(entry.name)
        time.sleep(0.05)
    raise HarnessError(f"no process with {token} in its argv")


# every attack runs under secfilt on the host and in a container of secfilt-runtime
MODES = ["secfilt", "container"]
# the destination rules have a third enforcement: secfilt run by a user (the supervisor)
NET_MODES = [*MODES, "secfilt-user"]


def runner_for(mode: str, tree: Tree, request, peer: Peer | None = None
               ) -> HostRunner | ContainerRunner:
    """The runner of a test's mode (NET_MODES). A container takes the test's `runtime` and
    `make_bundle` fixtures through pytest's `request`, so host-only runs never build them."""
    if mode == "secfilt":
        return HostRunner(tree, peer)
    if mode == "secfilt-user":
        return UserRunner(tree, peer)
    return ContainerRunner(tree, request.getfixturevalue("runtime"),
                           request.getfixturevalue("make_bundle"), peer)


def tracer_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    return 0


@contextmanager
def running_container(runtime, runner: ContainerRunner, policy: Policy | None
                      ) -> Iterator[str]:
    """A container of `runner` whose init appends to allowed/log forever, under `policy`:
    its id, once the init runs (for exec into it). Killed and reaped on the way out."""
    log = "allowed/log"
    bundle = runner.bundle("escape", ["append_loop", runner.path(log)], policy)
    cid = f"{runtime.cid}-exec"
    proc = runtime.popen("run", "--bundle", str(bundle), cid)
    try:
        deadline = time.monotonic() + 20
        while not (runner.tree / log).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (runner.tree / log).exists(), f"the container did not start: {proc.poll()}"
        yield cid
    finally:
        runtime("kill", cid, "KILL")
        proc.wait(timeout=20)
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            stream.close()

