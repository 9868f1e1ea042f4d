"""End to end: process.args, env, cwd, user, umask, rlimits, capabilities, noNewPrivileges and
oomScoreAdj observably take effect inside the container."""

from __future__ import annotations

import os

import pytest

from secfilt_runtime.container.capabilities import CAPABILITIES

from conftest import needs_root

pytestmark = [needs_root, pytest.mark.e2e]


def status_fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out[key] = value.strip()
    return out


def mask(*names: str) -> int:
    m = 0
    for n in names:
        m |= 1 << CAPABILITIES[n]
    return m


def run_ok(runtime, bundle) -> str:
    r = runtime.run(bundle)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_args_env_and_cwd(runtime, make_bundle):
    process = {"env": ["PATH=/bin", "GREETING=hello world", "EMPTY="], "cwd": "/tmp"}
    bundle = make_bundle(["sh", "-c", 'echo "$GREETING|$EMPTY|$PATH"; pwd; echo "$0|$1"', "a0",
                          "second arg"], process=process)
    assert run_ok(runtime, bundle).splitlines() == ["hello world||/bin", "/tmp", "a0|second arg"]


def test_environment_is_only_what_the_config_says(runtime, make_bundle):
    bundle = make_bundle(["/usr/bin/env"], process={"env": ["PATH=/bin", "ONLY=1"]})
    lines = set(run_ok(runtime, bundle).splitlines())
    assert {"PATH=/bin", "ONLY=1"} <= lines
    assert not any(line.startswith(("PYTHONPATH=", "PWD=/work")) for line in lines)


def test_user_groups_and_umask(runtime, make_bundle):
    process = {"user": {"uid": 1000, "gid": 1000, "additionalGids": [5, 44], "umask": 0o077}}
    bundle = make_bundle(["sh", "-c", "id -u; id -g; id -G; umask"], process=process)
    assert run_ok(runtime, bundle).split() == ["1000", "1000", "1000", "5", "44", "0077"]


def test_default_umask_is_022(runtime, make_bundle):
    assert run_ok(runtime, make_bundle(["sh", "-c", "umask"])).strip() == "0022"


def test_capability_sets(runtime, make_bundle):
    caps = {
        "bounding": ["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN"],
        "effective": ["CAP_KILL", "CAP_CHOWN"],
        "permitted": ["CAP_KILL", "CAP_CHOWN"],
        "inheritable": ["CAP_KILL"],
        "ambient": ["CAP_KILL"],
    }
    bundle = make_bundle(["cat", "/proc/self/status"],
                         process={"capabilities": caps, "user": {"uid": 1000, "gid": 1000}})
    status = status_fields(run_ok(runtime, bundle))
    # execve as uid 1000: permitted and effective become the ambient set
    assert int(status["CapBnd"], 16) == mask("CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN")
    assert int(status["CapInh"], 16) == mask("CAP_KILL")
    assert int(status["CapAmb"], 16) == mask("CAP_KILL")
    assert int(status["CapPrm"], 16) == mask("CAP_KILL")
    assert int(status["CapEff"], 16) == mask("CAP_KILL")


def test_root_keeps_exactly_the_listed_capabilities(runtime, make_bundle):
    caps = {k: ["CAP_CHOWN", "CAP_SYS_ADMIN"] for k in ("bounding", "effective", "permitted")}
    bundle = make_bundle(["cat", "/proc/self/status"], process={"capabilities": caps})
    status = status_fields(run_ok(runtime, bundle))
    for key in ("CapBnd", "CapPrm", "CapEff"):
        assert int(status[key], 16) == mask("CAP_CHOWN", "CAP_SYS_ADMIN"), key


def test_dropped_capability_is_really_gone(runtime, make_bundle):
    # CAP_SYS_ADMIN is not in the set: mounting must fail even as root
    caps = {k: ["CAP_CHOWN"] for k in ("bounding", "effective", "permitted")}
    bundle = make_bundle(["sh", "-c", "mount -t tmpfs x /mnt && echo mounted || echo refused"],
                         process={"capabilities": caps})
    assert run_ok(runtime, bundle).strip() == "refused"


