"""The board application: session, requests, input events and the safe state.

Pure logic: no ``machine``, no clock reads. The runtime writes logical input levels
into ``inputs``, hands received bytes to ``feed`` and calls ``step(now)``; afterwards
``outputs`` holds the wanted output levels and ``action`` says whether the board must
reset or hand its port to the REPL.

Actuation needs a valid config and a key; a board that hears nothing valid from the
host for the link timeout turns every output off, refuses actuation until a new
session and reports why in that session's welcome and as a ``safe_state`` event.
"""

import gc

from amtfw import FW_VERSION
from amtfw.config import (
    IN_DEPOSIT,
    IN_DOOR,
    IN_EXIT,
    IN_FLAP,
    IN_GRANT,
    IN_ITEM,
    IN_TAMPER,
    OUT_STRIKE,
    U_BOARD,
    U_CHANNEL,
    U_DROPOFF,
    U_ENTRANCE,
    U_RETURN,
    UNIT_NAMES,
)
from amtfw.events import (
    BOOT,
    DEPOSIT,
    DOOR_CLOSED,
    DOOR_OPEN,
    EXIT_PRESSED,
    FLAP_CLOSED,
    FLAP_OPEN,
    GRANT,
    ITEM_ABSENT,
    ITEM_PRESENT,
    NO_CHANNEL,
    NO_VALUE,
    PULSE_CANCELLED,
    PULSE_DONE,
    SAFE_STATE,
    STRIKE_DONE,
    TAMPER_OFF,
    TAMPER_ON,
    EventRing,
)
from amtfw.inputs import Debouncer
from amtfw.outputs import BUSY as OUTPUT_BUSY
from amtfw.outputs import FULL, LED_BLINK, QUEUED, Actuators
from protocol import session as S
from protocol.compat import const, ticks_diff
from protocol.errors import ProtocolError
from protocol.messages import (
    AUTH_REQUIRED,
    BAD_REQUEST,
    BOARD,
    BUSY,
    NOT_CONFIGURED,
    OK,
    OUT_OF_RANGE,
)
from protocol.messages import (
    SAFE_STATE as STATUS_SAFE_STATE,
)

CAPS = ["pulse", "led", "strike", "slot", "inputs", "diagnostics", "maintenance", "reset"]
ROLE_NAMES = ("door", "item", "flap", "deposit", "grant", "exit", "tamper")
SAFE_HOST_SILENT = const(1)  # values of a safe_state event
SAFE_ACTION = const(2)  # the host asked for a reset or the REPL
ACTION_WAIT_MS = const(1000)  # longest wait for the reply to reset/repl to be acknowledged
EVENTS_QUEUED = const(4)  # events queued in the session at a time, so replies go first

_PULSE = const(0x10)
_LED = const(0x11)
_STRIKE = const(0x12)
_SLOT = const(0x13)
_INPUTS = const(0x14)
_DIAGNOSTICS = const(0x15)
_MAINTENANCE = const(0x16)
_RESET = const(0x17)
_EVENTS_ACK = const(0x61)
_SLOT_UNITS = {"return": U_RETURN, "dropoff": U_DROPOFF}

# identity fields of the welcome, after the session's own
_ID_UPTIME = const(7)
_ID_SAFE = const(9)


