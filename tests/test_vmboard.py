"""VMBoard: the real firmware in the npm MicroPython VM on the fake ``machine``, driven
tick by tick from the host, with a real host session where the firmware's app is needed."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from typing import Any

import pytest

from protocol import session as S
from protocol.messages import BOARD, OK, REPLY_ID
from tools.mpvm import find_node
from tools.sim.vmboard import Edge, Pin, TickResult, VMBoard, VMBoardError

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_node() is None, reason="node is not installed (npm MicroPython VM)"),
]


KEY = bytes(range(100, 132))
PULSE = 0x10
MAINTENANCE = 0x16
RESET = 0x17
# outputs: GPIO 2 (ch1), GPIO 6 inverted (ch2), mcp0:A0 (ch3), mcp0:A1 inverted (ch4)
OUT_PINS: tuple[Pin, ...] = (2, 6, "mcp0:A0", "mcp0:A1")
OFF: dict[Pin, int] = {2: 0, 6: 1, "mcp0:A0": 0, "mcp0:A1": 1}
RECOVERY_PIN = 22


def board_json(**overrides: Any) -> bytes:
    d: dict[str, Any] = {
        "version": 1,
        "board_id": "vm-test",
        "repl_window_ms": 0,
        "recovery_pin": RECOVERY_PIN,
        "expanders": [{"i2c": 0, "sda": 4, "scl": 5, "address": 0x20}],
        "channels": [
            {"channel": 1, "solenoid": 2, "door": 3},
            {"channel": 2, "solenoid": 6, "door": 7, "invert": ["solenoid"]},
            {"channel": 3, "solenoid": "mcp0:A0", "door": "mcp0:B0"},
            {"channel": 4, "solenoid": "mcp0:A1", "door": "mcp0:B1", "invert": ["solenoid"]},
        ],
    }
    d.update(overrides)
    return json.dumps(d).encode()


# A stand-in for BoardApp where a test needs the runtime without the protocol.
CRASHING_APP = b"""
class BoardApp:
    def __init__(self, cfg, info, key, write, random):
        self.inputs = bytearray(len(cfg.inputs))
        self.outputs = bytearray(len(cfg.outputs))
        self.action = None
        self.steps = 0
    def feed(self, data, now):
        pass
    def step(self, now):
        self.steps += 1
        self.outputs[0] = 1
        if self.steps == 3:
            raise RuntimeError("stand-in app gives up")
