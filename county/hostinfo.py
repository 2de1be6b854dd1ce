"""What the Pi can say about itself: clock synchronisation, CPU temperature, disk and
memory. Every reader answers None (or 0) instead of raising where the machine has no
such thing (a laptop, a container)."""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import os
import shutil
from pathlib import Path
from typing import Final

_TIME_ERROR: Final = 5  # adjtimex(2): the clock is not synchronised
_THERMAL: Final = Path("/sys/class/thermal/thermal_zone0/temp")
_libc: ctypes.CDLL | None = None


def clock_synced() -> bool:
    """Whether the kernel considers the system clock synchronised (NTP, chrony,
    timesyncd all set it): ``adjtimex`` in read-only mode does not answer TIME_ERROR."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex is ~208 bytes; modes = 0: read
        state = int(_libc.adjtimex(buf))
    except (OSError, AttributeError):
        return False
    return state not in (-1, _TIME_ERROR)


def cpu_temperature_c(path: Path = _THERMAL) -> float | None:
    """The SoC temperature in °C, or None where there is no thermal zone."""
    try:
        return round(int(path.read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


def disk(path: Path) -> dict[str, object]:
    """Free and total bytes of the file system holding path."""
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return {"path": str(path), "free_bytes": 0, "total_bytes": 0}
    return {"path": str(path), "free_bytes": usage.free, "total_bytes": usage.total}


def memory() -> dict[str, int | None]:
    """This process's resident memory and the machine's available memory, in bytes."""
    rss = 0
    try:
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    available: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"rss_bytes": rss, "available_bytes": available}


def rfc3339(utc: float) -> str:
    """``2026-11-21T10:15:02.118Z`` for a POSIX time."""
    when = dt.datetime.fromtimestamp(utc, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