class BoardApp:
    """One board: see the module docstring for how the runtime drives it."""

    def __init__(self, cfg, info, key, write, random):
        self.cfg = cfg
        self.info = info
        self.provisioned = key is not None
        self.config_error = info.get("config_error")
        self.identity = [
            cfg.board_id or info.get("unique_id", "unknown"),
            FW_VERSION,
            info.get("fw_hash", "dev"),
            CAPS,
            len(cfg.channels),
            info.get("config_hash", "none"),
            info.get("reset_reason", "unknown"),
            0,
            self.config_error,
            None,
            info.get("boot_id", 0),
        ]
        self.session = S.Session(
            S.RESPONDER,
            BOARD,
            write,
            random,
            key=key,
            addr=cfg.address,
            identity=self.identity,
            link_timeout_ms=cfg.link_timeout_ms,
            peer_name="amtfw " + FW_VERSION,
            on_state=self._on_state,
        )
        self.inputs = bytearray(len(cfg.inputs))
        self.act = Actuators(cfg)
        self.outputs = self.act.levels
        self.debounce = Debouncer(len(cfg.inputs), cfg.debounce_ms)
        self.ring = EventRing()
        self.safe_reason = None  # why actuation is refused until the next session
        self.safe_entries = 0
        self.action = None  # "reset" or "repl" once the runtime must act
        self._pending_action = None
        self._action_at = 0
        self._now = 0
        self._booted = False
        self._up_s = 0  # uptime, split so neither part outgrows a small int
        self._up_ms = 0
        self.steps = 0
        self.commands = 0
        self.refused = 0
        # bound once, so passing them per step allocates nothing
        self._on_input_cb = self._on_input
        self._on_pulse_done_cb = self._on_pulse_done
        self._on_cancelled_cb = self._on_cancelled

    # ----- driven by the runtime ----------------------------------------------------

    def feed(self, data, now):
        """Bytes from the host."""
        self._clock(now)
        self.identity[_ID_UPTIME] = self.uptime_ms()
        self.session.feed(data, now)

    def step(self, now):
        """Inputs to events, pulse timers, requests, events out, session timers."""
        self._clock(now)
        self.steps = (self.steps + 1) & 0x3FFFFFFF
        if not self._booted:
            self._booted = True
            self.ring.push(BOOT, U_BOARD, NO_CHANNEL, NO_VALUE, now)
        self.debounce.update(self.inputs, now, self._on_input_cb)
        self.act.step(now, self._on_pulse_done_cb)
        session = self.session
        msg = session.receive()
        while msg is not None:
            self._handle(msg, now)
            msg = session.receive()
        if self.ring.unsent() and session.state == S.ESTABLISHED:
            self._send_events()
        session.poll(now)
        if self._pending_action is not None:
            self._check_action(now)

    def uptime_ms(self):
        """Milliseconds since boot."""
        return self._up_s * 1000 + self._up_ms

    def _clock(self, now):
        d = ticks_diff(now, self._now)
        self._now = now
        if d > 0:
            ms = self._up_ms + d
            while ms >= 1000:
                ms -= 1000
                self._up_s += 1
            self._up_ms = ms

    # ----- events -------------------------------------------------------------------

    def _on_input(self, i, level, now):
        spec = self.cfg.inputs[i]
        role = spec[2]
        unit = spec[3]
        channel = spec[4] or NO_CHANNEL
        if role == IN_DOOR:
            kind = DOOR_OPEN if level else DOOR_CLOSED
            if level and unit == U_ENTRANCE:
                held = self.act.release_strike(now)
                if held:
                    self.ring.push(STRIKE_DONE, U_ENTRANCE, NO_CHANNEL, held, now)
        elif role == IN_ITEM:
            kind = ITEM_PRESENT if level else ITEM_ABSENT
        elif role == IN_FLAP:
            kind = FLAP_OPEN if level else FLAP_CLOSED
        elif role == IN_TAMPER:
            kind = TAMPER_ON if level else TAMPER_OFF
        elif not level:
            return  # deposit, grant and exit report their active edge only
        elif role == IN_DEPOSIT:
            kind = DEPOSIT
        elif role == IN_GRANT:
            kind = GRANT
        elif role == IN_EXIT:
            kind = EXIT_PRESSED
        else:
            return
        self.ring.push(kind, unit, channel, NO_VALUE, now)

    def _on_pulse_done(self, out, ms, now):
        spec = self.cfg.outputs[out]
        self.ring.push(PULSE_DONE, spec[3], spec[4] or NO_CHANNEL, ms, now)

    def _on_cancelled(self, out, now):
        spec = self.cfg.outputs[out]
        self.ring.push(PULSE_CANCELLED, spec[3], spec[4] or NO_CHANNEL, 0, now)

    def _send_events(self):
        session = self.session
        ring = self.ring
        while ring.unsent() and session.sender.queued < EVENTS_QUEUED:
            msg = ring.next_message()
            try:
                session.send(msg)
            except ProtocolError:
                ring.unsend_last()
                return

    # ----- safe state ---------------------------------------------------------------

    def _on_state(self, state, reason):
        if state == S.DOWN:
            self.enter_safe("host silent: %s" % reason, self._now, SAFE_HOST_SILENT)
        elif state == S.ESTABLISHED:
            self.ring.rewind()
            self.safe_reason = None  # this session's welcome has reported it
            self.identity[_ID_SAFE] = None

    def enter_safe(self, reason, now, code):
        """Every output off, queued pulses cancelled, actuation refused until a new session."""
        held = self.act.all_off(now, self._on_pulse_done_cb, self._on_cancelled_cb)
        if held:
            self.ring.push(STRIKE_DONE, U_ENTRANCE, NO_CHANNEL, held, now)
        self.safe_reason = reason
        self.identity[_ID_SAFE] = reason
        self.safe_entries += 1
        self.ring.push(SAFE_STATE, U_BOARD, NO_CHANNEL, code, now)

    # ----- requests -----------------------------------------------------------------

    def _handle(self, msg, now):
        mid = msg[0]
        if mid == _EVENTS_ACK:
            self.ring.ack(msg[1], now)
            return
        self.commands += 1
        cid = msg[1]
        if mid == _PULSE:
            self._pulse(cid, U_CHANNEL, msg[2], msg[3], now)
        elif mid == _SLOT:
            unit = _SLOT_UNITS.get(msg[2])
            if unit is None:
                self._refuse(cid, BAD_REQUEST, "slot unit %r is not return or dropoff" % msg[2])
            else:
                self._pulse(cid, unit, None, msg[3], now)
        elif mid == _LED:
            self._led(cid, msg[2], msg[3], now)
        elif mid == _STRIKE:
            self._strike(cid, msg[2], now)
        elif mid == _INPUTS:
            self.session.reply(cid, OK, None, self.input_report())
        elif mid == _DIAGNOSTICS:
            self.session.reply(cid, OK, None, self.diagnostics())
        elif mid == _MAINTENANCE:
            self._maintenance(cid, msg[2], now)
        elif mid == _RESET:
            self.session.reply(cid, OK, None, None)
            self._schedule("reset", now)
        else:
            self._refuse(cid, BAD_REQUEST, "request 0x%02x is not handled here" % mid)

    def _refuse(self, cid, status, reason):
        self.refused += 1
        self.session.reply(cid, status, reason, None)

    def _actuation_refused(self, cid):
        """Refuse and return True unless this board may move an output now."""
        if self.config_error is not None:
            self._refuse(cid, NOT_CONFIGURED, "board has no valid config: %s" % self.config_error)
        elif not self.provisioned:
            self._refuse(cid, AUTH_REQUIRED, "board is not provisioned (no key): no actuation")
        elif self.safe_reason is not None:
            self._refuse(cid, STATUS_SAFE_STATE, "board is in its safe state: " + self.safe_reason)
        else:
            return False
        return True

    def _unit_label(self, unit, channel):
        return "channel %d" % channel if unit == U_CHANNEL else "%s slot" % UNIT_NAMES[unit]

    def _pulse(self, cid, unit, channel, ms, now):
        if self._actuation_refused(cid):
            return
        out = self.cfg.output_index(unit, channel)
        if out < 0:
            self._refuse(
                cid,
                NOT_CONFIGURED,
                "%s is not configured on board %s (channels: %s)"
                % (self._unit_label(unit, channel), self.cfg.board_id, _ranges(self.cfg.channels)),
            )
            return
        if ms < 1:
            self._refuse(cid, OUT_OF_RANGE, "ms must be at least 1, got %d" % ms)
            return
        result = self.act.request_pulse(out, ms, now)
        if result == OUTPUT_BUSY:
            self._refuse(
                cid, BUSY, "%s is already energised or waiting" % self._unit_label(unit, channel)
            )
        elif result == FULL:
            self._refuse(cid, BUSY, "pulse queue is full (%d waiting)" % self.cfg.pulse_queue)
        else:
            data = {"ms": self.act.granted(ms), "queued": result == QUEUED}
            self.session.reply(cid, OK, None, data)

    def _led(self, cid, channel, mode, now):
        out = self.cfg.led.get(channel, -1)
        if out < 0:
            self._refuse(cid, NOT_CONFIGURED, "channel %d has no LED configured" % channel)
        elif mode > LED_BLINK:
            self._refuse(cid, OUT_OF_RANGE, "LED mode %d is not 0 (off), 1 (on) or 2" % mode)
        else:
            self.act.set_led(out, mode, now)
            self.session.reply(cid, OK, None, None)

    def _strike(self, cid, ms, now):
        if self._actuation_refused(cid):
            return
        if self.cfg.strike < 0:
            self._refuse(cid, NOT_CONFIGURED, "no entrance is configured on this board")
        elif ms < 1:
            self._refuse(cid, OUT_OF_RANGE, "ms must be at least 1, got %d" % ms)
        else:
            self.session.reply(cid, OK, None, {"ms": self.act.open_strike(ms, now)})

    def _maintenance(self, cid, action, now):
        if action != "repl":
            self._refuse(cid, BAD_REQUEST, "unknown maintenance action %r (known: repl)" % action)
        elif not (self.provisioned and self.session.authenticated):
            self._refuse(
                cid, AUTH_REQUIRED, "maintenance needs an authenticated session (board has a key)"
            )
        else:
            self.session.reply(cid, OK, None, None)
            self._schedule("repl", now)

    def _schedule(self, action, now):
        self._pending_action = action
        self._action_at = now

    def _check_action(self, now):
        sender = self.session.sender
        delivered = sender.in_flight == 0 and sender.queued == 0
        if delivered or ticks_diff(now, self._action_at) >= ACTION_WAIT_MS:
            self.enter_safe("%s requested by the host" % self._pending_action, now, SAFE_ACTION)
            self.action = self._pending_action
            self._pending_action = None

    # ----- reports ------------------------------------------------------------------

    def input_report(self):
        """Debounced inputs and output states: per channel as byte strings in channel
        order (item 2 = no sensor, led 3 = no LED), per unit as a map of signal names."""
        cfg = self.cfg
        stable = self.debounce.stable
        act = self.act
        chans = cfg.channels
        n = len(chans)
        door = bytearray(n)
        item = bytearray(n)
        on = bytearray(n)
        led = bytearray(n)
        for k in range(n):
            ch = chans[k]
            door[k] = stable[cfg.door[ch]]
            i = cfg.item.get(ch, -1)
            item[k] = stable[i] if i >= 0 else 2
            on[k] = 1 if act.is_on(cfg.solenoid[ch]) else 0
            o = cfg.led.get(ch, -1)
            led[k] = act.led_mode(o) if o >= 0 else 3
        units = {}  # type: dict[str, dict[str, int]]
        for i in range(len(cfg.inputs)):
            spec = cfg.inputs[i]
            if spec[3] != U_CHANNEL:
                unit = units.setdefault(UNIT_NAMES[spec[3]], {})
                unit[ROLE_NAMES[spec[2]]] = stable[i]
        for o in range(len(cfg.outputs)):
            spec = cfg.outputs[o]
            if spec[3] != U_CHANNEL:
                unit = units.setdefault(UNIT_NAMES[spec[3]], {})
                unit["strike" if spec[2] == OUT_STRIKE else "solenoid"] = act.levels[o]
        report = {
            "channels": bytes(chans),
            "door": bytes(door),
            "item": bytes(item),
            "on": bytes(on),
            "led": bytes(led),
            "safe": self.safe_reason,
        }  # type: dict[str, object]
        for name in units:
            report[name] = units[name]
        return report

    def diagnostics(self):
        """Firmware identity, memory, uptime and counters."""
        c = self.session.counters()
        mem_free = getattr(gc, "mem_free", None)
        mem_alloc = getattr(gc, "mem_alloc", None)
        ring = self.ring
        return {
            "fw_version": FW_VERSION,
            "fw_hash": self.identity[2],
            "board_id": self.identity[0],
            "uptime_ms": self.uptime_ms(),
            "reset_reason": self.identity[6],
            "boot_id": self.identity[10],
            "crash": self.info.get("crash"),
            "mem_free": mem_free() if mem_free else -1,
            "mem_alloc": mem_alloc() if mem_alloc else -1,
            "events": [ring.next_eid - 1, ring.count, ring.lost_total, ring.bad_acks],
            "pulses": self.act.pulses,
            "commands": self.commands,
            "refused": self.refused,
            "safe_entries": self.safe_entries,
            "steps": self.steps,
            "link": [
                c["frames_in"],
                c["frames_out"],
                c["crc_errors"],
                c["tag_errors"],
                c["replays"],
                c["retransmits"],
                c["link_downs"],
                c["malformed"],
                c["srtt_ms"],
            ],
        }


def _ranges(numbers):
    """'1-4, 7' for [1, 2, 3, 4, 7]; 'none' for []."""
    if not numbers:
        return "none"
    parts = []
    ordered = sorted(numbers)
    start = prev = ordered[0]
    for n in ordered[1:] + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append("%d" % start if start == prev else "%d-%d" % (start, prev))
        if n is not None:
            start = prev = n
    return ", ".join(parts)
