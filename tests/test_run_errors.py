"""End to end: every bad input and failure path of `run` exits non-zero with a message that names
the file, field or path and the problem, and leaves nothing behind: no state entry, mount or
cgroup (checked by the `runtime` fixture), no process, no pid file."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, Runtime, needs_root

pytestmark = [needs_root, pytest.mark.e2e]

USERNS = {
    "namespaces": [{"type": t} for t in ("pid", "user", "mount")],
    "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 1000}],
    "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 1000}],
}


def marked(tag: str) -> tuple[str, list[str]]:
    """A unique process name and args that would run a process under that name for a long time."""
    marker = f"secfilt-err-{tag}-{os.getpid()}"
    return marker, ["sh", "-c", f"exec -a {marker} sleep 1000"]


def pgrep(pattern: str) -> str:
    return subprocess.run(["pgrep", "-a", "-f", pattern], capture_output=True, text=True).stdout


def run_with_pid_file(runtime: Runtime, bundle: Path, container_id: str = "t1",
                      *global_opts: str) -> tuple[Result, Path]:
    pid_file = bundle.parent / f"{bundle.name}.pid"
    r = runtime(*global_opts, "run", "--pid-file", str(pid_file), "--bundle", str(bundle),
                container_id)
    return r, pid_file


def cgroup_dirs(container_id: str) -> list[Path]:
    return [p for p in Path("/sys/fs/cgroup").glob(f"*/secfilt-runtime/{container_id}")
            if p.is_dir()]


def assert_failed_cleanly(r: Result, runtime: Runtime, *fragments: str, container_id: str = "t1",
                          pid_file: Path | None = None, marker: str | None = None) -> None:
    """Non-zero exit, no leftovers, then the message: the cleanup checks come first so that a
    strict xfail on a poor message cannot hide a leak."""
    assert r.returncode != 0, r.stdout
    # the runtime, stage1 and the init are forks: they all carry the runtime's command line
    assert pgrep(str(runtime.state_root)) == ""
    if marker is not None:
        assert pgrep(marker) == ""
    if pid_file is not None:
        assert not pid_file.exists()
        assert list(pid_file.parent.glob(f"{pid_file.name}.*")) == []  # no temporary file
    assert cgroup_dirs(container_id) == []
    assert not (runtime.state_root / container_id).exists()
    assert "Traceback" not in r.stderr, r.stderr
    for fragment in fragments:
        assert fragment in r.stderr, r.stderr


def edit_config(bundle: Path, edit: Callable[[dict], None]) -> Path:
    path = bundle / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config, indent=1))
    return bundle


# --- config.json itself --------------------------------------------------------------------


def test_missing_config_json(runtime, tmp_path):
    bundle = tmp_path / "empty"
    bundle.mkdir()
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(r, runtime, f"{bundle}/config.json: no such file",
                          f"is {bundle} an OCI bundle?", pid_file=pid_file)


def test_missing_bundle_directory(runtime, tmp_path):
    bundle = tmp_path / "no-such-bundle"
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(r, runtime, f"{bundle}/config.json: no such file", pid_file=pid_file)


def test_short_form_on_a_directory_without_config_json(runtime, tmp_path):
    bundle = tmp_path / "not-a-bundle"
    bundle.mkdir()
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    p = subprocess.run(runtime.argv("run", str(bundle)), capture_output=True, text=True,
                       env=runtime.env(), cwd=cwd, timeout=60)
    r = Result(p.returncode, p.stdout, p.stderr)
    assert_failed_cleanly(r, runtime, f"{bundle}/config.json: no such file")


def test_config_json_is_a_directory(runtime, tmp_path):
    bundle = tmp_path / "dir-config"
    (bundle / "config.json").mkdir(parents=True)
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(r, runtime, f"{bundle}/config.json: cannot read: Is a directory",
                          pid_file=pid_file)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_config_json_that_is_not_a_regular_file(runtime, tmp_path, kind):
    # a FIFO blocked the read for ever (no writer), /dev/zero filled the memory
    bundle = tmp_path / kind
    bundle.mkdir()
    if kind == "fifo":
        os.mkfifo(bundle / "config.json")
    else:
        (bundle / "config.json").symlink_to("/dev/zero")
    r = runtime("run", "--bundle", str(bundle), runtime.cid, timeout=20)
    assert_failed_cleanly(r, runtime, f"{bundle}/config.json: cannot read: not a regular file",
                          container_id=runtime.cid)


def test_invalid_json_names_file_and_position(runtime, tmp_path):
    bundle = tmp_path / "badjson"
    bundle.mkdir()
    (bundle / "config.json").write_text('{"ociVersion": "1.2.0",\n "process": {,}\n}')
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(r, runtime, f"{bundle}/config.json: invalid JSON: ",
                          "Expecting property name enclosed in double quotes",
                          "line 2 column 14 (char 37)", pid_file=pid_file)


def test_config_json_not_utf8(runtime, tmp_path):
    bundle = tmp_path / "latin1"
    bundle.mkdir()
    (bundle / "config.json").write_bytes(b'{"ociVersion": "\xff"}')
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(r, runtime, f"{bundle}/config.json: invalid JSON: ",
                          "can't decode byte 0xff in position 16", pid_file=pid_file)


def test_config_json_not_an_object(runtime, tmp_path):
    bundle = tmp_path / "array"
    bundle.mkdir()
    (bundle / "config.json").write_text("[]")
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(r, runtime, f"{bundle}/config.json: must be an object, not an array",
                          pid_file=pid_file)


def _set(path: list, value) -> Callable[[dict], None]:
    def edit(config: dict) -> None:
        node = config
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        node[path[-1]] = value
    return edit


def _delete(key: str) -> Callable[[dict], None]:
    return lambda config: config.pop(key)


SCHEMA_CASES = {
    "empty-args": (_set(["process", "args"], []), "process.args: must be a non-empty array"),
    "namespace-foo": (
        _set(["linux", "namespaces", 1], {"type": "foo"}),
        'linux.namespaces[1].type: "foo" is not one of pid, network, mount, ipc, uts, user, '
        "cgroup, time"),
    "negative-uid": (_set(["process", "user", "uid"], -1),
                     "process.user.uid: must be an integer from 0 to 4294967295, got -1"),
    "missing-root": (_delete("root"), 'missing required field "root"'),
    "missing-process": (_delete("process"),
                        'missing required field "process" (needed to start the container)'),
    "rlimit-soft-above-hard": (
        _set(["process", "rlimits"], [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 10}]),
        "process.rlimits[0]: soft limit 100 is above the hard limit 10"),
    "rlimit-unknown": (
        _set(["process", "rlimits"], [{"type": "RLIMIT_FOO", "soft": 1, "hard": 1}]),
        'process.rlimits[0].type: "RLIMIT_FOO" is not one of RLIMIT_AS,'),
    "duplicate-namespace": (
        _set(["linux", "namespaces", 1], {"type": "pid"}),
        'linux.namespaces[1].type: "pid" is listed twice (also at linux.namespaces[0])'),
    "mappings-without-userns": (
        _set(["linux", "uidMappings"], [{"containerID": 0, "hostID": 1000, "size": 1}]),
        'linux.uidMappings: needs a user namespace: add {"type": "user"} to linux.namespaces'),
    "relative-device-path": (
        _set(["linux", "devices"], [{"path": "dev/null2", "type": "c", "major": 1, "minor": 3}]),
        'linux.devices[0].path: must be an absolute path (starting with /), got "dev/null2"'),
    "device-type": (
        _set(["linux", "devices"], [{"path": "/dev/x", "type": "x", "major": 1, "minor": 3}]),
        'linux.devices[0].type: "x" is not one of c, b, u, p'),
}


@pytest.mark.parametrize("case", SCHEMA_CASES)
def test_schema_violation_names_the_json_path(runtime, make_bundle, case):
    edit, message = SCHEMA_CASES[case]
    marker, args = marked(case)
    bundle = edit_config(make_bundle(args), edit)
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(r, runtime, f"{bundle}/config.json: {message}", pid_file=pid_file,
                          marker=marker)


# --- checks before anything is created -----------------------------------------------------


def test_root_path_missing(runtime, make_bundle, tmp_path):
    missing = tmp_path / "no-such-rootfs"
    bundle = edit_config(make_bundle(), _set(["root", "path"], str(missing)))
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(r, runtime, f"root.path ({missing}): no such directory",
                          pid_file=pid_file)


def test_root_path_not_a_directory(runtime, make_bundle, tmp_path):
    file = tmp_path / "rootfs-file"
    file.write_text("")
    bundle = edit_config(make_bundle(), _set(["root", "path"], str(file)))
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(r, runtime, f"root.path ({file}): not a directory", pid_file=pid_file)


def test_relative_root_path_is_resolved_against_the_bundle(runtime, make_bundle):
    bundle = edit_config(make_bundle(), _set(["root", "path"], "missing-rootfs"))
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(r, runtime, f"root.path ({bundle}/missing-rootfs): no such directory",
                          pid_file=pid_file)


def test_unknown_capability(runtime, make_bundle):
    bundle = make_bundle(process={"capabilities": {"bounding": ["CAP_FOO"]}})
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(r, runtime, 'process.capabilities.bounding: unknown capability "CAP_FOO"',
                          pid_file=pid_file)


def test_hostname_without_uts_namespace(runtime, make_bundle):
    bundle = make_bundle(hostname="box",
                         linux={"namespaces": [{"type": "pid"}, {"type": "mount"}]})
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(r, runtime, "hostname: setting it needs a new uts namespace",
                          pid_file=pid_file)


def test_sysctl_outside_the_container_namespaces(runtime, make_bundle):
    bundle = make_bundle(linux={"sysctl": {"kernel.nosuchthing": "1"}})
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(
        r, runtime, "linux.sysctl.kernel.nosuchthing: not a namespaced sysctl; it would change "
        "the host", pid_file=pid_file)


def test_invalid_cgroups_path(runtime, make_bundle):
    bundle = make_bundle(linux={"cgroupsPath": "bad:x:y"})
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(r, runtime, 'linux.cgroupsPath: invalid slice name "bad"',
                          pid_file=pid_file)


def test_unified_key_is_not_a_file_name(runtime, make_bundle):
    bundle = make_bundle(linux={"resources": {"unified": {"../x": "1"}}})
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(r, runtime, 'linux.resources.unified: "../x" is not a cgroup file name',
                          pid_file=pid_file)


# --- the command line and the state directory ----------------------------------------------


@pytest.mark.parametrize("bad_id", ["a/b", "..", ".", "", "sp ace", "new\nline"])
def test_invalid_container_id(runtime, make_bundle, bad_id):
    marker, args = marked("badid")
    r, pid_file = run_with_pid_file(runtime, make_bundle(args), bad_id)
    assert_failed_cleanly(r, runtime, f"invalid container id {bad_id!r}: use letters, digits",
                          container_id="__none__", pid_file=pid_file, marker=marker)


def test_overlong_container_id(runtime, make_bundle):
    marker, args = marked("longid")
    r, pid_file = run_with_pid_file(runtime, make_bundle(args), "x" * 300)
    assert_failed_cleanly(r, runtime, "container id", container_id="__none__",
                          pid_file=pid_file, marker=marker)


def test_duplicate_id_leaves_the_first_container_alone(runtime, make_bundle, tmp_path):
    marker, _ = marked("dup")
    first_pid_file = tmp_path / "first.pid"
    script = f"(exec -a {marker} sleep 1000 &); echo ready; read line"
    bundle = make_bundle(["sh", "-c", script])
    first = runtime.popen("run", "--pid-file", str(first_pid_file), "--bundle", str(bundle), "t1")
    try:
        assert first.stdout.readline() == "ready\n"
        first_pid = first_pid_file.read_text()
        state = (runtime.state_root / "t1" / "state.json").read_text()
        second, second_pid_file = run_with_pid_file(runtime, make_bundle(["true"]), "t1")
        assert second.returncode != 0
        assert "container with id t1 already exists" in second.stderr, second.stderr
        assert not second_pid_file.exists()
        # the loser must not touch the winner's state, pid file or cgroup
        assert (runtime.state_root / "t1" / "state.json").read_text() == state
        assert first_pid_file.read_text() == first_pid
        assert cgroup_dirs("t1") != []
        assert pgrep(marker) != ""
        first.communicate("\n", timeout=30)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0
    assert pgrep(marker) == ""
    assert not first_pid_file.exists()


def test_bad_log_format(runtime, make_bundle, tmp_path):
    log = tmp_path / "rt.log"
    bundle = make_bundle(marked("logfmt")[1])
    r, pid_file = run_with_pid_file(runtime, bundle, "t1", "--log", str(log),
                                    "--log-format", "xml")
    assert not log.exists()
    assert_failed_cleanly(r, runtime, "--log-format: 'xml' is not one of text, json",
                          pid_file=pid_file)


def test_unknown_option(runtime, make_bundle):
    r = runtime("run", "--no-such-option", "--bundle", str(make_bundle()), "t1")
    assert_failed_cleanly(r, runtime, "No such option: --no-such-option")


def test_state_root_is_a_file(runtime, make_bundle, tmp_path):
    file = tmp_path / "root-file"
    file.write_text("")
    result, pid_file = run_with_pid_file(Runtime(file), make_bundle())
    assert result.returncode != 0
    assert not pid_file.exists()
    assert "Traceback" not in result.stderr, result.stderr
    assert str(file) in result.stderr


def test_pid_file_in_a_missing_directory(runtime, make_bundle, tmp_path):
    marker, args = marked("pidfile")
    pid_file = tmp_path / "no-such-dir" / "init.pid"
    bundle = make_bundle(args)
    r = runtime("run", "--pid-file", str(pid_file), "--bundle", str(bundle), "t1")
    assert_failed_cleanly(r, runtime, "--pid-file", str(pid_file), "No such file or directory",
                          pid_file=pid_file, marker=marker)


# --- failures inside the container's setup -------------------------------------------------


def _run_in_container(runtime, bundle: Path, marker: str, *fragments: str) -> None:
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(r, runtime, *fragments, pid_file=pid_file, marker=marker)


def test_executable_not_in_path(runtime, make_bundle):
    marker, _ = marked("path")
    bundle = make_bundle(["no-such-program", marker])
    _run_in_container(runtime, bundle, marker,
                      'process.args[0]: executable file "no-such-program" not found in $PATH')


def test_executable_absolute_path_missing(runtime, make_bundle):
    marker, _ = marked("abs")
    bundle = make_bundle(["/bin/no-such-program", marker])
    _run_in_container(runtime, bundle, marker,
                      'process.args[0]: executable file "/bin/no-such-program": '
                      "No such file or directory")


def test_executable_is_a_directory(runtime, make_bundle):
    marker, _ = marked("dir")
    bundle = make_bundle(["/etc", marker])
    _run_in_container(runtime, bundle, marker,
                      'process.args[0]: executable file "/etc" is a directory')


def test_executable_not_executable(runtime, make_bundle):
    marker, _ = marked("noexec")
    bundle = make_bundle(["/bin/script", marker], writable_rootfs=True)
    script = bundle / "rootfs" / "bin" / "script"
    script.write_text(f"#!/bin/sh\nexec -a {marker} sleep 1000\n")
    script.chmod(0o644)
    _run_in_container(runtime, bundle, marker,
                      'process.args[0]: executable file "/bin/script": permission denied')


def test_cwd_missing(runtime, make_bundle):
    marker, args = marked("cwd")
    bundle = make_bundle(args, process={"cwd": "/no/such/dir"})
    _run_in_container(runtime, bundle, marker,
                      "process.cwd (/no/such/dir): No such file or directory")


def _add_mount(mount: dict) -> Callable[[dict], None]:
    return lambda config: config["mounts"].append(mount)


def test_bind_mount_source_missing(runtime, make_bundle, tmp_path):
    marker, args = marked("bind")
    source = tmp_path / "no-such-source"
    bundle = edit_config(make_bundle(args, writable_rootfs=True), _add_mount(
        {"destination": "/mnt", "type": "bind", "source": str(source), "options": ["rbind"]}))
    _run_in_container(runtime, bundle, marker,
                      f"mounts[4] (/mnt): bind source {source}: No such file or directory")


def test_mount_of_an_unknown_filesystem_type(runtime, make_bundle):
    marker, args = marked("fstype")
    bundle = edit_config(make_bundle(args, writable_rootfs=True), _add_mount(
        {"destination": "/mnt", "type": "nosuchfs", "source": "none"}))
    _run_in_container(runtime, bundle, marker, "mounts[4] (/mnt): mount nosuchfs on ",
                      f"{bundle}/rootfs/mnt: No such device")


def test_mount_with_an_option_the_filesystem_refuses(runtime, make_bundle):
    marker, args = marked("opt")
    bundle = edit_config(make_bundle(args), _add_mount(
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=abc"]}))
    _run_in_container(runtime, bundle, marker, "mounts[4] (/tmp): mount tmpfs on ",
                      "/tmp: Invalid argument")


def test_mount_destination_through_a_file(runtime, make_bundle):
    marker, args = marked("through")
    bundle = edit_config(make_bundle(args, writable_rootfs=True), _add_mount(
        {"destination": "/etc/passwd/x", "type": "tmpfs", "source": "tmpfs"}))
    _run_in_container(runtime, bundle, marker,
                      "mounts[4] (/etc/passwd/x): create the mount point /etc/passwd/x in "
                      f"{bundle}/rootfs: Not a directory")


def test_device_with_a_bad_path(runtime, make_bundle):
    marker, args = marked("dev")
    bundle = make_bundle(args, writable_rootfs=True, linux={
        "devices": [{"path": "/etc/passwd/null", "type": "c", "major": 1, "minor": 3}]})
    _run_in_container(runtime, bundle, marker,
                      "linux.devices[0] (/etc/passwd/null): create c device 1:3: Not a directory")


def test_device_path_is_a_directory(runtime, make_bundle):
    marker, args = marked("devdir")
    bundle = make_bundle(args, linux={
        "devices": [{"path": "/dev/pts", "type": "c", "major": 1, "minor": 3}]})
    _run_in_container(runtime, bundle, marker, "linux.devices[0] (/dev/pts): create c device 1:3: "
                      "a directory is in the way")


def _namespaces_joining(ns_type: str, path: str) -> dict:
    return {"namespaces": [{"type": "pid"}, {"type": ns_type, "path": path}, {"type": "mount"}]}


def test_join_a_file_that_is_not_a_namespace(runtime, make_bundle):
    marker, args = marked("joinfile")
    bundle = make_bundle(args, linux=_namespaces_joining("network", "/etc/hostname"))
    _run_in_container(runtime, bundle, marker,
                      "linux.namespaces (network): cannot join /etc/hostname: Invalid argument")


def test_join_a_namespace_of_the_wrong_type(runtime, make_bundle):
    marker, args = marked("jointype")
    path = f"/proc/{os.getpid()}/ns/ipc"
    bundle = make_bundle(args, linux=_namespaces_joining("network", path))
    _run_in_container(runtime, bundle, marker,
                      f"linux.namespaces (network): cannot join {path}: Invalid argument")


def test_join_a_missing_namespace_path(runtime, make_bundle, tmp_path):
    marker, args = marked("joinmissing")
    path = str(tmp_path / "no-such-ns")
    bundle = make_bundle(args, linux=_namespaces_joining("network", path))
    _run_in_container(runtime, bundle, marker,
                      f"linux.namespaces (network): {path}: No such file or directory")


def test_user_not_mapped_in_the_user_namespace(runtime, make_bundle):
    marker, args = marked("uid")
    bundle = make_bundle(args, process={"user": {"uid": 5000, "gid": 0}}, linux=USERNS)
    _run_in_container(runtime, bundle, marker,
                      "process.user.uid (5000): not mapped in the container's user namespace")


def test_group_not_mapped_in_the_user_namespace(runtime, make_bundle):
    marker, args = marked("gid")
    bundle = make_bundle(args, process={"user": {"uid": 0, "gid": 5000}}, linux=USERNS)
    _run_in_container(runtime, bundle, marker,
                      "process.user.gid (5000): not mapped in the container's user namespace")


def test_additional_gid_not_mapped(runtime, make_bundle):
    marker, args = marked("addgid")
    bundle = make_bundle(args, process={"user": {"uid": 0, "gid": 0, "additionalGids": [5000]}},
                         linux=USERNS)
    _run_in_container(runtime, bundle, marker,
                      "process.user.additionalGids [5000]: setgroups: Invalid argument")


def test_id_mapping_the_kernel_refuses(runtime, make_bundle):
    marker, args = marked("overlap")
    overlapping = [{"containerID": 0, "hostID": 100000, "size": 1000},
                   {"containerID": 500, "hostID": 200000, "size": 1000}]
    bundle = make_bundle(args, linux=dict(USERNS, uidMappings=overlapping))
    _run_in_container(runtime, bundle, marker, "linux.uidMappings: cannot write /proc/",
                      "/uid_map: Invalid argument")


def test_rlimit_above_the_hard_limit_root_may_set(runtime, make_bundle):
    marker, args = marked("rlimit")
    hard = 1 << 30  # root lacks CAP_SYS_RESOURCE here; no host allows this many files anyway
    bundle = make_bundle(args, process={
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": hard}]})
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(r, runtime, "process.rlimits[0] (RLIMIT_NOFILE): cannot set soft=1024 "
                          f"hard={hard}: ", pid_file=pid_file, marker=marker)


# --- cgroup resources the kernel refuses ---------------------------------------------------


def test_cpuset_the_kernel_refuses(runtime, make_bundle):
    marker, args = marked("cpuset")
    cpus = str((os.cpu_count() or 1) + 64)
    bundle = make_bundle(args, linux={"resources": {"cpu": {"cpus": cpus}}})
    _run_in_container(runtime, bundle, marker,
                      f"linux.resources.cpu.cpus: cannot write {cpus} to /sys/fs/cgroup/",
                      "/secfilt-runtime/t1/cpuset.cpus: ")


def test_memory_swap_below_the_limit(runtime, make_bundle):
    marker, args = marked("swap")
    bundle = make_bundle(args, linux={"resources": {"memory": {"limit": 100_000_000,
                                                               "swap": 50_000_000}}})
    _run_in_container(runtime, bundle, marker, "linux.resources.memory.swap: ")


def test_memory_limit_too_low_names_the_field(runtime, make_bundle):
    marker, args = marked("mem")
    bundle = make_bundle(args, linux={"resources": {"memory": {"limit": 1}}})
    _run_in_container(runtime, bundle, marker, "linux.resources.memory.limit")


def test_pids_limit_too_low_names_the_field(runtime, make_bundle):
    marker, args = marked("pids")
    bundle = make_bundle(args, linux={"resources": {"pids": {"limit": 1}}})
    _run_in_container(runtime, bundle, marker, "linux.resources.pids.limit")


# --- a failure after the init exists leaves no process -------------------------------------


def _procs_in_cgroup_of(container_id: str) -> set[int]:
    """Every process whose cgroup (in any hierarchy) is the container's, found through /proc."""
    found = set()
    for status in Path("/proc").glob("[0-9]*/cgroup"):
        try:
            text = status.read_text()
        except OSError:
            continue  # the process exited meanwhile
        if any(line.endswith(f"/secfilt-runtime/{container_id}") for line in text.splitlines()):
            found.add(int(status.parent.name))
    return found


