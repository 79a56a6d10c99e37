"""What the machine can give: available memory, and a check before work that would exhaust it."""

from __future__ import annotations

import os

from kidneytumorseg.errors import InsufficientMemoryError

GIB = 2**30


def available_memory_bytes() -> int | None:
    """Memory the system can give without swapping (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def require_memory(needed_bytes: int, what: str, advice: str, available: int | None = None) -> None:
    """Raise InsufficientMemoryError, before any work is done, if ``needed_bytes`` exceed what is available."""
    available = available_memory_bytes() if available is None else available
    if available is not None and needed_bytes > available:
        raise InsufficientMemoryError(
            f"{what} needs about {needed_bytes / GIB:.1f} GiB of memory but only {available / GIB:.1f} GiB "
            f"is available. {advice}"
        )
