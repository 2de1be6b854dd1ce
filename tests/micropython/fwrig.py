"""A board (the real firmware logic) and a host session on one simulated clock.

Runs on MicroPython and CPython. The host side is protocol's own initiator session;
the wire between them is lossless unless a test drops bytes on purpose.
"""

import json

from amtfw import config as C
from amtfw.app import BoardApp
from protocol import session as S
from protocol.loopback import Mailbox, Rng
from protocol.messages import BOARD
from protocol.selftest import TEST_KEY

PULSE = 0x10
LED = 0x11
STRIKE = 0x12
SLOT = 0x13
INPUTS = 0x14
DIAGNOSTICS = 0x15
MAINTENANCE = 0x16
RESET = 0x17
REPLY = 0x40
EVENT = 0x60
EVENTS_ACK = 0x61


def board_config(**overrides):
    """A four-channel board with a return slot, an entrance, tamper and service door."""
    d = {
        "version": 1,
        "board_id": "rig",
        "address": 0,
        "channels": [
            {"channel": 1, "solenoid": 2, "door": 3, "item": 4, "led": 5},
            {"channel": 2, "solenoid": 6, "door": 7},
            {"channel": 3, "solenoid": 8, "door": 9, "invert": ["door"]},
            {"channel": 4, "solenoid": 10, "door": 11},
        ],
        "return_slot": {"solenoid": 12, "flap": 13, "deposit": 14},
        "entrance": {"strike": 15, "grant": 16, "door": 17, "exit": 18},
        "tamper": {"pin": 19},
        "service_door": {"pin": 20},
    }
    for k in overrides:
        if overrides[k] is None:
            d.pop(k, None)
        else:
            d[k] = overrides[k]
    return d


class Rig:
    """Board app + host session; ``run`` advances both in steps of ``step_ms``."""

    def __init__(self, cfg=None, key=TEST_KEY, host_key=None, raw=None, seed=1):
        if raw is None:
            raw = json.dumps(board_config() if cfg is None else cfg).encode()
        error = None
        try:
            parsed = C.parse(raw)
        except C.ConfigError as exc:
            parsed = C.empty()
            error = str(exc)
        self.cfg = parsed
        self.rng = Rng(seed)
        self.to_host = Mailbox()
        self.to_board = Mailbox()
        info = {
            "fw_hash": "test",
            "config_hash": C.config_hash(raw),
            "config_error": error,
            "reset_reason": "power",
            "boot_id": 4711,
            "crash": None,
            "unique_id": "e66038b713",
        }
        self.app = BoardApp(parsed, info, key, self.to_host.write, self.rng.bytes)
        self.host = S.Session(
            S.INITIATOR,
            BOARD,
            self.to_board.write,
            self.rng.bytes,
            key=host_key if host_key is not None else key,
            addr=parsed.address,
        )
        self.now = 0
        self.host_alive = True  # False: the host neither sends nor runs its timers
        self.auto_ack = True
        self.replies = {}  # cid -> reply message
        self.events = []  # event messages, in arrival order, duplicates dropped
        self.last_eid = 0
        self.edges = []  # (t, output index, level)
        self._levels = bytes(len(self.app.outputs))
        self.max_energised = 0
        self.tap = None  # called with each frame the host sends, before delivery

    # ----- inputs --------------------------------------------------------------------

    def input_index(self, role, unit, channel=None):
        for i in range(len(self.cfg.inputs)):
            spec = self.cfg.inputs[i]
            if spec[2] == role and spec[3] == unit and spec[4] == channel:
                return i
        raise KeyError((role, unit, channel))

    def set_input(self, role, unit, channel, level):
        self.app.inputs[self.input_index(role, unit, channel)] = level

    def door(self, channel, level):
        self.set_input(C.IN_DOOR, C.U_CHANNEL, channel, level)

    def out(self, unit, channel=None):
        return self.cfg.output_index(unit, channel)

    def level(self, out):
        return self.app.outputs[out]

    # ----- time ----------------------------------------------------------------------

    def tick(self, step_ms=1):
        self.now += step_ms
        now = self.now
        frames = self.to_board.frames
        while frames:
            f = frames.pop(0)
            if self.tap is not None:
                f = self.tap(f)
            if f:
                self.app.feed(f, now)
        self.app.step(now)
        self._record(now)
        if self.host_alive:
            self.to_host.deliver(self.host, now)
            if self.host.state in (S.IDLE, S.DOWN):
                self.host.connect(now)
            self._host_receive()
            self.host.poll(now)
        else:
            self.to_host.frames = []
            self.to_board.frames = []

    def run(self, ms, step_ms=1, until=None):
        end = self.now + ms
        while self.now < end:
            self.tick(step_ms)
            if until is not None and until():
                return True
        return until is None

    def connect(self, limit_ms=2000):
        ok = self.run(limit_ms, 1, lambda: self.host.established and self.app.session.established)
        assert ok, "no session: host %s, board %s" % (self.host.reason, self.app.session.reason)

    def _record(self, now):
        levels = self.app.outputs
        on = 0
        for i in range(len(levels)):
            if levels[i] != self._levels[i]:
                self.edges.append((now, i, levels[i]))
            if levels[i] and self.cfg.outputs[i][2] in (C.OUT_SOLENOID, C.OUT_FLAP):
                on += 1
        self._levels = bytes(levels)
        self.max_energised = max(self.max_energised, on)

    def _host_receive(self):
        host = self.host
        msg = host.receive()
        while msg is not None:
            if msg[0] == REPLY:
                self.replies[msg[1]] = msg
            elif msg[0] == EVENT and msg[1] == self.last_eid + 1:
                self.events.append(msg)  # a repeat after a reconnect is dropped
                self.last_eid = msg[1]
            msg = host.receive()
        if host.stats["handshakes"] != self._handshakes:
            self._handshakes = host.stats["handshakes"]
            self.acked = 0  # the last ack may have died with the old session
        if self.auto_ack and host.established and self.events and self.last_eid > self.acked:
            host.send([EVENTS_ACK, self.last_eid])
            self.acked = self.last_eid

    acked = 0
    _handshakes = 0

    # ----- requests ------------------------------------------------------------------

    def request(self, msg, wait_ms=500):
        """Send a request (without cid), run until its reply; returns the reply."""
        cid = self.host.request(msg)
        ok = self.run(wait_ms, 1, lambda: cid in self.replies)
        assert ok, "no reply to %r within %d ms" % (msg, wait_ms)
        return self.replies[cid]

    def kinds(self, unit=None, channel=None):
        return [
            e[2]
            for e in self.events
            if (unit is None or e[3] == unit) and (channel is None or e[4] == channel)
        ]

    def on_times(self, out):
        """[(start, end)] of every completed on-period of output out."""
        spans = []
        start = None
        for t, i, level in self.edges:
            if i != out:
                continue
            if level:
                start = t
            elif start is not None:
                spans.append((start, t))
                start = None
        return spans
