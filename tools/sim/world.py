"""The physical world around one simulated board: doors, sensors, slots, people.

A ``BoardWorld`` turns the board's output levels (solenoids, strike, LEDs) into input
levels (door contacts, item sensors, flap and deposit sensors, card grant, exit button,
tamper, service door) on simulated time, and takes a person's actions (open or close a
door, put in or take out an item, deposit a document, swipe a card) and injected faults
(jammed door, stuck or bouncing sensor). Levels at the pins are physical: the board's
``invert`` flags are applied here, as a real wiring would.
"""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tools.mpvm import REPO_ROOT

_FW = str(REPO_ROOT / "firmware_micropython")
if _FW not in sys.path:
    sys.path.insert(0, _FW)

from amtfw import config as C  # noqa: E402  (MicroPython firmware, imported on the host)

__all__ = ["BoardWorld", "C", "Edge", "Pin", "WorldError"]

Pin = int | str

RELEASE_MS = 60  # a solenoid must be energised this long to release its latch
SLOT_UNLOCK_MS = 10000  # a released slot flap stays unlocked this long for a deposit
DEPOSIT_MS = 150  # the deposit light barrier is interrupted this long
FLAP_CLOSE_MS = 600  # the flap springs shut this long after a deposit
GRANT_MS = 300  # the card reader's grant contact
EXIT_MS = 200  # a press of the exit button
MAX_EDGES = 100_000  # output edges kept per board (a blinking LED makes 170,000 a day)

_SLOT_UNITS = {"return": C.U_RETURN, "dropoff": C.U_DROPOFF}


class WorldError(ValueError):
    """A person's action or a fault does not fit this board; the message says why."""


@dataclass
class _Signal:
    pin: Pin
    invert: bool
    role: int
    unit: int
    channel: int | None


@dataclass
class _Door:
    """A compartment door (or the entrance door) with its latch."""

    open: bool = False
    jammed: bool = False
    energised_since: int | None = None  # when its solenoid or strike came on
    popped: bool = False  # opened by the current energisation (a closed door stays shut)


@dataclass
class _Slot:
    unlocked_until: int = -1
    flap_open_until: int = -1
    deposit_until: int = -1


@dataclass
class Edge:
    """One change of an output pin, at simulated time t (ms)."""

    t: int
    pin: Pin
    level: int  # physical level at the pin
    name: str  # what the output is, e.g. "channel 3 solenoid"
    on: bool  # logical: energised or lit


