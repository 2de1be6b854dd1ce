"""A minimal host for simulator tests: protocol's initiator session on the simulator's clock.

It is what the daemon will do in a few lines: connect, send requests under command ids,
store events by (boot_id, eid) and acknowledge them, and after a reconnect re-send an
unanswered request under its cid only when the board did not reboot in between (after
a reboot its outcome is unknown and it is never repeated).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from protocol import session as S
from protocol.messages import BOARD
from tools.sim.simulator import Simulator

REPLY = 0x40
EVENT = 0x60
EVENTS_ACK = 0x61


@dataclass
class Pending:
    """A request waiting for its reply."""

    msg: list[Any]
    boot_id: int | None


@dataclass
class SimHost:
    """Host side of one board of a simulator."""

    sim: Simulator
    board_id: str
    key: bytes | None
    seed: int = 7
    session: S.Session = field(init=False)
    replies: dict[int, list[Any]] = field(default_factory=dict)
    events: list[tuple[int, list[Any]]] = field(default_factory=list)  # (boot_id, event)
    unknown: list[int] = field(default_factory=list)  # cids whose outcome is unknown
    pending: dict[int, Pending] = field(default_factory=dict)
    duplicates: int = 0
    sent_frames: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.session = S.Session(
            S.INITIATOR,
            BOARD,
            self._write,
            rng.randbytes,
            key=self.key,
            addr=self.sim.boards[self.board_id].spec.address,
            on_state=self._on_state,
        )
        self.boot_id: int | None = None
        self._last: dict[int, int] = {}  # boot_id -> last eid stored
        self._acked = 0
        self.sim.on_tick = self.tick

    def _write(self, view: memoryview) -> None:
        data = bytes(view)
        self.sent_frames.append(data)
        self.sim.write(self.board_id, data)

    def _on_state(self, state: int, reason: str) -> None:
        if state != S.ESTABLISHED:
            return
        boot_id = self.session.peer.get("boot_id")
        assert isinstance(boot_id, int)
        rebooted = self.boot_id is not None and boot_id != self.boot_id
        self.boot_id = boot_id
        self._acked = 0
        for cid, p in list(self.pending.items()):
            if rebooted or p.boot_id != boot_id:
                self.unknown.append(cid)  # it may or may not have acted: never repeat
                del self.pending[cid]
            else:
                self.session.resend_request(p.msg, cid)

    def tick(self, now: int) -> None:
        """Run on every simulator tick."""
        s = self.session
        data = self.sim.read(self.board_id)
        if data:
            s.feed(data, now)
        if s.state in (S.IDLE, S.DOWN):
            s.connect(now)
        msg = s.receive()
        while msg is not None:
            self._on_message(msg)
            msg = s.receive()
        if s.established and self.boot_id is not None:
            last = self._last.get(self.boot_id, 0)
            if last > self._acked:
                s.send([EVENTS_ACK, last])
                self._acked = last
        s.poll(now)

    def _on_message(self, msg: list[Any]) -> None:
        if msg[0] == REPLY:
            self.replies[msg[1]] = msg
            self.pending.pop(msg[1], None)
        elif msg[0] == EVENT:
            assert self.boot_id is not None
            last = self._last.get(self.boot_id, 0)
            if msg[1] <= last:
                self.duplicates += 1
            else:
                assert msg[1] == last + 1, f"event {msg[1]} after {last}: a gap"
                self._last[self.boot_id] = msg[1]
                self.events.append((self.boot_id, msg))

    def request(self, msg: list[Any]) -> int:
        """Send a request ([id, fields...] without cid); returns its cid."""
        cid = self.session.request(msg)
        self.pending[cid] = Pending(msg, self.boot_id)
        return cid

    def wait(self, cond: Any, limit_ms: int = 10000) -> None:
        """Advance the simulator until cond() holds; AssertionError after limit_ms."""
        end = self.sim.now + limit_ms
        while not cond():
            assert self.sim.now < end, f"not reached within {limit_ms} ms"
            self.sim.tick()

    def connect(self, limit_ms: int = 5000) -> None:
        """Advance until the session is established."""
        self.wait(lambda: self.session.established, limit_ms)

    def call(self, msg: list[Any], limit_ms: int = 5000) -> list[Any]:
        """Request and wait for the reply."""
        cid = self.request(msg)
        self.wait(lambda: cid in self.replies, limit_ms)
        return self.replies[cid]

    def kinds(self, unit: str | None = None, channel: int | None = None) -> list[str]:
        """Event kinds stored, optionally for one unit/channel."""
        return [
            e[2]
            for _, e in self.events
            if (unit is None or e[3] == unit) and (channel is None or e[4] == channel)
        ]
