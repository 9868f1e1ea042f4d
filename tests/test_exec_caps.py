"""What `exec` gives its process when the process does not say: the container's own
capabilities and rlimits, as create saved them, as runc does (libcontainer's newInitConfig
takes the container config's capabilities and rlimits unless the process gives its own),
never the runtime's full root set. Judged from inside: /proc/self/status and /proc/self/limits
of the exec'd process against the init's (/proc/1/...)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_lifecycle import container, status

from conftest import needs_root

pytestmark = [needs_root, pytest.mark.e2e]

CAP_CHOWN, CAP_KILL = 1 << 0, 1 << 5
CAP_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
# a small set in all five: bit 0 alone
SMALL = {k: ["CAP_CHOWN"] for k in ("bounding", "effective", "permitted", "inheritable",
                                     "ambient")}
NOFILE = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]
# /proc/N/status is world-readable: the exec'd shell reads its own sets and the init's
SHOW = ("for f in /proc/self/status /proc/1/status; do grep ^Cap $f; done; "
        "grep 'Max open files' /proc/self/limits")


def small_bundle(make_bundle) -> Path:
    return make_bundle(["sleep", "60"], process={"capabilities": SMALL, "rlimits": NOFILE})


def parse(stdout: str) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """(the exec'd process's sets, the init's sets, its 'Max open files' soft and hard)."""
    lines = stdout.splitlines()
    sets = [(k.rstrip(":"), int(v, 16)) for k, v in (line.split() for line in lines[:10])]
    assert [k for k, _ in sets] == [*CAP_SETS, *CAP_SETS], stdout
    return dict(sets[:5]), dict(sets[5:]), lines[10].split()[3:5]


def exec_file(runtime, tmp_path: Path, cid: str, *extra: str, **process) -> tuple:
    path = tmp_path / "process.json"
    path.write_text(json.dumps({"args": ["sh", "-c", SHOW], "cwd": "/",
                                "env": ["PATH=/bin:/usr/bin"], "user": {"uid": 0, "gid": 0},
                                **process}))
    r = runtime("exec", *extra, "--process", str(path), cid)
    assert r.returncode == 0, r.stderr
    return parse(r.stdout)


def test_a_process_file_without_capabilities_gets_the_containers(runtime, make_bundle,
                                                                  tmp_path):
    with container(runtime, small_bundle(make_bundle)) as cid:
        mine, init, nofile = exec_file(runtime, tmp_path, cid)
        assert init == dict.fromkeys(CAP_SETS, CAP_CHOWN)
        assert mine == init
        assert nofile == ["100", "200"]  # the container's rlimits too


def test_a_process_file_with_capabilities_keeps_its_own(runtime, make_bundle, tmp_path):
    with container(runtime, small_bundle(make_bundle)) as cid:
        mine, _, nofile = exec_file(
            runtime, tmp_path, cid, capabilities={"bounding": ["CAP_CHOWN"]},
            rlimits=[{"type": "RLIMIT_NOFILE", "soft": 50, "hard": 60}])
        # uid 0: execve raises permitted and effective to the bounding set
        assert mine == {"CapInh": 0, "CapPrm": CAP_CHOWN, "CapEff": CAP_CHOWN,
                        "CapBnd": CAP_CHOWN, "CapAmb": 0}
        assert nofile == ["50", "60"]


def test_cap_is_ignored_with_a_process_file(runtime, make_bundle, tmp_path):
    """runc applies --cap (like --cwd, --env, --user) to the command-line form only."""
    with container(runtime, small_bundle(make_bundle)) as cid:
        mine, init, _ = exec_file(runtime, tmp_path, cid, "--cap", "CAP_KILL")
        assert mine == init


def test_the_command_line_form_takes_the_saved_set_and_cap_adds_to_it(runtime, make_bundle):
    """runc's --cap adds to bounding, effective and permitted, and to ambient when the
    container has an inheritable set. The base is what create saved: a config.json widened
    since does not count."""
    bundle = small_bundle(make_bundle)
    with container(runtime, bundle) as cid:
        config = json.loads((bundle / "config.json").read_text())
        config["process"]["capabilities"] = {k: ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]
                                             for k in SMALL}
        del config["process"]["rlimits"]
        (bundle / "config.json").write_text(json.dumps(config))
        r = runtime("exec", cid, "sh", "-c", SHOW)
        assert r.returncode == 0, r.stderr
        mine, init, nofile = parse(r.stdout)
        assert mine == init == dict.fromkeys(CAP_SETS, CAP_CHOWN)
        assert nofile == ["100", "200"]
        r = runtime("exec", "--cap", "CAP_KILL", cid, "sh", "-c", SHOW)
        assert r.returncode == 0, r.stderr
        mine, _, _ = parse(r.stdout)
        # inheritable is not widened, so the kernel keeps CAP_KILL out of ambient
        assert mine == {"CapInh": CAP_CHOWN, "CapPrm": CAP_CHOWN | CAP_KILL,
                        "CapEff": CAP_CHOWN | CAP_KILL, "CapBnd": CAP_CHOWN | CAP_KILL,
                        "CapAmb": CAP_CHOWN}