def test_failure_after_the_init_was_created_leaves_no_process(runtime, make_bundle):
    # The checks are only worth something if they see the processes of a live container: the
    # runtime by its command line (stage1 and the init are forks of it and share it until
    # execve), the init through /proc/PID/cgroup.
    bundle = make_bundle(["sh", "-c", "echo ready; read line"])
    live = runtime.popen("run", "--bundle", str(bundle), "t1")
    try:
        assert live.stdout.readline() == "ready\n"
        pids = {int(line.split()[0]) for line in pgrep(str(runtime.state_root)).splitlines()}
        assert live.pid in pids
        init = json.loads((runtime.state_root / "t1" / "state.json").read_text())["pid"]
        assert _procs_in_cgroup_of("t1") == {init}
        live.communicate("\n", timeout=30)
    finally:
        live.kill()
        live.wait()

    # the executable is looked up inside the container, after stage1 and the init were forked
    marker, _ = marked("after-init")
    bundle = make_bundle(["/no/such/program", marker])
    r, pid_file = run_with_pid_file(runtime, bundle)
    assert_failed_cleanly(r, runtime, 'executable file "/no/such/program"', pid_file=pid_file,
                          marker=marker)
    assert _procs_in_cgroup_of("t1") == set()


@pytest.mark.parametrize(("changes", "message"), [
    # the init could not even report why: refused before anything is created
    ({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}}},
     "linux.seccomp: the filters deny execve"),
    ({"annotations": {"org.secfilter.allowed-port": "70000"}}, "org.secfilter.allowed-port"),
    ({"annotations": {"org.secfilter.mode": "lenient"}}, "org.secfilter.mode"),
])
def test_confinement_that_cannot_hold_is_refused(runtime, make_bundle, changes, message):
    marker, args = marked("confine")
    r, pid_file = run_with_pid_file(runtime, make_bundle(args, **changes), "t1")
    assert_failed_cleanly(r, runtime, message, pid_file=pid_file, marker=marker)


