"""Long operations (load, pickup, drop-off, retrieval, service open) and their building
blocks: opening a compartment and following its door, and opening a slot for a deposit.

An operation is a row of the ``operations`` table with an id ``op``, a kind, a step and,
once ended, an outcome. ``Operation.step_to`` is the one place its step changes (persisted,
announced as ``progress``); ``Operation.finish`` ends it once (persisted, audited, announced
as ``done``). The building blocks report back through callbacks; every deadline is a timer
on the controller's clock.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from controller.api import Status
from controller.boardlink import Outcome, RequestOutcome
from controller.compartments import Compartment, CState, Door
from controller.errors import ControllerError
from controller.timers import Timer

if TYPE_CHECKING:
    from controller.terminal import TerminalController

log = logging.getLogger(__name__)

LED_OFF, LED_ON, LED_BLINK = 0, 1, 2
BUSY_RETRY_MS = 600  # a board busy with this channel's last pulse: ask again after this
BUSY_RETRIES = 5
ITEM_SETTLE_MS = 300  # after the door closed, the item sensor is read this much later


class Outcomes(enum.StrEnum):
    """How an operation ended."""

    COMPLETED = "completed"
    ABORTED = "aborted"
    JAMMED = "jammed"
    NOT_TAKEN = "not_taken"
    UNKNOWN = "unknown"
    REFUSED = "refused"


class Operation:
    """Base of every long operation; see the module docstring."""

    kind = "operation"

    def __init__(self, ctl: TerminalController, origin: str, compartment: Compartment | None):
        self.ctl = ctl
        self.origin = origin
        self.compartment = compartment
        self.step = "started"
        self.ended = False
        with ctl.store.tx():
            cur = ctl.store.db.execute(
                "INSERT INTO operations(kind, compartment, origin, step, started_utc) "
                "VALUES (?, ?, ?, ?, ?)",
                (self.kind, compartment.label if compartment else None, origin, self.step,
                 ctl.store.utc()),
            )  # fmt: skip
            assert cur.lastrowid is not None
            self.op = cur.lastrowid
            ctl.store.audit(origin, f"{self.kind}_started", self._subject(), op=self.op)
        if compartment is not None:
            compartment.busy_op = self.op
        ctl.operations[self.op] = self

    def _subject(self) -> str:
        return self.compartment.label if self.compartment else self.kind

    def step_to(self, step: str) -> None:
        """Record and announce a step of the operation."""
        self.step = step
        with self.ctl.store.tx():
            self.ctl.store.db.execute("UPDATE operations SET step=? WHERE op=?", (step, self.op))
        self.ctl.notify(
            "progress",
            {
                "op": self.op,
                "operation": self.kind,
                "step": step,
                "compartment": self.compartment.label if self.compartment else None,
            },
        )

    def finish(self, outcome: Outcomes, status: Status, reason: str | None, **detail: Any) -> None:
        """End the operation once: persist, audit, announce, release the compartment."""
        if self.ended:
            return
        self.ended = True
        self.cancel_timers()
        with self.ctl.store.tx():
            self.ctl.store.db.execute(
                "UPDATE operations SET ended_utc=?, outcome=?, detail=? WHERE op=?",
                (self.ctl.store.utc(), outcome.value, reason, self.op),
            )
            self.ctl.store.audit(
                self.origin, f"{self.kind}_{outcome.value}", self._subject(), op=self.op,
                reason=reason, **detail,
            )  # fmt: skip
            self.ctl.store.bump(f"{self.kind}_{outcome.value}")
        if self.compartment is not None and self.compartment.busy_op == self.op:
            self.compartment.busy_op = None
        self.ctl.operations.pop(self.op, None)
        log.info("op %d %s %s: %s", self.op, self.kind, outcome.value, reason or "")
        self.ctl.notify(
            "done",
            {
                "op": self.op,
                "operation": self.kind,
                "status": int(status),
                "outcome": outcome.value,
                "reason": reason,
            },
        )

    def cancel_timers(self) -> None:
        """Stop every deadline of this operation (subclasses with timers extend it)."""

    # Events routed by the controller; subclasses override what they wait for.
    def on_door(self, c: Compartment, door: Door) -> None:
        """A door of a compartment this operation holds moved."""

    def on_deposit(self, unit: str) -> None:
        """A document went through a slot this operation holds."""


class DoorCycle:
    """Open one compartment and follow its door: pulse, seen open (one retry, else
    jammed), closed. Reports through ``opened``, ``closed`` and ``failed``."""

    def __init__(
        self,
        op: Operation,
        c: Compartment,
        *,
        opened: Callable[[], None],
        closed: Callable[[], None],
        failed: Callable[[Outcomes, Status, str], None],
        led: bool = False,
        hold_s: int | None = None,
    ) -> None:
        self.op = op
        self.hold_s = hold_s if hold_s is not None else op.ctl.config.pickup.take_s
        self.c = c
        self.ctl = op.ctl
        self.opened = opened
        self.closed = closed
        self.failed = failed
        self.led = led
        self.tries = 0
        self.busy_retries = 0
        self.seen_open = False
        self.timer: Timer | None = None

    def start(self) -> None:
        """Send the pulse (the caller has moved the compartment to its opening state)."""
        if self.led:
            self.ctl.set_led(self.c, LED_BLINK, self.op.op)
        self._pulse()

    def _pulse(self) -> None:
        self.tries += 1
        try:
            self.ctl.command(
                self.c.board,
                "pulse",
                [self.c.channel, self.ctl.config.daemon.pulse_ms],
                self.op.op,
                self._pulse_answered,
            )
        except ControllerError as exc:
            self._end_led()
            self.failed(Outcomes.REFUSED, Status.BOARD_OFFLINE, str(exc))
            return
        self.timer = self.ctl.timers.after(
            self.ctl.config.pickup.door_open_s * 1000, self._no_door, f"op {self.op.op} door"
        )

    def _pulse_answered(self, result: RequestOutcome) -> None:
        if self.op.ended:
            return
        if result.outcome == Outcome.UNKNOWN:
            self.cancel()
            self._end_led()
            self.ctl.wall.set_state(
                self.c, CState.UNKNOWN, self.op.origin, "pulse outcome unknown", op=self.op.op
            )
            self.ctl.alarms.raise_("outcome_unknown", self.c.label, result.reason)
            self.failed(Outcomes.UNKNOWN, Status.BOARD_OFFLINE, result.reason or "unknown")
        elif result.status == Status.BUSY and self.busy_retries < BUSY_RETRIES:
            self.cancel()  # the channel is still energised or resting: not a try
            self.busy_retries += 1
            self.tries -= 1
            self.timer = self.ctl.timers.after(BUSY_RETRY_MS, self._pulse, "busy retry")
        elif not result.ok:
            self.cancel()
            self._end_led()
            self.failed(Outcomes.REFUSED, Status.BOARD_OFFLINE, f"board refused: {result.reason}")

    def _no_door(self) -> None:
        if self.seen_open or self.op.ended:
            return
        if self.tries < 2:
            log.warning("compartment %s: door not seen open, one retry", self.c.label)
            self.op.step_to("retry")
            self._pulse()
            return
        self._end_led()
        self.ctl.wall.set_state(
            self.c, CState.JAMMED, "system", "door not seen open after a retry", op=self.op.op
        )
        self.ctl.alarms.raise_("jam", self.c.label, f"door did not open after {self.tries} pulses")
        self.failed(Outcomes.JAMMED, Status.OUT_OF_SERVICE, "the door did not open")

    def on_door(self, door: Door) -> None:
        """Follow the door (routed by the operation)."""
        if door == Door.OPEN and not self.seen_open:
            self.seen_open = True
            self.cancel()
            hold_ms = self.hold_s * 1000
            self.timer = self.ctl.timers.after(hold_ms, self._held_open, f"op {self.op.op} hold")
            self.opened()
        elif door == Door.CLOSED and self.seen_open:
            self.cancel()
            self._end_led()
            self.ctl.alarms.clear("held_open", self.c.label, why="door closed")
            # the item sensor may settle a moment after the door contact
            self.timer = self.ctl.timers.after(ITEM_SETTLE_MS, self._settled, "item settle")
        elif door == Door.OPEN and self.timer is not None and self.timer.what == "item settle":
            self.cancel()  # opened again before settling
            self.timer = self.ctl.timers.after(
                self.hold_s * 1000, self._held_open, f"op {self.op.op} hold"
            )

    def _settled(self) -> None:
        self.timer = None
        if not self.op.ended:
            self.closed()

    def _held_open(self) -> None:
        if self.op.ended:
            return
        self.ctl.wall.set_state(self.c, CState.HELD_OPEN, "system", "door open too long")
        self.ctl.alarms.raise_("held_open", self.c.label, f"open longer than {self.hold_s} s")

    def _end_led(self) -> None:
        if self.led:
            self.ctl.set_led(self.c, LED_OFF, self.op.op)

    def cancel(self) -> None:
        """Stop the current deadline."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class SlotWait:
    """Open a slot flap and wait for a deposit within the configured time."""

    def __init__(
        self,
        op: Operation,
        unit: str,
        *,
        deposited: Callable[[], None],
        failed: Callable[[Outcomes, Status, str], None],
    ) -> None:
        self.op = op
        self.unit = unit
        self.ctl = op.ctl
        self.deposited = deposited
        self.failed = failed
        self.timer: Timer | None = None
        self.done = False

    def start(self) -> None:
        """Ask the board to release the flap; the deposit window starts now."""
        board = self.ctl.slot_board(self.unit)
        if board is None:
            self.failed(Outcomes.REFUSED, Status.NOT_CONFIGURED, f"no {self.unit} slot")
            return
        holder = self.ctl.slot_holders.get(self.unit)
        if holder is not None and holder != self.op.op:
            self.failed(Outcomes.REFUSED, Status.CONFLICT, f"the {self.unit} slot is in use")
            return
        try:
            self.ctl.command(
                board, "slot", [self.unit, self.ctl.config.daemon.pulse_ms], self.op.op,
                self._answered,
            )  # fmt: skip
        except ControllerError as exc:
            self.failed(Outcomes.REFUSED, Status.BOARD_OFFLINE, str(exc))
            return
        self.ctl.slot_holders[self.unit] = self.op.op
        wait_s = self.ctl.config.pickup.deposit_s
        self.timer = self.ctl.timers.after(wait_s * 1000, self._timeout, f"op {self.op.op} slot")

    def _answered(self, result: RequestOutcome) -> None:
        if self.done or self.op.ended:
            return
        if not result.ok:
            self._release()
            why = result.reason or "no reply"
            self.failed(Outcomes.REFUSED, Status.BOARD_OFFLINE, f"{self.unit} slot: {why}")

    def on_deposit(self) -> None:
        """A document went through the slot."""
        if self.done:
            return
        self._release()
        self.deposited()

    def _timeout(self) -> None:
        if self.done or self.op.ended:
            return
        self._release()
        self.failed(
            Outcomes.ABORTED,
            Status.OK,
            f"no document in the {self.unit} slot within {self.ctl.config.pickup.deposit_s} s",
        )

    def _release(self) -> None:
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        if self.ctl.slot_holders.get(self.unit) == self.op.op:
            del self.ctl.slot_holders[self.unit]

    def cancel(self) -> None:
        """Stop waiting (the operation ended otherwise)."""
        self._release()
