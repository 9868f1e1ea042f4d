"""/proc/PID/mountinfo, parsed. Pure."""

from __future__ import annotations

import re

from ..records import record

_ESCAPE = re.compile(r"\\([0-7]{3})")


@record(frozen=True)
class MountEntry:
    root: str  # the part of the filesystem the mount shows
    mount_point: str
    fstype: str
    super_options: tuple[str, ...]


def unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal \\ooo."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse(text: str) -> list[MountEntry]:
    out = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if len(fields) < sep + 4 or sep < 5:
            continue
        out.append(MountEntry(unescape(fields[3]), unescape(fields[4]), fields[sep + 1],
                              tuple(fields[sep + 3].split(","))))
    return out
