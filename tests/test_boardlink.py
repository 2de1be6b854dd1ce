"""controller.boardlink against the real firmware in the simulator, on simulated time: the
handshake and identity check, events exactly once, requests exactly once across lost links,
reboots and timeouts; and the inputs report parser, property-tested."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import pytest
from boardlink_rig import Rig
from hypothesis import given
from hypothesis import strategies as st

from controller.boardconfig import load
from controller.boardlink import (
    MAX_PENDING,
    BoardBusy,
    BoardEvent,
    BoardLink,
    BoardMismatch,
    BoardOffline,
    InputReport,
    LinkState,
    Outcome,
    ReportError,
    RequestError,
    parse_input_report,
)
from controller.errors import ControllerError
from tools.mpvm import REPO_ROOT, find_node
from tools.sim.simulator import Simulator

needs_node = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_node() is None, reason="node is not installed"),
]

TERMINAL = load(REPO_ROOT / "examples" / "demo-terminal.toml")
KEY_A = os.urandom(32)  # wall-a is provisioned; wall-b runs without a key


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(TERMINAL, {"wall-a": KEY_A, "wall-b": None}, tick_ms=2) as s:
        yield s


@pytest.fixture
def rig(sim: Simulator) -> Iterator[Rig]:
    r = Rig(sim)
    yield r
    for board_id in list(r.probes):
        r.detach(board_id)
    r.clear_faults()
    sim.on_tick = None


def _eids_consecutive(events: list[BoardEvent]) -> bool:
    by_boot: dict[int, list[int]] = {}
    for e in events:
        by_boot.setdefault(e.boot_id, []).append(e.eid)
    return all(ids == list(range(ids[0], ids[0] + len(ids))) for ids in by_boot.values())


class TestWithTheFirmware:
    pytestmark = needs_node

    def test_handshake_reaches_ready_and_reads_the_inputs(self, rig: Rig) -> None:
        probe = rig.attach("wall-a", KEY_A)
        rig.ready("wall-a")
        link = probe.link
        assert probe.states == [LinkState.CONNECTING, LinkState.READY]
        assert link.identity["board_id"] == "wall-a"
        assert isinstance(link.boot_id, int)
        assert link.failures == 0 and link.last_error == ""
        (report,) = probe.inputs
        assert report.doors == dict.fromkeys(range(1, 13), False)
        assert report.items == dict.fromkeys(range(1, 13))  # no item sensors on wall-a
        assert report.leds == dict.fromkeys(range(1, 13))
        assert report.units["entrance"] == {"door": 0, "grant": 0, "exit": 0, "strike": 0}
        assert report.units["return"] == {"flap": 0, "deposit": 0, "solenoid": 0}
        assert link.last_inputs == report
        counters = link.counters()
        assert counters["connects"] == 1 and counters["handshakes"] == 1
        assert counters["requests"] == 1 and counters["replies"] == 1  # the inputs read

    def test_pulse_is_answered_and_each_door_event_arrives_once(self, rig: Rig) -> None:
        sim = rig.sim
        probe = rig.attach("wall-a", KEY_A)
        rig.ready("wall-a")
        t0 = sim.now
        outcome = rig.call("wall-a", "pulse", [1, 5000])
        assert outcome.ok and outcome.outcome is Outcome.REPLY
        assert outcome.name == "pulse" and outcome.data["ms"] == 300  # the board's cap
        rig.wait(lambda: "door_open" in probe.kinds(1))
        sim.door("wall-a", 1, False)
        rig.wait(lambda: {"door_closed", "pulse_done"} <= set(probe.kinds(1)))
        sim.advance(500)
        assert sorted(probe.kinds(1)) == ["door_closed", "door_open", "pulse_done"]
        assert rig.pulses("wall-a", 1, t0) == 1
        assert _eids_consecutive(probe.events)
        assert all(e.board_id == "wall-a" and e.boot_id == probe.link.boot_id for e in probe.events)
        held = rig.call("wall-a", "diagnostics", []).data["events"][1]
        assert held == 0  # every event was acknowledged after on_event returned

    def test_requests_need_a_ready_link_and_valid_arguments(self, rig: Rig) -> None:
        probe = rig.attach("wall-a", KEY_A, open_port=False)
        link = probe.link
        with pytest.raises(BoardOffline, match="wall-a is offline"):
            rig.request("wall-a", "pulse", [1, 100])
        link.port_opened(rig.sim.now)
        with pytest.raises(BoardOffline, match="connecting"):
            rig.request("wall-a", "pulse", [1, 100])
        rig.ready("wall-a")
        with pytest.raises(RequestError, match=r"'explode'.*pulse, led"):
            rig.request("wall-a", "explode", [])
        with pytest.raises(RequestError, match=r"channel must be uint, got '1'"):
            rig.request("wall-a", "pulse", ["1", 100])
        with pytest.raises(RequestError, match=r"pulse takes 2 arguments \(channel, ms\)"):
            rig.request("wall-a", "pulse", [1, 100, 7])
        with pytest.raises(RequestError, match="events_ack"):
            rig.request("wall-a", "events_ack", [3])
        with pytest.raises(RequestError, match=r"timeout_ms.*0"):
            rig.request("wall-a", "inputs", [], timeout_ms=0)
        assert link.counters()["requests"] == 1  # only the link's own inputs read
        link.port_closed(rig.sim.now, "unplugged")
        assert link.state is LinkState.OFFLINE
        with pytest.raises(BoardOffline, match="unplugged"):
            rig.request("wall-a", "pulse", [1, 100])

    def test_config_mismatch_names_both_sides_and_events_still_flow(self, rig: Rig) -> None:
        spec = rig.sim.boards["wall-a"].spec
        shorter = dataclasses.replace(spec, channels=spec.channels[:-1])
        probe = rig.attach("wall-a", KEY_A, shorter)
        rig.wait(lambda: probe.link.state is LinkState.MISMATCH)
        error = probe.link.last_error
        assert "the board has 12 channels, the terminal config 11" in error
        assert "config hash on the board" in error and "amtomat flash" in error
        assert probe.link.identity["config_hash"] in error
        with pytest.raises(BoardMismatch, match="12 channels"):
            rig.request("wall-a", "pulse", [5, 100])
        rig.sim.door("wall-a", 5, True)
        rig.wait(lambda: "door_open" in probe.kinds(5))
        rig.sim.door("wall-a", 5, False)
        rig.wait(lambda: "door_closed" in probe.kinds(5))
        assert probe.inputs == [] and probe.link.failures == 0

    def test_a_wrong_key_never_connects_and_says_why(self, rig: Rig) -> None:
        probe = rig.attach("wall-a", os.urandom(32), connect_timeout_ms=2000)
        rig.sim.advance(7000)
        link = probe.link
        assert LinkState.READY not in probe.states and link.state is LinkState.CONNECTING
        assert link.failures == 3
        assert "wrong key" in link.last_error
        with pytest.raises(BoardOffline, match="wrong key"):
            rig.request("wall-a", "pulse", [1, 100])

    def test_key_and_provisioning_must_agree(self, rig: Rig) -> None:
        with_key = rig.attach("wall-b", os.urandom(32))  # wall-b has no key
        rig.sim.advance(3000)
        assert with_key.link.state is LinkState.CONNECTING
        assert "downgrade refused" in with_key.link.last_error
        without_key = rig.attach("wall-a", None)  # wall-a has one
        rig.sim.advance(3000)
        assert without_key.link.state is LinkState.CONNECTING
        assert "no key is configured" in without_key.link.last_error
        rig.detach("wall-a")
        neither = rig.attach("wall-b", None)
        rig.ready("wall-b")
        assert neither.inputs[0].items[1] is False and neither.inputs[0].leds[1] == 0
        refused = rig.call("wall-b", "pulse", [1, 100])
        assert refused.outcome is Outcome.REPLY and refused.status == 9 and not refused.ok
        assert "not provisioned" in (refused.reason or "")

    def test_a_lossy_line_delivers_every_event_once(self, rig: Rig) -> None:
        sim = rig.sim
        probe = rig.attach("wall-a", KEY_A)
        rig.ready("wall-a")
        sim.noise("wall-a", "both", drop=0.003, bit_error=0.003, duplicate=0.003, jitter_ms=3)
        for _ in range(6):
            for ch in (6, 7):
                sim.door("wall-a", ch, True)
            sim.advance(120)
            for ch in (6, 7):
                sim.door("wall-a", ch, False)
            sim.advance(120)
        rig.wait(lambda: all(len(probe.kinds(ch)) == 12 for ch in (6, 7)), 60000)
        sim.advance(2000)
        for ch in (6, 7):
            assert probe.kinds(ch) == ["door_open", "door_closed"] * 6
        assert _eids_consecutive(probe.events)
        board = sim.boards["wall-a"]
        faults = board.to_board.stats, board.to_host.stats
        assert sum(s["dropped"] + s["flipped"] + s["duplicated"] for s in faults) > 0

    def test_an_event_whose_ack_was_lost_is_delivered_once(self, rig: Rig) -> None:
        sim = rig.sim
        armed = False

        def lose_acks_once_ready(link: BoardLink) -> None:
            nonlocal armed
            if armed and link.state is LinkState.READY:
                armed = False  # the key confirmation went out; the events_ack is lost
                sim.noise("wall-a", "in", cut=True)

        probe = rig.attach("wall-a", KEY_A, on_state=lose_acks_once_ready)
        rig.ready("wall-a")
        sim.noise("wall-a", "in", cut=True)  # events reach the host, its acks are lost
        sim.door("wall-a", 11, True)
        rig.wait(lambda: "door_open" in probe.kinds(11))
        rig.wait(lambda: probe.link.state is LinkState.CONNECTING)
        armed = True
        sim.noise("wall-a", "in", cut=False)
        rig.wait(lambda: probe.link.state is LinkState.READY)
        sim.advance(100)  # the board re-sends the unacknowledged event meanwhile
        sim.noise("wall-a", "in", cut=False)
        sim.door("wall-a", 11, False)
        rig.wait(lambda: "door_closed" in probe.kinds(11))
        sim.advance(500)
        assert probe.kinds(11) == ["door_open", "door_closed"]
        assert probe.link.counters()["duplicate_events"] >= 1  # the board sent it again
        assert _eids_consecutive(probe.events)

    def test_a_reset_mid_request_gives_unknown_and_never_a_second_pulse(self, rig: Rig) -> None:
        sim = rig.sim
        probe = rig.attach("wall-a", KEY_A)
        rig.ready("wall-a")
        old_boot = probe.link.boot_id
        t0 = sim.now
        sim.noise("wall-a", "out", cut=True)  # the board acts, its reply is lost
        cid = rig.request("wall-a", "pulse", [2, 200], timeout_ms=30000)
        rig.wait(lambda: rig.pulses("wall-a", 2, t0) == 1)
        sim.power("wall-a", "reset")
        sim.noise("wall-a", "out", cut=False)
        rig.wait(lambda: cid in probe.outcomes, 20000)
        (outcome,) = probe.outcomes[cid]
        assert outcome.outcome is Outcome.UNKNOWN and not outcome.ok
        assert outcome.reason == "board rebooted (reset reason: hard) before replying"
        rig.wait(lambda: probe.link.state is LinkState.READY and probe.link.boot_id != old_boot)
        sim.advance(3000)
        assert rig.pulses("wall-a", 2, t0) == 1
        assert probe.outcomes[cid] == [outcome]
        assert probe.link.counters()["unknown_outcomes"] == 1
        sim.door("wall-a", 2, False)

    def test_a_cut_link_restored_without_reboot_answers_the_request_once(self, rig: Rig) -> None:
        sim = rig.sim
        probe = rig.attach("wall-a", KEY_A)
        rig.ready("wall-a")
        boot = probe.link.boot_id
        t0 = sim.now
        sim.noise("wall-a", "out", cut=True)
        cid = rig.request("wall-a", "pulse", [3, 200], timeout_ms=30000)
        rig.wait(lambda: probe.link.state is LinkState.CONNECTING)  # the link is lost
        assert rig.pulses("wall-a", 3, t0) == 1 and cid not in probe.outcomes
        sim.noise("wall-a", "out", cut=False)
        rig.wait(lambda: cid in probe.outcomes, 20000)
        (outcome,) = probe.outcomes[cid]
        assert outcome.ok and outcome.data["ms"] == 200
        assert probe.link.state is LinkState.READY and probe.link.boot_id == boot
        assert probe.link.counters()["resent_requests"] >= 1
        rig.wait(lambda: len(probe.inputs) == 2)  # read again after the reconnect
        sim.advance(2000)
        assert rig.pulses("wall-a", 3, t0) == 1 and probe.outcomes[cid] == [outcome]
        sim.door("wall-a", 3, False)

    def test_a_request_without_reply_times_out_and_is_never_sent_again(self, rig: Rig) -> None:
        sim = rig.sim
        probe = rig.attach("wall-a", KEY_A)
        rig.ready("wall-a")
        t0 = sim.now
        sim.cut_link("wall-a", True)
        cid = rig.request("wall-a", "pulse", [4, 200], timeout_ms=1000)
        rig.wait(lambda: cid in probe.outcomes)
        (outcome,) = probe.outcomes[cid]
        assert outcome.outcome is Outcome.UNKNOWN and outcome.reason == "no reply within 1000 ms"
        rig.wait(lambda: probe.link.state is LinkState.CONNECTING)
        sim.cut_link("wall-a", False)
        rig.wait(lambda: probe.link.state is LinkState.READY)
        sim.advance(2000)
        assert rig.pulses("wall-a", 4, t0) == 0
        assert probe.outcomes[cid] == [outcome]

    def test_events_lost_at_the_board_are_reported_not_fatal(self, rig: Rig) -> None:
        sim = rig.sim
        probe = rig.attach("wall-a", KEY_A)
        rig.ready("wall-a")
        sim.cut_link("wall-a", True)
        for _ in range(40):  # 80 events: more than the board's ring holds
            sim.door("wall-a", 8, True)
            sim.advance(70)
            sim.door("wall-a", 8, False)
            sim.advance(70)
        sim.cut_link("wall-a", False)
        rig.wait(lambda: "overflow" in probe.kinds(unit="board"), 30000)
        (overflow,) = [e for e in probe.events if e.kind == "overflow"]
        assert overflow.value is not None and overflow.value > 0
        assert probe.link.state is LinkState.READY
        assert _eids_consecutive(probe.events)
        doors = probe.kinds(8)
        assert doors == (["door_open", "door_closed"] * 40)[: len(doors)]
        assert len(doors) + overflow.value == 80  # the ring filled up with door events
        sim.door("wall-a", 8, True)
        rig.wait(lambda: probe.kinds(8)[-1:] == ["door_open"])
        sim.door("wall-a", 8, False)

    def test_failing_callbacks_are_counted_and_the_link_goes_on(self, rig: Rig) -> None:
        sim = rig.sim

        def explode(event: BoardEvent) -> None:
            if event.kind == "door_open" and event.channel == 9:
                raise RuntimeError("disk full")

        probe = rig.attach("wall-a", KEY_A, on_event=explode)
        rig.ready("wall-a")
        sim.door("wall-a", 9, True)
        sim.advance(100)
        sim.door("wall-a", 9, False)
        rig.wait(lambda: "door_closed" in probe.kinds(9))

        def bad_done(outcome: Any) -> None:
            raise RuntimeError("bug")

        probe.link.request("inputs", [], sim.now, bad_done)
        sim.advance(300)
        assert probe.link.state is LinkState.READY
        assert probe.kinds(9) == ["door_open", "door_closed"]
        assert probe.link.counters()["handler_errors"] == 2

    def test_at_most_sixteen_requests_wait_for_a_reply(self, rig: Rig) -> None:
        sim = rig.sim
        probe = rig.attach("wall-a", KEY_A)
        rig.ready("wall-a")
        sim.advance(200)
        sim.cut_link("wall-a", True)
        cids = [rig.request("wall-a", "diagnostics", [], timeout_ms=20000) for _ in range(16)]
        with pytest.raises(BoardBusy, match=f"{MAX_PENDING} requests wait"):
            rig.request("wall-a", "diagnostics", [])
        sim.advance(300)
        sim.cut_link("wall-a", False)
        rig.wait(lambda: all(cid in probe.outcomes for cid in cids), 20000)
        sim.advance(1000)
        assert all(len(probe.outcomes[cid]) == 1 and probe.outcomes[cid][0].ok for cid in cids)


def test_a_key_of_the_wrong_size_is_refused_without_showing_it() -> None:
    key = b"secret-key-material"
    with pytest.raises(ControllerError, match="32 bytes, got 19") as info:
        BoardLink(TERMINAL.boards[0], key, lambda data: None, on_event=lambda e: None)
    assert "secret" not in str(info.value)


# ----- the inputs report ---------------------------------------------------------------

channel_sets = st.lists(st.integers(1, 255), min_size=0, max_size=20, unique=True)


@st.composite
def reports(draw: st.DrawFn) -> tuple[dict[str, Any], list[int]]:
    chans = draw(channel_sets)
    n = len(chans)
    data: dict[str, Any] = {
        "channels": bytes(chans),
        "door": bytes(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))),
        "item": bytes(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))),
        "on": bytes(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))),
        "led": bytes(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))),
        "safe": draw(st.none() | st.text(max_size=20)),
    }
    units = draw(
        st.dictionaries(
            st.sampled_from(["return", "dropoff", "entrance", "tamper", "service"]),
            st.dictionaries(
                st.sampled_from(["door", "flap", "strike", "grant"]), st.integers(0, 1)
            ),
        )
    )
    data.update(units)
    return data, chans


@given(reports())
def test_a_firmware_report_parses_channel_by_channel(
    case: tuple[dict[str, Any], list[int]],
) -> None:
    data, chans = case
    report = parse_input_report(data)
    for i, ch in enumerate(chans):
        assert report.doors[ch] is bool(data["door"][i])
        assert report.items[ch] == (None if data["item"][i] == 2 else bool(data["item"][i]))
        assert report.leds[ch] == (None if data["led"][i] == 3 else data["led"][i])
        assert report.energised[ch] is bool(data["on"][i])
    assert set(report.doors) == set(chans)
    assert report.units == {k: v for k, v in data.items() if isinstance(v, dict)}
    assert report.safe_reason == data["safe"]


cbor_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-300, 300)
    | st.binary(max_size=8)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.one_of(
        cbor_like,
        reports().map(lambda c: c[0]),
        st.dictionaries(
            st.sampled_from(["channels", "door", "item", "on", "led", "safe", "entrance"]),
            cbor_like,
        ),
    )
)
def test_any_data_parses_or_fails_with_a_report_error(data: Any) -> None:
    try:
        report = parse_input_report(data)
    except ReportError as exc:
        assert str(exc).startswith("inputs reply:")
    else:
        assert isinstance(report, InputReport)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "data must be a map, got [1, 2]"),
        ({"channels": b"\x01\x01"}, "channels must be distinct"),
        ({"channels": b"\x01", "door": b"\x02"}, "door holds 2, at most 1"),
        ({"channels": b"\x01", "door": b""}, "door must be 1 bytes, got b''"),
    ],
)
def test_a_malformed_report_names_the_value(data: object, message: str) -> None:
    with pytest.raises(ReportError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_input_report(data)
