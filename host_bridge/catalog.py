"""The kiosk message catalog, generated from controller.api's REQUESTS and NOTICES tables.

One request per REQUESTS entry (ids 0x10.. in table order; field 1 is the command id
``cid``, then the arguments in order), the protocol's reply, and one event per NOTICES
entry (ids 0x60.. in order). Generating it means the wire and the controller cannot
drift apart. ``python -m host_bridge.catalog`` prints the tables of docs/kiosk-bridge.md.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Final

from controller.api import NOTICES, REQUESTS, STATUS_MEANINGS, Status
from host_bridge.errors import BridgeConfigError
from protocol.inspect import catalog_markdown as messages_markdown
from protocol.messages import (
    BOTH,
    EVENT,
    EVENT_FIRST,
    HEARTBEAT,
    HEARTBEAT_FIELDS,
    HELLO,
    HELLO_FIELDS,
    I2R,
    R2I,
    REFUSE,
    REFUSE_FIELDS,
    REPLY_FIELDS,
    REPLY_FIRST,
    REPLY_ID,
    REQUEST,
    REQUEST_FIRST,
    STATUS,
    WELCOME,
    WELCOME_FIELDS,
    Catalog,
    kind_of,
)

Field = tuple[str, str, str]
Row = tuple[int, str, str, tuple[Field, ...], str]

# Identity the bridge tells the kiosk in its welcome, after the protocol's own fields.
IDENTITY_FIELDS: Final[tuple[Field, ...]] = (
    ("kiosk_id", "text", "terminal id (the MQTT kiosk_id)"),
    ("site", "text", "site name from the terminal config"),
    ("sw_version", "text", "controller software version"),
    ("features", "list", "protocol features the bridge offers, a list of text"),
    ("compartments", "uint", "number of compartments configured"),
)

REQUEST_MEANINGS: Final[dict[str, str]] = {
    "state": "the terminal's state: entrance, slots, alarms, boards with their diagnostics",
    "compartments": "every compartment with its state, door and LED",
    "staff_login": "log a staff member in on this connection",
    "staff_logout": "end this connection's staff login",
    "load": "staff: load a document into a compartment (long operation)",
    "pickup": "citizen: collect a document with its reference and code (long operation)",
    "dropoff": "citizen: open the drop-off slot (long operation)",
    "retrieval_list": "staff: the expired compartments to empty",
    "retrieve": "staff: take a document back out; ends its assignment (long operation)",
    "service_open": "staff: open a compartment for service (long operation)",
    "entrance_mode": "staff: set the entrance to normal or lockdown",
    "set_service": "staff: take a compartment out of service or put it back",
}

NOTICE_MEANINGS: Final[dict[str, str]] = {
    "progress": "a step of a long operation happened",
    "done": "a long operation ended",
    "compartment": "a compartment's state, door or LED changed",
    "alarm": "an alarm was raised or cleared",
    "terminal": "the entrance mode or the boards' readiness changed",
}

_TYPES = frozenset({"uint", "int", "text", "bool", "bytes", "list", "map", "any"})
_CID: Final[Field] = ("cid", "uint", "command id chosen by the kiosk")


def _checked_fields(owner: str, fields: tuple[Field, ...]) -> tuple[Field, ...]:
    """The fields, after checking their types exist and optionals only trail."""
    seen_optional = False
    for name, ftype, _ in fields:
        optional = ftype.endswith("?")
        if ftype.rstrip("?") not in _TYPES:
            raise BridgeConfigError(f"{owner}: field {name} has unknown type {ftype!r}", ftype)
        if seen_optional and not optional:
            raise BridgeConfigError(f"{owner}: required field {name} follows an optional one", name)
        seen_optional = seen_optional or optional
    return fields


def _build() -> tuple[Row, ...]:
    rows: list[Row] = [
        (HELLO, "hello", I2R, HELLO_FIELDS, "start a session: offer versions and a nonce"),
        (
            WELCOME,
            "welcome",
            R2I,
            WELCOME_FIELDS + IDENTITY_FIELDS,
            "accept a session: chosen version, nonce and terminal identity",
        ),
        (HEARTBEAT, "heartbeat", BOTH, HEARTBEAT_FIELDS, "keep the link alive when idle"),
        (REFUSE, "refuse", R2I, REFUSE_FIELDS, "refuse a hello (no common version)"),
    ]
    if len(REQUESTS) > REPLY_FIRST - REQUEST_FIRST or len(NOTICES) > 0x80 - EVENT_FIRST:
        raise BridgeConfigError("too many requests or notices for their id ranges", REQUESTS)
    for i, (name, args) in enumerate(REQUESTS.items()):
        fields = _checked_fields(name, (_CID, *args))
        meaning = REQUEST_MEANINGS.get(name, f"request {name} (see controller.api)")
        rows.append((REQUEST_FIRST + i, name, I2R, fields, meaning))
    rows.append((REPLY_ID, "reply", R2I, REPLY_FIELDS, "answer to a request"))
    for i, (name, fields) in enumerate(NOTICES.items()):
        meaning = NOTICE_MEANINGS.get(name, f"notice {name} (see controller.api)")
        rows.append((EVENT_FIRST + i, name, R2I, _checked_fields(name, fields), meaning))
    names = [row[1] for row in rows]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BridgeConfigError(f"message names used twice: {', '.join(duplicates)}", duplicates)
    return tuple(rows)


KIOSK_MESSAGES: Final[tuple[Row, ...]] = _build()
KIOSK: Final = Catalog("kiosk", KIOSK_MESSAGES)

REQUEST_IDS: Final[dict[str, int]] = {
    r[1]: r[0] for r in KIOSK_MESSAGES if kind_of(r[0]) == REQUEST
}
NOTICE_IDS: Final[dict[str, int]] = {r[1]: r[0] for r in KIOSK_MESSAGES if kind_of(r[0]) == EVENT}
NOTICE_NAMES: Final[dict[int, str]] = {mid: name for name, mid in NOTICE_IDS.items()}


def identity_values(identity: Mapping[str, Any]) -> list[Any]:
    """The welcome's identity fields in catalog order; BridgeConfigError naming a missing,
    unknown or mistyped key."""
    known = {f[0] for f in IDENTITY_FIELDS}
    unknown = sorted(set(identity) - known)
    if unknown:
        raise BridgeConfigError(
            f"identity has unknown keys {unknown}; known: {', '.join(sorted(known))}", unknown
        )
    values: list[Any] = []
    for name, ftype, _ in IDENTITY_FIELDS:
        if name not in identity:
            raise BridgeConfigError(f"identity lacks {name} ({ftype})", name)
        value = identity[name]
        ok = {
            "text": isinstance(value, str),
            "uint": isinstance(value, int) and not isinstance(value, bool) and value >= 0,
            "list": isinstance(value, list | tuple) and all(isinstance(v, str) for v in value),
        }[ftype]
        if not ok:
            raise BridgeConfigError(f"identity {name} must be {ftype}, got {value!r}", value)
        values.append(list(value) if ftype == "list" else value)
    return values


_DIRECTIONS = {"i2r": "kiosk → bridge", "r2i": "bridge → kiosk", "both": "both"}


def status_rows() -> list[tuple[int, str, str]]:
    """(code, name, meaning) of every status a kiosk may see, in code order: the
    controller's reply statuses and the protocol's handshake-only codes."""
    rows = {int(s): (int(s), s.name.lower(), STATUS_MEANINGS[s]) for s in Status}
    for code, name, meaning in STATUS:
        rows.setdefault(code, (code, name, meaning))
    return [rows[c] for c in sorted(rows)]


def catalog_markdown() -> str:
    """The overview table, one field table per message, and the status table."""
    return messages_markdown(KIOSK_MESSAGES, status_rows(), _DIRECTIONS)


if __name__ == "__main__":
    sys.stdout.write(catalog_markdown())