def test_cap_reaches_ambient_for_a_user_when_inheritable_has_it(runtime, make_bundle):
    """runc adds --cap to ambient when the container has an inheritable set: a cap that set
    holds then survives a non-root user's execve."""
    caps = {"bounding": ["CAP_CHOWN", "CAP_KILL"], "inheritable": ["CAP_CHOWN", "CAP_KILL"],
            "effective": ["CAP_CHOWN"], "permitted": ["CAP_CHOWN"], "ambient": []}
    bundle = make_bundle(["sleep", "60"], process={"capabilities": caps})
    with container(runtime, bundle) as cid:
        r = runtime("exec", "--user", "1000:1000", cid, "sh", "-c", SHOW)
        assert r.returncode == 0, r.stderr
        mine, _, _ = parse(r.stdout)
        assert mine == {"CapInh": CAP_CHOWN | CAP_KILL, "CapPrm": 0, "CapEff": 0,
                        "CapBnd": CAP_CHOWN | CAP_KILL, "CapAmb": 0}
        r = runtime("exec", "--user", "1000:1000", "--cap", "CAP_KILL", cid, "sh", "-c", SHOW)
        assert r.returncode == 0, r.stderr
        mine, _, _ = parse(r.stdout)
        assert mine == {"CapInh": CAP_CHOWN | CAP_KILL, "CapPrm": CAP_KILL,
                        "CapEff": CAP_KILL, "CapBnd": CAP_CHOWN | CAP_KILL,
                        "CapAmb": CAP_KILL}


def _old_state(doc: dict) -> None:
    """state.json as a secfilt-runtime before this change wrote it."""
    for key in ("capabilities", "rlimits"):
        doc["confinement"].pop(key, None)


def test_an_old_state_refuses_what_it_cannot_confine(runtime, make_bundle, tmp_path):
    """Without saved capabilities, exec does not fall back to the runtime's full set: a
    process file without its own is refused, naming the way out; one with its own runs. The
    command-line form takes config.json's, as before the saving (with a warning): a container
    created by an older runtime stays usable."""
    with container(runtime, small_bundle(make_bundle)) as cid:
        path = runtime.state_root / cid / "state.json"
        doc = json.loads(path.read_text())
        _old_state(doc)
        path.write_text(json.dumps(doc))
        r = runtime("exec", "--process", str(_file(tmp_path)), cid)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "saved capabilities" in r.stderr and f"container {cid}" in r.stderr, r.stderr
        assert r.stdout == ""
        r = runtime("exec", cid, "sh", "-c", SHOW)
        assert r.returncode == 0, r.stderr
        assert "no saved capabilities" in r.stderr, r.stderr
        mine, init, _ = parse(r.stdout)
        assert mine == init  # config.json's, unchanged since create here
        mine, _, _ = exec_file(runtime, tmp_path, cid, capabilities={"bounding": ["CAP_KILL"]})
        assert mine == {"CapInh": 0, "CapPrm": CAP_KILL, "CapEff": CAP_KILL,
                        "CapBnd": CAP_KILL, "CapAmb": 0}
        assert status(runtime, cid) == "running"


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "bare.json"
    path.write_text(json.dumps({"args": ["sh", "-c", SHOW], "cwd": "/",
                                "user": {"uid": 0, "gid": 0}}))
    return path


def test_the_command_line_form_keeps_the_saved_no_new_privileges(runtime, make_bundle,
                                                                 tmp_path):
    """noNewPrivileges too is the init's as create saved it: a config.json edited after create
    to drop it does not take it from the command-line exec."""
    bundle = make_bundle(["sleep", "60"], process={"noNewPrivileges": True})
    with container(runtime, bundle) as cid:
        config = json.loads((bundle / "config.json").read_text())
        config["process"]["noNewPrivileges"] = False
        (bundle / "config.json").write_text(json.dumps(config))
        r = runtime("exec", cid, "grep", "NoNewPrivs", "/proc/self/status")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["NoNewPrivs:", "1"], r.stdout


