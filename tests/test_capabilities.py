"""Capability names and masks (pure)."""

from __future__ import annotations

import pytest

from secfilt_runtime.container import capabilities as caps
from secfilt_runtime.errors import ConfigError
from secfilt_runtime.spec import Capabilities


def test_table_matches_kernel_numbers():
    assert caps.CAPABILITIES["CAP_CHOWN"] == 0
    assert caps.CAPABILITIES["CAP_KILL"] == 5
    assert caps.CAPABILITIES["CAP_NET_BIND_SERVICE"] == 10
    assert caps.CAPABILITIES["CAP_SYS_ADMIN"] == 21
    assert caps.CAPABILITIES["CAP_AUDIT_READ"] == 37
    assert caps.CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40
    assert len(caps.CAPABILITY_NAMES) == 41
    assert len(set(caps.CAPABILITY_NAMES)) == 41


def test_to_mask():
    assert caps.to_mask([], "f") == 0
    assert caps.to_mask(["CAP_KILL", "CAP_NET_BIND_SERVICE"], "f") == 0x420
    assert caps.to_mask(["CAP_KILL", "CAP_KILL"], "f") == 0x20


def test_unknown_name_names_the_field():
    with pytest.raises(ConfigError) as e:
        caps.masks(Capabilities(bounding=("CAP_KILL", "CAP_FOO")))
    assert str(e.value) == 'process.capabilities.bounding: unknown capability "CAP_FOO"'


def test_lower_case_is_unknown():
    with pytest.raises(ConfigError, match="unknown capability"):
        caps.to_mask(["cap_kill"], "process.capabilities.effective")


def test_names_above_kernel_last_cap_are_skipped():
    c = Capabilities(bounding=("CAP_KILL", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"),
                     effective=("CAP_BPF",))
    m = caps.masks(c, kernel_last_cap=38)
    assert m.bounding == 1 << 5
    assert m.effective == 0
    assert m.skipped == ("CAP_BPF", "CAP_CHECKPOINT_RESTORE")
    assert caps.masks(c).skipped == ()


def test_names_of_round_trip():
    names = ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE"]
    assert caps.names_of(caps.to_mask(names, "f")) == names
    assert caps.names_of(caps.all_mask()) == list(caps.CAPABILITY_NAMES)


def test_last_cap_reads_proc(tmp_path):
    p = tmp_path / "cap_last_cap"
    p.write_text("38\n")
    assert caps.last_cap(str(p)) == 38
    p.write_text("63\n")  # a newer kernel than our table: we can only name ours
    assert caps.last_cap(str(p)) == caps.LAST_KNOWN_CAP
    assert caps.last_cap(str(tmp_path / "missing")) == caps.LAST_KNOWN_CAP
    assert 0 < caps.last_cap() <= caps.LAST_KNOWN_CAP
