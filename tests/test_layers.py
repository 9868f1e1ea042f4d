"""The enforcement table (policy.layers): what it claims per Landlock ABI, and that its claims
match what the filter builder and the Landlock ruleset really do."""

from __future__ import annotations

import json
import os

import pytest

from secfilt_runtime.policy import filter as policy_filter
from secfilt_runtime.policy import landlock, layers
from secfilt_runtime.policy.layers import (
    BPF,
    LANDLOCK,
    MOUNTS,
    NOTHING,
    TRACER,
    LayerRow,
    enforcement_layers,
    format_table,
)
from secfilt_runtime.policy.model import Policy
from secfilt_runtime.schema import load_schema

KNOWN_LAYERS = {"kernel", LANDLOCK, BPF, MOUNTS, TRACER, NOTHING, "cgroup BPF", "supervisor"}


def row(rows: list[LayerRow], covers_start: str) -> LayerRow:
    (found,) = [r for r in rows if r.covers.startswith(covers_start)]
    return found


def policy_keys() -> set[str]:
    names = load_schema("annotations.schema.json")["properties"]
    return {k.removeprefix("org.secfilter.") for k in names}


@pytest.mark.parametrize("abi", [None, 0, 1, 2, 3, 4, 7])
def test_every_row_names_known_rules_and_layers(abi: int | None) -> None:
    rows = enforcement_layers(abi)
    assert rows
    for r in rows:
        assert r.layers and set(r.layers) <= KNOWN_LAYERS, r
        assert r.rule == "*" or r.rule in policy_keys(), r
    json.dumps([r.to_dict() for r in rows])


def test_without_landlock_path_rules_rest_on_the_racy_tracer() -> None:
    rows = enforcement_layers(None)
    assert all(LANDLOCK not in r.layers for r in rows)
    for covers in ("open an existing file", "create files", "remove files", "rename"):
        r = row(rows, covers)
        assert r.layers == (TRACER,) and not r.race_free, r
    assert row(rows, "files the kernel writes").layers == (NOTHING,)
    # plain read-only needs no path: BPF alone, race-free even without Landlock
    assert row(rows, "every change to a file system").race_free


def test_landlock_abi_7_closes_the_path_races_it_covers() -> None:
    rows = enforcement_layers(7)
    for covers in ("open an existing file", "truncate", "create files", "remove files",
                   "rename", "files the kernel writes"):
        r = row(rows, covers)
        assert LANDLOCK in r.layers and r.race_free, r
    # what Landlock has no right for: the container's read-only mounts, else the racy tracer
    container = row(rows, "chmod, chown, utimes, chattr, xattrs in a container")
    assert container.layers == (MOUNTS, TRACER) and container.race_free, container
    # secfilt: the same mounts in its own namespace where this user can have one, else racy
    host = row(rows, "chmod, chown, utimes, chattr, xattrs under secfilt")
    assert host.layers == (TRACER,) and not host.race_free, host
    for how in ("mount namespace", "user and mount namespace"):
        host = row(enforcement_layers(7, secfilt_mounts=how), "chmod, chown, utimes, chattr, "
                   "xattrs under secfilt")
        assert host.layers == (MOUNTS, TRACER) and host.race_free, host
        # without Landlock's ptrace scoping other processes' /proc/PID/root reach the host
        host = row(enforcement_layers(0, secfilt_mounts=how), "chmod, chown, utimes, chattr, "
                   "xattrs under secfilt")
        assert host.layers == (TRACER,) and not host.race_free, host


@pytest.mark.parametrize("abi", range(0, 8))
def test_truncate_row_matches_the_rights_the_ruleset_handles(abi: int) -> None:
    claimed = LANDLOCK in row(enforcement_layers(abi), "truncate").layers
    assert claimed == bool(landlock.write_access(abi) & landlock.ACCESS_FS_TRUNCATE)
    claimed = LANDLOCK in row(enforcement_layers(abi), "create files").layers
    assert claimed == bool(landlock.write_access(abi) & landlock.ACCESS_FS_MAKE_REG)


def test_socket_kinds_are_bpf_alone() -> None:
    assert row(enforcement_layers(7), "sockets that bypass").layers == (BPF,)


def bpf_rule_names(policy: Policy) -> set[str]:
    return {n for rule in policy_filter.build(policy).rules for n in rule.names}


