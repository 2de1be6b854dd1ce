"""Deadlines on the controller's millisecond clock, fired by ``Timers.run_due(now)``.

The daemon calls ``run_due`` every tick with the monotonic clock; tests call it with a
simulated one, so every timeout in the workflows runs on whatever time it is given.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(order=True)
class Timer:
    """A pending deadline; ``cancel()`` makes sure it never fires."""

    at_ms: int
    order: int
    action: Callable[[], None] = field(compare=False)
    what: str = field(compare=False, default="")
    cancelled: bool = field(compare=False, default=False)

    def cancel(self) -> None:
        """It will not fire (cancelling twice or after it fired is harmless)."""
        self.cancelled = True


class Timers:
    """A heap of deadlines; see the module docstring."""

    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._order = itertools.count()
        self.now_ms = 0

    def after(self, ms: int, action: Callable[[], None], what: str = "") -> Timer:
        """Run action once, ms after the last time given to run_due."""
        timer = Timer(self.now_ms + ms, next(self._order), action, what)
        heapq.heappush(self._heap, timer)
        return timer

    def run_due(self, now_ms: int) -> int:
        """Fire every deadline at or before now_ms, oldest first; returns how many fired.
        An action that raises is logged and does not stop the others."""
        self.now_ms = now_ms
        fired = 0
        while self._heap and self._heap[0].at_ms <= now_ms:
            timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            fired += 1
            try:
                timer.action()
            except Exception:
                log.exception("timer %s failed", timer.what or timer.action)
        return fired

    def pending(self) -> int:
        """Deadlines that have not fired and are not cancelled."""
        return sum(1 for t in self._heap if not t.cancelled)


@dataclass
class Clock:
    """The controller's two clocks: monotonic ms for deadlines, UTC seconds for records."""

    now_ms: Callable[[], int] = field(default=lambda: int(time.monotonic() * 1000))
    utc: Callable[[], float] = field(default=time.time)
