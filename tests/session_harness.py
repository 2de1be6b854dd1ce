"""Two sessions joined by hand: each written frame is captured so a test can drop,
replay or tamper with it before delivering it. The clock is simulated."""

from __future__ import annotations

from protocol import cobs, session
from protocol.loopback import Mailbox, Rng, pump
from protocol.messages import BOARD, Catalog
from protocol.selftest import IDENTITY, TEST_KEY


class Pair:
    """A host (initiator) and a board (responder) with manual delivery."""

    def __init__(
        self,
        host_key: bytes | None = TEST_KEY,
        board_key: bytes | None = TEST_KEY,
        seed: int = 1,
        catalog: Catalog = BOARD,
        **board_options: object,
    ) -> None:
        self.rng = Rng(seed)
        self.now = 0
        self._board_box, self._host_box = Mailbox(), Mailbox()
        self.to_board = self._board_box.frames  # frames on their way, for tests to tamper
        self.to_host = self._host_box.frames
        self.host_states: list[str] = []
        self.board_states: list[str] = []
        self.host = session.Session(
            session.INITIATOR, catalog, self._board_box.write, self.rng.bytes, key=host_key,
            on_state=lambda s, r: self.host_states.append(session.STATE_NAMES[s]),
        )  # fmt: skip
        self.board = session.Session(
            session.RESPONDER, catalog, self._host_box.write, self.rng.bytes, key=board_key,
            identity=list(IDENTITY),
            on_state=lambda s, r: self.board_states.append(session.STATE_NAMES[s]),
            **board_options,  # type: ignore[arg-type]
        )  # fmt: skip

    def flush(self) -> None:
        """Deliver everything both ways (and run timers) until the wires are quiet."""
        pump(self.host, self._host_box, self.board, self._board_box, self.now, rounds=20)

    def advance(self, ms: int, step: int = 10, deliver: bool = True) -> None:
        """Let simulated time pass, delivering traffic (or dropping it all)."""
        end = self.now + ms
        while self.now < end:
            self.now += step
            if deliver:
                self.flush()
            else:
                self.to_board.clear()
                self.to_host.clear()
                self.board.poll(self.now)
                self.host.poll(self.now)

    def connect(self) -> None:
        self.host.connect(self.now)
        self.flush()


def unwrap(wire: bytes) -> bytearray:
    """The decoded frame inside one wire frame."""
    return bytearray(cobs.decode(wire))


def wrap(raw: bytes | bytearray) -> bytes:
    return cobs.encode(raw)
