"""The board firmware's logic on simulated time, against a real host session.

Plain test functions with bare asserts: they run inside the MicroPython VMs and under
CPython. Channels: 1-4 (channel 3's door contact inverted), a return slot, an entrance.
"""

import json

from amtfw import config as C
from amtfw.events import RING_EVENTS
from amtfw.outputs import STARTED, Actuators
from fwrig import (
    DIAGNOSTICS,
    INPUTS,
    LED,
    MAINTENANCE,
    PULSE,
    RESET,
    SLOT,
    STRIKE,
    Rig,
    board_config,
)
from protocol.compat import TICKS_PERIOD
from protocol.messages import AUTH_REQUIRED, BUSY, NOT_CONFIGURED, OK, SAFE_STATE


def _ready(cfg=None, **kw):
    rig = Rig(cfg, **kw)
    rig.connect()
    return rig


def test_pulse_lasts_exactly_the_granted_time_and_reports_done():
    rig = _ready()
    reply = rig.request([PULSE, 1, 250])
    assert reply[2] == OK and reply[4] == {"ms": 250, "queued": False}
    rig.run(400)
    spans = rig.on_times(rig.out(C.U_CHANNEL, 1))
    assert len(spans) == 1 and spans[0][1] - spans[0][0] == 250, spans
    done = [e for e in rig.events if e[2] == "pulse_done"]
    assert len(done) == 1 and done[0][3] == "channel" and done[0][4] == 1 and done[0][5] == 250


def test_a_5000_ms_request_gets_at_most_the_1000_ms_cap():
    rig = _ready(board_config(pulse_max_ms=1000))
    reply = rig.request([PULSE, 2, 5000])
    assert reply[4]["ms"] == 1000
    rig.run(1500)
    (span,) = rig.on_times(rig.out(C.U_CHANNEL, 2))
    assert span[1] - span[0] == 1000


def test_default_maximum_is_300_ms_and_a_config_above_the_cap_is_refused():
    rig = _ready()
    assert rig.request([PULSE, 2, 5000])[4]["ms"] == 300
    rig.run(500)
    (span,) = rig.on_times(rig.out(C.U_CHANNEL, 2))
    assert span[1] - span[0] == 300
    try:
        C.parse(json.dumps(board_config(pulse_max_ms=5000)).encode())
    except C.ConfigError as exc:
        assert "pulse_max_ms" in str(exc) and "5000" in str(exc)
    else:
        raise AssertionError("pulse_max_ms 5000 was accepted")


def test_only_one_solenoid_at_a_time_and_the_rest_wait_in_turn():
    rig = _ready()
    replies = [rig.request([PULSE, ch, 200]) for ch in (1, 2, 3)]
    assert [r[4]["queued"] for r in replies] == [False, True, True]
    rig.run(1000)
    assert rig.max_energised == 1
    spans = [rig.on_times(rig.out(C.U_CHANNEL, ch))[0] for ch in (1, 2, 3)]
    assert spans[0][1] <= spans[1][0] and spans[1][1] <= spans[2][0], spans
    assert all(end - start == 200 for start, end in spans)


def test_two_solenoids_at_once_when_configured():
    rig = _ready(board_config(max_energised=2))
    for ch in (1, 2, 3):
        rig.request([PULSE, ch, 200])
    rig.run(800)
    assert rig.max_energised == 2


def test_same_channel_is_busy_while_on_and_rests_for_the_gap():
    rig = _ready(board_config(pulse_gap_ms=500))
    rig.request([PULSE, 1, 100])
    assert rig.request([PULSE, 1, 100])[2] == BUSY
    rig.run(150)
    again = rig.request([PULSE, 1, 100])
    assert again[2] == OK and again[4]["queued"]
    rig.run(1000)
    first, second = rig.on_times(rig.out(C.U_CHANNEL, 1))
    assert second[0] - first[1] == 500


