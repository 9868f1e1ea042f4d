"""Mount option parsing: pure, no mounts."""

from __future__ import annotations

import pytest

from secfilt_runtime import kernel as k
from secfilt_runtime.container import mountopts


def test_flags_and_data_are_split():
    o = mountopts.parse(["nosuid", "strictatime", "mode=755", "size=65536k"], "tmpfs")
    assert o.flags == k.MS_NOSUID | k.MS_STRICTATIME
    assert o.data == "mode=755,size=65536k"
    assert not o.bind and o.propagation == ()


def test_a_later_option_clears_an_earlier_one():
    assert mountopts.parse(["ro", "rw"]).flags & k.MS_RDONLY == 0
    assert mountopts.parse(["rw", "ro"]).flags & k.MS_RDONLY


@pytest.mark.parametrize(("options", "mount_type", "recursive"), [
    (["bind"], None, False), (["rbind"], None, True), ([], "bind", False),
    (["rbind", "ro"], "bind", True),
])
def test_bind_and_rbind(options, mount_type, recursive):
    o = mountopts.parse(options, mount_type)
    assert o.bind and o.recursive == recursive
    assert o.flags & k.MS_BIND == 0  # the runtime adds MS_BIND itself


def test_bind_flags_need_a_remount():
    o = mountopts.parse(["rbind", "ro", "nosuid", "nodev", "noexec", "mode=1"], "bind")
    assert o.bind_remount_flags == k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC


@pytest.mark.parametrize(("name", "flags"), [
    ("private", k.MS_PRIVATE), ("rprivate", k.MS_PRIVATE | k.MS_REC),
    ("shared", k.MS_SHARED), ("rshared", k.MS_SHARED | k.MS_REC),
    ("slave", k.MS_SLAVE), ("rslave", k.MS_SLAVE | k.MS_REC),
    ("unbindable", k.MS_UNBINDABLE), ("runbindable", k.MS_UNBINDABLE | k.MS_REC),
])
def test_propagation_options(name, flags):
    o = mountopts.parse([name])
    assert o.propagation == (flags,)
    assert o.flags == 0 and o.data == ""
    assert mountopts.root_propagation(name) == flags


def test_root_propagation_defaults_to_rslave():
    assert mountopts.root_propagation(None) == k.MS_SLAVE | k.MS_REC


def test_runtime_only_options_do_not_reach_the_kernel():
    assert mountopts.parse(["tmpcopyup", "size=1m"], "tmpfs").data == "size=1m"


def test_statvfs_flags_translate_to_mount_flags():
    st = 0x0001 | 0x0002 | 0x0008 | 0x1000  # ST_RDONLY, ST_NOSUID, ST_NOEXEC, ST_RELATIME
    assert mountopts.flags_from_statvfs(st) == (
        k.MS_RDONLY | k.MS_NOSUID | k.MS_NOEXEC | k.MS_RELATIME
    )