@pytest.mark.parametrize("policy", [
    Policy(read_only=True), Policy(read_only=True, allow_write=("/w",)),
    Policy(no_outbound_network=True),
], ids=["read-only", "allow-write", "no-outbound-network"])
def test_bpf_claims_for_the_sandbox_hold_in_the_built_filter(policy: Policy) -> None:
    """The '*' rows say BPF refuses these under every non-empty policy: the filter must."""
    names = bpf_rule_names(policy)
    for needed in ("clone", "clone3", "seccomp", "ptrace", "process_vm_writev",
                   "io_uring_setup", "io_uring_enter", "open_by_handle_at", "userfaultfd"):
        assert needed in names, f"{needed} is in no rule of the filter for {policy}"
    assert "SCMP_ARCH_X86" in policy_filter.build(policy).architectures


def test_userfaultfd_row_covers_the_device_ioctl_too() -> None:
    r = row(enforcement_layers(7), "a fault handler of its own")
    assert r.layers == (BPF,) and r.race_free, r
    assert ("ioctl", 0xAA00) in layers._filtered(layers.WRITE_POLICY)
    assert ("ioctl", 0xAA00) in layers._filtered(layers.NETWORK_POLICY)


def test_a_hardening_call_missing_from_the_filter_reads_as_not_enforced() -> None:
    assert layers._bpf_if("clone", "ptrace") == (BPF,)
    assert layers._bpf_if(("ioctl", 0x7FFF_0001)) == (NOTHING,)
    assert layers._bpf_if("clone", "not_a_syscall") == (NOTHING,)


def test_format_table_marks_racy_rows() -> None:
    text = format_table(enforcement_layers(7))
    (chmod_line,) = [ln for ln in text.splitlines() if "chmod" in ln and "secfilt" in ln]
    assert "tracer (racy)" in chmod_line
    (create_line,) = [ln for ln in text.splitlines() if "create files" in ln]
    assert "racy" not in create_line and "Landlock" in create_line


def test_check_command_reports_this_machine() -> None:
    import subprocess
    import sys

    from conftest import REPO

    out = subprocess.run([sys.executable, "-m", "secfilt_runtime", "check", "--format", "json"],
                         capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "runtime"), "PATH": "/usr/bin:/bin"})
    doc = json.loads(out.stdout)
    assert doc["landlockABI"] == landlock.abi()
    assert doc["rules"] == [r.to_dict() for r in enforcement_layers(
        landlock.abi(), doc["cgroupBPF"], doc["secfiltMounts"]["caller"])]
    # root gets a mount namespace; nobody a user namespace on this project's kernel
    if os.geteuid() == 0:
        assert doc["secfiltMounts"] == {"caller": "mount namespace",
                                        "otherUsers": "user and mount namespace"}
    # root on a kernel with cgroup BPF and a cgroup2 mount (this project's CI)
    assert doc["cgroupBPF"] == (os.geteuid() == 0 and os.path.isdir("/sys/fs/cgroup/unified"))
    bad = subprocess.run([sys.executable, "-m", "secfilt_runtime", "check", "--format", "xml"],
                         capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO / "runtime"), "PATH": "/usr/bin:/bin"})
    assert bad.returncode != 0 and "--format" in bad.stderr


def test_destinations_are_race_free_with_or_without_cgroup_bpf() -> None:
    for covers in ("destination of connect", "destination address",
                   "destination port of a datagram"):
        with_programs = row(enforcement_layers(7, cgroup_bpf=True), covers)
        assert with_programs.race_free and "cgroup BPF" in with_programs.layers
        # a user's secfilt: the supervisor performs the call itself, the tracer is out of it
        without = row(enforcement_layers(7, cgroup_bpf=False), covers)
        assert without.race_free and without.layers == ("supervisor",)


def test_a_supervisor_keeps_descriptor_tables_within_thread_groups() -> None:
    """Without cgroup programs the supervisor lets the kernel run a unix call only for a
    caller alone in its thread group: that holds only while the supervised filter refuses
    clone(CLONE_FILES) without CLONE_THREAD (read off the filter built)."""
    supervised = row(enforcement_layers(7, cgroup_bpf=False), "another socket put under")
    assert supervised.layers == (layers.SUPERVISOR, BPF)
    assert not [r for r in enforcement_layers(7, cgroup_bpf=True)
                if r.covers.startswith("another socket put under")]