# --- under a secfilter policy: the tracer is spawned while the init sets up ------------------

POLICY = {"annotations": {"org.secfilter.read-only": "true"}}
POLICY_CASES = {
    "executable": (lambda config: config["process"].update(args=["/nonexistent"]),
                   'process.args[0]: executable file "/nonexistent": No such file or directory'),
    "mount-type": (_add_mount({"destination": "/mnt", "type": "nosuchfs", "source": "none"}),
                   "mounts[4] (/mnt): mount nosuchfs on "),
}


@pytest.mark.parametrize("command", ["run", "create"])
@pytest.mark.parametrize("case", POLICY_CASES)
def test_init_failure_under_a_policy_names_the_field(runtime, make_bundle, case, command):
    # the init fails before the tracer seizes it, so the seize fails too: the init's report,
    # not the tracer's "cannot seize", must reach the user. Timing dependent, hence the runs.
    edit, message = POLICY_CASES[case]
    marker, args = marked(f"policy-{case}")
    bundle = edit_config(make_bundle(args, writable_rootfs=True, **POLICY), edit)
    for _ in range(4):
        r, pid_file = run_with_pid_file(runtime, bundle) if command == "run" else (
            runtime("create", "--bundle", str(bundle), "t1"), None)
        assert_failed_cleanly(r, runtime, message, pid_file=pid_file, marker=marker)
        assert "tracer" not in r.stderr, r.stderr