@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges(runtime, make_bundle, nnp):
    bundle = make_bundle(["grep", "NoNewPrivs", "/proc/self/status"],
                         process={"noNewPrivileges": nnp})
    assert run_ok(runtime, bundle).split() == ["NoNewPrivs:", "1" if nnp else "0"]


def test_rlimits(runtime, make_bundle):
    rlimits = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
               {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
    bundle = make_bundle(["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c"],
                         process={"rlimits": rlimits})
    assert run_ok(runtime, bundle).split() == ["512", "1024", "0"]


def test_rlimit_above_the_hard_limit_fails_cleanly(runtime, make_bundle):
    rlimits = [{"type": "RLIMIT_NOFILE", "soft": 1 << 30, "hard": 1 << 30}]
    r = runtime.run(make_bundle(process={"rlimits": rlimits}))
    assert r.returncode != 0
    assert "process.rlimits[0] (RLIMIT_NOFILE)" in r.stderr


def test_oom_score_adj(runtime, make_bundle):
    bundle = make_bundle(["cat", "/proc/self/oom_score_adj"], process={"oomScoreAdj": 500})
    assert run_ok(runtime, bundle).strip() == "500"


def test_signals_are_not_ignored_in_the_container(runtime, make_bundle):
    # Python ignores SIGPIPE; that disposition must not leak into the container process
    bundle = make_bundle(["grep", "SigIgn", "/proc/self/status"])
    assert int(run_ok(runtime, bundle).split()[1], 16) == 0


def test_no_runtime_file_descriptors_leak_into_the_container(runtime, make_bundle):
    bundle = make_bundle(["ls", "/proc/self/fd"])
    fds = sorted(int(fd) for fd in run_ok(runtime, bundle).split())
    assert fds == [0, 1, 2, 3]  # 3 is ls's own directory handle


@pytest.mark.parametrize(("domain", "machine"), [("LINUX32", "i686"), ("LINUX", "x86_64")])
def test_personality_domain(runtime, make_bundle, domain, machine):
    bundle = make_bundle(["uname", "-m"], linux={"personality": {"domain": domain}})
    assert run_ok(runtime, bundle).strip() == machine


@pytest.mark.parametrize(("changes", "message"), [
    ({"process": {"apparmorProfile": "runtime/default"}},
     "process.apparmorProfile: security labels are not applied"),
    ({"process": {"selinuxLabel": "system_u:system_r:container_t:s0"}},
     "process.selinuxLabel: security labels are not applied"),
    ({"linux": {"personality": {"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}}},
     "linux.personality.flags: not supported"),
])
def test_settings_not_applied_are_refused(runtime, make_bundle, changes, message):
    r = runtime.run(make_bundle(**changes))
    assert r.returncode != 0
    assert message in r.stderr


def test_io_priority(runtime, make_bundle):
    bundle = make_bundle(["ionice", "-p", "1"],
                         process={"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 6}})
    assert run_ok(runtime, bundle).strip() == "best-effort: prio 6"


def test_scheduler_policy_and_nice(runtime, make_bundle):
    # /proc/self/stat after the command name: field 19 is nice, field 41 the policy
    script = ("read -r line < /proc/self/stat; set -- ${line##*) };"
              " shift 16; echo $1; shift 22; echo $1")
    bundle = make_bundle(["sh", "-c", script],
                         process={"scheduler": {"policy": "SCHED_BATCH", "nice": 7}})
    assert run_ok(runtime, bundle).split() == ["7", str(os.SCHED_BATCH)]


def test_unsupported_scheduler_settings_are_refused(runtime, make_bundle):
    sched = {"policy": "SCHED_DEADLINE", "runtime": 1000, "deadline": 2000, "period": 3000}
    r = runtime.run(make_bundle(process={"scheduler": sched}))
    assert r.returncode != 0
    assert "process.scheduler.policy: SCHED_DEADLINE is not supported" in r.stderr
