"""The state machine as state.json records it and the kernel confirms it: no containers,
only real processes (this test's own children) standing in for inits."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from secfilt_runtime import ops
from secfilt_runtime.errors import StateError
from secfilt_runtime.state import State, StateStore, proc_start_time


@pytest.fixture
def child():
    p = subprocess.Popen(["sleep", "30"])
    yield p
    p.kill()
    p.wait()


def test_status_follows_the_init(child):
    st = State(id="a", bundle="/b", pid=child.pid, status="running",
               init_start_time=proc_start_time(child.pid))
    assert st.live_status() == "running"
    assert st.to_oci()["pid"] == child.pid
    child.kill()
    child.wait()
    assert st.live_status() == "stopped"
    assert "pid" not in st.to_oci()


def test_a_reused_pid_is_not_the_init(child):
    # same pid, another start time: a new process took the number
    st = State(id="a", bundle="/b", pid=child.pid, status="running",
               init_start_time=proc_start_time(child.pid) + 1)
    assert st.live_status() == "stopped"
    assert not ops.signal_if_alive(child.pid, st.init_start_time, signal.SIGKILL)
    assert child.poll() is None  # the stranger was not signalled


def test_creating_is_stopped_once_the_create_died(child):
    st = State(id="a", bundle="/b", status="creating", runtime_pid=child.pid,
               runtime_start_time=proc_start_time(child.pid))
    assert st.live_status() == "creating"
    child.kill()
    child.wait()
    assert st.live_status() == "stopped"


def test_paused_from_the_freezer_file(child, tmp_path):
    freezer = tmp_path / "freezer"
    freezer.mkdir()
    (freezer / "freezer.state").write_text("FROZEN\n")
    st = State(id="a", bundle="/b", pid=child.pid, status="running",
               init_start_time=proc_start_time(child.pid),
               cgroup={"version": 1, "paths": {"freezer": str(freezer)}})
    assert st.live_status() == "paused"
    (freezer / "freezer.state").write_text("THAWED\n")
    assert st.live_status() == "running"


def test_store_round_trip_ignores_unknown_fields(tmp_path):
    store = StateStore(str(tmp_path))
    with store.reserve("c1"):
        store.save(State(id="c1", bundle="/b", hooks={"poststop": []}))
    doc = json.loads((tmp_path / "c1" / "state.json").read_text())
    doc["from_a_newer_runtime"] = 1
    (tmp_path / "c1" / "state.json").write_text(json.dumps(doc))
    assert store.load("c1").hooks == {"poststop": []}
    with pytest.raises(StateError, match="container c2 does not exist"):
        store.load("c2")
    with pytest.raises(StateError, match="already exists"), store.reserve("c1"):
        pass


def test_kill_of_a_stopped_container_is_not_running(tmp_path):
    store = StateStore(str(tmp_path))
    with store.reserve("c1"):
        store.save(State(id="c1", bundle="/b", pid=os.getpid(), status="running",
                         init_start_time=1))  # our pid, another start time: gone
    with pytest.raises(StateError, match="container not running"):
        ops.kill(store, "c1", signal.SIGTERM)
    with pytest.raises(StateError, match="cannot start a container that has stopped"):
        ops.start(store, "c1")



def test_reserve_writes_state_json_before_it_returns(tmp_path):
    # a create killed right after reserving must leave a state.json for delete to go by:
    # "creating", naming the create (this process, alive: delete refuses)
    store = StateStore(str(tmp_path))
    with store.reserve("c1"):
        st = store.load("c1")
        assert (st.status, st.runtime_pid) == ("creating", os.getpid())
        with pytest.raises(StateError, match="not stopped: creating"):
            ops.delete(store, "c1")


def test_delete_removes_a_directory_without_state_json(tmp_path):
    # what a create killed between its mkdir and its first state.json left (older versions
    # wrote it later): `delete` said "does not exist", and the id stayed taken for good
    store = StateStore(str(tmp_path))
    (tmp_path / "c1").mkdir()
    ops.delete(store, "c1")
    assert not (tmp_path / "c1").exists()
    with store.reserve("c1"):
        pass
    with pytest.raises(StateError, match="container c2 does not exist"):
        ops.delete(store, "c2")


@pytest.mark.parametrize("text", ['{"id":', '{"id": "c1"}', "[]", "\xff"])
def test_an_unreadable_state_json_is_named(tmp_path, text):
    # a Python traceback (JSONDecodeError, KeyError) was all `state` and `delete` said
    store = StateStore(str(tmp_path))
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1" / "state.json").write_text(text, errors="surrogateescape")
    with pytest.raises(StateError, match=f"{tmp_path}/c1/state.json: unreadable state"):
        store.load("c1")
    with pytest.raises(StateError, match="unreadable state"):
        ops.delete(store, "c1")
