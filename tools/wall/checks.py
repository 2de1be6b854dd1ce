"""Checks of the fields of a wall message: each returns the value or raises ``Bad``
with a message naming the field and the offending value (cut short)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from tools.wall.errors import WallError
from tools.wall.views import DOORS, MODES

MAX_ID: Final = 64
MAX_TEXT: Final = 300
MAX_ITEMS: Final = 4096
SHOWN: Final = 60  # characters of an offending value quoted in a warning
_UTC: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")


class Bad(WallError):
    """A field that fails its check; the message names the field and the value. It never
    leaves ``WallModel.apply``, which counts it as a warning."""


def shown(value: object) -> str:
    """A value for a warning: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def parse_utc(text: str) -> float:
    """RFC 3339 UTC ``2026-11-21T10:15:02.118Z`` as UTC seconds; Bad otherwise."""
    if not _UTC.fullmatch(text):
        raise Bad(f"{shown(text)} is not an RFC 3339 UTC time")
    try:
        moment = dt.datetime.fromisoformat(text[:-1] + "+00:00")
    except ValueError:
        raise Bad(f"{shown(text)} is not a valid time") from None
    return moment.timestamp()


def time_of(f: Mapping[str, Any], key: str) -> float | None:
    """A time by the terminal's clock: RFC 3339 text (MQTT) or UTC seconds (bridge)."""
    value = f.get(key)
    if value is None:
        return None
    if isinstance(value, str) and len(value) <= 40:
        return parse_utc(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e11:
        return float(value)
    raise Bad(f"{key} {shown(value)} is neither an RFC 3339 time nor UTC seconds")


def map_of(value: object, what: str) -> Mapping[str, Any]:
    """value, when it is a map."""
    if not isinstance(value, Mapping):
        raise Bad(f"{what} must be a map, got {shown(value)}")
    return value


def list_of(value: object, what: str) -> list[Any]:
    """value, when it is a list of at most MAX_ITEMS items."""
    if not isinstance(value, list):
        raise Bad(f"{what} must be a list, got {shown(value)}")
    if len(value) > MAX_ITEMS:
        raise Bad(f"{what} has {len(value)} items, more than {MAX_ITEMS}")
    return value


def text(f: Mapping[str, Any], key: str, *, limit: int = MAX_TEXT) -> str:
    """f[key], text of at most limit characters."""
    value = f.get(key)
    if not isinstance(value, str):
        what = "is missing" if key not in f else f"must be text, got {shown(value)}"
        raise Bad(f"{key} {what}")
    if len(value) > limit:
        raise Bad(f"{key} {shown(value)} is longer than {limit} characters")
    return value


def ident(f: Mapping[str, Any], key: str) -> str:
    """f[key], an id: 1..MAX_ID printable characters."""
    value = text(f, key, limit=MAX_ID)
    if not value or not value.isprintable():
        raise Bad(f"{key} {shown(value)} is not a printable id of 1..{MAX_ID} characters")
    return value


def opt_text(f: Mapping[str, Any], key: str, *, limit: int = MAX_TEXT) -> str | None:
    """f[key] as text(), or None when it is missing or null."""
    if f.get(key) is None:
        return None
    return text(f, key, limit=limit)


def choice(f: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    """f[key], one of choices."""
    value = f.get(key)
    if value not in choices:
        what = (
            "is missing" if key not in f else f"{shown(value)} is not one of {', '.join(choices)}"
        )
        raise Bad(f"{key} {what}")
    assert isinstance(value, str)
    return value


def opt_choice(f: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str | None:
    """f[key] as choice(), or None when it is missing or null."""
    return None if f.get(key) is None else choice(f, key, choices)


def count(f: Mapping[str, Any], key: str) -> int:
    """f[key], a whole number 0 .. 2**31 - 1 (not a bool)."""
    value = f.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        what = "is missing" if key not in f else f"{shown(value)} is not a count"
        raise Bad(f"{key} {what}")
    return value


def opt_count(f: Mapping[str, Any], key: str) -> int | None:
    """f[key] as count(), or None when it is missing or null."""
    return None if f.get(key) is None else count(f, key)


@dataclass(frozen=True)
class Entrance:
    """The entrance's mode and door as reported; None: not reported."""

    mode: str | None
    door: str | None


def entrance_of(value: object) -> Entrance:
    """The entrance as a mode text (older replies, the terminal notice) or a map."""
    if isinstance(value, str):
        return Entrance(choice({"entrance": value}, "entrance", MODES), None)
    f = map_of(value, "entrance")
    return Entrance(opt_choice(f, "mode", MODES), opt_choice(f, "door", DOORS))