def test_debounce_ignores_short_glitches_and_reports_a_stable_change_once():
    rig = _ready()
    for _ in range(5):  # 20 ms bounces
        rig.door(1, 1)
        rig.run(20)
        rig.door(1, 0)
        rig.run(20)
    assert "door_open" not in rig.kinds("channel", 1)
    rig.door(1, 1)
    changed_at = rig.now
    rig.run(200)
    opens = [e for e in rig.events if e[2] == "door_open" and e[4] == 1]
    assert len(opens) == 1
    assert opens[0][6] - changed_at in (50, 51), opens[0][6] - changed_at


def test_events_stay_until_acknowledged_and_come_again_after_a_new_session():
    rig = _ready()
    rig.auto_ack = False
    rig.door(2, 1)
    rig.run(100)
    rig.door(2, 0)
    rig.run(100)
    assert rig.kinds("channel", 2) == ["door_open", "door_closed"]
    assert rig.app.ring.count == 2  # both door events (boot was acknowledged)
    rig.host_alive = False
    rig.run(2000)  # the board gives up on the host
    rig.host_alive = True
    rig.events = []
    rig.last_eid = rig.app.ring.first_eid - 1  # the host stored everything before
    rig.connect()
    rig.run(100)
    assert rig.kinds("channel", 2) == ["door_open", "door_closed"]
    rig.auto_ack = True
    rig.run(100)
    assert rig.app.ring.count == 0


def test_ring_overflow_is_counted_and_reported_once_there_is_room():
    rig = Rig()  # no session: nothing is acknowledged
    rig.host_alive = False
    rig.run(10)  # the first pass adopts the levels it finds
    for _ in range(40):  # 80 door edges + the boot event
        rig.door(4, 1)
        rig.run(60)
        rig.door(4, 0)
        rig.run(60)
    assert rig.app.ring.count == RING_EVENTS
    lost = 81 - RING_EVENTS
    assert rig.app.ring.lost == lost
    rig.host_alive = True
    rig.connect()
    rig.run(1000)
    overflow = [e for e in rig.events if e[2] == "overflow"]
    assert len(overflow) == 1 and overflow[0][5] == lost and overflow[0][3] == "board"
    ids = [e[1] for e in rig.events]
    assert ids == list(range(1, len(ids) + 1))  # lost events take no id: no gaps
    assert rig.app.diagnostics()["events"][2] == lost


def test_host_silence_turns_everything_off_and_refuses_until_a_new_session():
    rig = _ready(board_config(pulse_max_ms=1000))
    rig.request([PULSE, 1, 1000])
    rig.request([PULSE, 2, 1000])  # queued behind channel 1, cut short
    rig.request([PULSE, 3, 1000])  # still waiting when the host falls silent
    rig.request([STRIKE, 4000])
    rig.host_alive = False
    rig.run(1600)
    assert not any(rig.app.outputs)
    assert rig.app.safe_reason is not None and "host silent" in rig.app.safe_reason
    assert not rig.app.session.established
    rig.host_alive = True
    rig.connect()
    assert rig.host.peer["safe_reason"] is not None
    assert "host silent" in rig.host.peer["safe_reason"]
    rig.run(200)
    assert rig.kinds("board")[-1] == "safe_state"
    assert [e[5] for e in rig.events if e[2] == "safe_state"] == [1]  # 1: host silent
    assert rig.kinds("channel", 3) == ["pulse_cancelled"]
    (cut,) = [e for e in rig.events if e[2] == "pulse_done" and e[4] == 2]
    assert 0 < cut[5] < 1000
    (strike,) = [e for e in rig.events if e[2] == "strike_done"]
    assert 1000 < strike[5] < 4000
    assert rig.request([PULSE, 3, 100])[2] == OK  # a new session may actuate again


def test_unprovisioned_board_reports_it_and_refuses_actuation():
    rig = _ready(key=None)
    assert rig.host.peer["provisioned"] is False
    reply = rig.request([PULSE, 1, 100])
    assert reply[2] == AUTH_REQUIRED and "not provisioned" in reply[3]
    assert rig.request([INPUTS])[2] == OK
    assert rig.request([MAINTENANCE, "repl"])[2] == AUTH_REQUIRED
    assert not any(rig.app.outputs)


