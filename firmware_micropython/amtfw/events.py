"""The event ring: events wait here, in order, until the host acknowledges them.

Storage is preallocated. When the ring is full a new event is lost and counted; the
count is reported as an ``overflow`` event as soon as there is room, in the slot kept
free for it, so a loss is never silent. Event ids count from 1 at every boot (the
welcome's boot_id tells boots apart); lost events take no id, so ids have no gaps.
"""

from amtfw.config import U_BOARD, UNIT_NAMES
from protocol.compat import const

RING_EVENTS = const(64)  # events kept besides the slot reserved for the overflow report
_SLOTS = const(RING_EVENTS + 1)
EVENT_ID = const(0x60)

# Event kinds; the names are what the host sees.
DOOR_OPEN = const(0)
DOOR_CLOSED = const(1)
ITEM_PRESENT = const(2)
ITEM_ABSENT = const(3)
FLAP_OPEN = const(4)
FLAP_CLOSED = const(5)
DEPOSIT = const(6)
GRANT = const(7)
EXIT_PRESSED = const(8)
TAMPER_ON = const(9)
TAMPER_OFF = const(10)
PULSE_DONE = const(11)
PULSE_CANCELLED = const(12)
STRIKE_DONE = const(13)
OVERFLOW = const(14)
SAFE_STATE = const(15)
BOOT = const(16)
KIND_NAMES = (
    "door_open",
    "door_closed",
    "item_present",
    "item_absent",
    "flap_open",
    "flap_closed",
    "deposit",
    "grant",
    "exit_pressed",
    "tamper_on",
    "tamper_off",
    "pulse_done",
    "pulse_cancelled",
    "strike_done",
    "overflow",
    "safe_state",
    "boot",
)
NO_CHANNEL = const(0)  # channel numbers start at 1
NO_VALUE = const(-1 << 29)  # stands for a null value


class EventRing:
    """Unacknowledged events, oldest first, with a cursor of what this session sent."""

    def __init__(self):
        self._kind = bytearray(_SLOTS)
        self._unit = bytearray(_SLOTS)
        self._channel = bytearray(_SLOTS)
        self._value = [0] * _SLOTS
        self._t = [0] * _SLOTS
        self._first = 0  # slot of the oldest event
        self.count = 0  # events held
        self.first_eid = 1  # id of the oldest event held (or of the next one when empty)
        self.sent = 0  # events held that were already sent in this session
        self.lost = 0  # events lost since the last overflow report
        self.lost_total = 0
        self.bad_acks = 0

    @property
    def next_eid(self):
        """The id the next event will get."""
        return self.first_eid + self.count

    def push(self, kind, unit, channel, value, now):
        """Keep an event; False (and counted as lost) when the ring is full."""
        if self.count >= RING_EVENTS:
            self.lost += 1
            self.lost_total += 1
            return False
        self._put(kind, unit, channel, value, now)
        return True

    def _put(self, kind, unit, channel, value, now):
        i = (self._first + self.count) % _SLOTS
        self._kind[i] = kind
        self._unit[i] = unit
        self._channel[i] = channel
        self._value[i] = value
        self._t[i] = now
        self.count += 1

    def ack(self, upto, now):
        """Forget events up to and including id upto; then report losses if any."""
        n = upto - self.first_eid + 1
        if n > self.count or upto < 0:
            self.bad_acks += 1  # acknowledges ids never sent: from another boot?
            return
        if n > 0:
            self._first = (self._first + n) % _SLOTS
            self.count -= n
            self.first_eid += n
            self.sent = max(0, self.sent - n)
        if self.lost and self.count < _SLOTS:
            self._put(OVERFLOW, U_BOARD, NO_CHANNEL, self.lost, now)
            self.lost = 0

    def rewind(self):
        """A new session: every event held is sent again."""
        self.sent = 0

    def unsent(self):
        """True when an event held has not been sent in this session."""
        return self.sent < self.count

    def next_message(self):
        """The oldest unsent event as an event message; marks it sent."""
        i = (self._first + self.sent) % _SLOTS
        eid = self.first_eid + self.sent
        self.sent += 1
        ch = self._channel[i]
        value = self._value[i]
        return [
            EVENT_ID,
            eid,
            KIND_NAMES[self._kind[i]],
            UNIT_NAMES[self._unit[i]],
            ch if ch != NO_CHANNEL else None,
            value if value != NO_VALUE else None,
            self._t[i],
        ]

    def unsend_last(self):
        """The message from next_message could not be queued: send it later."""
        self.sent -= 1
