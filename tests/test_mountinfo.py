"""mountinfo parsing: pure."""

from __future__ import annotations

from secfilt_runtime.container import mountinfo

SAMPLE = """\
24 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 24 0:26 / /sys/fs/cgroup/cpu rw,nosuid shared:5 - cgroup cgroup rw,cpu
31 24 0:27 /sub /with\\040space rw - tmpfs tmpfs rw,size=10k
not a mountinfo line
"""


def test_parse_fields_and_escapes():
    entries = mountinfo.parse(SAMPLE)
    assert [e.mount_point for e in entries] == ["/", "/sys/fs/cgroup/cpu", "/with space"]
    assert entries[1].fstype == "cgroup" and entries[1].super_options == ("rw", "cpu")
    assert entries[2].root == "/sub"


def test_unescape_octal():
    assert mountinfo.unescape("a\\040b\\011c\\012d\\134e") == "a b\tc\nd\\e"
