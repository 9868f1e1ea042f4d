"""The decision `exec` takes on a capability that defeats the container's policy
(confinement.refused_capabilities): refused when the policy has the restriction the capability
undoes, the process would hold it in any set, and the container's init did not. A pure function
of the policy and the two capability sets; no process is made here (test_exec_caps.py and
test_attacks_exec_cap.py run it)."""

from __future__ import annotations

import json
from ipaddress import ip_network

import pytest

from secfilt_runtime import confinement
from secfilt_runtime.execproc import ExecOptions, build_process
from secfilt_runtime.policy.model import Policy
from secfilt_runtime.spec import Capabilities, Process

SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
SMALL = Capabilities(**{k: ("CAP_CHOWN", "CAP_SYS_ADMIN") for k in SETS})
DESTINATION_POLICIES = {
    "no-outbound-network": Policy(no_outbound_network=True),
    "allowed-netmask": Policy(netmasks=(ip_network("127.0.0.0/8"),)),
    "allowed-port": Policy(ports=(80,)),
}
OTHER_POLICIES = {
    "none": None,
    "read-only": Policy(read_only=True, allow_write=("/tmp",)),
    "mainstream-network-families": Policy(mainstream_network_families=True),
}


def with_cap(caps: Capabilities, name: str, *sets: str) -> Capabilities:
    return Capabilities(**{k: getattr(caps, k) + ((name,) if k in sets else ())
                           for k in SETS})


@pytest.mark.parametrize("policy", DESTINATION_POLICIES.values(), ids=DESTINATION_POLICIES)
@pytest.mark.parametrize("where", SETS)
def test_net_admin_in_any_set_is_refused_under_destination_rules(policy, where):
    # bounding or inheritable alone count: execve raises root's permitted set from bounding,
    # and inheritable with file capabilities
    caps = with_cap(SMALL, "CAP_NET_ADMIN", where)
    assert confinement.refused_capabilities(policy, caps, SMALL) == ("CAP_NET_ADMIN",)


@pytest.mark.parametrize("policy", OTHER_POLICIES.values(), ids=OTHER_POLICIES)
def test_without_destination_rules_nothing_is_refused(policy):
    caps = with_cap(SMALL, "CAP_NET_ADMIN", *SETS)
    assert confinement.refused_capabilities(policy, caps, SMALL) == ()
    assert confinement.refused_capabilities(policy, None, SMALL) == ()


@pytest.mark.parametrize("init_where", SETS)
def test_what_the_init_held_stays_allowed(init_where):
    policy = DESTINATION_POLICIES["no-outbound-network"]
    caps = with_cap(SMALL, "CAP_NET_ADMIN", *SETS)
    init = with_cap(SMALL, "CAP_NET_ADMIN", init_where)
    assert confinement.refused_capabilities(policy, caps, init) == ()
    # an init without a capabilities section kept the runtime's full root set
    assert confinement.refused_capabilities(policy, caps, None) == ()


def test_no_capabilities_given_is_the_full_set():
    """A process with no capabilities keeps the runtime's own full set: CAP_NET_ADMIN too."""
    policy = DESTINATION_POLICIES["allowed-port"]
    assert confinement.refused_capabilities(policy, None, SMALL) == ("CAP_NET_ADMIN",)
    assert confinement.refused_capabilities(policy, None, None) == ()


def test_an_older_state_cannot_vouch_for_the_init():
    policy = DESTINATION_POLICIES["no-outbound-network"]
    caps = with_cap(SMALL, "CAP_NET_ADMIN", "effective")
    assert confinement.refused_capabilities(policy, caps, confinement.MISSING) == \
        ("CAP_NET_ADMIN",)
    assert confinement.refused_capabilities(policy, SMALL, confinement.MISSING) == ()
    message = confinement.capability_refusal(policy, ("CAP_NET_ADMIN",), confinement.MISSING)
    assert "cannot tell" in message and "predates" in message


@pytest.mark.parametrize("name", ["CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_BPF", "CAP_SYS_PTRACE",
                                  "CAP_DAC_OVERRIDE", "CAP_NET_BIND_SERVICE"])
def test_capabilities_the_filter_already_answers_are_not_refused(name):
    """Their powers against the destination rules go through calls the policy's filter refuses
    (raw and packet sockets, the routing socket options, bpf, the mount family, setns into a
    cgroup namespace); see confinement.DEFEATING."""
    policy = Policy(no_outbound_network=True, read_only=True)
    assert confinement.refused_capabilities(policy, with_cap(SMALL, name, *SETS), SMALL) == ()


def test_the_message_names_the_capability_the_rule_and_the_way_out():
    policy = Policy(netmasks=(ip_network("10.0.0.0/8"),))
    message = confinement.capability_refusal(policy, ("CAP_NET_ADMIN",), SMALL)
    assert message.startswith("exec refused: the process would hold CAP_NET_ADMIN, which the "
                              "container's init was not granted")
    assert "destination rules (allowed-netmask)" in message
    assert "DNAT" in message and "--cap" in message and "process.capabilities" in message


def saved(caps):
    return confinement.SavedProcess(caps, (), False)


def test_exec_cap_and_a_process_file_reach_the_decision(tmp_path):
    """build_process's answer is what the decision reads: --cap adds to the saved set, a
    process file gives its own."""
    policy = DESTINATION_POLICIES["no-outbound-network"]
    base = Process(args=("sleep", "60"), cwd="/")
    proc = build_process(base, ExecOptions(args=("sh",), cap_add=("CAP_NET_ADMIN",)),
                         saved(SMALL), "c")
    assert confinement.refused_capabilities(policy, proc.capabilities, SMALL) == \
        ("CAP_NET_ADMIN",)
    proc = build_process(base, ExecOptions(args=("sh",), cap_add=("CAP_NET_RAW",)),
                         saved(SMALL), "c")
    assert confinement.refused_capabilities(policy, proc.capabilities, SMALL) == ()
    path = tmp_path / "process.json"
    path.write_text(json.dumps({"args": ["sh"], "cwd": "/", "capabilities": {
        "bounding": ["CAP_NET_ADMIN"]}}))
    proc = build_process(base, ExecOptions(process_file=str(path)), saved(SMALL), "c")
    assert confinement.refused_capabilities(policy, proc.capabilities, SMALL) == \
        ("CAP_NET_ADMIN",)
    # a file without capabilities gets the init's: nothing new
    path.write_text(json.dumps({"args": ["sh"], "cwd": "/"}))
    proc = build_process(base, ExecOptions(process_file=str(path)), saved(SMALL), "c")
    assert confinement.refused_capabilities(policy, proc.capabilities, SMALL) == ()
