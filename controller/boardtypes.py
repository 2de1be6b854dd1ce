"""What a board link hands out and takes in: events, request outcomes, input reports, the
board requests the catalog allows, and the link's errors.

Plain data and pure checks, no session: ``controller.boardlink`` drives the link and
re-exports these names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Final

from controller.errors import ControllerError
from protocol.errors import MessageError
from protocol.messages import BOARD, I2R, REQUEST, kind_of

REQUEST_NAMES: Final = tuple(
    m[1] for m in BOARD.messages if kind_of(m[0]) == REQUEST and m[2] == I2R
)
"""The requests the host may send a board, by name."""


class Outcome(enum.Enum):
    """How a request ended."""

    REPLY = "reply"  # the board answered
    UNKNOWN = "unknown"  # it may or may not have acted; never sent again


class BoardOffline(ControllerError):
    """The board has no session now; the message says why."""


class BoardMismatch(ControllerError):
    """The board does not match the terminal config; the message names both sides."""


class BoardBusy(ControllerError):
    """Too many requests wait for a reply, or the send queue is full."""


class RequestError(ControllerError):
    """A request name or its arguments are not what the board catalog allows."""


class ReportError(ControllerError):
    """An ``inputs`` reply does not have the shape the firmware promises."""


@dataclass(frozen=True)
class BoardEvent:
    """Something that happened at a board; (board_id, boot_id, eid) identifies it."""

    board_id: str
    boot_id: int
    eid: int
    kind: str
    unit: str
    channel: int | None
    value: int | None
    t_ms: int


@dataclass(frozen=True)
class RequestOutcome:
    """The end of one request: the board's reply, or an unknown outcome with the reason."""

    cid: int
    name: str
    outcome: Outcome
    status: int | None
    reason: str | None
    data: Any

    @property
    def ok(self) -> bool:
        """The board answered with status ok."""
        return self.outcome is Outcome.REPLY and self.status == 0


@dataclass(frozen=True)
class InputReport:
    """A parsed ``inputs`` reply: doors and items by channel (None: no sensor), LED modes
    (None: no LED), units' signal levels by unit name, energised solenoids, safe state."""

    doors: dict[int, bool]
    items: dict[int, bool | None]
    leds: dict[int, int | None]
    units: dict[str, dict[str, int]]
    energised: dict[int, bool] = field(default_factory=dict)
    safe_reason: str | None = None


_REPORT_ARRAYS: Final = ("channels", "door", "item", "on", "led")


def _levels(data: dict[Any, Any], key: str, n: int, top: int) -> bytes:
    value = data.get(key)
    if not isinstance(value, bytes | bytearray) or len(value) != n:
        raise ReportError(f"inputs reply: {key} must be {n} bytes, got {value!r}", value)
    for b in value:
        if b > top:
            raise ReportError(f"inputs reply: {key} holds {b}, at most {top} allowed", value)
    return bytes(value)


def parse_input_report(data: object) -> InputReport:
    """The report in an ``inputs`` reply's data; ReportError naming the bad value."""
    if not isinstance(data, dict):
        raise ReportError(f"inputs reply: data must be a map, got {data!r}", data)
    chans = data.get("channels")
    if not isinstance(chans, bytes | bytearray) or 0 in chans or len(set(chans)) != len(chans):
        raise ReportError(f"inputs reply: channels must be distinct bytes 1..255, got {chans!r}")
    n = len(chans)
    door = _levels(data, "door", n, 1)
    item = _levels(data, "item", n, 2)
    on = _levels(data, "on", n, 1)
    led = _levels(data, "led", n, 3)
    units: dict[str, dict[str, int]] = {}
    for name, signals in data.items():
        if name in _REPORT_ARRAYS or name == "safe":
            continue
        if (
            not isinstance(name, str)
            or not isinstance(signals, dict)
            or not all(isinstance(k, str) and v in (0, 1) for k, v in signals.items())
        ):
            raise ReportError(f"inputs reply: unit {name!r} must map signals to 0/1: {signals!r}")
        units[name] = {k: int(v) for k, v in signals.items()}
    safe = data.get("safe")
    if safe is not None and not isinstance(safe, str):
        raise ReportError(f"inputs reply: safe must be text or null, got {safe!r}", safe)
    return InputReport(
        doors={c: bool(door[i]) for i, c in enumerate(chans)},
        items={c: None if item[i] == 2 else bool(item[i]) for i, c in enumerate(chans)},
        leds={c: None if led[i] == 3 else led[i] for i, c in enumerate(chans)},
        units=units,
        energised={c: bool(on[i]) for i, c in enumerate(chans)},
        safe_reason=safe,
    )


def request_message(name: str, args: list[Any]) -> list[Any]:
    """[id, args...] for a board request, checked against the catalog; RequestError."""
    if name not in REQUEST_NAMES:
        raise RequestError(
            f"unknown board request {name!r}; known: {', '.join(REQUEST_NAMES)}", name
        )
    if not isinstance(args, list):
        raise RequestError(f"{name}: arguments must be a list, got {args!r}", args)
    mid = BOARD.id_of(name)
    fields = BOARD.spec(mid)[3][1:]  # without the cid
    if len(args) > len(fields):
        raise RequestError(
            f"{name} takes {len(fields)} arguments "
            f"({', '.join(f[0] for f in fields) or 'none'}), got {args!r}",
            args,
        )
    try:
        BOARD.check([mid, 0, *args])
    except MessageError as exc:
        raise RequestError(f"{name}: {exc}", exc.value) from None
    return [mid, *args]