@dataclass
class BoardWorld:
    """Physics and people around one board; see the module docstring."""

    board_json: bytes
    cfg: Any = field(init=False)
    outputs: list[_Signal] = field(init=False)
    inputs: list[_Signal] = field(init=False)

    def __post_init__(self) -> None:
        self.cfg = C.parse(self.board_json)
        self.outputs = [_Signal(*spec) for spec in self.cfg.outputs]
        self.inputs = [_Signal(*spec) for spec in self.cfg.inputs]
        self._out_by_pin = {s.pin: i for i, s in enumerate(self.outputs)}
        self.out_levels = [0] * len(self.outputs)  # logical
        self.doors: dict[int, _Door] = {ch: _Door() for ch in self.cfg.channels}
        self.items: dict[int, bool] = {ch: False for ch in self.cfg.item}
        self.entrance = _Door()
        self.slots: dict[int, _Slot] = {u: _Slot() for u in (C.U_RETURN, C.U_DROPOFF)}
        self.grant_until = -1
        self.exit_until = -1
        self.tamper = False
        self.service_open = False
        self.stuck: dict[int, int] = {}  # input index -> logical level
        self.bounces: dict[int, list[tuple[int, int]]] = {}  # index -> [(until, level)]
        self.edges: deque[Edge] = deque(maxlen=MAX_EDGES)  # the newest, for reading back
        self.now = 0

    # ----- names --------------------------------------------------------------------

    def input_names(self) -> list[str]:
        """Names a stuck or bouncing sensor is given by: door3, item3, return.flap, ..."""
        return [self._input_name(s) for s in self.inputs]

    def _input_name(self, s: _Signal) -> str:
        role = ("door", "item", "flap", "deposit", "grant", "exit", "tamper")[s.role]
        if s.unit == C.U_CHANNEL:
            return f"{role}{s.channel}"
        if s.unit in (C.U_TAMPER, C.U_SERVICE):
            return str(C.UNIT_NAMES[s.unit])
        return f"{C.UNIT_NAMES[s.unit]}.{role}"

    def _output_name(self, s: _Signal) -> str:
        role = ("solenoid", "LED", "flap solenoid", "strike")[s.role]
        if s.unit == C.U_CHANNEL:
            return f"channel {s.channel} {role}"
        return f"{C.UNIT_NAMES[s.unit]} {role}"

    def input_index(self, name: str) -> int:
        """The input called name; WorldError listing the names when there is none."""
        names = self.input_names()
        if name not in names:
            raise WorldError(f"no input {name!r} on board {self.cfg.board_id}: {names}")
        return names.index(name)

    def _door(self, channel: int) -> _Door:
        door = self.doors.get(channel)
        if door is None:
            raise WorldError(
                f"board {self.cfg.board_id} has no channel {channel} (channels {self.cfg.channels})"
            )
        return door

    # ----- the board's side ---------------------------------------------------------

    def reset_outputs(self, now: int) -> None:
        """Power is off: every driver rests off (pull-downs, or pull-ups on inverted
        drivers), whatever level the dead pins read; no edges are recorded for that."""
        self.now = now
        for i in range(len(self.out_levels)):
            self._set_output(i, 0, now, record=False)

    def apply_edges(self, edges: list[tuple[int, Pin, int]]) -> None:
        """Output pin changes reported by the board, (t, pin, physical level)."""
        for t, pin, level in edges:
            i = self._out_by_pin.get(pin)
            if i is None:
                continue  # a pin the config does not name (e.g. the status LED)
            s = self.outputs[i]
            self._set_output(i, level ^ int(s.invert), t, record=True, pin_level=level)

    def _set_output(
        self, i: int, on: int, t: int, record: bool, pin_level: int | None = None
    ) -> None:
        s = self.outputs[i]
        if record:
            level = pin_level if pin_level is not None else on ^ int(s.invert)
            self.edges.append(Edge(t, s.pin, level, self._output_name(s), bool(on)))
        if self.out_levels[i] == on:
            return
        self.out_levels[i] = on
        if s.role == C.OUT_SOLENOID and s.channel is not None:
            door = self.doors[s.channel]
            door.energised_since = t if on else None
            door.popped = False
        elif s.role == C.OUT_STRIKE:
            self.entrance.energised_since = t if on else None
        elif s.role == C.OUT_FLAP and on:
            self.slots[s.unit].unlocked_until = t + SLOT_UNLOCK_MS

    def step(self, now: int) -> None:
        """Let time pass to now: latches release, sensors settle."""
        self.now = now
        for door in self.doors.values():
            since = door.energised_since
            released = since is not None and now - since >= RELEASE_MS
            if released and not door.jammed and not door.open and not door.popped:
                door.open = True
                door.popped = True  # the spring pushes the released door open

    def pin_levels(self) -> dict[Pin, int]:
        """Physical level of every input pin now."""
        now = self.now
        out: dict[Pin, int] = {}
        for i, s in enumerate(self.inputs):
            level = self._logical(i, s, now)
            out[s.pin] = level ^ int(s.invert)
        return out

    def _logical(self, i: int, s: _Signal, now: int) -> int:
        if i in self.stuck:
            return self.stuck[i]
        bounce = self.bounces.get(i)
        if bounce:
            while bounce and bounce[0][0] <= now:
                bounce.pop(0)
            if bounce:
                return bounce[0][1]
        if s.unit == C.U_CHANNEL:
            assert s.channel is not None
            if s.role == C.IN_DOOR:
                return int(self.doors[s.channel].open)
            return int(self.items.get(s.channel, False))
        if s.unit in self.slots:
            slot = self.slots[s.unit]
            if s.role == C.IN_FLAP:
                return int(now < slot.flap_open_until)
            return int(now < slot.deposit_until)
        if s.unit == C.U_ENTRANCE:
            if s.role == C.IN_DOOR:
                return int(self.entrance.open)
            if s.role == C.IN_GRANT:
                return int(now < self.grant_until)
            return int(now < self.exit_until)
        if s.unit == C.U_TAMPER:
            return int(self.tamper)
        return int(self.service_open)

    # ----- a person -----------------------------------------------------------------

    def set_door(self, channel: int, is_open: bool) -> dict[str, Any]:
        """A person opens (pulls; forced if still latched) or closes a compartment door."""
        door = self._door(channel)
        door.open = is_open
        return {"channel": channel, "open": is_open}

    def set_item(self, channel: int, present: bool) -> dict[str, Any]:
        """A person puts an item into or takes it out of a compartment."""
        self._door(channel)
        if channel not in self.items:
            raise WorldError(f"channel {channel} of board {self.cfg.board_id} has no item sensor")
        self.items[channel] = present
        return {"channel": channel, "present": present}

    def deposit(self, unit: str) -> dict[str, Any]:
        """A person pushes a document through the return or drop-off slot; the slot must
        have been unlocked by its solenoid within the last SLOT_UNLOCK_MS."""
        u = _SLOT_UNITS.get(unit)
        if u is None:
            raise WorldError(f"unit {unit!r} is not return or dropoff")
        if u not in self.cfg.flap_out:
            raise WorldError(f"board {self.cfg.board_id} has no {unit} slot")
        slot = self.slots[u]
        if self.now >= slot.unlocked_until:
            raise WorldError(f"the {unit} slot is locked: its flap solenoid was not pulsed")
        slot.flap_open_until = self.now + FLAP_CLOSE_MS
        slot.deposit_until = self.now + DEPOSIT_MS
        slot.unlocked_until = self.now  # locks again behind the document
        return {"unit": unit, "deposited": True}

    def has_unit(self, unit: int) -> bool:
        """True when this board carries the special unit."""
        return unit in self.cfg.units

    def swipe(self) -> dict[str, Any]:
        """The card reader grants entry: its grant contact closes for GRANT_MS."""
        self.grant_until = self.now + GRANT_MS
        return {"grant_ms": GRANT_MS}

    def press_exit(self) -> dict[str, Any]:
        """Someone inside presses the exit button."""
        self.exit_until = self.now + EXIT_MS
        return {"exit_ms": EXIT_MS}

    def set_entrance_door(self, is_open: bool) -> dict[str, Any]:
        """A person opens or closes the entrance door (forced when the strike holds)."""
        forced = is_open and self.entrance.energised_since is None
        self.entrance.open = is_open
        return {"open": is_open, "forced": forced}

    def set_tamper(self, active: bool) -> dict[str, Any]:
        """The cabinet tamper switch trips or is restored."""
        self.tamper = active
        return {"tamper": active}

    def set_service_door(self, is_open: bool) -> dict[str, Any]:
        """Staff open or close the service door."""
        self.service_open = is_open
        return {"open": is_open}

    # ----- faults -------------------------------------------------------------------

    def set_jam(self, channel: int, jammed: bool) -> dict[str, Any]:
        """A jammed door stays shut however long its solenoid is energised."""
        self._door(channel).jammed = jammed
        return {"channel": channel, "jammed": jammed}

    def stick(self, name: str, level: int) -> dict[str, Any]:
        """The sensor reads level (logical) whatever happens, until unstuck."""
        if level not in (0, 1):
            raise WorldError(f"level must be 0 or 1, got {level}")
        self.stuck[self.input_index(name)] = level
        return {"input": name, "stuck": level}

    def unstick(self, name: str) -> dict[str, Any]:
        """The sensor follows the world again."""
        self.stuck.pop(self.input_index(name), None)
        return {"input": name, "stuck": None}

    def bounce(self, name: str, count: int, ms: int) -> dict[str, Any]:
        """The sensor chatters: count flips of ms each from now, then follows the world."""
        if not 1 <= count <= 1000 or not 1 <= ms <= 1000:
            raise WorldError(f"count (1..1000) and ms (1..1000) out of range: {count}, {ms}")
        i = self.input_index(name)
        level = self._logical(i, self.inputs[i], self.now)
        self.bounces[i] = [(self.now + (k + 1) * ms, level ^ ((k + 1) & 1)) for k in range(count)]
        return {"input": name, "until": self.now + count * ms}

    # ----- reading back -------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Doors, items, slots, entrance and output levels, for people and tests."""
        on = [
            self._output_name(s)
            for s, level in zip(self.outputs, self.out_levels, strict=True)
            if level
        ]
        return {
            "doors": {ch: {"open": d.open, "jammed": d.jammed} for ch, d in self.doors.items()},
            "items": dict(self.items),
            "entrance": {"open": self.entrance.open, "released": self.entrance_released},
            "tamper": self.tamper,
            "service_door": self.service_open,
            "outputs_on": on,
            "stuck": {self.input_names()[i]: v for i, v in self.stuck.items()},
        }

    @property
    def entrance_released(self) -> bool:
        """True while the strike is energised."""
        return self.entrance.energised_since is not None
