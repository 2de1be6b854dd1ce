"""``[office_hours]``: when the town hall is open, and its parsing from the terminal TOML.

A day is ``"08:00-12:00, 14:00-18:00"`` or ``"closed"``; holidays are dates; times are local
to ``timezone`` (an IANA name the system knows). Errors are ConfigError naming the key.
"""

from __future__ import annotations

import functools
import itertools
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from controller.errors import ConfigError, ControllerError
from controller.tomlcheck import _show, _text_or

DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
OFFICE_HOURS_KEYS: Final = ("timezone", *DAYS, "holidays")
DEFAULT_TIMEZONE: Final = "Europe/Berlin"
MAX_HOLIDAYS: Final = 1000

_TIME_RE: Final = re.compile(r"([01][0-9]|2[0-4]):([0-5][0-9])")
_DATE_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ZONE_RE: Final = re.compile(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*")


Period = tuple[int, int]
"""Opening period in minutes since local midnight: start inclusive, end exclusive (<= 1440)."""


@dataclass(frozen=True)
class OfficeHours:
    """``[office_hours]``: when the town hall is open; ``days[0]`` is Monday."""

    timezone: str = DEFAULT_TIMEZONE
    days: tuple[tuple[Period, ...], ...] = ((),) * 7
    holidays: frozenset[date] = frozenset()

    def is_open(self, utc: datetime) -> bool:
        """Whether the town hall is open at this instant (an aware datetime)."""
        if utc.tzinfo is None or utc.utcoffset() is None:
            raise ControllerError("is_open needs a timezone-aware datetime", utc)
        local = utc.astimezone(zoneinfo.ZoneInfo(self.timezone))
        if local.date() in self.holidays:
            return False
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.days[local.weekday()])


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def parse_office_hours(t: Mapping[str, Any]) -> OfficeHours:
    """The ``[office_hours]`` table (already checked for unknown keys); ConfigError."""
    zone = _text_or(t, "timezone", "office_hours", DEFAULT_TIMEZONE)
    if not _ZONE_RE.fullmatch(zone) or zone not in _zones():
        raise ConfigError(
            "office_hours.timezone",
            zone,
            f"{_show(zone)} is not a time zone this system knows",
            f'write an IANA name such as "{DEFAULT_TIMEZONE}" (the system needs tzdata)',
        )
    try:
        zoneinfo.ZoneInfo(zone)
    except (ValueError, KeyError, OSError) as exc:
        raise ConfigError(
            "office_hours.timezone",
            zone,
            f"{_show(zone)} cannot be loaded ({exc})",
            "reinstall tzdata",
        ) from exc
    days = tuple(_day(t[d], f"office_hours.{d}") if d in t else () for d in DAYS)
    return OfficeHours(zone, days, _holidays(t.get("holidays", [])))


def _day(value: object, key: str) -> tuple[Period, ...]:
    """``"08:00-12:00, 14:00-18:00"`` (or ``"closed"``) as sorted, disjoint periods."""
    fix = 'write periods "HH:MM-HH:MM" separated by commas, e.g. "08:00-12:00, 14:00-18:00"'
    if not isinstance(value, str):
        raise ConfigError(key, value, f"{_show(value)} is not text", f"{fix}, in double quotes")
    if value.strip() == "closed":
        return ()
    periods: list[Period] = []
    for part in value.split(","):
        first, dash, second = part.partition("-")
        if not dash:
            raise ConfigError(key, value, f"{_show(part.strip())} is not a period", fix)
        start, end = _minute(first, key, value, fix), _minute(second, key, value, fix)
        if start == 24 * 60 or end <= start:
            raise ConfigError(
                key,
                value,
                f"{_show(part.strip())} does not end after it starts",
                "a period lies within one day (24:00 ends it); split one across midnight into "
                '"HH:MM-24:00" and "00:00-HH:MM" of the next day',
            )
        periods.append((start, end))
    periods.sort()
    for (s1, e1), (s2, e2) in itertools.pairwise(periods):
        if s2 < e1:
            raise ConfigError(
                key,
                value,
                f"{_clock(s1)}-{_clock(e1)} overlaps {_clock(s2)}-{_clock(e2)}",
                "list each time once: join overlapping periods",
            )
    return tuple(periods)


def _minute(text: str, key: str, value: str, fix: str) -> int:
    m = _TIME_RE.fullmatch(text.strip())
    if m is None or (m.group(1) == "24" and m.group(2) != "00"):
        raise ConfigError(key, value, f"{_show(text.strip())} is not a time 00:00..24:00", fix)
    return int(m.group(1)) * 60 + int(m.group(2))


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _holidays(value: object) -> frozenset[date]:
    key = "office_hours.holidays"
    fix = 'write a list of dates such as ["2026-12-25", "2026-12-26"]'
    if not isinstance(value, list) or len(value) > MAX_HOLIDAYS:
        raise ConfigError(key, value, f"{_show(value)} is not a list of dates", fix)
    out: set[date] = set()
    for item in value:
        day: date | None = None
        if isinstance(item, date) and not isinstance(item, datetime):
            day = item
        elif isinstance(item, str) and _DATE_RE.fullmatch(item):
            try:
                day = date.fromisoformat(item)
            except ValueError:
                day = None
        if day is None:
            raise ConfigError(key, item, f"{_show(item)} is not a date", fix)
        if day in out:
            raise ConfigError(key, item, f"{_show(item)} is listed twice", "list it once")
        out.add(day)
    return frozenset(out)
