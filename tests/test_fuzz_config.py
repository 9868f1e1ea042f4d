"""Fuzzing config.json with hypothesis: documents shaped like the OCI schema's (our base config,
podman's and containerd's real ones) with one part replaced, removed or retyped, and raw bytes
that are barely JSON.  Everything `run` does before it creates anything (lifecycle.prepare: load,
validate, check, parse the policy, compile the filters) must end in a Prepared or a SecfiltError
with a message; never another exception, never a file in the bundle.  A few end-to-end runs with
fuzzed org.secfilter.* annotations check the exit status and that nothing is left behind (the
`runtime` fixture's check)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from secfilt_runtime import lifecycle
from secfilt_runtime.errors import SecfiltError

from conftest import BASE_CONFIG, needs_root

REFERENCE = Path("/work/shared/reference/real-configs")
LOCAL_REFERENCE = Path(__file__).parent / "data" / "reference" / "real-configs"

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def base_documents() -> list[dict[str, Any]]:
    docs = [copy.deepcopy(BASE_CONFIG)]
    for folder in (LOCAL_REFERENCE, REFERENCE):
        for name in ("podman-4.3-run.json", "containerd-1.6-ctr-run.json"):
            path = folder / name
            if path.exists():
                docs.append(json.loads(path.read_text()))
        if len(docs) > 1:
            break
    return docs


BASES = base_documents()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats() | st.text(max_size=12)
    | st.sampled_from(["", "/", "..", "rootfs", "SCMP_ACT_ALLOW", "SCMP_ARCH_X86", "true",
                       "org.secfilter.read-only", "-1", "\u0000"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)


def paths_of(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside doc (dict keys and list indexes)."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths_of(v, (*prefix, i))
    return out


@st.composite
def mutated_documents(draw) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths_of(doc)))
        if not path:
            doc = draw(json_values)
            continue
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(json_values)
        else:
            parent[path[-1]] = draw(json_values)
    return doc


def serialised(doc: Any) -> bytes:
    return json.dumps(doc).encode()


raw_bytes = st.one_of(
    mutated_documents().map(serialised),
    st.binary(max_size=64),
    mutated_documents().map(serialised).flatmap(
        lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),
)


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    (tmp_path / "bundle" / "rootfs").mkdir(parents=True)
    return tmp_path / "bundle"


def with_local_root(doc: Any) -> Any:
    """The real configs name their machine's rootfs: point it at the test's."""
    if isinstance(doc, dict) and isinstance(doc.get("root"), dict) \
            and isinstance(doc["root"].get("path"), str) and doc["root"]["path"].startswith("/"):
        doc["root"]["path"] = "rootfs"
    return doc


def prepare_or_refuse(bundle: Path, body: bytes, state_root: Path) -> None:
    (bundle / "config.json").write_bytes(body)
    before = sorted(p.name for p in bundle.iterdir())
    try:
        lifecycle.prepare(str(bundle), str(state_root))
    except SecfiltError as e:
        assert str(e) and "Traceback" not in str(e)
    assert sorted(p.name for p in bundle.iterdir()) == before


@FUZZ
@given(doc=mutated_documents())
def test_mutated_config_is_prepared_or_refused(doc: Any, bundle_dir: Path,
                                               tmp_path: Path) -> None:
    prepare_or_refuse(bundle_dir, serialised(with_local_root(doc)), tmp_path / "state")


@FUZZ
@given(body=raw_bytes)
@example(body=b"[" * 100000 + b"]" * 100000)
@example(body=b'{"ociVersion": ' + b"9" * 5000 + b"}")
@example(body=b'{"ociVersion": 1e400}')
@example(body=b"\xef\xbb\xbf{}")
@example(body=b'{"ociVersion": "1.2.0", "ociVersion": "1.0.0"}')
def test_raw_config_bytes_are_prepared_or_refused(body: bytes, bundle_dir: Path,
                                                  tmp_path: Path) -> None:
    prepare_or_refuse(bundle_dir, body, tmp_path / "state")


POLICY_KEYS = ["read-only", "allow-write", "no-outbound-network", "allowed-netmask",
               "allowed-port", "allow-resolv", "mainstream-network-families", "log", "mode",
               "errno", "unknown-key"]
bad_values = st.sampled_from(["maybe", "", "70000", "10.0.0.0/99", "relative", "/a,,b", "TRUE",
                              "0x50", "EFOO", "sometimes", "\u202e"])


@needs_root
@settings(max_examples=6, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(POLICY_KEYS), value=bad_values)
def test_run_with_fuzzed_annotations_exits_1_and_leaves_nothing(runtime, make_bundle, key: str,
                                                                value: str) -> None:
    """End to end: a bad policy annotation is refused before anything exists (the fixture
    checks the state directory, mounts and cgroups afterwards)."""
    annotations = {f"org.secfilter.{key}": value}
    bundle = make_bundle(annotations=annotations)
    r = runtime.run(bundle)
    if r.returncode == 0:
        return  # the value happened to be valid for that key
    assert r.returncode == 1, (annotations, r)
    assert r.stderr.startswith("secfilt-runtime: ") and "Traceback" not in r.stderr, r.stderr
    assert "org.secfilter." in r.stderr, f"the message does not name the key: {r.stderr}"
