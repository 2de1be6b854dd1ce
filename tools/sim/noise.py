"""Deterministic fault injection for one direction of a simulated serial line.

A :class:`LineNoise` sits between a sender and a receiver and works on simulated time
in milliseconds: the sender calls :meth:`LineNoise.push` with the bytes it wrote and the
current time, the receiver calls :meth:`LineNoise.pull` with the current time and gets the
bytes that have arrived by then. On the way each byte may be flipped (one random bit),
dropped, duplicated or delayed; while the line is cut everything pushed is lost. Bytes
never overtake each other, like on a real wire.

All randomness comes from one ``random.Random(seed)``, so a run is reproducible from its
seed and the sequence of calls. A perfect line (every setting zero, not cut) draws no
random numbers and hands every byte through in the same tick.
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import Any, Final

PROBABILITY_SETTINGS: Final = ("bit_error", "drop", "duplicate")
"""Settings that are probabilities per byte, between 0 and 1."""
DELAY_SETTINGS: Final = ("delay_ms", "jitter_ms")
"""Settings that are whole milliseconds, 0 or more."""
SETTINGS: Final = (*PROBABILITY_SETTINGS, *DELAY_SETTINGS, "cut")
"""Every setting :meth:`LineNoise.configure` accepts, in display order."""

MAX_DELAY_MS: Final = 3_600_000
"""Upper bound of ``delay_ms`` and ``jitter_ms`` (one hour), to catch unit mistakes."""


def _check_probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    result = float(value)
    if not math.isfinite(result) or not 0.0 <= result <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return result


def _check_delay(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number of milliseconds, got {value!r}")
    if not 0 <= value <= MAX_DELAY_MS:
        raise ValueError(f"{name} must be between 0 and {MAX_DELAY_MS} ms, got {value!r}")
    return value


def _check_cut(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"cut must be True or False, got {value!r}")
    return value


def _check(name: str, value: object) -> object:
    if name in PROBABILITY_SETTINGS:
        return _check_probability(name, value)
    if name in DELAY_SETTINGS:
        return _check_delay(name, value)
    if name == "cut":
        return _check_cut(value)
    raise ValueError(f"unknown line noise setting {name!r}; valid settings: {', '.join(SETTINGS)}")


class LineNoise:
    """Fault injector for one direction of a serial byte stream, on simulated time (ms).

    Settings are plain attributes, validated on every assignment (``ValueError`` naming
    the setting and the value):

    - ``bit_error``: probability per byte that one random bit of it flips;
    - ``drop``: probability per byte that it is lost;
    - ``duplicate``: probability per byte that it arrives twice;
    - ``delay_ms``: every byte arrives this long after it was pushed;
    - ``jitter_ms``: plus a uniformly random 0..jitter_ms, but never before the byte
      before it (order is preserved);
    - ``cut``: while True every byte pushed is lost.

    Changing a setting affects bytes pushed afterwards; bytes already on the line are
    delivered as they were scheduled.
    """

    def __init__(self, seed: int) -> None:
        self.seed: Final = seed
        self._rng = random.Random(seed)
        self._bit_error = 0.0
        self._drop = 0.0
        self._duplicate = 0.0
        self._delay_ms = 0
        self._jitter_ms = 0
        self._cut = False
        # (due time, bytes) in delivery order; due times never decrease.
        self._queue: deque[tuple[int, bytes]] = deque()
        self._pending = 0
        self._last_due: int | None = None
        self._stats = {
            "pushed": 0,
            "delivered": 0,
            "dropped": 0,
            "duplicated": 0,
            "flipped": 0,
            "cut_lost": 0,
        }

    # -- settings -------------------------------------------------------------------

    @property
    def bit_error(self) -> float:
        return self._bit_error

    @bit_error.setter
    def bit_error(self, value: float) -> None:
        self._bit_error = _check_probability("bit_error", value)

    @property
    def drop(self) -> float:
        return self._drop

    @drop.setter
    def drop(self, value: float) -> None:
        self._drop = _check_probability("drop", value)

    @property
    def duplicate(self) -> float:
        return self._duplicate

    @duplicate.setter
    def duplicate(self, value: float) -> None:
        self._duplicate = _check_probability("duplicate", value)

    @property
    def delay_ms(self) -> int:
        return self._delay_ms

    @delay_ms.setter
    def delay_ms(self, value: int) -> None:
        self._delay_ms = _check_delay("delay_ms", value)

    @property
    def jitter_ms(self) -> int:
        return self._jitter_ms

    @jitter_ms.setter
    def jitter_ms(self, value: int) -> None:
        self._jitter_ms = _check_delay("jitter_ms", value)

    @property
    def cut(self) -> bool:
        return self._cut

    @cut.setter
    def cut(self, value: bool) -> None:
        self._cut = _check_cut(value)

    @property
    def settings(self) -> dict[str, Any]:
        """The current settings, keyed as :meth:`configure` takes them."""
        return {
            "bit_error": self._bit_error,
            "drop": self._drop,
            "duplicate": self._duplicate,
            "delay_ms": self._delay_ms,
            "jitter_ms": self._jitter_ms,
            "cut": self._cut,
        }

    @property
    def perfect(self) -> bool:
        """True when the line currently neither loses, alters, repeats nor delays bytes."""
        return not (
            self._bit_error
            or self._drop
            or self._duplicate
            or self._delay_ms
            or self._jitter_ms
            or self._cut
        )

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change several settings at once and return all current settings.

        Every value is checked before any is applied, so a bad one changes nothing.
        """
        checked = {name: _check(name, value) for name, value in settings.items()}
        for name, value in checked.items():
            setattr(self, "_" + name, value)
        return self.settings

    def clear(self) -> dict[str, Any]:
        """Back to a perfect line (bytes already on the line stay scheduled)."""
        return self.configure(
            bit_error=0.0, drop=0.0, duplicate=0.0, delay_ms=0, jitter_ms=0, cut=False
        )

    # -- data -----------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """Counters in bytes: pushed, delivered, dropped, duplicated, flipped, cut_lost."""
        return dict(self._stats)

    @property
    def pending(self) -> int:
        """Bytes on the line that have not been pulled yet."""
        return self._pending

    @property
    def next_due_ms(self) -> int | None:
        """When the next byte arrives (simulated ms), or None when the line is empty."""
        return self._queue[0][0] if self._queue else None

    def push(self, data: bytes, now_ms: int) -> None:
        """Put bytes on the line at simulated time ``now_ms``."""
        if not data:
            return
        stats = self._stats
        stats["pushed"] += len(data)
        if self._cut:
            stats["cut_lost"] += len(data)
            return
        floor = now_ms if self._last_due is None else max(now_ms, self._last_due)
        if self.perfect:
            self._enqueue(floor, bytes(data))
            return
        rng = self._rng
        drop, bit_error, duplicate = self._drop, self._bit_error, self._duplicate
        delay, jitter = self._delay_ms, self._jitter_ms
        due = floor
        run = bytearray()
        run_due = floor
        for byte in data:
            if drop and rng.random() < drop:
                stats["dropped"] += 1
                continue
            if bit_error and rng.random() < bit_error:
                byte ^= 1 << rng.randrange(8)
                stats["flipped"] += 1
            copies = 1
            if duplicate and rng.random() < duplicate:
                stats["duplicated"] += 1
                copies = 2
            due = max(due, now_ms + delay + (rng.randint(0, jitter) if jitter else 0))
            if run and due != run_due:
                self._enqueue(run_due, bytes(run))
                run.clear()
            run_due = due
            run.extend((byte,) * copies)
        if run:
            self._enqueue(run_due, bytes(run))

    def _enqueue(self, due: int, chunk: bytes) -> None:
        self._queue.append((due, chunk))
        self._pending += len(chunk)
        self._last_due = due

    def pull(self, now_ms: int) -> bytes:
        """Take the bytes that have arrived by simulated time ``now_ms``."""
        queue = self._queue
        if not queue or queue[0][0] > now_ms:
            return b""
        out = bytearray()
        while queue and queue[0][0] <= now_ms:
            out += queue.popleft()[1]
        self._pending -= len(out)
        self._stats["delivered"] += len(out)
        return bytes(out)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"LineNoise(seed={self.seed!r}, {shown}, pending={self._pending})"
