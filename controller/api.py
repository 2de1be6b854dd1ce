"""The seam between the controller and its front ends (kiosk bridge, the county's MQTT).

A front end calls ``Api.call(request, args, origin)`` with a request name and its
arguments by name, and gets a ``Result`` at once: a status code, a human-readable reason
and data. Long operations (a pickup, a load) answer at once with an operation id ``op``
and then report through pushed notices: ``progress`` while they run, ``done`` when they
end. Every listener registered with ``subscribe`` receives every notice.

A county operator (``county_origin``) acts with admin rights; the requests of
``COUNTY_REQUESTS`` are for county operators only.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol


class Status(enum.IntEnum):
    """Reply status codes. 0..10 are the protocol's own (docs/protocol.md); 32.. are the
    terminal's. A front end passes them through unchanged."""

    OK = 0
    BAD_REQUEST = 1
    UNKNOWN_MESSAGE = 2
    BUSY = 3
    SAFE_STATE = 4
    NOT_CONFIGURED = 5
    OUT_OF_RANGE = 6
    INTERLOCK = 7
    INTERNAL = 10
    NOT_LOGGED_IN = 32
    LOCKED_OUT = 33
    WRONG_CODE = 34
    NOT_FOUND = 35
    NO_COMPARTMENT = 36
    OUT_OF_SERVICE = 37
    BOARD_OFFLINE = 38
    CONFLICT = 39
    LOCKDOWN = 40
    FORBIDDEN = 41


STATUS_MEANINGS: Final[dict[Status, str]] = {
    Status.OK: "done",
    Status.BAD_REQUEST: "a field is missing, of the wrong type or malformed",
    Status.UNKNOWN_MESSAGE: "the receiver does not know this message id",
    Status.BUSY: "the terminal cannot take the request now; retry later",
    Status.SAFE_STATE: "a board is in its safe state and refuses to actuate",
    Status.NOT_CONFIGURED: "the compartment or unit does not exist on this terminal",
    Status.OUT_OF_RANGE: "a value is outside its allowed range",
    Status.INTERLOCK: "refused by a configured interlock (e.g. the service door is open)",
    Status.INTERNAL: "unexpected error inside the terminal",
    Status.NOT_LOGGED_IN: "the request needs a staff login on this connection",
    Status.LOCKED_OUT: "too many wrong codes or PINs; wait until the lockout ends",
    Status.WRONG_CODE: "the reference and code do not match",
    Status.NOT_FOUND: "no such reference, compartment or operation",
    Status.NO_COMPARTMENT: "no free compartment of the requested size",
    Status.OUT_OF_SERVICE: "the compartment, slot or terminal is out of service",
    Status.BOARD_OFFLINE: "the board that drives it is not connected",
    Status.CONFLICT: "another operation holds the compartment, slot or terminal",
    Status.LOCKDOWN: "the entrance is in lockdown",
    Status.FORBIDDEN: "this staff member may not do that",
}


@dataclass(frozen=True)
class Result:
    """The answer to one request: status, reason (None when OK) and data (a map)."""

    status: Status
    reason: str | None = None
    data: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """The request was done (or, for a long operation, started)."""
        return self.status == Status.OK


