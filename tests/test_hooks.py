"""OCI hooks: the runner (state on stdin, args, env, timeout, failures) with real processes,
and every phase at its point of a container's life, in the namespaces the spec names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from secfilt_runtime import hooks
from secfilt_runtime.errors import ConfigError, ContainerError

from conftest import needs_root


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_state_on_stdin_args_and_env(tmp_path):
    out = tmp_path / "out"
    path = script(tmp_path, "h", f'echo "$0 $1 $FOO" > {out}; cat >> {out}\n')
    hooks.run_phase("prestart", {"prestart": [{"path": path, "args": ["argv0", "one"],
                                               "env": ["FOO=bar"]}]}, {"id": "x"})
    first, second = out.read_text().splitlines()
    assert first == f"{path} one bar"  # the shell reports its script as $0
    assert json.loads(second) == {"id": "x"}


def test_failure_names_the_hook_and_its_stderr(tmp_path):
    path = script(tmp_path, "bad", "echo broken >&2; exit 3\n")
    with pytest.raises(ContainerError, match=r"hooks.createRuntime\[0\] .*exit status 3: broken"):
        hooks.run_phase("createRuntime", {"createRuntime": [{"path": path}]}, {})


def test_timeout_kills_the_hook(tmp_path):
    path = script(tmp_path, "slow", "exec sleep 30\n")
    start = time.monotonic()
    with pytest.raises(ContainerError, match="timed out after 1s"):
        hooks.run_phase("prestart", {"prestart": [{"path": path, "timeout": 1}]}, {})
    assert time.monotonic() - start < 10


def test_timeout_kills_what_the_hook_started(tmp_path):
    # a script's commands are its children: killing the shell alone left them running after
    # the container was torn down
    pid_file = tmp_path / "child.pid"
    path = script(tmp_path, "slow", f"sleep 30 & echo $! > {pid_file}; wait\n")
    with pytest.raises(ContainerError, match="timed out after 1s"):
        hooks.run_phase("prestart", {"prestart": [{"path": path, "timeout": 1}]}, {})
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and " Z " not in Path(f"/proc/{child}/stat").read_text():
        assert time.monotonic() < deadline, f"the hook's child {child} outlived its timeout"
        time.sleep(0.02)


def test_warn_mode_runs_the_rest(tmp_path):
    out = tmp_path / "out"
    bad = script(tmp_path, "bad", "exit 1\n")
    good = script(tmp_path, "good", f"echo ran > {out}\n")
    warnings: list[str] = []
    hooks.run_phase("poststop", {"poststop": [{"path": bad}, {"path": good}]}, {},
                    warn=warnings.append)
    assert out.read_text() == "ran\n"
    assert len(warnings) == 1 and "hooks.poststop[0]" in warnings[0]


def test_missing_executable(tmp_path):
    with pytest.raises(ContainerError, match="cannot run"):
        hooks.run_phase("prestart", {"prestart": [{"path": str(tmp_path / "none")}]}, {})


@pytest.mark.parametrize(("doc", "message"), [
    ({"nope": []}, "hooks.nope: not a hook phase"),
    ({"prestart": [{"path": "rel"}]}, r"hooks.prestart\[0\].path: must be an absolute path"),
    ({"poststop": [{"path": "/x", "timeout": 0}]}, "must be a positive integer"),
])
def test_bad_hooks_are_named(doc, message):
    with pytest.raises(ConfigError, match=message):
        hooks.parse(doc)


RECORD = """read -r state
ns=$(readlink /proc/self/ns/mnt)
echo "{phase} $(echo "$state" | sed 's/.*"status": "\\([a-z]*\\)".*/\\1/') $ns" >> {log}
"""


@needs_root
@pytest.mark.e2e
def test_create_hooks_run_before_pivot_root(runtime, make_bundle, rootfs, tmp_path):
    # what GPU and network hooks do: reach root.path through the init's mount namespace and
    # put something there. Only before pivot_root does that path exist in the namespace (the
    # spec's createRuntime and createContainer point; prestart runs with createRuntime).
    # prestart enters the namespace itself; createContainer runs in it.
    prestart = script(tmp_path, "prestart", f"""read -r state
