"""Issue 5: podman drives the runtime through `--runtime ABSOLUTE_PATH` (conmon calls create,
start, exec, kill, pause, resume, delete), for secfilt-runtime and, to show the engine's side of
the contract, for runc. The org.secfilter.* annotations given to `podman run --annotation` must
be in force for the container's processes and for those `podman exec` adds.

After every test: podman knows none of its containers, the runtime's `list` is empty, and no
libpod cgroup or mount is left."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_harness import (
    IMAGE,
    READ_ONLY,
    RUNTIMES,
    TRAP_LOOP,
    ULIMITS,
    Podman,
    PodmanStore,
    busybox_tar,
    engine_marks,
    mounts_under,
    repo_file,
    run,
    runtime_list,
    runtime_path,
)

pytestmark = engine_marks("podman")


@pytest.fixture(scope="module")
def store(rootfs: Path) -> Iterator[PodmanStore]:
    s = PodmanStore()
    try:
        r = s("import", str(busybox_tar(rootfs, s.base / "busybox.tar")), IMAGE)
        assert r.returncode == 0, r.stderr
        yield s
    finally:
        left = s.destroy()
    assert left == [], f"mounts left behind: {left}"


def _view(store: PodmanStore, name: str) -> Iterator[Podman]:
    view = Podman(store, runtime_path(name))
    yield view
    # a test that failed halfway leaves its containers: `podman rm --force` must still
    # remove all that the runtime made for them
    unremoved = view.containers_left()
    view.force_clean()
    left = view.leftovers()
    assert left == [], f"left behind after podman rm --force: {left}"
    assert unremoved == [], f"the test left containers (now removed): {unremoved}"
    assert mounts_under(store.base / "runroot") == [], "mounts left behind"


@pytest.fixture(params=RUNTIMES)
def podman(request: pytest.FixtureRequest, store: PodmanStore) -> Iterator[Podman]:
    yield from _view(store, request.param)


@pytest.fixture
def secfilt_podman(store: PodmanStore) -> Iterator[Podman]:
    """Only secfilt-runtime: runc does not know the policy annotations."""
    yield from _view(store, "secfilt-runtime")


def detail(p: Podman, r) -> str:
    return f"runtime={p.runtime} rc={r.returncode}\nstdout:{r.stdout}\nstderr:{r.stderr}"


def run_detached(p: Podman, *args: str) -> str:
    name = p.name()
    r = p("run", "--detach", "--name", name, *args)
    assert r.returncode == 0, detail(p, r)
    assert p.wait_status(name, "running") == "running"
    return name


# --- the container's life -------------------------------------------------------------------


def test_run_output_and_exit_code(podman):
    r = podman("run", "--rm", "--name", podman.name(), IMAGE,
               "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3, detail(podman, r)
    assert r.stdout == "out\n"
    assert "err" in r.stderr


def test_run_stdin_and_limits(podman):
    # -i: conmon hands the container a pipe as stdin; the ulimits podman sets come through
    r = podman("run", "--rm", "-i", "--name", podman.name(), IMAGE,
               "sh", "-c", "read line; echo got:$line; ulimit -n", input="hello\n")
    assert r.returncode == 0, detail(podman, r)
    assert r.stdout.split() == ["got:hello", "20000"]


def test_run_tty(podman):
    # -t: the runtime makes a pty and passes its master to conmon over --console-socket
    r = podman("run", "--rm", "-t", "--name", podman.name(), IMAGE,
               "sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo both-tty; exit 5")
    assert r.returncode == 5, detail(podman, r)
    assert "/dev/pts/0" in r.stdout and "both-tty" in r.stdout


@pytest.mark.parametrize(("argv", "code", "why"), [
    (["/nonexistent"], 127, "no such file or directory"),
    (["/etc/passwd"], 126, "permission denied"),
])
def test_run_exec_failure_codes(podman, argv, code, why):
    # podman maps the runtime's create error text to the shell's 127 (not found) / 126
    r = podman("run", "--rm", "--name", podman.name(), IMAGE, *argv)
    assert r.returncode == code, detail(podman, r)
    assert why in r.stderr.lower(), detail(podman, r)


def test_detached_exec_stop_rm(podman):
    name = run_detached(podman, IMAGE, *TRAP_LOOP)
    r = podman("exec", name, "sh", "-c", "echo in-exec; ps -o pid,args; exit 7")
    assert r.returncode == 7, detail(podman, r)
    assert "in-exec" in r.stdout
    assert "trap" in r.stdout  # the exec'd process sees the init: same pid namespace
    r = podman("exec", "-i", name, "cat", input="through-exec\n")
    assert (r.returncode, r.stdout) == (0, "through-exec\n"), detail(podman, r)
    r = podman("exec", "-t", name, "sh", "-c", "tty; exit 6")
    assert r.returncode == 6 and "/dev/pts/" in r.stdout, detail(podman, r)
    r = podman("stop", "--time", "10", name)
    assert r.returncode == 0, detail(podman, r)
    assert podman.status(name) == "exited"
    assert podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "42"
    r = podman("rm", name)
    assert r.returncode == 0, detail(podman, r)
    assert podman("container", "exists", name).returncode == 1


def test_restart_exited_container(podman):
    # `podman start` of an exited container creates it again in the runtime under the same id
    name = podman.name()
    r = podman("run", "--name", name, IMAGE, "sh", "-c", "echo round; exit 2")
    assert (r.returncode, r.stdout) == (2, "round\n"), detail(podman, r)
    r = podman("start", "--attach", name)
    assert (r.returncode, r.stdout) == (2, "round\n"), detail(podman, r)
    assert podman("rm", name).returncode == 0


def test_kill_and_wait(podman):
    name = run_detached(podman, IMAGE, "sleep", "1000")
    r = podman("kill", "--signal", "KILL", name)
    assert r.returncode == 0, detail(podman, r)
    r = podman("wait", name)
    assert r.stdout.strip() == "137", detail(podman, r)
    assert podman("rm", name).returncode == 0


def test_pause_unpause(podman):
    name = run_detached(podman, IMAGE, *TRAP_LOOP)
    full_id = podman.full_id(name)
    freezer = Path(f"/sys/fs/cgroup/freezer/libpod_parent/libpod-{full_id}/freezer.state")
    r = podman("pause", name)
    assert r.returncode == 0, detail(podman, r)
    assert podman.status(name) == "paused"
    assert freezer.read_text().strip() == "FROZEN"  # the state is not just a word in a file
    r = podman("unpause", name)
    assert r.returncode == 0, detail(podman, r)
    assert podman.status(name) == "running"
    assert freezer.read_text().strip() == "THAWED"
    r = podman("exec", name, "true")
    assert r.returncode == 0, detail(podman, r)
    assert podman("rm", "--force", "--time", "0", name).returncode == 0


def test_rm_force_running(podman):
    name = run_detached(podman, IMAGE, "sleep", "1000")
    r = podman("rm", "--force", "--time", "0", name)
    assert r.returncode == 0, detail(podman, r)
    assert podman("container", "exists", name).returncode == 1


def test_loopback_tmpfs_copy_up_and_a_failed_create(podman):
    # runc's behaviour that podman users rely on: lo is up in the container's own network
    # namespace (--network=none too); --tmpfs holds a copy of the image's directory
    # (podman asks for tmpcopyup); a failed create reports its error and nothing else
    r = podman("run", "--rm", "--network=none", "--tmpfs", "/etc", "--name", podman.name(),
               IMAGE, "sh", "-c", "cat /sys/class/net/lo/flags; grep -c root /etc/passwd")
    assert r.returncode == 0, detail(podman, r)
    flags, count = r.stdout.split()
    assert int(flags, 16) & 1, f"lo is down: {detail(podman, r)}"
    assert count == "1", detail(podman, r)
    r = podman("run", "--rm", "--name", podman.name(), IMAGE, "/nonexistent")
    assert r.returncode == 127, detail(podman, r)
    assert "does not exist" not in r.stderr, detail(podman, r)


# --- the policy through podman --------------------------------------------------------------


def test_annotation_read_only_in_force_for_run(secfilt_podman):
    p = secfilt_podman
    write = ["sh", "-c", "echo x > /tmp/f && echo written"]
    r = p("run", "--rm", "--name", p.name(), IMAGE, *write)
    assert (r.returncode, r.stdout) == (0, "written\n"), detail(p, r)
    r = p("run", "--rm", "--name", p.name(), *READ_ONLY, IMAGE, *write)
    assert r.returncode != 0 and "written" not in r.stdout, detail(p, r)
    assert "Operation not permitted" in r.stderr, detail(p, r)


def test_annotation_read_only_privileged_container(secfilt_podman):
    p = secfilt_podman
    r = p("run", "--rm", "--privileged", "--name", p.name(), *READ_ONLY, IMAGE,
          "sh", "-c", "echo x > /tmp/f && echo written; mount -o remount,rw / 2>&1;"
                      "echo y > /root/g && echo written-after-remount")
    assert "written" not in r.stdout, detail(p, r)
    assert "Operation not permitted" in r.stderr, detail(p, r)


def test_annotation_allow_write(secfilt_podman):
    p = secfilt_podman
    r = p("run", "--rm", "--name", p.name(), *READ_ONLY,
          "--annotation", "org.secfilter.allow-write=/tmp", IMAGE,
          "sh", "-c", "echo x > /tmp/ok && echo ok-written; mkdir /tmp/d/ 2>&1;"
                      "echo y > /root/no && echo no-written")
    assert "ok-written" in r.stdout, detail(p, r)
    assert "no-written" not in r.stdout
    assert "Operation not permitted" in r.stderr, detail(p, r)


def test_annotation_in_force_for_exec(secfilt_podman):
    p = secfilt_podman
    name = run_detached(p, *READ_ONLY, IMAGE, *TRAP_LOOP)
    # (no redirection to /dev/null: opening it for writing counts as a write)
    r = p("exec", name, "sh", "-c", "grep -c root /etc/passwd")
    assert (r.returncode, r.stdout) == (0, "1\n"), detail(p, r)
    # the exec'd shell and a grandchild of it: both traced, both refused
    r = p("exec", name, "sh", "-c", "echo x > /tmp/f && echo written")
    assert r.returncode != 0 and "written" not in r.stdout, detail(p, r)
    assert "Operation not permitted" in r.stderr
    r = p("exec", name, "sh", "-c", "sh -c 'mkdir /tmp/d && echo made'")
    assert "made" not in r.stdout and "Operation not permitted" in r.stderr, detail(p, r)
    # --privileged gives the exec'd process every capability and no seccomp profile of
    # podman's: the policy does not come from either
    r = p("exec", "--privileged", name, "sh", "-c", "echo x > /tmp/f && echo written")
    assert "written" not in r.stdout and "Operation not permitted" in r.stderr, detail(p, r)
    assert p("exec", name, "test", "-e", "/tmp/f").returncode == 1
    assert p("rm", "--force", "--time", "0", name).returncode == 0


def test_annotation_no_outbound_network(secfilt_podman):
    p = secfilt_podman
    # --network none leaves only lo: without the policy the kernel says unreachable
    connect = ["nc", "-w", "1", "192.0.2.1", "80"]
    r = p("run", "--rm", "--name", p.name(), IMAGE, *connect)
    assert "Network is unreachable" in r.stderr, detail(p, r)
    r = p("run", "--rm", "--name", p.name(),
          "--annotation", "org.secfilter.no-outbound-network=true", IMAGE, *connect)
    assert r.returncode != 0
    assert "Operation not permitted" in r.stderr, detail(p, r)


@pytest.mark.parametrize(("key", "value"), [("org.secfilter.read-only", "maybe"),
                                            ("org.secfilter.readonly", "true")])
def test_bad_annotation_refused_nothing_left(secfilt_podman, key, value):
    p = secfilt_podman
    name = p.name()
    r = p("run", "--name", name, "--annotation", f"{key}={value}", IMAGE, "true")
    assert r.returncode != 0, detail(p, r)
    assert key in r.stderr, detail(p, r)  # the error names the key
    ids = p.created_ids()
    assert ids and not set(ids) & set(runtime_list(p.runtime))
    assert p("rm", "--force", name).returncode == 0


def test_containers_conf_as_documented(store, secfilt_podman, tmp_path):
    """deploy/containers.conf, with the path of this install, makes secfilt-runtime podman's
    default runtime: no --runtime flag, and the policy in force."""
    p = secfilt_podman
    runtime = runtime_path("secfilt-runtime")
    conf = tmp_path / "containers.conf"
    documented = repo_file("deploy/containers.conf").read_text()
    conf.write_text(documented.replace("/usr/local/bin/secfilt-runtime", runtime)
                    + f'[containers]\nnetns = "none"\ndefault_ulimits = {ULIMITS}\n')
    podman = ["podman", *store.global_flags()]
    name = p.name()
    r = run([*podman, "run", "--name", name, *READ_ONLY, IMAGE,
             "sh", "-c", "echo x > /f && echo written"], env=store.env(conf))
    assert "written" not in r.stdout, detail(p, r)
    assert "Operation not permitted" in r.stderr, detail(p, r)
    r = run([*podman, "inspect", "--format", "{{.OCIRuntime}}", name], env=store.env(conf))
    assert r.stdout.strip() == "secfilt-runtime", r.stderr
    r = run([*podman, "rm", name], env=store.env(conf))
    assert r.returncode == 0, detail(p, r)
