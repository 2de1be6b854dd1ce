"""The whole terminal on one simulated clock: the real firmware in the simulator, real
board links, the real controller with its SQLite file, and a kiosk speaking the bridge
protocol through a real BridgeConnection, all advanced together tick by tick.

Nothing here is a fake of our own layers: the rig only moves bytes between them in
memory (as a pty would) and moves time forward.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.api import Origin, Result, Status
from controller.boardlink import BoardLink, LinkState
from controller.config import Config, load
from controller.daemon import bridge_identity
from controller.store import Store
from controller.terminal import TerminalController
from controller.timers import Clock
from host_bridge.connection import BridgeConnection
from protocol import session as S
from protocol.messages import REPLY_ID
from tools.sim.simulator import Simulator

UTC0 = 1_790_000_000.0  # 2026-09-21, a Monday: office hours apply
DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo-terminal.toml"
STAFF_PIN = "246810"  # the demo file's PIN of staff "mueller"
ADMIN_PIN = "135790"  # and of "admin"


def demo_config() -> Config:
    """The demo terminal with pickup timings short enough for simulated waits."""
    cfg = load(DEMO)
    pickup = dataclasses.replace(cfg.pickup, deposit_s=20, door_open_s=3, take_s=30)
    return dataclasses.replace(cfg, pickup=pickup)


@contextmanager
def demo_rig(db: Path) -> Iterator[TerminalRig]:
    """The demo terminal with fresh keys, its database at db, boards ready and a kiosk
    connected."""
    cfg = demo_config()
    keys: dict[str, bytes | None] = {b.board_id: os.urandom(32) for b in cfg.terminal.boards}
    with Simulator(cfg.terminal, keys, tick_ms=5, seed=3) as sim:
        rig = TerminalRig(cfg, sim, keys, db, os.urandom(32))
        rig.ready()
        yield rig


@dataclass
class Kiosk:
    """The kiosk's end of the bridge: protocol's initiator session with the kiosk catalog."""

    rig: TerminalRig
    key: bytes | None
    peer: str = "test-kiosk"
    replies: dict[int, list[Any]] = field(default_factory=dict)
    notices: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    to_bridge: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        from host_bridge.catalog import KIOSK

        self.catalog = KIOSK
        rng = random.Random(11)
        self.session = S.Session(
            S.INITIATOR, KIOSK, self._write, rng.randbytes, key=self.key, peer_name=self.peer
        )

    def _write(self, view: memoryview) -> None:
        self.to_bridge += bytes(view)

    def pump(self, now: int, from_bridge: bytes) -> None:
        """One tick of the kiosk side."""
        s = self.session
        if from_bridge:
            s.feed(from_bridge, now)
        if s.state in (S.IDLE, S.DOWN):
            s.connect(now)
        msg = s.receive()
        while msg is not None:
            if msg[0] == REPLY_ID:
                self.replies[msg[1]] = msg
            else:
                name = self.catalog.name_of(msg[0])
                self.notices.append((name, self.catalog.to_dict(msg)))
            msg = s.receive()
        s.poll(now)

    def call(self, request: str, limit_ms: int = 5000, **args: Any) -> Result:
        """Send a request through the bridge and wait (on simulated time) for its reply."""
        mid = self.catalog.id_of(request)
        names = [f[0] for f in self.catalog.spec(mid)[3]][1:]
        cid = self.session.request([mid] + [args.get(n) for n in names])
        self.rig.wait(lambda: cid in self.replies, limit_ms)
        reply = self.replies.pop(cid)
        return Result(Status(reply[2]), reply[3], reply[4] if len(reply) > 4 else None)

    def done(self, op: int) -> dict[str, Any] | None:
        """The done notice of op, once it arrived."""
        for name, fields in self.notices:
            if name == "done" and fields["op"] == op:
                return fields
        return None

    def steps(self, op: int) -> list[str]:
        """The progress steps of op so far."""
        return [f["step"] for n, f in self.notices if n == "progress" and f["op"] == op]


class TerminalRig:
    """See the module docstring. ``restart()`` drops the controller as a crash would and
    builds a new one on the same database, boards and clock."""

    def __init__(
        self,
        config: Config,
        sim: Simulator,
        keys: dict[str, bytes | None],
        db: Path,
        kiosk_key: bytes | None = None,
    ) -> None:
        self.config = config
        self.sim = sim
        self.keys = keys
        self.db = db
        self.kiosk_key = kiosk_key
        self.utc_offset = 0.0
        self.clock = Clock(
            now_ms=lambda: self.sim.now, utc=lambda: UTC0 + self.utc_offset + self.sim.now / 1000
        )
        self.unplugged: set[str] = set()
        self.kiosk: Kiosk | None = None
        self._start()
        sim.on_tick = self._tick

    def _start(self) -> None:
        self.store = Store(self.db, utc=self.clock.utc)
        self.ctl = TerminalController(self.config, self.store, self.clock)
        self.links: dict[str, BoardLink] = {}
        for spec in self.config.terminal.boards:
            link = BoardLink(
                spec,
                self.keys.get(spec.board_id),
                self._writer(spec.board_id),
                random=random.Random(spec.address).randbytes,
                on_event=self.ctl.on_board_event,
                on_state=self.ctl.on_link_state,
                on_inputs=self.ctl.on_inputs,
            )
            link.port_opened(self.sim.now)
            self.ctl.attach(link)
            self.links[spec.board_id] = link
        self.bridge_out = bytearray()
        self.bridge = BridgeConnection(
            self.ctl,
            self.kiosk_key,
            self._bridge_write,
            random=random.Random(5).randbytes,
            identity=bridge_identity(self.config),
            now_ms=lambda: self.sim.now,
        )

    def _writer(self, board_id: str) -> Callable[[bytes], None]:
        def write(data: bytes) -> None:
            if board_id not in self.unplugged:
                self.sim.write(board_id, bytes(data))

        return write

    def _bridge_write(self, data: bytes | memoryview) -> None:
        self.bridge_out += bytes(data)

    def _tick(self, now: int) -> None:
        for board_id, link in self.links.items():
            data = self.sim.read(board_id)
            if data and board_id not in self.unplugged:
                link.feed(data, now)
            link.poll(now)
        self.ctl.step(now)
        if self.kiosk is not None:
            out = bytes(self.bridge_out)
            self.bridge_out.clear()
            self.kiosk.pump(now, out)
            if self.kiosk.to_bridge:
                data = bytes(self.kiosk.to_bridge)
                self.kiosk.to_bridge.clear()
                self.bridge.feed(data, now)
        self.bridge.poll(now)

    # ----- driving -------------------------------------------------------------------

    def wait(self, cond: Callable[[], bool], limit_ms: int = 10000) -> None:
        """Advance until cond() holds; AssertionError after limit_ms of simulated time."""
        end = self.sim.now + limit_ms
        while not cond():
            assert self.sim.now < end, f"not reached within {limit_ms} ms"
            self.sim.tick()

    def ready(self, limit_ms: int = 10000) -> None:
        """Advance until every board link is READY and a kiosk is connected."""
        if self.kiosk is None:
            self.kiosk = Kiosk(self, self.kiosk_key)
        self.wait(
            lambda: (
                all(link.state == LinkState.READY for link in self.links.values())
                and self.kiosk is not None
                and self.kiosk.session.established
            ),
            limit_ms,
        )
        self.sim.advance(100)  # the input reports arrive

    def call(self, request: str, **args: Any) -> Result:
        """A request as the kiosk (through the bridge)."""
        assert self.kiosk is not None
        return self.kiosk.call(request, **args)

    def staff(self, staff_id: str, pin: str) -> None:
        """Log the kiosk connection in as staff."""
        result = self.call("staff_login", staff=staff_id, pin=pin)
        assert result.ok, result

    def local(self, request: str, origin: Origin | None = None, **args: Any) -> Result:
        """A request straight to the controller (for checks that need no kiosk)."""
        return self.ctl.call(request, args, origin or Origin("test"))

    def restart(self) -> None:
        """Drop the controller as a crash would (no clean-up) and start a new one."""
        self.store.db.close()
        self.kiosk = None
        self._start()

    def unplug(self, board_id: str, on: bool) -> None:
        """Pull (or plug back) a board's cable: no bytes either way."""
        if on:
            self.unplugged.add(board_id)
        else:
            self.unplugged.discard(board_id)
        self.sim.cut_link(board_id, on)
