"""What the wall shows: the states a compartment, door and LED can be in, and one
record per compartment, board, slot and alarm, plus the terminal's status and the feed's
health. Only ``tools.wall.model.WallModel.apply`` changes them."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

STATES: Final = (
    "empty",
    "loading",
    "loaded",
    "opening",
    "open",
    "emptied",
    "expired",
    "jammed",
    "forced",
    "held_open",
    "out_of_service",
    "unknown",
)
DOORS: Final = ("open", "closed", "unknown")
LEDS: Final = ("off", "on", "blink", "none")
MODES: Final = ("normal", "lockdown")
STATUSES: Final = ("online", "degraded", "maintenance", "offline")


class Link(enum.Enum):
    """How the feed stands; only ``WallModel.apply("link", ...)`` changes it."""

    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"


class SourceKind(enum.Enum):
    """Where the data comes from: it decides when the first picture is complete."""

    BRIDGE = "bridge"
    MQTT = "mqtt"


@dataclass
class CompartmentView:
    """One compartment as last reported; None: not reported (yet)."""

    id: str
    board: str | None = None
    channel: int | None = None
    size: str | None = None
    state: str | None = None
    door: str | None = None
    led: str | None = None


@dataclass
class BoardView:
    """One board and its link state."""

    id: str
    state: str | None = None
    firmware: str | None = None
    error: str | None = None


@dataclass
class SlotView:
    """The return or the drop-off slot."""

    unit: str
    state: str | None = None
    flap: str | None = None


@dataclass
class AlarmView:
    """An active alarm. ``raised`` is when it was raised (UTC seconds) when known;
    ``seen`` is when the wall first learnt of it."""

    name: str
    subject: str
    detail: str | None
    raised: float | None
    seen: float

    @property
    def since(self) -> float:
        """The best known time it has been active since."""
        return self.raised if self.raised is not None else self.seen


@dataclass
class TerminalStatus:
    """The terminal's retained MQTT ``status`` (or its last will)."""

    state: str
    session: int
    reason: str | None


@dataclass
class Feed:
    """The health of the data: link state, its problem, when data last arrived."""

    description: str
    link: Link = Link.CONNECTING
    problem: str | None = None
    since: float | None = None  # when the link state last changed
    last_update: float | None = None  # when the last accepted message arrived
