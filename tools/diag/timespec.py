"""Points in time as people type them: ``2h`` ago, or an ISO date or date and time.

``parse_when`` turns ``90s``, ``15m``, ``2h``, ``3d``, ``1w`` (that long before now) or
``2026-09-21``, ``2026-09-21T08:00``, ``2026-09-21 08:00:00+02:00``, ``...Z`` into UTC
seconds; a time without an offset is local time (UTC with ``in_utc``). Anything else is
a UsageError naming the text.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

from tools.diag.errors import UsageError

UNITS: Final = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_TEXT: Final = 40
MAX_AGO_S: Final = 100 * 366 * 86400  # a century: beyond it is a typo
_RELATIVE: Final = re.compile(r"([0-9]{1,9})\s*(s|m|min|h|d|w)")
FORMS: Final = "a span ago such as 90s, 15m, 2h, 3d, 1w, or an ISO time such as 2026-09-21T08:00"


def parse_when(text: str, now: float, in_utc: bool = False, option: str = "time") -> float:
    """UTC seconds for text (see the module docstring); UsageError naming option and text."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        raise UsageError(f"{option} {text!r} is not {FORMS}", text)
    stripped = text.strip()
    m = _RELATIVE.fullmatch(stripped)
    if m is not None:
        seconds = int(m.group(1)) * UNITS[m.group(2)]
        if seconds > MAX_AGO_S:
            raise UsageError(f"{option} {text!r} reaches back more than a century", text)
        return now - seconds
    candidate = stripped[:-1] + "+00:00" if stripped.endswith(("Z", "z")) else stripped
    try:
        moment = dt.datetime.fromisoformat(candidate)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC) if in_utc else moment.astimezone()
        return moment.timestamp()
    except ValueError:
        raise UsageError(f"{option} {text!r} is not {FORMS}", text) from None
    except (OverflowError, OSError):
        raise UsageError(f"{option} {text!r} is out of range", text) from None
