"""Text output of the diagnostics: aligned tables, durations, times, JSON, error lines."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tools.diag.errors import DiagError

NONE = "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Columns padded to their widest cell; headers underlined with dashes."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        return (indent + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


def fields(pairs: Sequence[tuple[str, str]], indent: str = "  ") -> str:
    """``name   value`` lines, names padded to the longest."""
    width = max((len(name) for name, _ in pairs), default=0)
    return "\n".join(f"{indent}{name.ljust(width)}  {value}".rstrip() for name, value in pairs)


def text(value: object) -> str:
    """A value for a cell: "-" for None, yes/no for booleans, else str()."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def duration(seconds: float | None) -> str:
    """A span for people: 45 s, 12 min 5 s, 3 h 04 min, 2 d 5 h; "-" for None."""
    if seconds is None:
        return NONE
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def when(utc: float, in_utc: bool = False) -> str:
    """A UTC time stamp as local time (or UTC, marked Z), to the second."""
    if in_utc:
        return dt.datetime.fromtimestamp(utc, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return dt.datetime.fromtimestamp(utc).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def as_json(value: Any) -> str:
    """Indented JSON with sorted keys, non-ASCII kept readable."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def run(command: str, body: Callable[[], int]) -> int:
    """Run a command's body; a DiagError becomes ``amtomat <command>: <message>`` on
    stderr and its exit status, Ctrl-C exit status 130."""
    try:
        return body()
    except DiagError as exc:
        print(f"amtomat {command}: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"amtomat {command}: interrupted", file=sys.stderr)
        return 130