"""


@pytest.fixture
def board() -> Iterator[VMBoard]:
    with VMBoard(board_json(), KEY) as b:
        yield b


def levels_now(edges: list[Edge], start: dict[Pin, int] | None = None) -> dict[Pin, int]:
    out = dict(start or {})
    for _t, pin, level in edges:
        out[pin] = level
    return out


class Host:
    """A real host session (protocol's initiator) talking to a VMBoard."""

    def __init__(self, board: VMBoard, key: bytes | None = KEY, now: int = 0) -> None:
        self.board = board
        self.now = now
        self._out = bytearray()
        self.session = S.Session(S.INITIATOR, BOARD, self._out.extend, os.urandom, key=key)
        self.replies: dict[int, list[Any]] = {}
        self.results: list[TickResult] = []
        self.levels: dict[Pin, int] = {}

    def tick(self, ms: int = 5, levels: dict[Pin, int] | None = None) -> TickResult:
        self.now += ms
        rx = bytes(self._out)
        self._out.clear()
        result = self.board.tick(self.now, rx, levels)
        self.results.append(result)
        self.levels = levels_now(result.edges, self.levels)
        if result.tx:
            self.session.feed(result.tx, self.now)
        if self.session.state in (S.IDLE, S.DOWN):
            self.session.connect(self.now)
        msg = self.session.receive()
        while msg is not None:
            if msg[0] == REPLY_ID:
                self.replies[int(msg[1])] = list(msg)
            msg = self.session.receive()
        self.session.poll(self.now)
        return result

    def run(self, ms: int, step: int = 5) -> None:
        end = self.now + ms
        while self.now < end and self.board.state == "running":
            self.tick(step)

    def connect(self, limit_ms: int = 3000) -> None:
        end = self.now + limit_ms
        while not self.session.established and self.now < end:
            self.tick()
        assert self.session.established, self.session.reason

    def request(self, msg: list[Any], wait_ms: int = 1000) -> list[Any]:
        cid = self.session.request(msg)
        end = self.now + wait_ms
        while cid not in self.replies and self.now < end:
            self.tick()
        assert cid in self.replies, f"no reply to {msg!r}"
        return self.replies[cid]


# -- runtime glue (no app logic needed beyond constructing it) -----------------------------


def test_outputs_are_off_at_boot_and_idle_ticks_change_nothing(board: VMBoard) -> None:
    assert board.state == "running"
    assert board.info is not None
    assert board.info["reset_reason"] == "power"
    assert board.info["config_error"] is None
    assert board.info["fw_hash"] == "dev"
    first = board.tick(5)
    assert levels_now(first.edges) == {6: 1, "mcp0:A1": 1}  # inverted outputs driven off
    for t in range(10, 500, 5):
        r = board.tick(t, b"", {3: 1} if t == 10 else None)
        assert r.edges == [] and r.action is None and r.wdt_ok and r.state == "running"
        assert r.tx == b""  # a board never speaks first


def test_garbage_from_the_host_moves_nothing(board: VMBoard) -> None:
    rng = random.Random(7)
    levels: dict[Pin, int] = {}
    t = 0
    for _ in range(200):
        t += 5
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        r = board.tick(t, junk)
        levels = levels_now(r.edges, levels)
        assert r.action is None and r.wdt_ok and r.state == "running"
    assert all(levels.get(p, OFF[p]) == OFF[p] for p in OUT_PINS)
    host = Host(board, now=t)  # and a real host still gets a session
    host.connect()
    assert all(host.levels.get(p, OFF[p]) == OFF[p] for p in OUT_PINS)


def test_power_cut_and_power_on_report_power(board: VMBoard) -> None:
    board.tick(5)
    assert board.power_cut() == [(5, 6, 0), (5, "mcp0:A1", 0)]  # the high (inverted) ones
    assert board.state == "off" and not board.running
    with pytest.raises(VMBoardError):
        board.tick(10)
    assert board.read_file("/amtomat.key") == KEY
    board.power_on()
    assert board.info is not None and board.info["reset_reason"] == "power"
    assert board.boots == ["power", "power"]
    assert levels_now(board.tick(20).edges) == {6: 1, "mcp0:A1": 1}
    board.reboot("hard")
    assert board.info is not None and board.info["reset_reason"] == "hard"
    # GPIO 6 fell with the reset and is driven off again at boot; the expander kept its
    # latches, so nothing changed there
    assert board.tick(25).edges == [(20, 6, 0), (20, 6, 1)]


def test_a_crash_resets_and_the_next_boot_says_crash() -> None:
    with VMBoard(
        board_json(),
        None,
        app="crashing_app",
        extra_files={"/lib/crashing_app.py": CRASHING_APP},
    ) as board:
        assert (5, 2, 1) in board.tick(5).edges  # the stand-in turns output 0 on
        board.tick(10)
        r = board.tick(15)
        assert r.action == "crash" and r.state == "dead"
        assert r.error is not None and "stand-in app gives up" in r.error
        assert (15, 2, 0) in r.edges  # outputs off before the reset
        crash_file = board.read_file("/amtfw_crash.txt")
        assert crash_file is not None
        assert crash_file.startswith(b"RuntimeError: stand-in app gives up")
        board.reboot("soft")
        assert board.info is not None
        assert board.info["reset_reason"] == "crash"
        assert board.info["crash"].startswith("RuntimeError: stand-in app gives up")
        assert board.read_file("/amtfw_crash.txt") is None


def test_recovery_jumper_keeps_the_firmware_in_the_repl(board: VMBoard) -> None:
    board.tick(5, levels={RECOVERY_PIN: 0})
    board.reboot("hard")
    assert board.state == "repl" and board.info is None
    r = board.tick(10)
    assert b">>> " in r.tx and b"recovery pin 22" in r.tx
    for t in range(15, 20_000, 1000):
        assert board.tick(t).wdt_ok  # no watchdog runs in the REPL
    board.tick(20_000, levels={RECOVERY_PIN: 1})
    board.reboot("hard")
    assert board.state == "running"


def test_ctrl_c_inside_the_repl_window_stops_the_firmware() -> None:
    with VMBoard(board_json(repl_window_ms=2000), KEY) as board:
        r = board.tick(100, b"\x7e\x03\x00")
        assert r.action == "interrupt" and r.state == "repl"
        assert r.tx.endswith(b">>> ")
    with VMBoard(board_json(repl_window_ms=2000), KEY) as board:
        board.tick(2000)  # the window ends: keyboard interrupt off, port read
        r = board.tick(2005, b"\x03")  # now 0x03 is just data
        assert r.action is None and r.state == "running"


# -- with the firmware's app and a real host session ------------------------------------


def test_handshake_pulse_and_reset_against_a_real_host(board: VMBoard) -> None:
    host = Host(board)
    host.connect()
    peer = host.session.peer
    assert peer["reset_reason"] == "power" and peer["board_id"] == "vm-test"
    assert peer["config_error"] is None
    reply = host.request([PULSE, 1, 100])
    assert reply[2] == OK
    host.run(300)
    pulse = [(t, lv) for r in host.results for (t, p, lv) in r.edges if p == 2]
    assert [lv for _, lv in pulse] == [1, 0]
    assert 100 <= pulse[1][0] - pulse[0][0] <= 110
    assert host.request([RESET])[2] == OK
    host.run(2000)
    assert host.results[-1].action == "reset" and board.state == "dead"
    board.reboot("soft")
    host2 = Host(board, now=host.now)
    host2.connect()
    assert host2.session.peer["reset_reason"] == "soft"


def test_maintenance_repl_feeds_the_watchdog_for_ten_minutes(board: VMBoard) -> None:
    host = Host(board)
    host.connect()
    assert host.request([MAINTENANCE, "repl"])[2] == OK
    host.run(2000)
    assert board.state == "repl" and host.results[-1].action == "repl"
    assert host.results[-1].tx.endswith(b">>> ")
    start = host.now
    t = start
    while t < start + 600_000 - 2000:
        t += 10_000
        assert board.tick(t).wdt_ok
    t = start + 600_000 + 10_000
    assert not board.tick(t).wdt_ok
    board.reboot("watchdog")
    assert board.info is not None and board.info["reset_reason"] == "watchdog"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        VMBoard(board_json(), b"short")
    with VMBoard(
        board_json(), None, app="crashing_app", extra_files={"/lib/crashing_app.py": CRASHING_APP}
    ) as board:
        with pytest.raises(ValueError):
            board.reboot("sideways")
        with pytest.raises(VMBoardError):
            board.power_on()
