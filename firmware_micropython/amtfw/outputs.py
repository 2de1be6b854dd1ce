"""Output timing: solenoid pulses, the entrance strike and indicator LEDs.

The board times every pulse itself. A pulse never exceeds the configured maximum
(itself capped at PULSE_CAP_MS); an output rests for the minimum gap between pulses; at
most ``max_energised`` solenoids are on at once and further pulses wait in a bounded
queue, first come first served. ``levels`` holds the wanted logical level of every
output for the hardware layer. Nothing here reads a clock: every call gets ``now``.
"""

from amtfw.config import PULSE_CAP_MS
from protocol.compat import const, ticks_diff

# request_pulse results
STARTED = const(0)
QUEUED = const(1)
BUSY = const(2)  # this output is already on or waiting
FULL = const(3)  # the queue is full

LED_OFF = const(0)
LED_ON = const(1)
LED_BLINK = const(2)
BLINK_MS = const(500)


class Actuators:
    """Wanted output levels, driven by pulse, strike and LED requests and by time."""

    def __init__(self, cfg):
        n = len(cfg.outputs)
        self.levels = bytearray(n)
        self.pulse_max_ms = min(cfg.pulse_max_ms, PULSE_CAP_MS)
        self.gap_ms = cfg.pulse_gap_ms
        self.max_energised = cfg.max_energised
        self.strike_max_ms = cfg.strike_max_ms
        self._started = [0] * n  # when the current pulse began
        self._length = [0] * n  # ms granted to the current pulse, 0 when off
        self._ended = [0] * n  # when the last pulse ended
        self._rested = bytearray(n)  # 1 once the gap after the last pulse has passed
        for i in range(n):
            self._rested[i] = 1
        cap = cfg.pulse_queue
        self._queue = bytearray(cap)  # output indices waiting, oldest first
        self._queue_ms = [0] * cap
        self._queued = 0
        self.energised = 0  # solenoids on now
        self._led = bytearray(n)  # LED mode per output
        self._blink_at = 0
        self._blink_on = 0
        self._has_blink = False
        self.strike = cfg.strike  # output index or -1
        self._strike_started = 0
        self.strike_ms = 0  # ms granted, 0 when the strike is not released
        self.pulses = 0  # pulses started since boot

    def request_pulse(self, out, ms, now):
        """Start or queue a pulse of out for ms (capped); STARTED, QUEUED, BUSY or FULL."""
        if self._length[out] or self._is_queued(out):
            return BUSY
        ms = self.granted(ms)
        if self._can_start(out):
            self._start(out, ms, now)
            return STARTED
        if self._queued >= len(self._queue):
            return FULL
        self._queue[self._queued] = out
        self._queue_ms[self._queued] = ms
        self._queued += 1
        return QUEUED

    def granted(self, ms):
        """The on-time a pulse request of ms gets."""
        return min(ms, self.pulse_max_ms)

    def _is_queued(self, out):
        for i in range(self._queued):
            if self._queue[i] == out:
                return True
        return False

    def _can_start(self, out):
        return self.energised < self.max_energised and bool(self._rested[out])

    def _start(self, out, ms, now):
        self._started[out] = now
        self._length[out] = ms
        self.levels[out] = 1
        self.energised += 1
        self.pulses += 1

    def step(self, now, on_pulse_done):
        """End pulses whose time is up, end rests after the gap, start waiting pulses,
        blink LEDs; calls on_pulse_done(out, ms_on, now) for each pulse that ended.

        A rest ends here, pass by pass, rather than by comparing with the end of the last
        pulse when a request comes: that comparison breaks once the clock has wrapped."""
        length = self._length
        rested = self._rested
        for out in range(len(length)):
            if length[out]:
                if ticks_diff(now, self._started[out]) >= length[out]:
                    self._stop(out, now, on_pulse_done)
            elif not rested[out] and ticks_diff(now, self._ended[out]) >= self.gap_ms:
                rested[out] = 1
        i = 0
        while i < self._queued:
            out = self._queue[i]
            if self._can_start(out):
                self._start(out, self._queue_ms[i], now)
                self._dequeue(i)
            else:
                i += 1
        if self.strike_ms and ticks_diff(now, self._strike_started) >= self.strike_ms:
            self.release_strike(now)
        if self._has_blink and ticks_diff(now, self._blink_at) >= BLINK_MS:
            self._blink_at = now
            self._blink_on ^= 1
            for out in range(len(self._led)):
                if self._led[out] == LED_BLINK:
                    self.levels[out] = self._blink_on

    def _dequeue(self, i):
        for j in range(i, self._queued - 1):
            self._queue[j] = self._queue[j + 1]
            self._queue_ms[j] = self._queue_ms[j + 1]
        self._queued -= 1

    def _stop(self, out, now, on_pulse_done):
        on_ms = ticks_diff(now, self._started[out])
        self._length[out] = 0
        self.levels[out] = 0
        self._ended[out] = now
        self._rested[out] = 1 if self.gap_ms == 0 else 0
        self.energised -= 1
        on_pulse_done(out, on_ms, now)

    def release_strike(self, now):
        """End the strike release; returns how long it was released (0 if it was not)."""
        if not self.strike_ms:
            return 0
        held = ticks_diff(now, self._strike_started)
        self.strike_ms = 0
        self.levels[self.strike] = 0
        return held

    def open_strike(self, ms, now):
        """Release the strike for ms (capped); returns the ms granted."""
        ms = min(ms, self.strike_max_ms)
        self._strike_started = now
        self.strike_ms = ms
        self.levels[self.strike] = 1
        return ms

    def set_led(self, out, mode, now):
        """LED mode: LED_OFF, LED_ON or LED_BLINK."""
        self._led[out] = mode
        self.levels[out] = 1 if mode == LED_ON else 0
        if mode == LED_BLINK:
            self.levels[out] = self._blink_on
            if not self._has_blink:
                self._blink_at = now
        self._has_blink = False
        for i in range(len(self._led)):
            if self._led[i] == LED_BLINK:
                self._has_blink = True

    def led_mode(self, out):
        """The LED mode of out."""
        return self._led[out]

    def is_on(self, out):
        """True while out is energised by a pulse."""
        return bool(self._length[out])

    def all_off(self, now, on_pulse_done, on_cancelled):
        """Safe state: end every pulse (reported), drop the queue (each reported through
        on_cancelled(out, now)), release the strike, LEDs off. Returns strike ms held."""
        for out in range(len(self._length)):
            if self._length[out]:
                self._stop(out, now, on_pulse_done)
        while self._queued:
            out = self._queue[0]
            self._dequeue(0)
            on_cancelled(out, now)
        held = self.release_strike(now)
        self._has_blink = False
        for out in range(len(self.levels)):
            self._led[out] = LED_OFF
            self.levels[out] = 0
        return held
