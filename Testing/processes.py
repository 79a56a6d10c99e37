"""Finding processes left behind: the running (not zombie) members of a process group, from /proc (Linux)."""

from __future__ import annotations

from pathlib import Path


def process_group_members(group: int) -> list[int]:
    """Running (not zombie) processes in the process group ``group``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(entry.name))
    return members