@pytest.mark.parametrize("command", ["run", "create"])
@pytest.mark.parametrize(("log", "problem"), [
    ("/nonexistent/dir/log", "No such file or directory"),
    ("{tmp}", "not a regular file"),
])
def test_policy_log_that_cannot_be_opened_names_the_annotation(runtime, make_bundle, tmp_path,
                                                               command, log, problem):
    # the tracer opens it after the fork, where its error named neither; refused up front
    log = log.format(tmp=tmp_path)
    marker, args = marked("policy-log")
    bundle = make_bundle(args, annotations={"org.secfilter.read-only": "true",
                                            "org.secfilter.log": log})
    r = runtime(command, "--bundle", str(bundle), "t1")
    assert_failed_cleanly(r, runtime, f'annotations["org.secfilter.log"]: cannot open {log}: '
                          f"{problem}", marker=marker)


def test_a_procfs_of_another_pid_namespace_is_refused_under_a_policy(runtime, make_bundle):
    """Started in a pid namespace without a procfs of its own (`unshare -p -f`, no
    --mount-proc), the tracer would find other processes under the pids it is given: refused
    before anything is made, naming the cause. Without a policy there is no tracer: it runs."""
    argv = ["unshare", "-p", "-f", *runtime.argv("run", "--bundle")]
    policy = make_bundle(args=["true"], annotations={"org.secfilter.read-only": "1"})
    p = subprocess.run([*argv, str(policy), "t1"], capture_output=True, text=True,
                       env=runtime.env(), timeout=60)
    assert_failed_cleanly(Result(p.returncode, p.stdout, p.stderr), runtime,
                          "/proc shows another pid namespace")
    plain = make_bundle(args=["true"])
    p = subprocess.run([*argv, str(plain), "t2"], capture_output=True, text=True,
                       env=runtime.env(), timeout=60)
    assert p.returncode == 0, p.stderr