def test_invalid_config_starts_safe_and_says_why_at_the_handshake():
    rig = _ready(raw=b'{"version": 1, "board_id": "x", "channels": [{"channel": 1}]}')
    assert rig.host.peer["channels"] == 0
    assert "solenoid" in rig.host.peer["config_error"]
    reply = rig.request([PULSE, 1, 100])
    assert reply[2] == NOT_CONFIGURED and "no valid config" in reply[3]


def test_unknown_channel_and_unit_are_refused_by_name():
    rig = _ready()
    reply = rig.request([PULSE, 9, 100])
    assert reply[2] == NOT_CONFIGURED and "channel 9" in reply[3] and "1-4" in reply[3]
    assert rig.request([SLOT, "dropoff", 100])[2] == NOT_CONFIGURED
    assert rig.request([LED, 2, 1])[2] == NOT_CONFIGURED


def test_strike_releases_early_when_the_entrance_door_opens():
    rig = _ready()
    assert rig.request([STRIKE, 5000])[4] == {"ms": 5000}
    strike = rig.cfg.strike
    rig.run(300)
    assert rig.level(strike) == 1
    rig.set_input(C.IN_DOOR, C.U_ENTRANCE, None, 1)
    rig.run(200)
    assert rig.level(strike) == 0
    done = [e for e in rig.events if e[2] == "strike_done"]
    assert len(done) == 1 and 300 <= done[0][5] < 500


def test_slot_pulse_and_deposit_events():
    rig = _ready()
    assert rig.request([SLOT, "return", 200])[2] == OK
    rig.set_input(C.IN_FLAP, C.U_RETURN, None, 1)
    rig.run(100)
    rig.set_input(C.IN_DEPOSIT, C.U_RETURN, None, 1)
    rig.run(100)
    rig.set_input(C.IN_DEPOSIT, C.U_RETURN, None, 0)
    rig.set_input(C.IN_FLAP, C.U_RETURN, None, 0)
    rig.run(300)
    assert rig.kinds("return") == ["flap_open", "deposit", "pulse_done", "flap_closed"]


def test_card_grant_exit_tamper_and_service_door_events():
    rig = _ready()
    for role, unit in (
        (C.IN_GRANT, C.U_ENTRANCE),
        (C.IN_EXIT, C.U_ENTRANCE),
        (C.IN_TAMPER, C.U_TAMPER),
        (C.IN_DOOR, C.U_SERVICE),
    ):
        rig.set_input(role, unit, None, 1)
        rig.run(100)
        rig.set_input(role, unit, None, 0)
        rig.run(100)
    kinds = [(e[3], e[2]) for e in rig.events if e[3] != "board"]
    assert kinds == [
        ("entrance", "grant"),
        ("entrance", "exit_pressed"),
        ("tamper", "tamper_on"),
        ("tamper", "tamper_off"),
        ("service", "door_open"),
        ("service", "door_closed"),
    ]


def test_led_modes_and_blinking():
    rig = _ready()
    led = rig.cfg.led[1]
    assert rig.request([LED, 1, 1])[2] == OK and rig.level(led) == 1
    assert rig.request([LED, 1, 2])[2] == OK
    rig.run(2100)
    toggles = [t for t, i, _ in rig.edges if i == led]
    assert len(toggles) >= 4
    assert rig.request([LED, 1, 7])[2] != OK