def shown(value: object, limit: int = 40) -> str:
    """A value for a reason text: its repr, cut to limit characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def ok(**data: Any) -> Result:
    """An OK result carrying data."""
    return Result(Status.OK, None, data or None)


def fail(status: Status, reason: str, **data: Any) -> Result:
    """A refusal: status and a reason naming the offending value."""
    return Result(status, reason, data or None)


@dataclass
class Origin:
    """Who is asking: a bridge connection, an MQTT operator. Staff login is per origin."""

    name: str  # e.g. "bridge:tcp:127.0.0.1:50312", for the audit log
    staff: str | None = None  # logged-in staff id on this origin
    staff_until_ms: int = 0  # monotonic ms when the staff login lapses
    attrs: dict[str, Any] = field(default_factory=dict)


COUNTY_PREFIX: Final = "county:"


def county_origin(operator: str) -> Origin:
    """The origin of a county operator the broker and the command desk authenticated."""
    return Origin(f"{COUNTY_PREFIX}{operator}", attrs={"county": True})


def is_county(origin: Origin) -> bool:
    """True for an authenticated county operator: ``attrs["county"] is True`` and a name
    ``county:<operator>``."""
    return origin.attrs.get("county") is True and origin.name.startswith(COUNTY_PREFIX)


# Requests a front end may send: name -> ((argument, type, meaning), ...). Types are the
# protocol catalog's ("text", "uint", "bool", with "?" for optional). The kiosk catalog
# is built from this table, in this order.
REQUESTS: Final[dict[str, tuple[tuple[str, str, str], ...]]] = {
    "state": (),
    "compartments": (),
    "staff_login": (
        ("staff", "text", "staff id from the terminal config"),
        ("pin", "text", "the staff member's PIN"),
    ),
    "staff_logout": (),
    "load": (
        ("reference", "text", "document reference the citizen will type (1..40 characters)"),
        ("size", "text?", "compartment size wanted; null: any free one"),
        ("compartment", "text?", "compartment id chosen by staff; null: pick one"),
        ("code_hash", "text?", "county-issued code hash (scrypt$...); null: issue a code here"),
        ("return_required", "bool?", "the old document must be returned first (default false)"),
        ("expires_days", "uint?", "days until uncollected (default from config)"),
    ),
    "pickup": (
        ("reference", "text", "document reference"),
        ("code", "text", "pickup code from the SMS"),
    ),
    "dropoff": (),
    "retrieval_list": (),
    "retrieve": (("compartment", "text", "compartment id"),),
    "service_open": (
        ("compartment", "text", "compartment id"),
        ("reason", "text", "why (kept in the audit log)"),
        ("force", "bool?", "county only: open one holding a document (the kiosk needs an admin)"),
    ),
    "entrance_mode": (("mode", "text", "normal or lockdown"),),
    "set_service": (
        ("compartment", "text", "compartment id"),
        ("in_service", "bool", "true: back in service; false: out of service"),
        ("reason", "text", "why (kept in the audit log)"),
    ),
}

# Requests only a county operator may send (refused FORBIDDEN for any other origin); not
# in the kiosk catalog. Same shape as REQUESTS.
COUNTY_REQUESTS: Final[dict[str, tuple[tuple[str, str, str], ...]]] = {
    "assign": (
        ("reference", "text", "document reference of a document in the terminal"),
        ("code_hash", "text", "scrypt hash of its new pickup code (never the code)"),
    ),
    "revoke": (
        ("reference", "text", "document reference of a document in the terminal"),
        ("reason", "text", "why (kept in the audit log)"),
    ),
    "board_reset": (
        ("board", "text", "board id from the terminal config"),
        ("hard", "bool?", "true: pulse the board's reset line; default: soft reset"),
    ),
}

# Notices pushed to every listener: name -> ((field, type, meaning), ...).
NOTICES: Final[dict[str, tuple[tuple[str, str, str], ...]]] = {
    "progress": (
        ("op", "uint", "operation id from the reply that started it"),
        ("operation", "text", "pickup, load, dropoff, retrieve or service_open"),
        ("step", "text", "what just happened, e.g. return_open, door_open"),
        ("compartment", "text?", "compartment id, when one is involved"),
    ),
    "done": (
        ("op", "uint", "operation id"),
        ("operation", "text", "pickup, load, dropoff, retrieve or service_open"),
        ("status", "uint", "0 when it succeeded, else a status code"),
        ("outcome", "text", "completed, aborted, jammed, not_taken, refused or unknown"),
        ("reason", "text?", "human-readable reason when not completed"),
    ),
    "compartment": (
        ("compartment", "text", "compartment id"),
        ("state", "text", "compartment state (empty, loaded, open, jammed, ...)"),
        ("door", "text", "open, closed or unknown"),
        ("led", "text?", "indicator LED as the board confirmed it: off, on, blink or none"),
    ),
    "alarm": (
        ("alarm", "text", "alarm name, e.g. forced_open, held_open, jam, tamper"),
        ("active", "bool", "true when raised, false when cleared"),
        ("subject", "text", "what it is about: a compartment id, entrance, cabinet, a board"),
        ("detail", "text?", "human-readable detail"),
    ),
    "terminal": (
        ("entrance", "text", "normal or lockdown"),
        ("boards_ready", "uint", "boards connected and ready"),
        ("boards", "uint", "boards configured"),
    ),
}

Listener = Callable[[str, dict[str, Any]], None]


class Api(Protocol):
    """What a front end needs from the controller."""

    def call(
        self, request: str, args: Mapping[str, Any], origin: Origin, request_id: str | None = None
    ) -> Result:
        """Carry out one request of REQUESTS (or COUNTY_REQUESTS, for a county origin);
        never raises for bad input.

        ``request_id`` is stable across reconnects and restarts (the kiosk's peer name and
        the command id): a request id seen before gets the result it got then, and its
        operation never runs twice."""
        ...

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Receive every notice as (name, fields by name); returns the unsubscribe."""
        ...
