"""Getting the board's REPL: directly when MicroPython answers, or from the amtomat firmware,
which holds the USB port in binary mode, with an authenticated ``maintenance("repl")``.

The REPL is tried first (Ctrl-C, Ctrl-A; the firmware ignores both bytes). Then the protocol:
a hello with the keystore key, then with ``.key.old``; the welcome tells a board without a
key, one with a key we do not hold, and one that matches.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from protocol import session as S
from protocol.messages import BOARD, OK, REPLY_ID
from tools.flash.errors import HandoverRefused, NoAnswer, NotConfirmed, UnknownKey
from tools.flash.repl import BoardRepl

TICKS_MASK: Final = 0x3FFFFFFF
REPL_WAIT_S: Final = 1.0
FIRMWARE_WAIT_S: Final = 3.0
REPLY_WAIT_S: Final = 5.0
MAINTENANCE_ID: Final = BOARD.id_of("maintenance")
# protocol.session's last_error texts for a refused welcome
_WRONG_KEY: Final = ("welcome failed authentication", "board is provisioned but no key")
_UNPROVISIONED: Final = "downgrade refused"

_FEED_WATCHDOG: Final = """\
import machine
try:
 _amt_w=machine.WDT(timeout=8000)
 try:
  _amt_t=machine.Timer(-1)
 except Exception:
  _amt_t=machine.Timer(0)
 _amt_t.init(mode=machine.Timer.PERIODIC,period=1000,callback=lambda t:_amt_w.feed())
except Exception:
 pass
"""


class Route(enum.Enum):
    """How the REPL was reached."""

    REPL = "repl"  # MicroPython answered at once (fresh board, interrupted run, jumper)
    HANDOVER = "handover"  # the firmware handed over its port after maintenance("repl")


class Attempt(enum.Enum):
    """The result of one hello."""

    ESTABLISHED = "established"
    WRONG_KEY = "wrong key"  # the welcome failed authentication with this key
    UNPROVISIONED = "unprovisioned"  # the board answered without authentication
    SILENT = "silent"  # no welcome at all


@dataclass
class Reached:
    """The raw REPL is entered; how, and what the firmware said if it was asked."""

    route: Route
    key: bytes | None = None  # the key the firmware proved (HANDOVER only)
    identity: dict[str, Any] = field(default_factory=dict)


def monotonic_ms() -> int:
    """A monotonic millisecond clock."""
    return time.monotonic_ns() // 1_000_000


class FirmwareLink:
    """A synchronous initiator session over the REPL's serial port."""

    def __init__(self, repl: BoardRepl, address: int, key: bytes | None) -> None:
        self.repl = repl
        self.ser = repl.serial
        self.session = S.Session(
            S.INITIATOR,
            BOARD,
            self._write,
            os.urandom,
            key=key,
            addr=address,
            peer_name="amtomat-flash",
        )
        self.inbox: list[list[Any]] = []

    def _write(self, view: memoryview) -> None:
        self.ser.write(bytes(view))

    def pump(self, seconds: float, done: Callable[[], bool]) -> bool:
        """Read, feed and poll until done() or seconds passed; done() at the end."""
        end = time.monotonic() + seconds
        old = self.ser.timeout
        self.ser.timeout = 0.02
        try:
            while not done() and time.monotonic() < end:
                data = self.ser.read(max(1, self.ser.in_waiting))
                now = monotonic_ms() & TICKS_MASK
                if data:
                    self.session.feed(data, now)
                self.session.poll(now)
                msg = self.session.receive()
                while msg is not None:
                    self.inbox.append(msg)
                    msg = self.session.receive()
        finally:
            self.ser.timeout = old
        return done()

    def handshake(self, seconds: float) -> Attempt:
        """Say hello and wait for the welcome."""
        s = self.session
        s.connect(monotonic_ms() & TICKS_MASK)
        self.pump(seconds, lambda: s.established or self._refused() is not None)
        if s.established:
            return Attempt.ESTABLISHED
        return self._refused() or Attempt.SILENT

    def _refused(self) -> Attempt | None:
        """What the session's last handshake error says. Counters would mislead: frames
        of the board's previous session (heartbeats, retransmits) fail our tag check too."""
        error = self.session.last_error
        if error.startswith(_UNPROVISIONED):
            return Attempt.UNPROVISIONED
        if error.startswith(_WRONG_KEY):
            return Attempt.WRONG_KEY
        return None

    def request(self, msg: list[Any], seconds: float) -> list[Any] | None:
        """Send a request and wait for its reply; None when none came."""
        cid = self.session.request(msg)

        def replied() -> bool:
            return any(m[0] == REPLY_ID and m[1] == cid for m in self.inbox)

        if not self.pump(seconds, replied):
            return None
        reply = next(m for m in self.inbox if m[0] == REPLY_ID and m[1] == cid)
        # keep the link up a moment so our acknowledgement reaches the board
        self.pump(0.3, lambda: False)
        return reply