def test_inputs_report_and_diagnostics():
    rig = _ready()
    rig.door(2, 1)
    rig.run(100)
    data = rig.request([INPUTS])[4]
    assert data["channels"] == bytes([1, 2, 3, 4])
    assert data["door"] == bytes([0, 1, 0, 0])
    assert data["item"] == bytes([0, 2, 2, 2])
    assert data["entrance"] == {"grant": 0, "door": 0, "exit": 0, "strike": 0}
    assert data["return"] == {"flap": 0, "deposit": 0, "solenoid": 0}
    diag = rig.request([DIAGNOSTICS])[4]
    assert diag["board_id"] == "rig" and diag["reset_reason"] == "power"
    assert diag["uptime_ms"] >= rig.now - 5


def test_duplicate_pulse_after_reconnect_acts_once():
    rig = _ready()
    msg = [PULSE, 4, 100]
    cid = rig.host.request(msg)
    rig.run(300, until=lambda: cid in rig.replies)
    rig.host.connect(rig.now)  # host restarts its session and resends under the same cid
    rig.connect()
    rig.host.resend_request(msg, cid)
    rig.run(500)
    assert len(rig.on_times(rig.out(C.U_CHANNEL, 4))) == 1
    assert rig.app.act.pulses == 1


def test_reset_and_repl_are_acted_on_after_the_reply():
    rig = _ready()
    assert rig.request([RESET])[2] == OK
    assert rig.app.action is None  # not before the host has acknowledged the reply
    rig.run(100)
    assert rig.app.action == "reset"
    rig = _ready()
    rig.request([PULSE, 1, 300])
    assert rig.request([MAINTENANCE, "repl"])[2] == OK
    assert rig.app.action is None
    rig.run(100)
    assert rig.app.action == "repl" and not any(rig.app.outputs)
    assert [e[5] for e in rig.events if e[2] == "safe_state"] == [2]  # 2: host asked


def test_a_rest_after_a_pulse_survives_the_clock_wrapping():
    cfg = C.parse(json.dumps(board_config(pulse_gap_ms=500)).encode())
    act = Actuators(cfg)
    out = cfg.solenoid[1]
    done = []

    def on_done(o, ms, now):
        done.append(ms)

    assert act.request_pulse(out, 100, 0) == STARTED
    for t in range(0, 1000, 10):
        act.step(t, on_done)
    assert done == [100]
    later = TICKS_PERIOD // 2 + 1000  # half the clock's period later: ticks_diff turns negative
    act.step(later, on_done)
    assert act.request_pulse(out, 100, later) == STARTED


def test_replayed_frames_never_move_an_output_again():
    rig = _ready()
    captured = []

    def capture(f):
        captured.append(f)
        return f

    rig.tap = capture
    rig.request([PULSE, 1, 100])
    rig.run(300)
    rig.tap = None
    for f in captured:  # the same session
        rig.app.feed(f, rig.now)
    rig.run(300)
    rig.host.connect(rig.now)
    rig.connect()
    for f in captured:  # a new session
        rig.app.feed(f, rig.now)
    rig.run(300)
    assert len(rig.on_times(rig.out(C.U_CHANNEL, 1))) == 1
    assert rig.app.session.counters()["replays"] + rig.app.session.counters()["tag_errors"] > 0


def test_forged_frames_never_move_an_output():
    rig = _ready()

    def forge(f):
        b = bytearray(f)
        b[-2] ^= 0x01  # last byte of the tag (or a COBS code byte): either way refused
        return bytes(b)

    rig.tap = forge
    rig.host.request([PULSE, 2, 100])
    rig.run(1000)
    assert rig.on_times(rig.out(C.U_CHANNEL, 2)) == []
    c = rig.app.session.counters()
    assert c["tag_errors"] + c["malformed"] > 0


def test_a_host_with_the_wrong_key_gets_no_session():
    rig = Rig(host_key=bytes(32))
    rig.run(2000)
    assert not rig.app.session.established and not rig.host.established
    assert not any(rig.app.outputs)


def test_safe_state_refusal_is_reported_if_a_request_slips_in():
    rig = _ready()
    rig.app.enter_safe("test", rig.now, 1)
    reply = rig.request([PULSE, 1, 100])
    assert reply[2] == SAFE_STATE and "safe state" in reply[3]