pid=$(echo "$state" | sed 's/.*"pid": *\\([0-9]*\\).*/\\1/')
exec nsenter -t "$pid" -m sh -c 'echo from-prestart > {rootfs}/tmp/prestart'
""")
    create_container = script(tmp_path, "create-container",
                              f"echo from-createContainer > {rootfs}/tmp/createContainer\n")
    bundle = make_bundle(["cat", "/tmp/prestart", "/tmp/createContainer"],
                         hooks={"prestart": [{"path": prestart}],
                                "createContainer": [{"path": create_container}]})
    r = runtime.run(bundle)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "from-prestart\nfrom-createContainer\n"
    # the files went to the container's /tmp (a tmpfs), not to the shared rootfs
    assert not (rootfs / "tmp" / "prestart").exists()


@needs_root
@pytest.mark.e2e
def test_every_phase_at_its_point(runtime, make_bundle, tmp_path):
    log = tmp_path / "phases"
    # startContainer's path resolves in the container: the hook lives in the rootfs's /tmp,
    # which is where this bundle's tmpfs is mounted, so write it through a bind instead
    hook_dir = tmp_path / "hooks"
    hook_dir.mkdir()
    phases = {}
    for phase in hooks.PHASES:
        phases[phase] = [{"path": script(hook_dir, phase, RECORD.format(phase=phase,
                                                                         log=log))}]
    # the container sees the hooks and the log at the same paths as the host
    mounts = [{"destination": str(tmp_path), "type": "bind", "source": str(tmp_path),
               "options": ["rbind"]}]
    from conftest import BASE_CONFIG

    bundle = make_bundle(["sh", "-c", "sleep 0.2"], hooks=phases,
                         mounts=BASE_CONFIG["mounts"] + mounts)
    out = tmp_path / "create.out"
    with open(out, "w") as f:
        r = subprocess.run(runtime.argv("create", "--bundle", str(bundle), runtime.cid),
                           stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                           env=runtime.env(), timeout=60)
    assert r.returncode == 0, out.read_text()
    init = json.loads(runtime("state", runtime.cid).stdout)["pid"]
    container_ns = os.readlink(f"/proc/{init}/ns/mnt")
    host_ns = os.readlink("/proc/self/ns/mnt")
    assert runtime("start", runtime.cid).returncode == 0
    deadline = time.monotonic() + 10
    while json.loads(runtime("state", runtime.cid).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert runtime("delete", runtime.cid).returncode == 0
    lines = [line.split() for line in log.read_text().splitlines()]
    assert [p for p, _, _ in lines] == list(hooks.PHASES)
    where = {p: ns for p, _, ns in lines}
    status = {p: s for p, s, _ in lines}
    for phase in ("prestart", "createRuntime", "poststart", "poststop"):
        assert where[phase] == host_ns, phase
    for phase in ("createContainer", "startContainer"):
        assert where[phase] == container_ns, phase
    assert status["prestart"] == status["createRuntime"] == "creating"
    assert status["startContainer"] == "created"
    assert status["poststart"] == "running"
    assert status["poststop"] == "stopped"


@needs_root
@pytest.mark.e2e
def test_failing_create_hook_leaves_nothing(runtime, make_bundle, tmp_path):
    bad = script(tmp_path, "bad", "echo nope >&2; exit 1\n")
    bundle = make_bundle(["true"], hooks={"createRuntime": [{"path": bad}]})
    pid_file = tmp_path / "pid"
    r = subprocess.run(runtime.argv("create", "--pid-file", str(pid_file), "--bundle",
                                    str(bundle), runtime.cid), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, env=runtime.env(), timeout=60)
    assert r.returncode == 1
    assert "hooks.createRuntime[0]" in r.stderr and "nope" in r.stderr
    assert not pid_file.exists()
    # the fixture checks that no state, mount or cgroup is left


@needs_root
@pytest.mark.e2e
def test_run_calls_the_hooks_and_poststop_after_the_container_is_gone(runtime, make_bundle,
                                                                      tmp_path):
    log = tmp_path / "log"
    # containers only: the caches under --root outlive them
    check = (f'read -r s; echo "$0 $(ls {runtime.state_root} | grep -cvx -e seccomp-cache '
             f'-e validation-cache)" >> {log}\n')
    phases = {p: [{"path": script(tmp_path, p, check)}]
              for p in ("prestart", "poststart", "poststop")}
    r = runtime.run(make_bundle(["true"], hooks=phases))
    assert r.returncode == 0, r.stderr
    lines = [line.split() for line in log.read_text().splitlines()]
    assert [Path(p).name for p, _ in lines] == ["prestart", "poststart", "poststop"]
    # the state entry exists for the first two and is gone when poststop runs
    assert [n for _, n in lines] == ["1", "1", "0"]


@needs_root
@pytest.mark.e2e
def test_run_detached_with_a_failing_start_hook_destroys_the_container(runtime, make_bundle,
                                                                       tmp_path):
    # as runc: a container `run -d` could not start is destroyed (the runtime-spec goes on
    # to its deletion and poststop), not left behind stopped as `start` alone leaves it
    from conftest import BASE_CONFIG

    tmp_path.chmod(0o755)
    ran, stopped = tmp_path / "ran", tmp_path / "stopped"
    bad = script(tmp_path, "bad", "echo nope >&2; exit 1\n")  # a path inside the container too
    poststop = script(tmp_path, "poststop", f"touch {stopped}\n")
    mounts = [{"destination": str(tmp_path), "type": "bind", "source": str(tmp_path),
               "options": ["rbind"]}]
    bundle = make_bundle(["touch", str(ran)], hooks={"startContainer": [{"path": bad}],
                                                     "poststop": [{"path": poststop}]},
                         mounts=BASE_CONFIG["mounts"] + mounts)
    pid_file = tmp_path / "pid"
    r = subprocess.run(runtime.argv("run", "-d", "--pid-file", str(pid_file), "--bundle",
                                    str(bundle), runtime.cid), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, env=runtime.env(), timeout=60)
    assert r.returncode == 1
    assert "hooks.startContainer[0]" in r.stderr and "nope" in r.stderr, r.stderr
    assert not ran.exists()
    assert stopped.exists()
    assert not pid_file.exists()
    assert runtime("state", runtime.cid).returncode != 0
    # the fixture checks that no state, mount or cgroup is left


@needs_root
@pytest.mark.e2e
@pytest.mark.parametrize("phase", ["prestart", "createContainer"])
def test_sigterm_while_a_create_hook_runs_stops_the_setup(runtime, make_bundle, tmp_path, phase):
    # the README's promise (SIGTERM during setup aborts it and removes what it created) did
    # not hold while a hook without a timeout ran: the runtime waited for the hook first
    started, child = tmp_path / "started", tmp_path / "child"
    slow = script(tmp_path, "slow", f"sleep 60 & echo $! > {child}; touch {started}; wait\n")
    bundle = make_bundle(["true"], hooks={phase: [{"path": slow}]})
    live = runtime.popen("run", "--bundle", str(bundle), runtime.cid)
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert time.monotonic() < deadline and live.poll() is None, live.stderr.read()
            time.sleep(0.02)
        live.terminate()
        _, err = live.communicate(timeout=10)
    finally:
        live.kill()
        live.wait()
    assert live.returncode == 1, err
    assert "setup interrupted by SIGTERM" in err, err
    if phase == "createContainer":
        return  # its child's pid is the container's, and went with the container
    pid = int(child.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and " Z " not in Path(f"/proc/{pid}/stat").read_text():
        assert time.monotonic() < deadline, f"the hook's child {pid} outlived the setup"
        time.sleep(0.02)


@needs_root
@pytest.mark.e2e
def test_ctrl_c_during_a_poststop_hook_stops_the_hook(runtime, make_bundle, tmp_path):
    # ^C at a terminal signals the foreground group: the hook was in the runtime's and went
    # with it; since each hook has a group of its own, `delete` died and its hook lived on
    hook_pid = tmp_path / "hook.pid"
    slow = script(tmp_path, "slow", f"echo $$ > {hook_pid}; exec sleep 60\n")
    bundle = make_bundle(["sleep", "100"], hooks={"poststop": [{"path": slow}]})
    # the init keeps create's stdout and stderr: no pipes to wait on
    r = subprocess.run(runtime.argv("create", "--bundle", str(bundle), runtime.cid),
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=runtime.env(), timeout=60)
    assert r.returncode == 0
    # a terminal's foreground job, whose ^C is at its default: a suite started as a background
    # job (`cmd &` in a script) passes SIGINT down ignored, and an ignored ^C rightly stops
    # nothing
    live = subprocess.Popen(runtime.argv("delete", "--force", runtime.cid),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=runtime.env(), start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 30
        while not hook_pid.exists() or not hook_pid.read_text().strip():
            assert time.monotonic() < deadline and live.poll() is None
            time.sleep(0.02)
        pid = int(hook_pid.read_text())
        os.killpg(live.pid, signal.SIGINT)  # what the terminal's ^C does
        live.wait(timeout=10)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() \
                and " Z " not in Path(f"/proc/{pid}/stat").read_text():
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                pytest.fail("the poststop hook outlived the interrupted delete")
            time.sleep(0.02)
    finally:
        live.kill()
        live.wait()
    assert live.returncode == 130
