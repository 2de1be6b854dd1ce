"""Compartments and their state machine: one enum, one transition table, one setter.

Every change of a compartment's state goes through ``Wall.set_state``, which checks the
transition table, writes the new state and an audit entry in the same transaction, and
tells listeners. Door positions and LEDs are kept apart from the state: a door is what
the sensor says, an LED what the board last confirmed, the state is what the terminal
believes about the compartment.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Final

from controller.errors import ControllerError
from controller.store import Store

log = logging.getLogger(__name__)


class CState(enum.Enum):
    """What the terminal believes about a compartment."""

    EMPTY = "empty"  # free for loading
    LOADING = "loading"  # staff is loading it
    LOADED = "loaded"  # holds a document waiting for its citizen
    OPENING = "opening"  # a pulse was sent; the door has not been seen open yet
    OPEN = "open"  # the door was seen open during an operation
    EMPTIED = "emptied"  # the document was taken and the door closed again
    EXPIRED = "expired"  # uncollected past its expiry: on the staff retrieval list
    JAMMED = "jammed"  # the door did not open after a retry: needs staff
    FORCED = "forced"  # the door opened without a pulse: needs staff
    HELD_OPEN = "held_open"  # the door stayed open too long during an operation
    OUT_OF_SERVICE = "out_of_service"  # taken out by staff or after a fault
    UNKNOWN = "unknown"  # board unreachable, or an operation's outcome is unknown


class Door(enum.Enum):
    """A door as its sensor reports it."""

    OPEN = "open"
    CLOSED = "closed"
    UNKNOWN = "unknown"


class Led(enum.Enum):
    """A compartment's indicator LED as the board last confirmed it; NONE: no LED wired."""

    OFF = "off"
    ON = "on"
    BLINK = "blink"
    NONE = "none"


LED_MODES: Final[dict[int, Led]] = {0: Led.OFF, 1: Led.ON, 2: Led.BLINK}
"""The board protocol's LED modes (``led`` request, ``inputs`` report)."""

_RESTING: Final = frozenset({CState.EMPTY, CState.LOADED, CState.EXPIRED})
_ANY_STAFF_TARGET: Final = frozenset({CState.OUT_OF_SERVICE, CState.UNKNOWN, CState.FORCED})

TRANSITIONS: Final[dict[CState, frozenset[CState]]] = {
    CState.EMPTY: frozenset({CState.LOADING, CState.OPENING}) | _ANY_STAFF_TARGET,
    CState.LOADING: frozenset({CState.LOADED, CState.EMPTY, CState.JAMMED, CState.HELD_OPEN})
    | _ANY_STAFF_TARGET,
    CState.LOADED: frozenset({CState.OPENING, CState.EXPIRED}) | _ANY_STAFF_TARGET,
    CState.OPENING: frozenset({CState.OPEN, CState.JAMMED}) | _RESTING | _ANY_STAFF_TARGET,
    CState.OPEN: frozenset({CState.EMPTIED, CState.HELD_OPEN}) | _RESTING | _ANY_STAFF_TARGET,
    CState.EMPTIED: frozenset({CState.EMPTY}) | _ANY_STAFF_TARGET,
    CState.EXPIRED: frozenset({CState.OPENING}) | _ANY_STAFF_TARGET,
    CState.JAMMED: frozenset({CState.OPENING}) | _RESTING | _ANY_STAFF_TARGET,
    CState.FORCED: frozenset({CState.OPENING}) | _RESTING | _ANY_STAFF_TARGET,
    CState.HELD_OPEN: frozenset({CState.EMPTIED}) | _RESTING | _ANY_STAFF_TARGET,
    CState.OUT_OF_SERVICE: frozenset({CState.OPENING}) | _RESTING | _ANY_STAFF_TARGET,
    CState.UNKNOWN: frozenset({CState.OPENING}) | _RESTING | _ANY_STAFF_TARGET,
}
RESTING: Final = _RESTING


class TransitionError(ControllerError):
    """A state change the table does not allow; names the compartment and both states."""


