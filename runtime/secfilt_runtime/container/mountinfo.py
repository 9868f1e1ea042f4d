"""/proc/PID/mountinfo, parsed. Pure."""

from __future__ import annotations

from ..records import record


@record(frozen=True)
class MountEntry:
    root: str  # the part of the filesystem the mount shows
    mount_point: str
    fstype: str
    super_options: tuple[str, ...]
    device: str = ""  # "major:minor" of the file system


def unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal \\ooo."""
    if "\\" not in field:
        return field
    # as re.sub(r"\\([0-7]{3})", ...) did, without `re` (~5 ms to import): a backslash not
    # followed by three octal digits stays as it is
    first, *rest = field.split("\\")
    out = [first]
    for part in rest:
        digits = part[:3]
        if len(digits) == 3 and all(c in "01234567" for c in digits):
            out.append(chr(int(digits, 8)) + part[3:])
        else:
            out.append("\\" + part)
    return "".join(out)


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
                              tuple(fields[sep + 3].split(",")), fields[2]))
    return out
