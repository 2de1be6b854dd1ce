"""Reliable, ordered delivery over frames: sequence numbers, cumulative ACK, Go-Back-N
retransmission with an adaptive timer (RFC 6298, integer ms, Karn's rule) and a send
window bounded by what the receiver advertises.

Sans-I/O: the session hands in acks and the clock, and asks what to (re)send.
"""

from protocol.compat import const, ticks_diff
from protocol.errors import SessionError

TYPE_CHECKING = False  # mypy treats this name as true; MicroPython has no typing module
if TYPE_CHECKING:
    from typing import Any

MAX_WINDOW = const(8)  # never more frames in flight, whatever the peer advertises
INITIAL_RTO_MS = const(200)
MIN_RTO_MS = const(40)  # the floor: a board's main loop may take a few ms per pass
MAX_RTO_MS = const(2000)


class RetransmitTimer:
    """Retransmission timeout from measured round trips; doubles on every expiry."""

    def __init__(
        self,
        initial_ms: int = INITIAL_RTO_MS,
        floor_ms: int = MIN_RTO_MS,
        ceiling_ms: int = MAX_RTO_MS,
    ) -> None:
        self.floor_ms = floor_ms
        self.ceiling_ms = ceiling_ms
        self.rto_ms = initial_ms
        self.srtt_ms = -1  # -1 until the first sample
        self._srtt8 = 0  # smoothed RTT x 8
        self._rttvar4 = 0  # RTT variation x 4

    def sample(self, rtt_ms: int) -> None:
        """Take one round-trip measurement of a frame sent exactly once."""
        if rtt_ms < 0:
            return
        if self.srtt_ms < 0:
            self._srtt8 = rtt_ms << 3
            self._rttvar4 = rtt_ms << 1
        else:
            err = rtt_ms - (self._srtt8 >> 3)
            self._srtt8 += err
            if err < 0:
                err = -err
            self._rttvar4 += err - (self._rttvar4 >> 2)
        self.srtt_ms = self._srtt8 >> 3
        self.rto_ms = self._clamp(self.srtt_ms + max(1, self._rttvar4))

    def backoff(self) -> None:
        """Double the timeout after an expiry (bounded by the ceiling)."""
        self.rto_ms = self._clamp(self.rto_ms * 2)

    def _clamp(self, ms: int) -> int:
        return min(self.ceiling_ms, max(self.floor_ms, ms))


class Sender:
    """Outgoing sequenced payloads: queued, in flight, acknowledged."""

    def __init__(self, queue_cap: int = 16, timer: "RetransmitTimer | None" = None) -> None:
        self.queue_cap = queue_cap
        self.timer = timer if timer is not None else RetransmitTimer()
        self.retransmits = 0
        self.reset()

    def reset(self) -> None:
        """Start a new session: sequence 0, nothing queued or in flight."""
        self.next_seq = 0
        self.peer_window = 1  # until the peer advertises its window
        self._queue: "list[bytes]" = []  # payloads not yet sent  # type: ignore[type-arg]
        self._flight: "list[list[Any]]" = []  # [seq, payload, sent_at, tries] oldest first  # type: ignore[type-arg]
        self._timer_start = 0

    @property
    def in_flight(self) -> int:
        """Frames sent and not yet acknowledged."""
        return len(self._flight)

    @property
    def queued(self) -> int:
        """Payloads waiting for room in the window."""
        return len(self._queue)

    @property
    def oldest_tries(self) -> int:
        """How often the oldest frame in flight has been sent (0 if none)."""
        return int(self._flight[0][3]) if self._flight else 0

    def enqueue(self, payload: bytes, always: bool = False) -> None:
        """Queue a payload; SessionError when the queue is full (back-pressure), unless
        always (replies: bounded by the requests in flight, and never to be lost)."""
        if len(self._queue) >= self.queue_cap and not always:
            raise SessionError("send queue full (%d payloads)" % self.queue_cap, self.queue_cap)
        self._queue.append(payload)

    def on_ack(self, ack: int, window: int, now: int) -> int:
        """Apply a cumulative ack and the peer's window; returns frames newly acknowledged."""
        self.peer_window = window
        flight = self._flight
        if not flight:
            return 0
        n: int = (ack - flight[0][0]) & 0xFF
        if n == 0 or n > len(flight):
            return 0  # nothing new, or an ack from outside the window (stale)
        last = flight[n - 1]
        if last[3] == 1:
            self.timer.sample(ticks_diff(now, last[2]))
        del flight[:n]
        self._timer_start = now
        return n

    @property
    def sendable(self) -> bool:
        """True when a queued payload fits into the window now."""
        return bool(self._queue) and len(self._flight) < min(self.peer_window, MAX_WINDOW)

    def expired(self, now: int) -> bool:
        """True when the oldest frame in flight waited longer than the timeout."""
        return bool(self._flight) and ticks_diff(now, self._timer_start) >= self.timer.rto_ms

    def due(self, now: int, retransmit: bool) -> "list[list[Any]]":
        """Payloads to transmit now as [seq, payload]: all in flight again after a timeout
        (retransmit=True), then new ones while the window has room."""
        out: "list[list[Any]]" = []
        flight = self._flight
        if retransmit and flight:
            self.timer.backoff()
            for entry in flight:
                entry[2] = now
                entry[3] += 1
                self.retransmits += 1
                out.append(entry)
            self._timer_start = now
        limit = min(self.peer_window, MAX_WINDOW)
        while self._queue and len(flight) < limit:
            if not flight:
                self._timer_start = now
            entry = [self.next_seq, self._queue.pop(0), now, 1]
            self.next_seq = (self.next_seq + 1) & 0xFF
            flight.append(entry)
            out.append(entry)
        return out


class Receiver:
    """Incoming sequence numbers: accepts the next expected one, asks for acks."""

    def __init__(self) -> None:
        self.duplicates = 0  # frames dropped as repeated or out of order
        self.reset()

    def reset(self) -> None:
        """Start a new session: expect sequence 0."""
        self.next_seq = 0
        self.ack_due = False

    def accept(self, seq: int, room: bool) -> bool:
        """True when seq is the next expected and there is room; always schedules an ack."""
        self.ack_due = True
        if seq != self.next_seq:
            self.duplicates += 1
            return False
        if not room:
            return False
        self.next_seq = (self.next_seq + 1) & 0xFF
        return True