@dataclass
class Compartment:
    """One compartment: where it is wired and what the terminal believes about it."""

    label: str
    board: str
    channel: int
    size: str
    state: CState = CState.UNKNOWN
    door: Door = Door.UNKNOWN
    busy_op: int | None = None  # the operation holding it, if any
    led: Led = Led.NONE
    note: str = ""


StateListener = Callable[[Compartment, CState, str], None]


class Wall:
    """Every compartment of the terminal, persisted in the store."""

    def __init__(
        self,
        store: Store,
        specs: Iterable[tuple[str, str, int, str]],
        with_led: Collection[str] = (),
    ) -> None:
        """specs: (label, board, channel, size) from the config; with_led: the labels whose
        channel has an LED (it starts off, the others none). Compartments the store knows
        keep their state; new ones start EMPTY; ones gone from the config are left in the
        database untouched (their history stays)."""
        self.store = store
        self.by_label: dict[str, Compartment] = {}
        self.by_channel: dict[tuple[str, int], Compartment] = {}
        self.listeners: list[StateListener] = []
        known = {
            str(r[0]): (CState(r[1]), str(r[2]))
            for r in store.db.execute("SELECT label, state, note FROM compartments")
        }
        with store.tx():
            for label, board, channel, size in specs:
                c = Compartment(label, board, channel, size)
                c.led = Led.OFF if label in with_led else Led.NONE
                if label in known:
                    c.state, c.note = known[label]
                    store.db.execute(
                        "UPDATE compartments SET board=?, channel=?, size=? WHERE label=?",
                        (board, channel, size, label),
                    )
                else:
                    c.state = CState.EMPTY
                    store.db.execute(
                        "INSERT INTO compartments(label, board, channel, size, state, since_utc) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (label, board, channel, size, c.state.value, store.utc()),
                    )
                    store.audit("system", "compartment_added", label, board=board, channel=channel)
                self.by_label[label] = c
                self.by_channel[(board, channel)] = c

    def get(self, label: str) -> Compartment | None:
        """The compartment with this label, or None."""
        return self.by_label.get(label)

    def at(self, board: str, channel: int) -> Compartment | None:
        """The compartment wired to a board channel, or None."""
        return self.by_channel.get((board, channel))

    def set_state(
        self, c: Compartment, new: CState, actor: str, why: str, **detail: object
    ) -> None:
        """The one place a compartment's state changes: checked, persisted, audited."""
        old = c.state
        if new == old:
            return
        if new not in TRANSITIONS[old]:
            raise TransitionError(
                f"compartment {c.label}: {old.value} -> {new.value} is not allowed ({why})",
                (c.label, old.value, new.value),
            )
        with self.store.tx():
            self.store.db.execute(
                "UPDATE compartments SET state=?, since_utc=? WHERE label=?",
                (new.value, self.store.utc(), c.label),
            )
            self.store.audit(
                actor, "compartment_state", c.label, old=old.value, new=new.value, why=why,
                **detail,
            )  # fmt: skip
            c.state = new
        log.info("compartment %s: %s -> %s (%s)", c.label, old.value, new.value, why)
        for listener in list(self.listeners):
            try:
                listener(c, old, why)
            except Exception:
                log.exception("compartment listener failed")

    def set_door(self, c: Compartment, door: Door) -> bool:
        """Record the door's position; True if it changed (listeners hear of it)."""
        if c.door == door:
            return False
        c.door = door
        for listener in list(self.listeners):
            try:
                listener(c, c.state, "door")
            except Exception:
                log.exception("compartment listener failed")
        return True

    def set_led(self, c: Compartment, led: Led) -> bool:
        """Record what the board confirmed for the LED; True if it changed (listeners hear
        of it). A compartment without an LED stays NONE."""
        if c.led == Led.NONE or c.led == led:
            return False
        c.led = led
        for listener in list(self.listeners):
            try:
                listener(c, c.state, "led")
            except Exception:
                log.exception("compartment listener failed")
        return True