def reach_repl(
    repl: BoardRepl,
    *,
    board_id: str,
    addresses: list[int],
    candidates: list[tuple[str, bytes]],
    recovery_pin: int | None,
    keystore: str,
    confirm_other_board: Callable[[str], bool],
    repl_wait_s: float = REPL_WAIT_S,
    firmware_wait_s: float = FIRMWARE_WAIT_S,
) -> Reached:
    """Enter the raw REPL, through the firmware's maintenance handover when it holds the
    port. addresses: the board's own first, then others it may still be configured with;
    candidates: (file name, key), the board's own first. NoAnswer, UnknownKey,
    HandoverRefused or NotConfirmed say what to do."""
    if repl.enter_raw(repl_wait_s):
        return Reached(Route.REPL)
    keys: list[tuple[str, bytes | None]] = list(candidates) or [("no key", None)]
    attempts: list[Attempt] = []
    for address in addresses:
        for _, key in keys:
            link = FirmwareLink(repl, address, key)
            attempt = link.handshake(firmware_wait_s)
            attempts.append(attempt)
            if attempt is Attempt.ESTABLISHED:
                if not link.session.authenticated:
                    attempts.append(Attempt.UNPROVISIONED)
                    break
                return _handover(repl, link, key, board_id, recovery_pin, confirm_other_board)
            if attempt is not Attempt.WRONG_KEY:
                break  # silent: nothing at this address; unprovisioned: keys will not help
        if any(a is not Attempt.SILENT for a in attempts):
            break  # the board answered at this address
    if Attempt.WRONG_KEY in attempts and Attempt.UNPROVISIONED not in attempts:
        names = ", ".join(n for n, _ in candidates) or "no key file"
        raise UnknownKey(
            f"the board on {repl.port} runs the amtomat firmware with a key the keystore "
            f"{keystore} does not hold (tried {names}), so it will not hand over its port. "
            "Restore the key file from the backup, or: " + _recovery_hint(recovery_pin),
            board_id,
        )
    if Attempt.UNPROVISIONED in attempts:
        raise HandoverRefused(
            f"the board on {repl.port} runs the amtomat firmware without a key, and such a "
            "board does not hand over its port (maintenance needs an authenticated session). "
            + _recovery_hint(recovery_pin),
            repl.port,
        )
    shown = ", ".join(str(a) for a in addresses)
    raise NoAnswer(
        f"nothing answered on {repl.port}: neither a MicroPython REPL nor the amtomat "
        f"firmware (address {shown}). Check that this is the board's port, that "
        "MicroPython is installed (a board in BOOTSEL mode is a USB drive, not a serial "
        "port), and that the board is not resetting over and over (its LED); then run "
        "amtomat flash again",
        repl.port,
    )


def _handover(
    repl: BoardRepl,
    link: FirmwareLink,
    key: bytes | None,
    board_id: str,
    recovery_pin: int | None,
    confirm_other_board: Callable[[str], bool],
) -> Reached:
    """An authenticated session is up: check the board id, ask for the REPL, enter it."""
    identity = dict(link.session.peer)
    seen = identity.get("board_id")
    if seen != board_id and not confirm_other_board(str(seen)):
        raise NotConfirmed(
            f"the board on {repl.port} is configured as {seen!r}, not {board_id!r}; "
            "nothing was changed. Check which board is plugged in, or confirm with --yes",
            seen,
        )
    reply = link.request([MAINTENANCE_ID, "repl"], REPLY_WAIT_S)
    if reply is None:
        raise NoAnswer(
            f"the firmware on {repl.port} did not answer the maintenance request; "
            "power-cycle the board and run amtomat flash again",
            repl.port,
        )
    if reply[2] != OK:
        raise HandoverRefused(
            f"the firmware on {repl.port} refused to hand over its port "
            f"({reply[3]}); {_recovery_hint(recovery_pin)}",
            reply[3],
        )
    if not repl.enter_raw(REPL_WAIT_S * 3):
        raise NoAnswer(
            f"the firmware on {repl.port} accepted the maintenance request but no REPL "
            "answered after it; power-cycle the board and run amtomat flash again",
            repl.port,
        )
    return Reached(Route.HANDOVER, key, identity)


def _recovery_hint(recovery_pin: int | None) -> str:
    if recovery_pin is not None:
        return (
            f"Set the recovery jumper: connect GPIO {recovery_pin} (recovery_pin) to GND, "
            "power-cycle the board, run amtomat flash again, then remove the jumper"
        )
    return (
        "This board has no recovery_pin in its config: hold BOOTSEL while plugging it in "
        "and install MicroPython again (flash_nuke.uf2 first erases its files), then run "
        "amtomat flash again"
    )


def keep_watchdog_fed(repl: BoardRepl) -> None:
    """The firmware was stopped with Ctrl-C (an RS-485 board keeps Ctrl-C on USB): its
    watchdog still runs and cannot be stopped, so a timer feeds it until the reset."""
    repl.exec(_FEED_WATCHDOG)
