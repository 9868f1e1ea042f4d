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


def test_cleared_flags_are_recorded_for_bind_remounts():
    o = mountopts.parse(["nosuid", "suid", "rw", "dev"], "bind")
    assert o.flags == 0
    assert o.cleared == k.MS_NOSUID | k.MS_RDONLY | k.MS_NODEV
    o = mountopts.parse(["rw", "ro"])
    assert o.flags == k.MS_RDONLY and o.cleared == 0


def test_recursive_attributes():
    o = mountopts.parse(["rbind", "rro", "rnosuid", "rnodev", "rnoexec"], "bind")
    assert o.rec_attr_set == (k.MOUNT_ATTR_RDONLY | k.MOUNT_ATTR_NOSUID | k.MOUNT_ATTR_NODEV
                              | k.MOUNT_ATTR_NOEXEC)
    assert o.rec_attr_clr == 0 and o.flags == 0 and o.data == ""
    o = mountopts.parse(["rro", "rrw", "rsuid"])
    assert o.rec_attr_set == 0
    assert o.rec_attr_clr == k.MOUNT_ATTR_RDONLY | k.MOUNT_ATTR_NOSUID


def test_recursive_atime_is_one_enum():
    # the kernel wants the whole atime field cleared whenever one of its values is set
    o = mountopts.parse(["rnoatime"])
    assert (o.rec_attr_set, o.rec_attr_clr) == (k.MOUNT_ATTR_NOATIME, k.MOUNT_ATTR__ATIME)
    o = mountopts.parse(["rnoatime", "rstrictatime"])
    assert (o.rec_attr_set, o.rec_attr_clr) == (k.MOUNT_ATTR_STRICTATIME, k.MOUNT_ATTR__ATIME)
    o = mountopts.parse(["rnoatime", "ratime"])
    assert (o.rec_attr_set, o.rec_attr_clr) == (k.MOUNT_ATTR_RELATIME, k.MOUNT_ATTR__ATIME)


def test_runtime_only_and_no_op_options_are_kept_apart():
    o = mountopts.parse(["defaults", "idmap", "tmpcopyup", "mode=0755"], "tmpfs")
    assert o.extra == ("defaults", "idmap", "tmpcopyup")
    assert o.data == "mode=0755" and o.flags == 0


def test_every_runc_flag_option_is_known():
    for opt, flag in [("sync", k.MS_SYNCHRONOUS), ("dirsync", k.MS_DIRSYNC),
                      ("remount", k.MS_REMOUNT), ("mand", k.MS_MANDLOCK),
                      ("noatime", k.MS_NOATIME), ("nodiratime", k.MS_NODIRATIME),
                      ("relatime", k.MS_RELATIME), ("strictatime", k.MS_STRICTATIME),
                      ("nosymfollow", k.MS_NOSYMFOLLOW), ("iversion", k.MS_I_VERSION),
                      ("lazytime", k.MS_LAZYTIME), ("silent", k.MS_SILENT)]:
        assert mountopts.parse([opt]).flags == flag, opt
    for opt in ("async", "nomand", "atime", "diratime", "norelatime", "nostrictatime",
                "symfollow", "noiversion", "nolazytime", "loud", "rw", "suid", "dev", "exec"):
        o = mountopts.parse([opt])
        assert o.flags == 0 and o.data == "" and o.cleared, opt


def test_devpts_data_keeps_order():
    o = mountopts.parse(["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
                        "devpts")
    assert o.data == "newinstance,ptmxmode=0666,mode=0620,gid=5"
    assert o.flags == k.MS_NOSUID | k.MS_NOEXEC


def test_statvfs_without_atime_flags_is_strictatime():
    assert mountopts.flags_from_statvfs(0x0001) == k.MS_RDONLY | k.MS_STRICTATIME
    assert mountopts.flags_from_statvfs(0x0400) == k.MS_NOATIME
