"""Exactly-once scenario over a faulty simulated link; also ``python -m protocol selftest``.

A miniature board acts on pulse commands and emits events it keeps until acknowledged;
a miniature host sends commands, re-sends unanswered ones under the same cid after a
reconnect, and stores events by id. ``scenario`` reports what each side saw, so a test
can check that every command took effect once and every event arrived once, in order.
"""

from protocol import session as S
from protocol.errors import SessionError
from protocol.loopback import Faults, Loopback
from protocol.messages import BOARD, OK

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from protocol.messages import Message

_PULSE = 0x10
_REPLY = 0x40
_EVENT = 0x60
_EVENTS_ACK = 0x61
TEST_KEY = bytes(range(32))  # a fixed, public key for simulations only
IDENTITY = ["sim-board", "0.1.0", "selftest", ["pulse"], 4, "cfg0", "power", 0, None, None]


class MiniBoard:
    """Acts on pulses once per cid, replies, and sends events until acknowledged."""

    def __init__(self, session: "S.Session", events: int) -> None:
        self.session = session
        self.effects: "list[int]" = []  # channel pulsed, in order, one entry per effect
        self.effect_cids: "list[int]" = []
        self.to_emit = events
        self.ring: "list[Message]" = []  # unacknowledged events, oldest first
        self.next_eid = 1
        self.sent_upto = 0  # highest eid queued in the current session
        self.session_count = 0

    def on_state(self, state: int, reason: str) -> None:
        if state == S.ESTABLISHED:
            self.session_count += 1
            self.sent_upto = 0  # a new session: send every unacknowledged event again

    def tick(self, now: int) -> None:
        s = self.session
        msg = s.receive()
        while msg is not None:
            if msg[0] == _PULSE:
                self.effects.append(msg[2])
                self.effect_cids.append(msg[1])
                s.reply(msg[1], OK, None, {"channel": msg[2]})
            elif msg[0] == _EVENTS_ACK:
                while self.ring and self.ring[0][1] <= msg[1]:
                    self.ring.pop(0)
            msg = s.receive()
        if self.to_emit and len(self.ring) < 64:
            self.ring.append([_EVENT, self.next_eid, "door_open", "channel", 1, None, now])
            self.next_eid += 1
            self.to_emit -= 1
        if not s.established:
            return
        for ev in self.ring:
            if ev[1] <= self.sent_upto:
                continue
            try:
                s.send(ev)
            except SessionError:
                break
            self.sent_upto = ev[1]


class MiniHost:
    """Sends commands, resends the unanswered after a reconnect, stores events by id."""

    def __init__(self, session: "S.Session", commands: int) -> None:
        self.session = session
        self.to_send = commands
        self.pending: "dict[int, Message]" = {}  # cid -> request without cid
        self.replies: "dict[int, int]" = {}  # cid -> times a reply arrived
        self.events: "list[int]" = []  # event ids stored, in arrival order
        self.duplicate_events = 0
        self.gaps = 0
        self.acked = 0
        self.resend = False
        self.channel = 0

    def on_state(self, state: int, reason: str) -> None:
        if state == S.ESTABLISHED:
            self.resend = True
            self.acked = 0  # the last acknowledgement may have died with the old session

    def tick(self, now: int) -> None:
        s = self.session
        if s.state in (S.IDLE, S.DOWN):
            s.connect(now)
            return
        if not s.established:
            return
        msg = s.receive()
        while msg is not None:
            if msg[0] == _REPLY:
                cid = msg[1]
                self.replies[cid] = self.replies.get(cid, 0) + 1
                self.pending.pop(cid, None)
            elif msg[0] == _EVENT:
                eid = msg[1]
                last = self.events[-1] if self.events else 0
                if eid == last + 1:
                    self.events.append(eid)
                elif eid <= last:
                    self.duplicate_events += 1  # re-sent after a reconnect: stored already
                else:
                    self.gaps += 1
            msg = s.receive()
        try:
            if self.resend:
                for cid, req in self.pending.items():
                    s.resend_request(req, cid)
                self.resend = False
            if self.events and self.events[-1] > self.acked:
                s.send([_EVENTS_ACK, self.events[-1]])
                self.acked = self.events[-1]
            while self.to_send and s.sender.queued < 4:
                self.channel = self.channel % 4 + 1
                new: "Message" = [_PULSE, self.channel, 250]
                self.pending[s.request(new)] = new
                self.to_send -= 1
        except SessionError:
            pass  # queue full: try again on the next tick

    def done(self) -> bool:
        return not self.to_send and not self.pending


def scenario(
    seed: int,
    faults: "Faults",
    commands: int = 20,
    events: int = 20,
    key: "bytes | None" = TEST_KEY,
    limit_ms: int = 120000,
) -> "dict[str, Any]":
    """Run commands and events across a faulty link; returns what both sides saw."""
    link = Loopback(seed, faults)
    host_s = S.Session(S.INITIATOR, BOARD, link.forward.write, link.random, key=key)
    board_s = S.Session(
        S.RESPONDER, BOARD, link.back.write, link.random, key=key, identity=IDENTITY
    )
    link.attach(host_s, board_s)
    host = MiniHost(host_s, commands)
    board = MiniBoard(board_s, events)
    host_s.on_state = host.on_state
    board_s.on_state = board.on_state

    def tick(now: int) -> None:
        host.tick(now)
        board.tick(now)

    def finished() -> bool:
        return (
            host.done() and len(host.events) == events and not board.ring and host.acked == events
        )

    completed = link.run(limit_ms, 2, tick, finished)
    return {
        "completed": completed,
        "sim_ms": link.now,
        "effects": board.effect_cids,
        "replies": host.replies,
        "events": host.events,
        "duplicate_events": host.duplicate_events,
        "gaps": host.gaps,
        "host": host_s.counters(),
        "board": board_s.counters(),
        "sessions": board.session_count,
    }


def run() -> int:
    """Print a scenario over a bad link; 0 when every command and event got through once."""
    faults = Faults(
        drop=100, duplicate=50, corrupt=50, reorder=50, chop=100, latency_ms=3, jitter_ms=4
    )
    r = scenario(7, faults, commands=30, events=30)
    effects: "list[int]" = r["effects"]
    replies: "dict[int, int]" = r["replies"]
    ok = (
        r["completed"]
        and len(effects) == len(set(effects)) == 30
        and all(n == 1 for n in replies.values())
        and r["events"] == list(range(1, 31))
        and r["gaps"] == 0
    )
    host: "dict[str, int]" = r["host"]
    board: "dict[str, int]" = r["board"]
    print("protocol selftest: 30 pulse commands and 30 events over a link that drops 10%,")
    print("duplicates 5%, corrupts 5%, reorders 5% and splits 10% of frames")
    print("  simulated time   %d ms, sessions %s" % (r["sim_ms"], r["sessions"]))
    print(
        "  effects          %d (each command exactly once: %s)"
        % (len(effects), len(effects) == len(set(effects)))
    )
    print(
        "  events in order  %s, duplicates ignored %s"
        % (r["events"] == list(range(1, 31)), r["duplicate_events"])
    )
    for side, c in (("host ", host), ("board", board)):
        print(
            "  %s frames out %d in %d, retransmits %d, refused: crc %d tag %d replay %d,"
            " duplicates %d, srtt %d ms"
            % (
                side,
                c["frames_out"],
                c["frames_in"],
                c["retransmits"],
                c["crc_errors"],
                c["tag_errors"],
                c["replays"],
                c["duplicates"],
                c["srtt_ms"],
            )
        )
    print("selftest %s" % ("passed" if ok else "FAILED"))
    return 0 if ok else 1
