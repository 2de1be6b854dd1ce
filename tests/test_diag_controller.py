"""What the daemon exposes for the diagnostics, on one simulated clock with the real
firmware (tests/terminal_rig.py): the board diagnostics the links fetch, every board in
detail, the entrance and slots in ``state``, the LED per compartment; and the parser of
the firmware's ``diagnostics`` reply, property-tested."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from mqtt_schemas import SCHEMA_DIR
from terminal_rig import STAFF_PIN, TerminalRig, demo_rig

from controller.boarddiag import EVENT_COUNTERS, LINK_COUNTERS, parse_diagnostics
from controller.boardlink import DIAGNOSTICS_EVERY_MS, LinkState, RequestOutcome
from controller.boardtypes import ReportError
from controller.compartments import Led
from controller.operations import LED_ON


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[TerminalRig]:
    with demo_rig(tmp_path / "amtomat.db") as r:
        yield r


def state(rig: TerminalRig) -> dict[str, Any]:
    """The state reply, from the controller directly: the rig's kiosk offers 512-byte frames,
    too small for it (tests/test_diag_cli.py reads it through the bridge)."""
    result = rig.local("state")
    assert result.ok and result.data is not None, result
    return result.data


def detail(rig: TerminalRig, board: str) -> dict[str, Any]:
    return next(b for b in state(rig)["boards_detail"] if b["board"] == board)


def compartment(rig: TerminalRig, label: str) -> dict[str, Any]:
    result = rig.local("compartments")
    assert result.data is not None
    return next(c for c in result.data["compartments"] if c["compartment"] == label)


def led_notices(rig: TerminalRig, label: str) -> list[str | None]:
    assert rig.kiosk is not None
    return [
        f.get("led")
        for name, f in rig.kiosk.notices
        if name == "compartment" and f["compartment"] == label
    ]


def test_each_board_in_detail_with_both_ends_counters_and_no_key(rig: TerminalRig) -> None:
    link = rig.links["wall-a"]
    d = next(b for b in state(rig)["boards_detail"] if b["board"] == "wall-a")
    assert d["state"] == "ready" and d["error"] is None
    assert d["address"] == 1 and d["port"] is None  # the rig wires the links in memory
    assert d["firmware"] == link.identity["fw_version"] and d["fw_hash"] == "dev"
    assert d["boot_id"] == link.boot_id and d["reset_reason"] == "power"
    assert d["provisioned"] is True
    assert set(d["link"]) == set(LINK_COUNTERS) and d["link"]["frames_in"] > 0
    # no diagnostics yet: the link lets the connect settle first
    assert (d["uptime_s"], d["diagnostics_age_s"], d["board_link"], d["events"]) == (
        None,
        None,
        None,
        None,
    )
    rig.sim.advance(1500)
    d = detail(rig, "wall-a")
    assert set(d["board_link"]) == set(LINK_COUNTERS) and d["board_link"]["frames_in"] > 0
    assert set(d["events"]) == set(EVENT_COUNTERS) and d["events"]["lost"] == 0
    assert 0 <= d["diagnostics_age_s"] < 1.5
    uptime = link.diagnostics.uptime_ms / 1000 if link.diagnostics else -1
    assert uptime <= d["uptime_s"] <= uptime + 1.5
    assert d["board_stats"]["pulses"] == 0 and d["board_stats"]["crash"] is None
    shown = repr(state(rig))
    for key in [*rig.keys.values(), rig.kiosk_key]:
        assert key is not None and key.hex() not in shown and repr(key) not in shown


def test_diagnostics_after_every_connect_and_every_minute(rig: TerminalRig) -> None:
    link = rig.links["wall-b"]
    rig.sim.advance(1500)
    first = link.diagnostics
    assert first is not None and first.board_id == "wall-b" and first.boot_id == link.boot_id
    requests = link.counters()["requests"]
    rig.sim.advance(DIAGNOSTICS_EVERY_MS - 2000)
    assert link.diagnostics is first
    rig.sim.advance(2500)
    second = link.diagnostics
    assert second is not None and second.received_ms > first.received_ms
    assert second.uptime_ms > first.uptime_ms
    counters = link.counters()
    assert counters["requests"] == requests + 1 and counters["replies"] == requests + 1
    old_boot = link.boot_id
    rig.sim.power("wall-b", "reset")
    rig.wait(lambda: link.state is LinkState.READY and link.boot_id != old_boot)
    assert detail(rig, "wall-b")["uptime_s"] is None  # the old boot's figures do not count
    rig.sim.advance(1500)
    third = link.diagnostics
    assert third is not None and third.boot_id == link.boot_id and third.reset_reason == "hard"
    assert detail(rig, "wall-b")["uptime_s"] < 5


def test_diagnostics_wait_while_any_other_request_waits(rig: TerminalRig) -> None:
    link = rig.links["wall-a"]
    answered: list[RequestOutcome] = []
    keep_busy = True

    def again(outcome: RequestOutcome) -> None:
        answered.append(outcome)
        if keep_busy:  # the next request leaves before the link looks for idle time
            link.request("inputs", [], rig.sim.now, again)

    link.request("inputs", [], rig.sim.now, again)
    rig.sim.advance(4000)
    assert len(answered) > 10 and all(o.ok for o in answered)
    assert link.diagnostics is None
    assert link.counters()["requests"] == 1 + len(answered) + 1  # the connect's inputs read
    keep_busy = False
    rig.wait(lambda: link.diagnostics is not None, 500)


def test_entrance_slots_and_alarm_times_in_state(rig: TerminalRig) -> None:
    s = state(rig)
    assert s["kiosk_id"] == "demo-01" and s["boards_ready"] == 2 and s["boards"] == 2
    assert (s["entrance"], s["entrance_door"]) == ("normal", "closed")
    assert s["slots"] == [
        {"unit": "return", "state": "idle", "flap": "closed"},
        {"unit": "dropoff", "state": "idle", "flap": "closed"},
    ]
    assert s["alarms"] == []
    started = rig.call("dropoff")
    assert started.ok and started.data is not None
    assert state(rig)["slots"][1]["state"] == "busy"
    rig.sim.advance(300)
    rig.sim.deposit("dropoff")
    rig.wait(lambda: state(rig)["slots"][1]["flap"] == "open", 2000)
    idle = {"unit": "dropoff", "state": "idle", "flap": "closed"}
    rig.wait(lambda: state(rig)["slots"][1] == idle, 3000)
    rig.sim.entrance_door(True)  # nobody swiped a card: forced open
    rig.wait(lambda: state(rig)["entrance_door"] == "open")
    s = state(rig)
    (alarm,) = s["alarms"]
    assert alarm["alarm"] == "forced_open" and alarm["subject"] == "entrance"
    assert alarm["raised_utc"] <= s["utc"] < alarm["raised_utc"] + 1
    rig.sim.entrance_door(False)
    rig.unplug("wall-a", True)
    rig.wait(lambda: rig.links["wall-a"].state is not LinkState.READY, 5000)
    assert state(rig)["slots"][0]["state"] == "offline"


def test_a_stuck_flap_sensor_shows_in_the_slot(rig: TerminalRig) -> None:
    rig.sim.stick("wall-a", "return.flap", 1)
    rig.wait(lambda: state(rig)["slots"][0]["flap"] == "open", 1000)
    rig.sim.unstick("wall-a", "return.flap")
    rig.wait(lambda: state(rig)["slots"][0]["flap"] == "closed", 1000)


def test_led_is_what_the_board_confirmed_and_resets_after_a_reconnect(rig: TerminalRig) -> None:
    b01 = rig.ctl.wall.get("B01")
    assert b01 is not None and b01.led is Led.OFF
    assert compartment(rig, "B01")["led"] == "off" and compartment(rig, "A01")["led"] == "none"
    rig.ctl.set_led(b01, LED_ON, None)
    assert b01.led is Led.OFF  # not before the board said so
    rig.wait(lambda: b01.led is Led.ON, 1000)
    assert compartment(rig, "B01")["led"] == "on"
    rig.wait(lambda: led_notices(rig, "B01")[-1:] == ["on"], 500)
    link = rig.links["wall-b"]
    old_boot = link.boot_id
    rig.sim.power("wall-b", "reset")  # the board boots with every output off
    rig.wait(lambda: link.state is LinkState.READY and link.boot_id != old_boot)
    rig.wait(lambda: b01.led is Led.OFF, 1000)
    assert led_notices(rig, "B01")[-1] == "off"
    a01 = rig.ctl.wall.get("A01")
    assert a01 is not None and a01.led is Led.NONE
    rig.ctl.set_led(a01, LED_ON, None)  # no LED wired: nothing is sent
    rig.sim.advance(200)
    assert a01.led is Led.NONE and compartment(rig, "A01")["led"] == "none"


def test_a_pickup_blinks_the_led_until_the_door_closes(rig: TerminalRig) -> None:
    rig.staff("mueller", STAFF_PIN)
    loaded = rig.call("load", reference="LED-1", compartment="B02")
    assert loaded.ok and loaded.data is not None
    rig.wait(lambda: rig.ctl.wall.by_label["B02"].door.value == "open")
    rig.sim.item("wall-b", 2, True)
    rig.sim.advance(400)
    rig.sim.door("wall-b", 2, False)
    rig.wait(lambda: rig.ctl.wall.by_label["B02"].state.value == "loaded", 3000)
    rig.call("staff_logout")
    b02 = rig.ctl.wall.by_label["B02"]
    assert b02.led is Led.OFF
    picked = rig.call("pickup", reference="LED-1", code=loaded.data["code"])
    assert picked.ok and picked.data is not None, picked
    kiosk = rig.kiosk
    assert kiosk is not None
    rig.wait(lambda: b02.led is Led.BLINK, 3000)
    assert compartment(rig, "B02")["led"] == "blink"
    rig.wait(lambda: b02.door.value == "open", 3000)
    rig.sim.item("wall-b", 2, False)
    rig.sim.door("wall-b", 2, False)
    rig.wait(lambda: kiosk.done(picked.data["op"]) is not None, 3000)  # type: ignore[index]
    assert b02.led is Led.OFF
    assert "blink" in led_notices(rig, "B02") and led_notices(rig, "B02")[-1] == "off"


def test_the_compartment_schema_takes_the_led_and_nothing_else() -> None:
    schema = json.loads((SCHEMA_DIR / "compartment.schema.json").read_text())
    check = Draft202012Validator(schema)
    base = {"compartment": "B01", "state": "loaded", "door": "closed", "size": "S",
            "utc": "2026-11-21T10:15:02.118Z"}  # fmt: skip
    assert check.is_valid(base)  # the LED is optional
    for led in ("off", "on", "blink", "none"):
        assert check.is_valid({**base, "led": led})
    assert not check.is_valid({**base, "led": "bright"})


# ----- the diagnostics reply parser --------------------------------------------------------

REPLY: dict[str, Any] = {
    "fw_version": "0.3.0",
    "fw_hash": "dev",
    "board_id": "wall-a",
    "uptime_ms": 12345,
    "reset_reason": "power",
    "boot_id": 77,
    "crash": None,
    "mem_free": 100_000,
    "mem_alloc": -1,
    "events": [12, 0, 3, 1],
    "pulses": 4,
    "commands": 9,
    "refused": 1,
    "safe_entries": 2,
    "steps": 1000,
    "link": [10, 11, 1, 2, 3, 4, 5, 6, -1],
}


def test_a_firmware_reply_parses_into_named_counters() -> None:
    d = parse_diagnostics(REPLY, 500)
    assert d.received_ms == 500 and d.board_id == "wall-a" and d.boot_id == 77
    assert d.events == {"last_id": 12, "held": 0, "lost": 3, "bad_acks": 1}
    assert d.link["frames_in"] == 10 and d.link["link_downs"] == 5
    assert d.link["srtt_ms"] is None  # -1: no round trip measured yet
    assert d.mem_alloc == -1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"uptime_ms": "12"}, "uptime_ms must be an integer >= 0, got '12'"),
        ({"pulses": True}, "pulses must be an integer >= 0, got True"),
        ({"fw_version": None}, "fw_version must be text, got None"),
        ({"events": [1, 2]}, "events must be a list of 4 integers"),
        ({"link": [0] * 8 + ["x"]}, "link.srtt_ms must be an integer >= -1, got 'x'"),
        ({"crash": 5}, "crash must be text or null, got 5"),
        ({"boot_id": -3}, "boot_id must be an integer >= 0, got -3"),
    ],
)
def test_a_malformed_reply_names_the_value(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ReportError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_diagnostics({**REPLY, **change}, 0)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.text(max_size=8),
    st.binary(max_size=4),
)
anything = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=10), st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=30,
)


@given(data=anything)
def test_any_data_parses_or_fails_with_a_report_error(data: Any) -> None:
    with contextlib.suppress(ReportError):  # any other exception fails the test
        parse_diagnostics(data, 0)


@given(
    changes=st.dictionaries(st.sampled_from(sorted(REPLY)), anything, max_size=3),
    counters=st.lists(st.integers(-1, 2**31), min_size=9, max_size=9),
)
def test_near_valid_replies_parse_or_name_a_key(
    changes: dict[str, Any], counters: list[int]
) -> None:
    data = {**REPLY, "link": counters, **changes}
    try:
        d = parse_diagnostics(data, 0)
    except ReportError as exc:
        assert any(key in str(exc) for key in REPLY), exc
        return
    assert list(d.link) == list(LINK_COUNTERS) and list(d.events) == list(EVENT_COUNTERS)
