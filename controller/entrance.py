"""The entrance: a card grant releases the door strike (released early once the door
opens), the exit button always does; forced-open and held-open alarms; lockdown mode.

The strike is on a board (``strike`` request) or on the Pi's own GPIO. Lockdown refuses
card grants but never the exit button: nobody is locked in.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING

from controller.api import Result, Status, fail, ok, shown
from controller.boardlink import RequestOutcome
from controller.compartments import Door
from controller.errors import ControllerError
from controller.timers import Timer

if TYPE_CHECKING:
    from controller.terminal import TerminalController

log = logging.getLogger(__name__)

SUBJECT = "entrance"
GRACE_MS = 2000  # the door may open this long after the strike time ended (slow people)


class EntranceMode(enum.Enum):
    """Whether card grants open the door."""

    NORMAL = "normal"
    LOCKDOWN = "lockdown"


class Entrance:
    """The entrance's state and reactions; see the module docstring."""

    def __init__(self, ctl: TerminalController) -> None:
        self.ctl = ctl
        stored = ctl.store.meta("entrance_mode")
        self.mode = EntranceMode(stored or ctl.config.entrance.mode)
        self.door = Door.UNKNOWN
        self.released_until_ms = -1
        self.held_timer: Timer | None = None

    @property
    def board(self) -> str | None:
        """The board with the strike, "pi", or None when the terminal has no entrance."""
        return self.ctl.config.entrance.board

    def set_mode(self, mode: object, actor: str) -> Result:
        """Switch between normal and lockdown (persisted, audited, announced)."""
        try:
            new = EntranceMode(mode)
        except ValueError:
            return fail(Status.BAD_REQUEST, f"mode {shown(mode)} is not normal or lockdown")
        with self.ctl.store.tx():
            self.ctl.store.set_meta("entrance_mode", new.value)
            self.ctl.store.audit(
                actor, "entrance_mode", SUBJECT, old=self.mode.value, new=new.value
            )
        self.mode = new
        self.ctl.announce_terminal()
        return ok(mode=new.value)

    def on_grant(self) -> None:
        """The card reader granted access."""
        refusal = None
        if self.mode == EntranceMode.LOCKDOWN:
            refusal = "lockdown"
        elif self.ctl.config.interlocks.tamper_blocks_all and self.ctl.tamper_active:
            refusal = "tamper interlock"
        if refusal is not None:
            with self.ctl.store.tx():
                self.ctl.store.audit("card", "entrance_refused", SUBJECT, why=refusal)
                self.ctl.store.bump("entrance_refused")
            return
        with self.ctl.store.tx():
            self.ctl.store.audit("card", "entrance_granted", SUBJECT)
            self.ctl.store.bump("entrance_grants")
        self._release("card")

    def on_exit(self) -> None:
        """The exit button inside was pressed: always release."""
        with self.ctl.store.tx():
            self.ctl.store.audit("exit_button", "entrance_exit", SUBJECT)
            self.ctl.store.bump("entrance_exits")
        self._release("exit")

    def _release(self, why: str) -> None:
        ms = self.ctl.config.entrance.strike_ms
        self.released_until_ms = self.ctl.timers.now_ms + ms + GRACE_MS
        if self.board == "pi":
            if self.ctl.gpio is not None:
                self.ctl.gpio.strike(ms)
            return
        if self.board is None:
            return
        try:
            self.ctl.command(self.board, "strike", [ms], None, self._strike_answered)
        except ControllerError as exc:
            log.warning("entrance strike (%s) not sent: %s", why, exc)
            self.released_until_ms = -1

    def _strike_answered(self, result: RequestOutcome) -> None:
        if not result.ok:
            log.warning("entrance strike refused: %s", result.reason)

    def on_door(self, door: Door) -> None:
        """The entrance door contact moved."""
        if door == self.door:
            return
        was_known = self.door != Door.UNKNOWN
        self.door = door
        alarms = self.ctl.alarms
        if door == Door.OPEN:
            if self.board == "pi" and self.ctl.gpio is not None:
                self.ctl.gpio.release_strike()
            if was_known and self.ctl.timers.now_ms > self.released_until_ms:
                alarms.raise_("forced_open", SUBJECT, "entrance opened without a grant")
            self.released_until_ms = -1
            held_ms = self.ctl.config.entrance.held_open_s * 1000
            self.held_timer = self.ctl.timers.after(held_ms, self._held, "entrance held open")
        elif door == Door.CLOSED:
            if self.held_timer is not None:
                self.held_timer.cancel()
            alarms.clear("held_open", SUBJECT, why="door closed")
            alarms.clear("forced_open", SUBJECT, why="door closed")

    def _held(self) -> None:
        if self.door == Door.OPEN:
            self.ctl.alarms.raise_(
                "held_open", SUBJECT, f"open longer than {self.ctl.config.entrance.held_open_s} s"
            )
