"""Running the view: a source feeds the model, frames go to the screen.

On a terminal (tty) the frame is redrawn in place on the alternate screen with the cursor
hidden, on every change (at most ``MAX_FPS`` frames a second) and every second for the
ages; the screen is restored however the view ends. Anywhere else (a pipe, a log file) a
new frame is printed, without escape codes, whenever the picture changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TextIO

from tools.wall.model import WallModel
from tools.wall.render import freshness

MAX_FPS = 10
TICK_S = 1.0  # redraw this often on a tty even without a change: ages move on
ENTER = "\x1b[?1049h\x1b[?25l"  # alternate screen, cursor hidden
LEAVE = "\x1b[?25h\x1b[?1049l"  # cursor shown, normal screen back
HOME = "\x1b[H"
CLEAR_LINE = "\x1b[K"
CLEAR_BELOW = "\x1b[J"

Emit = Callable[[str, Any], None]


class Source(Protocol):
    """What the view needs of a data source (bridge or MQTT)."""

    @property
    def description(self) -> str: ...

    def run(self, emit: Emit) -> Awaitable[None]: ...


class Feeder:
    """Runs a source and applies what it emits to the model at clock() (UTC seconds);
    ``changed`` is set after every message."""

    def __init__(
        self, model: WallModel, source: Source, clock: Callable[[], float] = time.time
    ) -> None:
        self.model = model
        self.source = source
        self.clock = clock
        self.changed = asyncio.Event()

    def emit(self, kind: str, fields: Any) -> None:
        """One message from the source."""
        self.model.apply(kind, fields, self.clock())
        self.changed.set()

    def start(self) -> asyncio.Task[None]:
        """The source, running."""

        async def run() -> None:
            await self.source.run(self.emit)

        return asyncio.get_running_loop().create_task(run(), name="wall source")


async def _changed_or_done(feeder: Feeder, task: asyncio.Task[None], timeout: float) -> None:
    """Wait for a change, the end of the source task, or timeout."""
    waiter = asyncio.get_running_loop().create_task(feeder.changed.wait())
    try:
        await asyncio.wait({waiter, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        task.result()  # the source's fatal error (WallAuthError, ...) goes up from here


async def first_picture(feeder: Feeder, timeout_s: float) -> bool:
    """Run the source until the model is complete (True) or timeout_s passed (False);
    a fatal error of the source is raised."""
    task = feeder.start()
    deadline = time.monotonic() + timeout_s
    try:
        while not feeder.model.complete:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            feeder.changed.clear()
            await _changed_or_done(feeder, task, left)
        return True
    finally:
        await _stop(task)


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel the source task and wait for it to end (its own error is raised elsewhere)."""
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Screen:
    """Where frames go. ``tty``: the alternate screen, redrawn in place; otherwise plain
    frames one after the other, separated by a blank line."""

    def __init__(self, out: TextIO, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self._entered = False

    def enter(self) -> None:
        """Switch to the alternate screen and hide the cursor (tty only)."""
        if self.tty and not self._entered:
            self.out.write(ENTER)
            self.out.flush()
            self._entered = True

    def leave(self) -> None:
        """Show the cursor and the normal screen again; safe to call twice."""
        if self._entered:
            self.out.write(LEAVE)
            self.out.flush()
            self._entered = False

    def show(self, lines: list[str], height: int) -> None:
        """One frame; on a tty cut to height lines, saying how many were left out."""
        if not self.tty:
            self.out.write("\n".join(lines) + "\n\n")
            self.out.flush()
            return
        if len(lines) > height:
            hidden = len(lines) - height + 1
            lines = [*lines[: height - 1], f"... {hidden} more lines: enlarge the window"]
        self.out.write(HOME + (CLEAR_LINE + "\n").join(lines) + CLEAR_LINE + CLEAR_BELOW)
        self.out.flush()


async def live(
    feeder: Feeder,
    screen: Screen,
    frame: Callable[[float, int], list[str]],
    size: Callable[[], tuple[int, int]],
    *,
    stale_s: float,
) -> None:
    """Show frames until cancelled (Ctrl-C, SIGTERM) or the source fails; frame(now,
    width) renders, size() is (width, height), read again for every frame. The screen
    is restored on the way out, whatever the reason."""
    loop = asyncio.get_running_loop()
    task = feeder.start()
    resize = False
    if screen.tty:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGWINCH, feeder.changed.set)
            resize = True
    screen.enter()
    try:
        shown_at = float("-inf")
        signature: tuple[int, bool] | None = None
        while True:
            await _changed_or_done(feeder, task, TICK_S)
            pause = shown_at + 1 / MAX_FPS - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)  # changes meanwhile join this frame
            feeder.changed.clear()
            now = feeder.clock()
            if not screen.tty:
                mark = (feeder.model.version, freshness(feeder.model, now, stale_s)[1])
                if mark == signature:
                    continue
                signature = mark
            width, height = size()
            screen.show(frame(now, width), height)
            shown_at = time.monotonic()
    finally:
        screen.leave()
        if resize:
            loop.remove_signal_handler(signal.SIGWINCH)
        await _stop(task)
