"""TOML documents in tests: a small writer (inline tables) for any value tomllib returns,
edits at dotted paths, and random mutations for property tests."""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

Doc = dict[str, Any]


def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(k: str) -> str:
    return k if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) else _toml_str(k)


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, datetime.date | datetime.time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def toml_dumps(doc: Doc) -> str:
    """TOML text for ``doc`` (top-level keys, everything below inline); tomllib reads it back
    as ``doc``."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in doc.items())


# -- edits at dotted paths ---------------------------------------------------------------


def set_at(path: str, value: object) -> Callable[[Doc], None]:
    """An edit that sets a dotted path like ``boards.0.channels.1.door`` (list indices as
    numbers; the index one past the end appends), creating tables on the way."""

    def apply(d: Doc) -> None:
        *head, last = path.split(".")
        node: Any = d
        for part in head:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            if int(last) == len(node):
                node.append(value)
            else:
                node[int(last)] = value
        else:
            node[last] = value

    return apply


def drop_at(path: str) -> Callable[[Doc], None]:
    """An edit that deletes the key or list entry at a dotted path."""

    def apply(d: Doc) -> None:
        *head, last = path.split(".")
        node: Any = d
        for part in head:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[int(last) if isinstance(node, list) else last]

    return apply


# -- random mutations ----------------------------------------------------------------------


def _slots(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) in a parsed document, depth first."""
    out: list[tuple[Any, Any]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for k, v in items:
        out.append((node, k))
        if isinstance(v, dict | list):
            out += _slots(v)
    return out


def _tables(node: Any) -> list[dict[str, Any]]:
    """Every table in a parsed document, ``node`` itself first when it is one."""
    out: list[dict[str, Any]] = [node] if isinstance(node, dict) else []
    for v in node.values() if isinstance(node, dict) else node:
        if isinstance(v, dict | list):
            out += _tables(v)
    return out


def mutate(
    draw: st.DrawFn,
    doc: Doc,
    keys: st.SearchStrategy[str],
    values: st.SearchStrategy[Any],
    most: int = 4,
) -> None:
    """Apply 1..``most`` random mutations to ``doc`` in place: replace a value, drop a key or
    an entry, add a key (from ``keys``) to a table; new values are drawn from ``values``."""
    for _ in range(draw(st.integers(1, most))):
        op = draw(st.sampled_from(["replace", "drop", "add"]))
        if op == "add":
            table = draw(st.sampled_from(_tables(doc)))
            table[draw(keys)] = draw(values)
            continue
        slots = _slots(doc)
        if not slots:
            return
        container, k = draw(st.sampled_from(slots))
        if op == "replace":
            container[k] = draw(values)
        else:
            del container[k]
