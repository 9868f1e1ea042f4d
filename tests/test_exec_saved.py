"""`exec` confines its process by what create saved in state.json (the policy and
linux.seccomp), never by the bundle's config.json as it is when exec runs: whoever can edit
that file after create must not be able to widen the processes exec adds. Judged from the
host: the files the exec'd process must not touch are unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_lifecycle import container, status

from conftest import BASE_CONFIG, needs_root

pytestmark = [needs_root, pytest.mark.e2e]

TREE = "/work"  # where the container sees the host tree
# the OCI profile's own rule, distinct from the policy's: no directory is made, even where
# the policy allows writing
NO_MKDIR = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 1}]}
POLICY = {"org.secfilter.read-only": "true", "org.secfilter.allow-write": f"{TREE}/allowed"}
# one exec'd shell tries all three; each step echoes its own exit status
ATTEMPTS = (f"echo changed > {TREE}/forbidden/victim; echo victim=$?; "
            f"mkdir {TREE}/allowed/made; echo mkdir=$?; "
            f"echo here > {TREE}/allowed/file; echo file=$?")


def host_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "allowed").mkdir(parents=True)
    (tree / "forbidden").mkdir()
    (tree / "forbidden" / "victim").write_text("victim\n")
    tree.chmod(0o755)
    return tree


def confined_bundle(make_bundle, tree: Path, args: list[str]) -> Path:
    mounts = [*BASE_CONFIG["mounts"],
              {"destination": TREE, "type": "bind", "source": str(tree),
               "options": ["rbind", "rw"]}]
    return make_bundle(args, mounts=mounts, annotations=POLICY,
                       linux={"seccomp": NO_MKDIR})


def edit_config(bundle: Path, how: str) -> None:
    """What an engine, or anyone who can write the bundle, might do after create."""
    path = bundle / "config.json"
    config = json.loads(path.read_text())
    if how == "dropped":
        del config["annotations"]
        del config["linux"]["seccomp"]
    else:  # loosened: the whole tree writable, a profile that denies nothing
        config["annotations"] = {"org.secfilter.read-only": "true",
                                 "org.secfilter.allow-write": TREE}
        config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW"}
    path.write_text(json.dumps(config))


def verdicts(stdout: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split("=") for line in stdout.split())}


@pytest.mark.parametrize("how", ["dropped", "loosened"])
def test_exec_keeps_the_confinement_of_create(runtime, make_bundle, tmp_path, how):
    tree = host_tree(tmp_path)
    bundle = confined_bundle(make_bundle, tree, ["sleep", "60"])
    with container(runtime, bundle) as cid:
        edit_config(bundle, how)
        r = runtime("exec", cid, "sh", "-c", ATTEMPTS)
        got = verdicts(r.stdout)
        assert got["file"] == 0, (r.stdout, r.stderr)  # the exec ran, allow-write works
        assert (tree / "allowed" / "file").read_text() == "here\n"
        assert got["victim"] != 0 and (tree / "forbidden" / "victim").read_text() == "victim\n"
        assert got["mkdir"] != 0 and not (tree / "allowed" / "made").exists()


@pytest.mark.parametrize("how", ["dropped", "loosened"])
def test_the_edited_config_would_have_let_it_through(runtime, make_bundle, tmp_path, how):
    """The control: a container created from the edited config.json does all three, so the
    test above sees the saved confinement at work, not an edit that changed nothing."""
    tree = host_tree(tmp_path)
    bundle = confined_bundle(make_bundle, tree, ["sh", "-c", ATTEMPTS])
    edit_config(bundle, how)
    r = runtime.run(bundle)
    assert verdicts(r.stdout) == {"victim": 0, "mkdir": 0, "file": 0}, (r.stdout, r.stderr)
    assert (tree / "forbidden" / "victim").read_text() == "changed\n"
    assert (tree / "allowed" / "made").is_dir()


def damage(state_root: Path, cid: str, change) -> None:
    path = state_root / cid / "state.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _drop(doc: dict) -> None:
    del doc["confinement"]


def _policy_gone(doc: dict) -> None:
    doc["confinement"]["policy"] = None


def _bad_path(doc: dict) -> None:
    doc["confinement"]["policy"]["allow_write"] = ["relative"]


def _bad_seccomp(doc: dict) -> None:
    doc["confinement"]["seccomp"] = "allow everything"


def _bad_capabilities(doc: dict) -> None:
    doc["confinement"]["capabilities"] = {"bounding": "ALL"}


def _bad_rlimits(doc: dict) -> None:
    doc["confinement"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": "lots", "hard": 1}]


@pytest.mark.parametrize("change, message", [
    (_drop, "state.json has no saved confinement"),
    (_policy_gone, "confinement.policy is gone but the container was created under a policy"),
    (_bad_path, "confinement.policy.allow_write: must be a list of absolute paths"),
    (_bad_seccomp, "confinement.seccomp must be an object or null"),
    (_bad_capabilities, "confinement.capabilities: must be null or an object of the five"),
    (_bad_rlimits, "confinement.rlimits: must be a list of {type, soft, hard}"),
], ids=["no-confinement", "policy-gone", "bad-allow-write", "bad-seccomp", "bad-capabilities",
        "bad-rlimits"])
def test_exec_refuses_a_damaged_state(runtime, make_bundle, tmp_path, change, message):
    """Nothing is executed, the message names the field, the container itself goes on."""
    tree = host_tree(tmp_path)
    with container(runtime, confined_bundle(make_bundle, tree, ["sleep", "60"])) as cid:
        damage(runtime.state_root, cid, change)
        r = runtime("exec", cid, "sh", "-c", f"echo changed > {TREE}/allowed/file")
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert message in r.stderr and f"container {cid}" in r.stderr, r.stderr
        assert not (tree / "allowed" / "file").exists()
        assert json.loads(runtime("ps", "--format", "json", cid).stdout) == [
            json.loads((runtime.state_root / cid / "state.json").read_text())["pid"]]
        assert status(runtime, cid) == "running"


def test_a_container_without_policy_saves_its_profile_alone(runtime, make_bundle, tmp_path):
    """No policy: exec still gets create's linux.seccomp (and no tracer is asked for)."""
    tree = host_tree(tmp_path)
    bundle = make_bundle(["sleep", "60"], linux={"seccomp": NO_MKDIR}, mounts=[
        *BASE_CONFIG["mounts"],
        {"destination": TREE, "type": "bind", "source": str(tree), "options": ["rbind"]}])
    with container(runtime, bundle) as cid:
        saved = json.loads((runtime.state_root / cid / "state.json").read_text())
        assert saved["confinement"] == {
            "policy": None, "seccomp": NO_MKDIR, "rlimits": [],
            "noNewPrivileges": BASE_CONFIG["process"].get("noNewPrivileges", False),
            "capabilities": {**{k: [] for k in ("inheritable", "ambient")},
                             **BASE_CONFIG["process"]["capabilities"]}}
        config = json.loads((bundle / "config.json").read_text())
        del config["linux"]["seccomp"]
        (bundle / "config.json").write_text(json.dumps(config))
        r = runtime("exec", cid, "sh", "-c", f"mkdir {TREE}/allowed/made; echo mkdir=$?")
        assert verdicts(r.stdout) == {"mkdir": 1}, (r.stdout, r.stderr)
        assert not (tree / "allowed" / "made").exists()
