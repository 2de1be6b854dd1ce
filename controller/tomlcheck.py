"""Typed getters for parsed TOML tables: each returns a checked value or raises ConfigError.

Shared by ``controller.boardconfig`` (terminal and boards) and ``controller.config`` (the
daemon's sections). Every error names the dotted key, shows the bad value and says the fix;
unknown keys list the allowed ones and suggest the closest.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, cast

from controller.errors import ConfigError

_BARE_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
PATH_MAX_LEN: Final = 4096


def _show(value: object, limit: int = 60) -> str:
    """A short TOML-like rendering of a value for error messages."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{_key(k)} = {_show(v, limit)}" for k, v in value.items()) + "}"
    elif isinstance(value, list):
        text = "[" + ", ".join(_show(v, limit) for v in value) + "]"
    elif value is None:
        text = "nothing"
    elif hasattr(value, "isoformat"):
        text = str(value.isoformat())
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _key(name: str) -> str:
    """``name`` as written in a dotted key: bare when TOML allows, else quoted."""
    return name if _BARE_KEY_RE.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _join(where: str, name: str) -> str:
    return f"{where}.{_key(name)}" if where else _key(name)


def _did_you_mean(name: str, allowed: Sequence[str]) -> str:
    """``"; did you mean X?"`` for the allowed word closest to ``name``, or nothing."""
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _table(value: object, where: str, header: str, allowed: Sequence[str]) -> dict[str, Any]:
    """``value`` as a table with only ``allowed`` keys."""
    if not isinstance(value, dict):
        raise ConfigError(
            where, value, f"{_show(value)} is not a table", f"write it as a {header} table"
        )
    for name in value:
        if name not in allowed:
            raise ConfigError(
                _join(where, name),
                name,
                "unknown key",
                f"remove it or use one of: {', '.join(allowed)}{_did_you_mean(name, allowed)}",
            )
    return value


def _array_of_tables(value: object, where: str, header: str, most: int) -> list[Any]:
    """``value`` as a list of at most ``most`` entries (each still to be checked as a table)."""
    if not isinstance(value, list):
        raise ConfigError(
            where,
            value,
            f"{_show(value)} is not an array of tables",
            f"write each entry as its own {header} table",
        )
    if len(value) > most:
        raise ConfigError(
            where, len(value), f"{len(value)} entries are too many", f"use at most {most}"
        )
    return value


def _int(
    t: Mapping[str, Any],
    name: str,
    where: str,
    bounds: tuple[int, int],
    default: int | None = None,
    required: bool = False,
) -> int | None:
    """An integer within ``bounds`` (inclusive), or ``default`` when absent."""
    key = _join(where, name)
    lo, hi = bounds
    dflt = f" (default {default})" if default is not None else ""
    if name not in t:
        if required:
            raise ConfigError(
                key, None, "is missing", f"add {name} = <a whole number from {lo} to {hi}>"
            )
        return default
    value = t[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            key,
            value,
            f"{_show(value)} is not a whole number",
            f"write a whole number from {lo} to {hi} without quotes{dflt}",
        )
    if not lo <= value <= hi:
        raise ConfigError(
            key, value, f"{value} is out of range", f"use a whole number from {lo} to {hi}{dflt}"
        )
    return value


def _req_int(t: Mapping[str, Any], name: str, where: str, bounds: tuple[int, int]) -> int:
    value = _int(t, name, where, bounds, required=True)
    assert value is not None
    return value


def _int_or(t: Mapping[str, Any], name: str, where: str, bounds: tuple[int, int], d: int) -> int:
    value = _int(t, name, where, bounds, default=d)
    assert value is not None
    return value


def _text(t: Mapping[str, Any], name: str, where: str) -> str:
    """A required text value (any string; the caller checks its form)."""
    key = _join(where, name)
    if name not in t:
        raise ConfigError(key, None, "is missing", f'add {name} = "..."')
    value = t[name]
    if not isinstance(value, str):
        raise ConfigError(
            key, value, f"{_show(value)} is not text", f'write it in double quotes: {name} = "..."'
        )
    return value


def _text_or(t: Mapping[str, Any], name: str, where: str, default: str) -> str:
    """A text value, or ``default`` when absent."""
    return _text(t, name, where) if name in t else default


def _bool(t: Mapping[str, Any], name: str, where: str, default: bool) -> bool:
    """``true`` or ``false``, or ``default`` when absent."""
    if name not in t:
        return default
    value = t[name]
    if not isinstance(value, bool):
        raise ConfigError(
            _join(where, name),
            value,
            f"{_show(value)} is not true or false",
            f"write {name} = true or {name} = false without quotes "
            f"(default {'true' if default else 'false'})",
        )
    return value


def _choice(
    t: Mapping[str, Any], name: str, where: str, choices: Sequence[str], default: str
) -> str:
    """One of ``choices`` (text), or ``default`` when absent."""
    value = t.get(name, default)
    if not isinstance(value, str) or value not in choices:
        listing = ", ".join(f'"{c}"' for c in choices)
        hint = _did_you_mean(value, choices) if isinstance(value, str) else ""
        raise ConfigError(
            _join(where, name),
            value,
            f"{_show(value)} is not one of {listing}",
            f'write one of them in double quotes (default "{default}"){hint}',
        )
    return value


def _section(
    parent: Mapping[str, Any], name: str, where: str, header: str, allowed: Sequence[str]
) -> dict[str, Any]:
    """The sub-table ``name`` of ``parent`` checked for ``allowed`` keys; ``{}`` when absent."""
    if name not in parent:
        return {}
    return _table(parent[name], _join(where, name), header, allowed)


def _ints(
    t: Mapping[str, Any], where: str, cls: type[Any], ranges: Mapping[str, tuple[int, int]]
) -> dict[str, int]:
    """The integer keys ``ranges`` names, each defaulting to the dataclass field's default."""
    defaults = {f.name: cast(int, f.default) for f in dataclasses.fields(cls)}
    return {
        name: _int_or(t, name, where, bounds, defaults[name]) for name, bounds in ranges.items()
    }


def _path(t: Mapping[str, Any], name: str, where: str, base: Path, default: str) -> Path:
    """A file or folder path; a relative one is taken from ``base`` (the config's folder)."""
    text = _text_or(t, name, where, default)
    _check_path_text(text, _join(where, name))
    path = Path(text)
    return path if path.is_absolute() else base / path


def _check_path_text(text: str, key: str) -> None:
    if not text or len(text) > PATH_MAX_LEN or not text.isprintable() or text != text.strip():
        raise ConfigError(
            key,
            text,
            f"{_show(text)} is not a path",
            f"write a path of 1 to {PATH_MAX_LEN} printable characters without leading or "
            "trailing spaces; a relative one is taken from the config file's folder",
        )


def _runs(numbers: Sequence[int]) -> str:
    """``[1, 2, 3, 5]`` as ``"1-3, 5"``."""
    parts: list[str] = []
    for n in sorted(numbers):
        if parts and parts[-1].split("-")[-1] == str(n - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{n}"
        else:
            parts.append(str(n))
    return ", ".join(parts)