# destination rules (gap 10): exec adds no capability that defeats them unless the bundle
# granted it to the container's own process; test_attacks_exec_cap.py shows the attack
DESTINATIONS = {"org.secfilter.no-outbound-network": "true",
                "org.secfilter.allowed-netmask": "127.0.0.0/8"}
CAP_NET_ADMIN = 1 << 12
EFFECTIVE = "grep ^CapEff /proc/self/status"


def _pids_in(runtime, cid: str) -> list[str]:
    r = runtime("ps", "--format", "json", cid)
    assert r.returncode == 0, r.stderr
    return sorted(json.loads(r.stdout))


def _net_admin_file(tmp_path: Path) -> Path:
    """podman exec --cap-add / --privileged: the process lists the capability itself."""
    path = tmp_path / "net-admin.json"
    path.write_text(json.dumps({
        "args": ["sh", "-c", f"{EFFECTIVE}; touch /tmp/ran"], "cwd": "/",
        "env": ["PATH=/bin:/usr/bin"], "user": {"uid": 0, "gid": 0},
        "capabilities": {k: ["CAP_NET_ADMIN"] for k in ("bounding", "effective",
                                                         "permitted")}}))
    return path


def _exec_net_admin(runtime, cid: str, how: str, tmp_path: Path):
    if how == "cap":
        return runtime("exec", "--cap", "CAP_NET_ADMIN", cid, "sh", "-c",
                       f"{EFFECTIVE}; touch /tmp/ran")
    return runtime("exec", "--process", str(_net_admin_file(tmp_path)), cid)


@pytest.mark.parametrize("how", ["cap", "process"])
def test_exec_refuses_net_admin_under_destination_rules(runtime, make_bundle, tmp_path, how):
    """Refused before anything is made: a clear message naming the capability and the rule,
    exit 1, no process run (its marker file is not there), the container's processes and
    state as they were."""
    bundle = make_bundle(["sleep", "60"], annotations=DESTINATIONS)
    with container(runtime, bundle) as cid:
        before = _pids_in(runtime, cid)
        state = (runtime.state_root / cid / "state.json").read_text()
        r = _exec_net_admin(runtime, cid, how, tmp_path)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert r.stdout == ""
        assert "CAP_NET_ADMIN" in r.stderr and "exec refused" in r.stderr, r.stderr
        assert "destination rules (no-outbound-network)" in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1, r.stderr  # one line, no traceback
        assert _pids_in(runtime, cid) == before
        assert (runtime.state_root / cid / "state.json").read_text() == state
        assert status(runtime, cid) == "running"
        r = runtime("exec", cid, "test", "-e", "/tmp/ran")
        assert r.returncode == 1, "the refused process ran"
        # the same container still takes an exec without it
        r = runtime("exec", "--cap", "CAP_KILL", cid, "sh", "-c", EFFECTIVE)
        assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("how", ["cap", "process"])
def test_net_admin_is_added_without_destination_rules(runtime, make_bundle, tmp_path, how):
    """Without destination rules (a family rule and a write rule here) exec adds it, as runc's
    does."""
    bundle = make_bundle(["sleep", "60"], annotations={
        "org.secfilter.mainstream-network-families": "true",
        "org.secfilter.read-only": "true", "org.secfilter.allow-write": "/tmp"})
    with container(runtime, bundle) as cid:
        r = _exec_net_admin(runtime, cid, how, tmp_path)
        assert r.returncode == 0, r.stderr
        assert int(r.stdout.split()[1], 16) & CAP_NET_ADMIN, r.stdout


@pytest.mark.parametrize("how", ["cap", "process"])
def test_net_admin_the_bundle_granted_stays_under_destination_rules(runtime, make_bundle,
                                                                    tmp_path, how):
    """The bundle granted it to the container's own process: exec may give it too."""
    caps = {k: ["CAP_CHOWN", "CAP_NET_ADMIN"] for k in ("bounding", "effective", "permitted")}
    bundle = make_bundle(["sleep", "60"], annotations=DESTINATIONS,
                         process={"capabilities": caps})
    with container(runtime, bundle) as cid:
        r = _exec_net_admin(runtime, cid, how, tmp_path)
        assert r.returncode == 0, r.stderr
        assert int(r.stdout.split()[1], 16) & CAP_NET_ADMIN, r.stdout
