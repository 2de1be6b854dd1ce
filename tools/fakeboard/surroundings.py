"""What the flashed firmware's input pins read on the fake board.

Idle levels (every door closed, no item, nothing pressed) from the board's own
``/amtomat.json``, through the simulator's ``BoardWorld``. With ``door_follows_pulse`` a
channel whose solenoid was energised long enough pops its door open, and the door closes
again DOOR_OPEN_MS later, as if a person took the item and shut it. Without a usable
config the pins are left alone (they read their pulls).
"""

from __future__ import annotations

import logging
from typing import Final

from tools.sim.world import BoardWorld, Pin

log = logging.getLogger(__name__)

DOOR_OPEN_MS: Final = 2000


class Surroundings:
    """Input levels for one boot of the firmware; times are board ms."""

    def __init__(self, config: bytes | None, door_follows_pulse: bool) -> None:
        self.world: BoardWorld | None = None
        self.door_follows_pulse = door_follows_pulse
        if config is not None:
            try:
                self.world = BoardWorld(config)
            except Exception as exc:  # the firmware reports the same error at its handshake
                log.info("fake board: no input levels, the config does not parse: %s", exc)
        self._sent: dict[Pin, int] = {}
        self._opened: dict[int, int] = {}  # channel -> board ms its door opened

    def changed_levels(self, now: int) -> dict[Pin, int]:
        """Levels that changed since the last call (all of them at the first)."""
        world = self.world
        if world is None:
            return {}
        world.step(now)
        if self.door_follows_pulse:
            for channel, door in world.doors.items():
                if not door.open:
                    self._opened.pop(channel, None)
                    continue
                opened = self._opened.setdefault(channel, now)
                if now - opened >= DOOR_OPEN_MS:
                    world.set_door(channel, False)
                    del self._opened[channel]
        levels = world.pin_levels()
        changed = {pin: level for pin, level in levels.items() if self._sent.get(pin) != level}
        self._sent.update(changed)
        return changed

    def outputs(self, edges: list[tuple[int, Pin, int]]) -> None:
        """Output edges the firmware reported: (board ms, pin, physical level)."""
        if self.world is not None and self.door_follows_pulse:
            self.world.apply_edges(edges)
