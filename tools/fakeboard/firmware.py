"""One boot of the flashed firmware on the fake board, driven from the host.

main.py's endless loop cannot run inside the VM, so the host runs the firmware's loop:
one ``Runtime.run_once(now)`` (``_fbboot.tick``) every TICK_S of real time, and at once
when bytes arrive from the pty. Each pass reports the bytes the firmware sent, its output
edges (the surroundings turn them into input levels) and what it did: stopped for the
REPL, asked for a reset, starved its watchdog, or crashed. After a crash main.py's
one-second window follows, in which a Ctrl-C stops the board into the REPL.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from tools.fakeboard.errors import VMError
from tools.fakeboard.surroundings import Surroundings
from tools.fakeboard.vm import Answer, BoardVM

log = logging.getLogger(__name__)

TICK_S: Final = 0.004  # loop pass interval while no bytes arrive
CRASH_WINDOW_S: Final = 1.0  # main.py: Ctrl-C stops the board this long after a crash
CTRL_C: Final = b"\x03"


class Next(enum.Enum):
    """What the board does after a step of the firmware."""

    RUN = "run"  # the firmware goes on
    REPL = "repl"  # the firmware stopped: the REPL of the same VM gets the port
    RESET = "reset"  # a hard reset (the firmware's reset, its watchdog, after a crash)


@dataclass(frozen=True)
class Step:
    """Next, and the text the board prints before the REPL's banner (a Ctrl-C traceback;
    empty when the firmware printed why and the banner itself)."""

    next: Next
    text: bytes = b""


class FirmwareRun:
    """The firmware of one boot. write: bytes to the pty as they are; console: turns what
    print() wrote into what the port shows; on_answer: sees every VM answer (changes)."""

    def __init__(
        self,
        vm: BoardVM,
        surroundings: Surroundings,
        main_py: bytes,
        *,
        write: Callable[[bytes], None],
        console: Callable[[bytes], bytes],
        on_answer: Callable[[Answer], None],
    ) -> None:
        self._vm = vm
        self._surroundings = surroundings
        self._main_py = main_py
        self._write = write
        self._console = console
        self._on_answer = on_answer
        self._rx = bytearray()
        self._next_tick = time.monotonic()
        self._crash_until: float | None = None

    def deadline(self) -> float:
        """Monotonic time of the next step due without input."""
        return self._crash_until if self._crash_until is not None else self._next_tick

    def receive(self, data: bytes) -> None:
        """Bytes from the pty for the next pass."""
        self._rx += data

    def step(self, data: bytes, now_ms: int) -> Step:
        """Input since the last step, then a loop pass when one is due (board time now_ms)."""
        now = time.monotonic()
        if self._crash_until is not None:
            if CTRL_C in data:
                return Step(Next.REPL, self._keyboard_interrupt())
            return Step(Next.RESET if now >= self._crash_until else Next.RUN)
        self._rx += data
        if not self._rx and now < self._next_tick:
            return Step(Next.RUN)
        self._next_tick = now + TICK_S
        levels = self._surroundings.changed_levels(now_ms)
        rx = bytes(self._rx)
        self._rx.clear()
        answer = self._vm.call(f"tick({now_ms}, {rx!r}, {levels!r})")
        self._on_answer(answer)
        report = answer.json()
        if not isinstance(report, dict):
            raise VMError(f"the firmware's loop pass answered {report!r}")
        step = self.report(report, answer.out)
        if answer.reset is not None and step.next is Next.RUN:
            return Step(Next.RESET)  # machine.reset() called outside simboard's view
        return step

    def report(self, report: dict[str, Any], console: bytes) -> Step:
        """What one pass (or the boot) did: bytes out, output edges, resets, REPL."""
        if console:
            self._write(self._console(console))  # print() shares the USB port
        self._write(bytes.fromhex(str(report.get("tx", ""))))
        edges = [(int(t), pin, int(level)) for t, pin, level in report.get("edges", [])]
        self._surroundings.outputs(edges)
        state, action = report.get("state"), report.get("action")
        if report.get("error"):
            log.warning("fake board: the firmware crashed:\n%s", report["error"])
        if state == "repl":
            return Step(Next.REPL)
        if state == "dead" and action == "crash":
            self._crash_until = time.monotonic() + CRASH_WINDOW_S
            return Step(Next.RUN)
        if state == "dead" or not report.get("wdt_ok", True):
            return Step(Next.RESET)
        return Step(Next.RUN)

    def _keyboard_interrupt(self) -> bytes:
        """The traceback of a Ctrl-C in main.py's sleep before its reset after a crash."""
        lines = self._main_py.split(b"\n")
        line = next((i + 1 for i, text in enumerate(lines) if b"sleep" in text), 1)
        return (
            b"Traceback (most recent call last):\r\n"
            + f'  File "main.py", line {line}, in <module>\r\n'.encode()
            + b"KeyboardInterrupt: \r\n"
        )
