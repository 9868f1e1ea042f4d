"""`secfilt` end to end: real commands under each option, as root and as nobody, on the host's
root and, for the network, in an empty network namespace the test builds (addresses from the
documentation ranges on its loopback, a TCP listener, a DNS server answering ds9a.nl).

Each rule is shown from both sides: the call works without the option (or inside what the option
allows) and fails with it.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from attacks.harness import copy_python_deps

from conftest import IS_ROOT, REPO

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="switches users and builds netns")


# Run inside a fresh network + mount namespace (as root), then exec argv[1:]: the addresses the
# tests dial are on this namespace's loopback, so nothing leaves the machine.
NETNS = textwrap.dedent(r'''
    import os, socket, struct, subprocess, sys, threading
    from secfilt_runtime import kernel
    kernel.unshare(kernel.CLONE_NEWNET | kernel.CLONE_NEWNS)
    kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
    # the README's and sample bundles' hosts too: this loopback is the namespace's own
    for addr in ("192.0.2.1/32", "192.0.2.53/32", "198.51.100.25/32", "192.168.1.2/32",
                 "82.94.213.34/32", "82.94.213.35/32"):
        subprocess.run(["ip", "addr", "add", addr, "dev", "lo"], check=True)
    subprocess.run(["ip", "addr", "add", "2001:db8::1/128", "dev", "lo", "nodad"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    resolv = os.environ.get("NETNS_RESOLV")
    if resolv:
        kernel.mount(resolv, "/etc/resolv.conf", None, kernel.MS_BIND)

    def serve_tcp(family, port):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        s.listen(64)
        while True:
            c, _ = s.accept()
            c.sendall(b"SSH-2.0-test\r\n")
            c.close()

    def serve_dns():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("192.0.2.53", 53))
        while True:
            q, peer = s.recvfrom(512)
            labels, i = [], 12
            while q[i]:
                labels.append(q[i + 1:i + 1 + q[i]])
                i += 1 + q[i]
            end = i + 5  # the name's final zero, type, class
            qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
            found = b".".join(labels).lower() == b"ds9a.nl"
            answer = b""
            if found and qtype == 1:
                answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(
                    "198.51.100.25")
            flags = 0x8180 if found else 0x8183
            head = q[:2] + struct.pack("!HHHHH", flags, 1, 1 if answer else 0, 0, 0)
            s.sendto(head + q[12:end] + answer, peer)

    for target in ([serve_tcp, (socket.AF_INET, 22)], [serve_tcp, (socket.AF_INET, 25)],
                   [serve_tcp, (socket.AF_INET6, 22)], [serve_tcp, (socket.AF_INET, 8080)],
                   [serve_dns, ()]):
        threading.Thread(target=target[0], args=target[1], daemon=True).start()
    import time; time.sleep(0.1)
    if len(sys.argv) == 1:  # hold the namespace for containers that join it by path
        print("ready", flush=True)
        sys.stdin.read()
        sys.exit(0)
    sys.exit(subprocess.run(sys.argv[1:]).returncode)
''')

# Run under secfilt: each argument names an operation; prints {operation: 0 or errno name}.
PROBE = textwrap.dedent(r'''
    import errno, json, os, socket, struct, sys
    def connect(family, host, port, kind=socket.SOCK_STREAM):
        with socket.socket(family, kind) as s:
            s.settimeout(5)
            s.connect((host, int(port)))
    def sendto(family, host, port):
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.sendto(b"x", (host, int(port)))
    def sendmsg(host, port):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendmsg([b"x"], [], 0, (host, int(port)))
    def unspec(host, port):
        # udp_sendmsg reads an AF_UNSPEC address as AF_INET (for old BSD programs)
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        raw = struct.pack("=HH4s8x", socket.AF_UNSPEC, socket.htons(int(port)),
                          socket.inet_aton(host))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            if libc.sendto(s.fileno(), b"x", 1, 0, raw, len(raw)) < 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))
    def by_fd(path, change):
        fd = os.open(path, os.O_RDONLY)
        try:
            change(fd)
        finally:
            os.close(fd)
    def tracer_fd(path):
        # pidfd_getfd on the parent (the tracer) until one of its descriptors names `path`
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        pidfd = os.pidfd_open(os.getppid())
        for target in range(256):
            fd = libc.syscall(438, pidfd, target, 0)  # pidfd_getfd
            if fd < 0:
                e = ctypes.get_errno()
                if e == errno.EBADF:
                    continue
                raise OSError(e, os.strerror(e))
            try:
                if os.readlink(f"/proc/self/fd/{fd}") == path:
                    return
            finally:
                os.close(fd)
        raise OSError(errno.ENOENT, f"no descriptor of the tracer names {path}")
    def uffd_dev():
        # /dev/userfaultfd's USERFAULTFD_IOC_NEW: a userfaultfd without the syscall
        import fcntl
        fd = os.open("/dev/userfaultfd", os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.close(fcntl.ioctl(fd, 0xAA00, os.O_CLOEXEC))
        finally:
            os.close(fd)
    def at(directory, name, change):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            change(name, fd)
        finally:
            os.close(fd)
    OPS = {
        "unspec4": unspec,
        "tcp4": lambda h, p: connect(socket.AF_INET, h, p),
        "tcp6": lambda h, p: connect(socket.AF_INET6, h, p),
        "udp4": lambda h, p: sendto(socket.AF_INET, h, p),
        "udp6": lambda h, p: sendto(socket.AF_INET6, h, p),
        "msg4": sendmsg,
        "resolve": lambda h: socket.getaddrinfo(h, 25, socket.AF_INET, socket.SOCK_STREAM),
        "socket": lambda f, t, p="0": socket.socket(int(f), int(t), int(p)).close(),
        "write": lambda p: open(p, "w").close(),
        "read": lambda p: open(p).close(),
        "tracer-mem": lambda: open(f"/proc/{os.getppid()}/mem", "r+b").close(),
        "tracer-fd": tracer_fd,
        "uffd-dev": uffd_dev,
        "mkdir": os.mkdir,
        "unlink": os.unlink,
        "rename": os.rename,
        "symlink": os.symlink,
        "chmod": lambda p: os.chmod(p, 0o600),
        "truncate": lambda p: os.truncate(p, 0),
        "utime": os.utime,
        "fchmod": lambda p: by_fd(p, lambda fd: os.chmod(fd, 0o600)),
        "futime": lambda p: by_fd(p, os.utime),  # utimensat(fd, NULL)
        "chmodat": lambda d, n: at(d, n, lambda n, fd: os.chmod(n, 0o600, dir_fd=fd)),
        "chmodcwd": lambda d, n: (os.chdir(d), os.chmod(n, 0o600)),
    }
    out = {}
    for arg in sys.argv[1:]:
        name, *params = arg.split("|")
        try:
            OPS[name](*params)
            out[arg] = 0
        except socket.gaierror as e:
            out[arg] = "EAI"
        except OSError as e:
            out[arg] = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else str(e)
    print(json.dumps(out))
''')


@dataclass
class User:
    name: str
    prefix: list[str]
    python: str
    env: dict[str, str]


@pytest.fixture(scope="session")
def deps() -> Iterator[Path]:
    """python-ptrace and pyseccomp where nobody can read them (root's pyenv is 0700). Not under
    pytest's numbered directories: concurrent sessions prune those."""
    d = Path(tempfile.mkdtemp(prefix="secfilt-deps-"))
    try:
        copy_python_deps(d)
        yield d
    finally:
        shutil.rmtree(d)


@pytest.fixture(params=["root", "nobody"])
def user(request: pytest.FixtureRequest, deps: Path) -> User:
    env = dict(os.environ, PYTHONPATH=str(REPO / "runtime"))
    if request.param == "root":
        return User("root", [], sys.executable, env)
    py = shutil.which("python3", path="/usr/bin:/bin")
    if py is None:
        pytest.skip("no system python3 for the unprivileged run")
    env = dict(env, PYTHONPATH=f"{REPO / 'runtime'}:{deps}", HOME="/nonexistent",
               PATH="/usr/local/bin:/usr/bin:/bin")
    env.pop("XDG_CACHE_HOME", None)
    return User("nobody", ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
                py, env)


NOBODY = 65534


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory of nobody's that root may use too. Not under pytest's tmp_path: concurrent
    pytest sessions reset /tmp/pytest-of-root to 0700, which would lock nobody out."""
    d = Path(tempfile.mkdtemp(prefix="secfilt-test-"))
    try:
        d.chmod(0o777)
        os.chown(d, NOBODY, NOBODY)
        yield d
    finally:
        shutil.rmtree(d)


def give(path: Path) -> None:
    """Make path nobody's: chmod and utime need the owner."""
    os.chown(path, NOBODY, NOBODY)


@dataclass
class Done:
    code: int
    out: str
    err: str

    def probe(self) -> dict[str, object]:
        assert self.code == 0, self.err
        return json.loads(self.out.splitlines()[-1])


Secfilt = Callable[..., Done]


@pytest.fixture
def secfilt(user: User, work: Path) -> Secfilt:
    def run(*argv: str, netns: bool = False, cwd: Path | None = None, input: str | None = None,
            timeout: float = 60) -> Done:
        cmd = [*user.prefix, user.python, "-m", "secfilt_runtime.secfilt_cli", *argv]
        env = user.env
        if netns:
            script = work / "netns.py"
            script.write_text(NETNS)
            resolv = work / "resolv.conf"
            resolv.write_text("nameserver 192.0.2.53\noptions timeout:1 attempts:1\n")
            resolv.chmod(0o644)
            cmd = [sys.executable, str(script), *cmd]
            env = dict(env, NETNS_RESOLV=str(resolv))
        p = subprocess.run(cmd, cwd=cwd or work, env=env, input=input, capture_output=True,
                           text=True, timeout=timeout)
        return Done(p.returncode, p.stdout, p.stderr)

    run.user = user  # type: ignore[attr-defined]
    return run


def probe_argv(user_python: str, work: Path) -> list[str]:
    script = work / "probe.py"
    script.write_text(PROBE)
    script.chmod(0o644)
    return [user_python, str(script)]


@pytest.fixture
def probe(secfilt: Secfilt, work: Path) -> Callable[..., dict[str, object]]:
    """probe(options, ops, netns=...) -> {op: 0 or errno name}, run under secfilt."""
    def run(options: list[str], ops: list[str], netns: bool = False) -> dict[str, object]:
        py = secfilt.user.python  # type: ignore[attr-defined]
        return secfilt(*options, "--", *probe_argv(py, work), *ops, netns=netns).probe()
    return run


# --- the command itself --------------------------------------------------------------------


def test_stdio_and_exit_status_pass_through(secfilt: Secfilt) -> None:
    d = secfilt("--read-only", "sh", "-c", "read x; echo got $x; echo err >&2; exit 7",
                input="hello\n")
    assert (d.code, d.out, d.err) == (7, "got hello\n", "err\n")


def test_killed_by_a_signal_is_128_plus_signal(secfilt: Secfilt) -> None:
    assert secfilt("sh", "-c", "kill -TERM $$").code == 128 + 15


def test_command_gets_default_signal_dispositions(secfilt: Secfilt) -> None:
    # Python ignores SIGPIPE and SIGXFSZ: `yes | head` must not see that
    d = secfilt("--read-only", "bash", "-c", "trap -p")  # lists signals ignored at entry
    assert d.code == 0 and "PIPE" not in d.out and "XFSZ" not in d.out, d.out


def test_runs_as_the_calling_user(secfilt: Secfilt) -> None:
    d = secfilt("--read-only", "id", "-u")
    want = "0" if secfilt.user.name == "root" else "65534"  # type: ignore[attr-defined]
    assert d.out.strip() == want


def test_command_not_found(secfilt: Secfilt) -> None:
    d = secfilt("--read-only", "no-such-command-secfilt")
    assert d.code == 127 and "no-such-command-secfilt" in d.err


@pytest.mark.parametrize(("argv", "message"), [
    (["--allowed-port=70000", "true"], "secfilt: --allowed-port: 70000 is not a port (1-65535)"),
    (["--allowed-netmask=10.0.0.0/33", "true"],
     "secfilt: --allowed-netmask: 10.0.0.0/33 is not an IPv4 or IPv6 network"),
    (["--read-only=maybe", "true"], "secfilt: --read-only: maybe is not a boolean"),
    (["--bogus", "true"], "secfilt: --bogus: unknown option"),
    (["--config=/nonexistent/x.conf", "true"],
     "secfilt: --config=/nonexistent/x.conf: cannot read"),
    (["--read-only"], "secfilt: no command given"),
    (["--read-only", "--log=/nonexistent/dir/log", "true"],
     "secfilt: --log: cannot open /nonexistent/dir/log: No such file or directory"),
])
def test_bad_options_exit_2_before_running(secfilt: Secfilt, work: Path, argv: list[str],
                                           message: str) -> None:
    marker = work / "ran"
    d = secfilt(*argv[:-1], *(["sh", "-c", f"touch {marker}"] if argv[-1] == "true" else []))
    assert d.code == 2 and d.err.startswith(message), d.err
    assert not marker.exists() and d.out == ""


def test_help_and_version(secfilt: Secfilt) -> None:
    h = secfilt("--help")
    assert h.code == 0 and "--allowed-netmask" in h.out and "--write-allow" in h.out
    assert secfilt("--version").out.startswith("secfilt ")


@pytest.mark.parametrize("options", [["--read-only=1", "--allow-write={work}"],
                                     ["--read-only=1", "--mode=audit", "--log={work}/log"]],
                         ids=["write", "audit"])
def test_userfaultfd_from_the_device_is_refused(probe, secfilt: Secfilt, work: Path,
                                                options: list[str]) -> None:
    """The userfaultfd syscall is refused (a fault handler of the command's own would hold the
    tracer's read of a path buffer, and so the tracer, as long as it likes); the device hands
    out the same descriptor through an ioctl, which must be refused alike, in audit mode too."""
    if not os.path.exists("/dev/userfaultfd"):
        pytest.skip("no /dev/userfaultfd on this machine")
    if secfilt.user.name != "root":  # type: ignore[attr-defined]
        pytest.skip("/dev/userfaultfd is root's alone: nothing to show")
    assert probe([], ["uffd-dev"]) == {"uffd-dev": 0}
    got = probe([o.format(work=work) for o in options], ["uffd-dev"])
    assert got == {"uffd-dev": "EPERM"}, got


@pytest.mark.parametrize("options", [["--no-outbound-network"], ["--allowed-netmask=::1"],
                                     ["--mainstream-network-families"]])
def test_the_tracer_memory_is_out_of_reach(probe, secfilt: Secfilt, options: list[str]) -> None:
    """The command's parent is its tracer: as root it could rewrite it through /proc/PID/mem
    but for the Landlock domain every policy gets."""
    if secfilt.user.name != "root":  # type: ignore[attr-defined]
        pytest.skip("unprivileged, the command cannot open its tracer's memory even without a "
                    "policy: nothing to show")
    assert probe([], ["tracer-mem"]) == {"tracer-mem": 0}
    assert probe(options, ["tracer-mem"]) == {"tracer-mem": "EACCES"}


# --- writes --------------------------------------------------------------------------------


@pytest.fixture
def tree(work: Path) -> Path:
    for d in ("allowed", "allowed-not", "outside"):
        (work / d).mkdir()
        (work / d / "f").write_text("x")
        give(work / d)
        give(work / d / "f")
    return work


WRITE_OPS = ["write|{d}/new", "write|{d}/f", "mkdir|{d}/dir", "symlink|x|{d}/link",
             "truncate|{d}/f", "chmod|{d}/f", "utime|{d}/f", "rename|{d}/f|{d}/g",
             "unlink|{d}/g"]


def ops_in(d: Path) -> list[str]:
    return [op.format(d=d) for op in WRITE_OPS]


def test_without_options_writes_work(probe, tree: Path) -> None:
    got = probe([], ops_in(tree / "outside"))
    assert set(got.values()) == {0}, got


def test_read_only_denies_every_change(probe, tree: Path) -> None:
    got = probe(["--read-only=1"], [*ops_in(tree / "outside"), f"read|{tree}/outside/f"])
    reads = got.pop(f"read|{tree}/outside/f")
    assert reads == 0
    assert set(got.values()) == {"EPERM"}, got
    assert (tree / "outside" / "f").read_text() == "x"


def test_read_only_zero_is_no_restriction(probe, tree: Path) -> None:
    assert set(probe(["--read-only=0"], ops_in(tree / "outside")).values()) == {0}


@pytest.mark.parametrize("spelling", ["--allow-write", "--write-allow"])
def test_allow_write_both_sides(probe, tree: Path, spelling: str) -> None:
    inside = probe([f"{spelling}={tree}/allowed/"], ops_in(tree / "allowed"))
    assert set(inside.values()) == {0}, inside
    for d in ("outside", "allowed-not"):
        got = probe([f"{spelling}={tree}/allowed"], ops_in(tree / d))
        assert set(got.values()) == {"EPERM"}, (d, got)


def test_rename_across_the_boundary_is_denied(probe, tree: Path) -> None:
    got = probe([f"--allow-write={tree}/allowed"], [
        f"rename|{tree}/outside/f|{tree}/allowed/stolen",
        f"rename|{tree}/allowed/f|{tree}/outside/planted",
    ])
    assert set(got.values()) <= {"EPERM", "EXDEV"} and 0 not in got.values(), got


def test_allow_write_path_missing_or_out_of_reach_still_runs(secfilt: Secfilt,
                                                              work: Path) -> None:
    # /root is 0700: nobody cannot even look there; neither may exist: nothing to grant on
    d = secfilt("--allow-write=/root/secfilt-nope", f"--allow-write={work}/absent",
                "sh", "-c", f"echo ok; mkdir {work}/absent")
    assert d.out == "ok\n" and d.code != 0 and not (work / "absent").exists(), d


def test_metadata_by_descriptor_and_relative_name(probe, tree: Path) -> None:
    """A descriptor, or a name relative to one (or to the cwd), is allowed by the mount the
    file is on (tracer.allowed_mounts) only inside the allow-write path. Outside it the tracer
    refuses with the policy's errno: EROFS would mean the tracer let the call through and only
    the read-only mounts stopped it."""
    allowed, outside = tree / "allowed", tree / "outside"
    (allowed / "sub").mkdir()
    (allowed / "sub" / "g").write_text("x")
    (allowed / "dir-out").symlink_to(outside)
    (allowed / "file-out").symlink_to(outside / "f")
    for p in (allowed / "sub", allowed / "sub" / "g"):
        give(p)
    os.lchown(allowed / "dir-out", NOBODY, NOBODY)
    os.lchown(allowed / "file-out", NOBODY, NOBODY)
    inside = [f"fchmod|{allowed}/f", f"futime|{allowed}/f", f"futime|{allowed}",
              f"chmodat|{allowed}|f", f"chmodat|{allowed}|sub/g", f"chmodat|{tree}|allowed/f",
              f"chmodcwd|{allowed}|sub/g"]
    beyond = [f"fchmod|{outside}/f", f"futime|{outside}/f", f"futime|{outside}",
              f"chmodat|{allowed}|../outside/f", f"chmodat|{allowed}|dir-out/f",
              f"chmodat|{allowed}|file-out", f"chmodat|{outside}|f",
              f"chmodat|{allowed}/sub|../../outside/f", f"chmodcwd|{allowed}|../outside/f",
              f"chmodcwd|{allowed}|file-out"]
    got = probe([f"--allow-write={allowed}"], [*inside, *beyond])
    assert {op: got[op] for op in inside} == dict.fromkeys(inside, 0), got
    assert {op: got[op] for op in beyond} == dict.fromkeys(beyond, "EPERM"), got
    assert (outside / "f").stat().st_mode & 0o777 != 0o600


def test_errno_option(probe, tree: Path) -> None:
    got = probe(["--read-only", "--errno=EACCES"], [f"write|{tree}/outside/new"])
    assert got == {f"write|{tree}/outside/new": "EACCES"}


def test_readme_read_only_example_in_a_terminal(secfilt: Secfilt, work: Path) -> None:
    """$ secfilt --read-only=1 --write-allow=/dev/null bash
       $ echo a > b
       bash: b: Operation not permitted"""
    user = secfilt.user  # type: ignore[attr-defined]
    argv = [*user.prefix, user.python, "-m", "secfilt_runtime.secfilt_cli", "--read-only=1",
            "--write-allow=/dev/null", "bash", "--norc", "--noprofile", "-i"]
    out = run_in_pty(argv, user.env, work,
                     "echo a > /dev/null && echo devnull-ok\necho a > b\nexit\n")
    assert "bash: b: Operation not permitted" in out, out
    assert "devnull-ok" in out and not (work / "b").exists()


def run_in_pty(argv: list[str], env: dict[str, str], cwd: Path, script: str) -> str:
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(cwd)
        os.execvpe(argv[0], argv, dict(env, PS1="$ ", TERM="dumb"))
    out = b""
    os.write(fd, script.encode())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    os.waitpid(pid, 0)
    os.close(fd)
    return out.decode(errors="replace").replace("\r", "")


# --- network -------------------------------------------------------------------------------

TCP4 = "tcp4|192.0.2.1|22"
TCP4_25 = "tcp4|192.0.2.1|25"
TCP4_OTHER = "tcp4|198.51.100.25|25"
TCP6 = "tcp6|2001:db8::1|22"
MAPPED = "tcp6|::ffff:192.0.2.1|22"
LOOP4 = "tcp4|127.0.0.1|8080"
LOOP6 = "tcp6|::1|22"
MAPPED_LOOP = "tcp6|::ffff:127.0.0.1|8080"
UDP4 = "udp4|192.0.2.1|9"
UDP6 = "udp6|2001:db8::1|9"
MSG4 = "msg4|192.0.2.1|9"
NET_OPS = [TCP4, TCP4_25, TCP4_OTHER, TCP6, MAPPED, LOOP4, LOOP6, MAPPED_LOOP, UDP4, UDP6, MSG4]


def test_network_baseline(probe) -> None:
    got = probe([], NET_OPS, netns=True)
    assert set(got.values()) == {0}, got


def test_unspec_destination_is_judged_as_ipv4(probe) -> None:
    op = "unspec4|192.0.2.1|9"
    assert probe([], [op], netns=True) == {op: 0}
    assert probe(["--no-outbound-network"], [op], netns=True) == {op: "EPERM"}
    assert probe(["--no-outbound-network"], ["unspec4|127.0.0.1|9"], netns=True) == {
        "unspec4|127.0.0.1|9": 0}


def test_no_outbound_network(probe) -> None:
    got = probe(["--no-outbound-network=1"], NET_OPS, netns=True)
    allowed = {LOOP4, LOOP6, MAPPED_LOOP}
    assert {k for k, v in got.items() if v == 0} == allowed, got
    assert {v for k, v in got.items() if k not in allowed} == {"EPERM"}, got
    assert set(probe(["--no-outbound-network=0"], NET_OPS, netns=True).values()) == {0}


@pytest.mark.parametrize("spelling", ["--allowed-netmask", "--allowed-netmasks"])
def test_allowed_netmask(probe, spelling: str) -> None:
    got = probe([f"{spelling}=192.0.2.0/24", f"{spelling}=2001:db8::/32"], NET_OPS, netns=True)
    allowed = {TCP4, TCP4_25, TCP6, MAPPED, UDP4, UDP6, MSG4}
    assert {k for k, v in got.items() if v == 0} == allowed, got
    assert {v for k, v in got.items() if k not in allowed} == {"EPERM"}, got


def test_bare_address_netmask_is_one_host(probe) -> None:
    got = probe(["--allowed-netmask=192.0.2.1"], [TCP4, "tcp4|192.0.2.53|22"], netns=True)
    assert got[TCP4] == 0 and got["tcp4|192.0.2.53|22"] == "EPERM"


def test_allowed_port(probe) -> None:
    got = probe(["--allowed-port=22", "--allowed-port=9"], NET_OPS, netns=True)
    allowed = {TCP4, TCP6, MAPPED, LOOP6, UDP4, UDP6, MSG4}
    assert {k for k, v in got.items() if v == 0} == allowed, got


def test_netmask_and_port_must_both_match(probe) -> None:
    got = probe(["--allowed-netmask=192.0.2.0/24", "--allowed-port=22"],
                [TCP4, TCP4_25, TCP4_OTHER, LOOP4], netns=True)
    assert got == {TCP4: 0, TCP4_25: "EPERM", TCP4_OTHER: "EPERM", LOOP4: "EPERM"}


RESOLVE = "resolve|ds9a.nl"


def test_resolution_baseline(probe) -> None:
    assert probe([], [RESOLVE, TCP4_OTHER], netns=True) == {RESOLVE: 0, TCP4_OTHER: 0}


def test_no_outbound_network_cannot_resolve_but_allow_resolv_can(probe) -> None:
    assert probe(["--no-outbound-network=1"], [RESOLVE], netns=True) == {RESOLVE: "EAI"}
    got = probe(["--no-outbound-network=1", "--allow-resolv"], [RESOLVE, TCP4_OTHER,
                                                                 "tcp4|192.0.2.53|22"],
                netns=True)
    assert got == {RESOLVE: 0, TCP4_OTHER: "EPERM", "tcp4|192.0.2.53|22": "EPERM"}


def test_allow_resolv_joins_netmask_and_port(probe) -> None:
    opts = ["--allowed-netmask=198.51.100.25", "--allowed-port=25"]
    assert probe(opts, [RESOLVE], netns=True) == {RESOLVE: "EAI"}
    got = probe([*opts, "--allow-resolv"], [RESOLVE, TCP4_OTHER, TCP4], netns=True)
    assert got == {RESOLVE: 0, TCP4_OTHER: 0, TCP4: "EPERM"}


AF_VSOCK = 40


def test_mainstream_network_families(probe) -> None:
    ops = [f"socket|{AF_VSOCK}|1", "socket|1|1", "socket|2|1", "socket|10|2", "socket|16|2"]
    assert set(probe([], ops).values()) == {0}
    got = probe(["--mainstream-network-families"], ops)
    assert got.pop(f"socket|{AF_VSOCK}|1") == "EPERM"
    assert set(got.values()) == {0}, got


def test_destination_rules_refuse_sockets_without_judged_destinations(probe, secfilt) -> None:
    ops = [f"socket|{AF_VSOCK}|1", "socket|2|2|132", "socket|10|1|262"]  # vsock, SCTP, MPTCP
    if secfilt.user.name == "root":
        ops += ["socket|2|3|17", "socket|10|3|17", "socket|17|3"]  # raw UDP v4, v6; AF_PACKET
    base = probe([], ops)
    for opts in (["--allowed-port=22"], ["--no-outbound-network"],
                 ["--allowed-netmask=192.0.2.0/24"]):
        got = probe(opts, ops)
        for op in ops:
            # refused by the policy, or not available here at all: never created
            assert got[op] == "EPERM" or (got[op] == base[op] != 0), (opts, op, got, base)
    assert probe(["--allowed-port=22"], ["socket|2|1|6", "socket|10|2|17", "socket|1|1"]) == {
        "socket|2|1|6": 0, "socket|10|2|17": 0, "socket|1|1": 0}


# the README's other two examples, with the programs this machine has (busybox's telnet says
# "bad address" where the README's telnet said "could not resolve")
TELNET_DS9A = "busybox telnet ds9a.nl 25 </dev/null"
TELNET_LAN = "echo q | busybox telnet 192.168.1.2 22"
SSH_DS9A = "ssh -o BatchMode=yes -o StrictHostKeyChecking=no ds9a.nl true </dev/null"


def test_readme_no_outbound_network_example(secfilt: Secfilt) -> None:
    base = secfilt("bash", "-c", TELNET_DS9A, netns=True)
    assert "Connected to ds9a.nl" in base.out, base
    got = secfilt("--no-outbound-network=1", "bash", "-c", TELNET_DS9A, netns=True)
    assert "telnet: bad address 'ds9a.nl'" in got.err and "Connected" not in got.out, got


def test_readme_netmask_example(secfilt: Secfilt) -> None:
    script = f"{TELNET_LAN}; {SSH_DS9A}"
    base = secfilt("bash", "-c", script, netns=True)
    assert "Connected to 192.168.1.2" in base.out and "resolve" not in base.err, base
    got = secfilt("--allowed-netmasks=192.168.1.0/24", "bash", "-c", script, netns=True)
    assert "Connected to 192.168.1.2" in got.out, got
    assert "ssh: Could not resolve hostname ds9a.nl" in got.err, got


def test_ssh_to_one_host_example(secfilt: Secfilt) -> None:
    """ssh-one-host.conf's idea: ssh to one host by name, nothing else, files read-only."""
    opts = ["--read-only=1", "--allow-write=/dev/null", "--allowed-netmask=198.51.100.25",
            "--allowed-port=22", "--mainstream-network-families"]
    script = f"{SSH_DS9A}; busybox telnet 192.0.2.1 22 </dev/null"
    without = secfilt(*opts, "bash", "-c", script, netns=True)
    assert "ssh: Could not resolve hostname ds9a.nl" in without.err, without
    got = secfilt(*opts, "--allow-resolv", "bash", "-c", script, netns=True)
    # the test's server sends a banner and hangs up: ssh got through to it
    assert "resolve" not in got.err and "198.51.100.25" in got.err, got
    assert "can't connect to remote host (192.0.2.1): Operation not permitted" in got.err, got


# --- log and audit -------------------------------------------------------------------------


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_log_records_each_denied_call(probe, tree: Path, work: Path) -> None:
    log = work / "log.jsonl"
    target = f"{tree}/outside/new"
    got = probe(["--read-only", f"--log={log}"], [f"write|{target}", f"read|{tree}/outside/f"])
    assert got[f"write|{target}"] == "EPERM"
    entries = read_log(log)
    assert len(entries) == 1, entries  # the read is not logged: nothing was denied
    e = entries[0]
    assert e["rule"] == "read-only" and e["action"] == "deny" and e["container"] is None
    assert e["syscall"] in ("open", "openat", "creat") and e["args"]["path"] == target
    assert isinstance(e["pid"], int) and e["pid"] > 0 and e["time"].startswith("20")


def test_log_records_destinations(probe, work: Path) -> None:
    log = work / "net.jsonl"
    probe(["--no-outbound-network", f"--log={log}"], [TCP4, LOOP4], netns=True)
    entries = read_log(log)
    assert len(entries) == 1, entries  # loopback was allowed: not logged
    e = entries[0]
    assert e["syscall"] == "connect" and e["rule"] == "no-outbound-network"
    text = json.dumps(e["args"])
    assert "192.0.2.1" in text and "22" in text


def test_verbose_logs_to_stderr(secfilt: Secfilt, work: Path) -> None:
    d = secfilt("--read-only", "--verbose", "sh", "-c", f"echo a > {work}/v 2>/dev/null; true")
    assert d.code == 0 and f"{work}/v" in d.err and "read-only" in d.err


def test_audit_mode_allows_and_logs(probe, tree: Path, work: Path) -> None:
    log = work / "audit.jsonl"
    target = f"{tree}/outside/new"
    got = probe(["--read-only", "--mode=audit", f"--log={log}"], [f"write|{target}"])
    assert got == {f"write|{target}": 0} and Path(target).exists()
    entries = read_log(log)
    assert len(entries) == 1, entries
    assert entries[0]["action"] == "audit" and entries[0]["args"]["path"] == target


def test_audit_mode_keeps_the_tracer_out_of_reach(probe, secfilt: Secfilt, tree: Path,
                                                  work: Path) -> None:
    """Audit mode observes the write rules without enforcing them, but the command's parent is
    still its tracer: with its descriptors (the log's among them) or its memory the command
    could forge the log or every decision. Landlock's ptrace scoping keeps it off both, so audit
    mode too gets a domain, one that restricts no file-system access."""
    if secfilt.user.name != "root":  # type: ignore[attr-defined]
        pytest.skip("unprivileged, the command cannot reach its (undumpable) tracer even "
                    "without a policy: nothing to show")
    log = work / "audit.jsonl"
    # the baseline: a tracer with a log and no rule to keep the command off it
    got = probe([f"--log={log}"], [f"tracer-fd|{log}", "tracer-mem"])
    assert got == {f"tracer-fd|{log}": 0, "tracer-mem": 0}, got
    log.unlink(missing_ok=True)
    target = f"{tree}/outside/new"
    got = probe(["--read-only=1", f"--allow-write={tree}/allowed", "--mode=audit",
                 f"--log={log}"], [f"write|{target}", f"tracer-fd|{log}", "tracer-mem"])
    assert got == {f"write|{target}": 0, f"tracer-fd|{log}": "EPERM",
                   "tracer-mem": "EACCES"}, got
    assert Path(target).exists()
    audited = [e for e in read_log(log) if e["args"].get("path") == target]
    assert [e["action"] for e in audited] == ["audit"], audited


def test_audit_mode_network(probe, work: Path) -> None:
    log = work / "audit-net.jsonl"
    got = probe(["--no-outbound-network", "--allowed-port=22", "--mode=audit", f"--log={log}"],
                [TCP4, TCP4_25, LOOP6], netns=True)
    assert set(got.values()) == {0}, got
    entries = read_log(log)
    assert [(e["rule"], e["action"]) for e in entries] == [
        ("no-outbound-network", "audit"), ("no-outbound-network", "audit")], entries


# --- config files --------------------------------------------------------------------------


def test_config_file_and_options_on_top(probe, tree: Path, work: Path) -> None:
    conf = work / "p.conf"
    conf.write_text(f"allow-write={tree}/allowed/   # comment\nmainstream-network-families=\n")
    conf.chmod(0o644)
    got = probe([f"--config={conf}"], [f"write|{tree}/allowed/n", f"write|{tree}/outside/n",
                                       f"socket|{AF_VSOCK}|1"])
    assert got == {f"write|{tree}/allowed/n": 0, f"write|{tree}/outside/n": "EPERM",
                   f"socket|{AF_VSOCK}|1": "EPERM"}
    got = probe([f"--config={conf}", f"--allow-write={tree}/outside"],
                [f"write|{tree}/outside/m"])
    assert got == {f"write|{tree}/outside/m": 0}


def test_sample_config_files_run(probe) -> None:
    for name in ("ssh-one-host.conf", "pdns_recursor.conf"):
        got = probe([f"--config={REPO / 'bundles' / name}"], ["write|/etc/secfilt-nope",
                                                              "write|/dev/null"])
        assert got == {"write|/etc/secfilt-nope": "EPERM", "write|/dev/null": 0}, name


@pytest.fixture(autouse=True)
def _no_stray_files() -> Iterator[None]:
    yield
    assert not Path("/etc/secfilt-nope").exists()



# --- the read-only mounts (policy.mounts): the kernel layer for chmod, chown, utimes, xattrs --

VIEW = textwrap.dedent(r'''
    import json, os, sys
    def ro(path):
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(),
                      "ns": os.readlink("/proc/self/ns/mnt"), "root_ro": ro("/"),
                      "cwd_ro": ro("."), "proc_ro": ro("/proc"),
                      "caps": [l.split()[1] for l in open("/proc/self/status")
                               if l.startswith(("CapEff", "CapPrm", "CapBnd", "CapAmb"))],
                      "passwd": len(open("/etc/passwd").read()) > 0}), flush=True)
    sys.stdin.readline()  # the test looks at the host's mounts meanwhile
    open("made-in-cwd", "w").close()
''')


# Stands for the host: a mount namespace of the test's own whose "/" is shared, so that a mount
# secfilt's command made in a namespace still linked to it would show up here. Runs secfilt
# (argv[2:]) in work/shared/allowed (a tmpfs), compares its own mount table before, while the
# command runs, and after, and prints what the command saw with the comparison.
HOST = textwrap.dedent(r'''
    import json, os, subprocess, sys
    from secfilt_runtime import kernel
    kernel.unshare(kernel.CLONE_NEWNS)
    kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_SHARED)
    shared = os.path.join(sys.argv[1], "shared")
    os.mkdir(shared)
    kernel.mount("tmpfs", shared, "tmpfs", 0, "mode=0777")
    allowed = os.path.join(shared, "allowed")
    os.mkdir(allowed)
    os.chown(allowed, int(sys.argv[2]), int(sys.argv[2]))
    def mounts():
        with open("/proc/self/mountinfo") as f:  # point, options, propagation
            return sorted((ln.split()[4], ln.split()[5],
                           " ".join(ln.split(" - ")[0].split()[6:])) for ln in f)
    before = mounts()
    p = subprocess.Popen(sys.argv[3:], cwd=allowed, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    view = json.loads(p.stdout.readline() or "null")
    during = mounts()
    p.communicate("go\n", timeout=30)
    print(json.dumps({"view": view, "code": p.returncode, "ns": os.readlink("/proc/self/ns/mnt"),
                      "same_during": during == before, "same_after": mounts() == before,
                      "made": os.path.exists(os.path.join(allowed, "made-in-cwd")),
                      "allowed": allowed, "leaked": sorted(set(during) - set(before))}))
''')


def test_read_only_mounts_stay_inside_and_the_host_is_unchanged(secfilt: Secfilt,
                                                                work: Path) -> None:
    user = secfilt.user  # type: ignore[attr-defined]
    for name, text in (("view.py", VIEW), ("host.py", HOST)):
        (work / name).write_text(text)
        (work / name).chmod(0o644)
    uid = 0 if user.name == "root" else NOBODY
    argv = [sys.executable, str(work / "host.py"), str(work), str(uid), *user.prefix,
            user.python, "-m", "secfilt_runtime.secfilt_cli",
            f"--allow-write={work}/shared/allowed",
            user.python, str(work / "view.py")]
    p = subprocess.run(argv, env=user.env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    view = got["view"]
    assert got["code"] == 0 and view, p.stderr
    assert got["same_during"] and got["same_after"], f"mounts reached the host: {got['leaked']}"
    assert view["ns"] != got["ns"]
    assert (view["uid"], view["gid"]) == (uid, uid)
    # same cwd, and it is the writable clone (the file was made there by a relative name)
    assert view["cwd"] == got["allowed"] and not view["cwd_ro"] and got["made"]
    assert view["root_ro"] and not view["proc_ro"] and view["passwd"]
    if user.name == "nobody":  # the user namespace's capabilities are gone before the command
        assert view["caps"] == ["0000000000000000"] * 4, view


def test_metadata_race_is_stopped_by_the_mounts(secfilt: Secfilt, work: Path) -> None:
    """A thread flips chmod's path between an allowed and a forbidden file: the tracer's
    check alone loses (the baseline shows the race wins without the policy); the read-only
    mounts refuse the forbidden one in the kernel, as root and, through a user namespace,
    as nobody."""
    from attacks.harness import binaries

    user = secfilt.user  # type: ignore[attr-defined]
    # names one byte apart: race.c flips that byte alone, so the path is never torn
    for d in ("dir-a", "dir-b"):
        (work / d).mkdir()
        (work / d / "f").write_text("")
        for p in (work / d, work / d / "f"):
            give(p)
    own, victim = work / "dir-a/f", work / "dir-b/f"
    attack = [str(binaries() / "race"), "chmod", "2", str(own), str(victim)]

    def mode(p: Path) -> int:
        return p.stat().st_mode & 0o777

    for p in (own, victim):
        p.chmod(0o644)
    # the baseline only shows the attack can win here and now (with a torn-path flip it lost
    # whole windows as nobody late in full suite runs): where it cannot, there is nothing for
    # the run under the policy to show
    baseline = [*attack[:2], "4", *attack[3:]]
    for _ in range(3):
        base = subprocess.run([*user.prefix, *baseline], cwd=work, env=user.env,
                              capture_output=True, text=True, timeout=60)
        if mode(victim) == 0o600:
            break
    else:
        pytest.skip(f"the race did not win without a policy in 3 x 4 s: {base.stdout.strip()}")
    for p in (own, victim):
        p.chmod(0o644)
    d = secfilt(f"--allow-write={work}/dir-a", *attack)
    assert mode(victim) == 0o644, f"BYPASS as {user.name}: {d}"
    assert mode(own) == 0o600, f"the allowed side must still work: {d}"


LEAVE = textwrap.dedent(r'''
    import ctypes, errno, json, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    host = int(sys.argv[1])
    got = {}
    def attempt(name, call):
        try:
            r = call()
            got[name] = 0 if r in (0, None) or r > 0 else errno.errorcode[ctypes.get_errno()]
        except OSError as e:
            got[name] = errno.errorcode[e.errno]
    attempt("setns", lambda: libc.setns(os.pidfd_open(host), 0x00020000))
    attempt("proc_root", lambda: os.stat(f"/proc/{host}/root/"))
    attempt("proc_ns", lambda: os.open(f"/proc/{host}/ns/mnt", os.O_RDONLY))
    # mount_setattr("/", clear MOUNT_ATTR_RDONLY): attr_set, attr_clr, propagation, userns_fd
    attr = (ctypes.c_uint64 * 4)(0, 1, 0, 0)
    attempt("remount_rw", lambda: libc.syscall(442, -100, b"/", 0x8000, attr, 32))
    got["root_ro"] = bool(os.statvfs("/").f_flag & os.ST_RDONLY)
    print(json.dumps(got))
''')


def test_the_read_only_mounts_cannot_be_left(secfilt: Secfilt, work: Path) -> None:
    """The host's writable mounts are one setns or one /proc/PID/root away for a process of the
    same user outside the sandbox: Landlock's ptrace scoping refuses both (even to root, whose
    CAP_SYS_ADMIN would otherwise let setns through), and the mount family is refused."""
    user = secfilt.user  # type: ignore[attr-defined]
    (work / "allowed").mkdir()
    script = work / "leave.py"
    script.write_text(LEAVE)
    script.chmod(0o644)
    outside = subprocess.Popen([*user.prefix, "sleep", "60"])
    try:
        d = secfilt(f"--allow-write={work}/allowed", user.python, str(script), str(outside.pid))
    finally:
        outside.kill()
        outside.wait()
    got = json.loads(d.out.splitlines()[-1]) if d.code == 0 else d
    assert got == {"setns": "EPERM", "proc_root": "EACCES", "proc_ns": "EACCES",
                   "remount_rw": "EPERM", "root_ro": True}, got


# Runs argv[1:] as nobody in a user namespace (ids 0-65535 mapped to themselves, by root from
# outside) whose user.max_user_namespaces is 0: a kernel that refuses unprivileged user
# namespaces, without touching the machine's own setting.
NO_USERNS = textwrap.dedent(r'''
    import os, sys
    from secfilt_runtime import kernel
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        kernel.unshare(kernel.CLONE_NEWUSER)
        os.read(r, 1)  # mapped
        with open("/proc/sys/user/max_user_namespaces", "w") as f:
            f.write("0")
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        os.execvp(sys.argv[1], sys.argv[1:])
    os.close(r)
    import time
    while os.readlink(f"/proc/{pid}/ns/user") == os.readlink("/proc/self/ns/user"):
        time.sleep(0.01)
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write("0 0 65536\n")
    os.write(w, b"g")
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
''')


def test_without_user_namespaces_a_user_keeps_the_tracer_and_check_says_racy(
        deps: Path, work: Path) -> None:
    py = shutil.which("python3", path="/usr/bin:/bin")
    if py is None:
        pytest.skip("no system python3 for the unprivileged run")
    script = work / "no_userns.py"
    script.write_text(NO_USERNS)
    (work / "allowed").mkdir()
    give(work / "allowed")
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'runtime'}:{deps}", HOME="/nonexistent",
               PATH="/usr/local/bin:/usr/bin:/bin")
    fenced = [sys.executable, str(script), py]
    check = subprocess.run([*fenced, "-m", "secfilt_runtime", "check", "--format", "json"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    doc = json.loads(check.stdout)
    assert doc["secfiltMounts"]["caller"] is None, doc["secfiltMounts"]
    (row,) = [r for r in doc["rules"] if r["covers"].endswith("xattrs under secfilt")]
    assert row["layers"] == ["tracer"] and not row["race_free"], row
    # secfilt still runs, tracer-only, and --verbose says so
    d = subprocess.run([*fenced, "-m", "secfilt_runtime.secfilt_cli", "--verbose",
                        f"--allow-write={work}/allowed", py, "-c",
                        "import os; print(os.getuid(), bool(os.statvfs('/').f_flag & 1)); "
                        "open('new', 'w').close()"],
                       cwd=work / "allowed", env=env, capture_output=True, text=True, timeout=60)
    assert d.returncode == 0, d.stderr
    assert d.stdout == "65534 False\n" and (work / "allowed/new").exists()
    assert "no user namespace for read-only mounts" in d.stderr, d.stderr
