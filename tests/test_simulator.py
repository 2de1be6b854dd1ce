"""The simulator: the real firmware in a MicroPython VM, a simulated world, a host-side
session from protocol/; all on simulated time unless a test says otherwise."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sim_host import SimHost

from controller.boardconfig import Terminal, loads
from tools.mpvm import find_node
from tools.sim.simulator import Simulator, SimulatorError

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_node() is None, reason="node is not installed"),
]

KEY = bytes(range(100, 132))
PULSE, STRIKE, SLOT, INPUTS, DIAGNOSTICS, RESET = 0x10, 0x12, 0x13, 0x14, 0x15, 0x17

TERMINAL = """
[terminal]
kiosk_id = "test-01"
site = "test"

[[boards]]
board_id = "wall"
address = 3
pulse_max_ms = 1000
[[boards.channels]]
channel = 1
solenoid = 0
door = 1
item = 2
[[boards.channels]]
channel = 2
solenoid = 3
door = 4
[[boards.channels]]
channel = 3
solenoid = 5
door = 6
invert = ["door"]
[[boards.channels]]
channel = 4
solenoid = 7
door = 8
[boards.return_slot]
solenoid = 9
flap = 10
deposit = 11
[boards.entrance]
strike = 12
grant = 13
door = 14
exit = 15
"""


@pytest.fixture
def terminal() -> Terminal:
    return loads(TERMINAL, "test-terminal.toml")


@pytest.fixture
def sim(terminal: Terminal) -> Iterator[Simulator]:
    with Simulator(terminal, {"wall": KEY}, tick_ms=2) as s:
        yield s


@pytest.fixture
def host(sim: Simulator) -> SimHost:
    h = SimHost(sim, "wall", KEY)
    h.connect()
    return h


def _pulses(sim: Simulator, channel: int) -> list[tuple[int, int]]:
    """(on, off) times of a channel's solenoid from the world's edge record."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for e in sim.output_edges("wall"):
        if e.name != f"channel {channel} solenoid":
            continue
        if e.on:
            start = e.t
        elif start is not None:
            spans.append((start, e.t))
            start = None
    return spans


def test_pulse_opens_the_door_and_events_arrive_once(sim: Simulator, host: SimHost) -> None:
    reply = host.call([PULSE, 2, 5000])
    assert reply[2] == 0 and reply[4]["ms"] == 1000  # capped by the board
    host.wait(lambda: "door_open" in host.kinds("channel", 2))
    sim.door("wall", 2, False)
    host.wait(lambda: "door_closed" in host.kinds("channel", 2))
    host.wait(lambda: "pulse_done" in host.kinds("channel", 2))
    assert host.kinds("channel", 2) == ["door_open", "pulse_done", "door_closed"] or host.kinds(
        "channel", 2
    ) == ["door_open", "door_closed", "pulse_done"]
    (span,) = _pulses(sim, 2)
    assert 995 <= span[1] - span[0] <= 1005


def test_inverted_contact_is_read_through_the_real_pins(sim: Simulator, host: SimHost) -> None:
    data = host.call([INPUTS])[4]
    assert data["door"] == bytes([0, 0, 0, 0])  # channel 3's pin is high: inverted → closed
    sim.door("wall", 3, True)
    host.wait(lambda: "door_open" in host.kinds("channel", 3))
    assert host.call([INPUTS])[4]["door"] == bytes([0, 0, 1, 0])


def test_jammed_door_stays_shut_but_the_pulse_is_reported(sim: Simulator, host: SimHost) -> None:
    sim.jam("wall", 1, True)
    host.call([PULSE, 1, 300])
    host.wait(lambda: "pulse_done" in host.kinds("channel", 1))
    sim.advance(500)
    assert "door_open" not in host.kinds("channel", 1)
    assert sim.state()["boards"]["wall"]["world"]["doors"][1]["open"] is False


def test_bouncing_sensor_gives_one_event(sim: Simulator, host: SimHost) -> None:
    sim.door("wall", 4, True)
    sim.bounce("wall", "door4", 9, 4)  # the contact chatters for 36 ms, then reads open
    sim.advance(300)
    assert host.kinds("channel", 4) == ["door_open"]


def test_stuck_sensor_ignores_the_world(sim: Simulator, host: SimHost) -> None:
    sim.stick("wall", "door2", 0)
    host.call([PULSE, 2, 200])
    host.wait(lambda: "pulse_done" in host.kinds("channel", 2))
    sim.advance(200)
    assert "door_open" not in host.kinds("channel", 2)
    sim.unstick("wall", "door2")
    host.wait(lambda: "door_open" in host.kinds("channel", 2))


def test_return_slot_deposit_and_entrance(sim: Simulator, host: SimHost) -> None:
    with pytest.raises(SimulatorError, match="locked"):
        sim.deposit("return")
    host.call([SLOT, "return", 200])
    sim.advance(50)
    sim.deposit("return")
    host.wait(lambda: "deposit" in host.kinds("return"))
    sim.swipe()
    host.wait(lambda: "grant" in host.kinds("entrance"))
    host.call([STRIKE, 5000])
    sim.advance(100)
    sim.entrance_door(True)
    host.wait(lambda: "strike_done" in host.kinds("entrance"))
    assert not sim.state()["boards"]["wall"]["world"]["entrance"]["released"]


def test_power_cut_turns_outputs_off_and_the_board_reboots_clean(
    sim: Simulator, host: SimHost
) -> None:
    host.call([PULSE, 1, 1000])
    sim.advance(100)
    assert sim.state()["boards"]["wall"]["world"]["outputs_on"] == ["channel 1 solenoid"]
    sim.power("wall", "cut")
    assert sim.state()["boards"]["wall"]["world"]["outputs_on"] == []
    sim.advance(2000)
    sim.power("wall", "on")
    old_boot = host.boot_id
    host.wait(lambda: host.session.established and host.boot_id != old_boot)
    assert host.session.peer["reset_reason"] == "power"
    sim.advance(500)
    assert sim.state()["boards"]["wall"]["world"]["outputs_on"] == []
    assert host.call([DIAGNOSTICS])[4]["reset_reason"] == "power"


def test_reset_command_reboots_with_reason_soft(sim: Simulator, host: SimHost) -> None:
    old_boot = host.boot_id
    assert host.call([RESET])[2] == 0
    host.wait(lambda: host.session.established and host.boot_id != old_boot)
    assert host.session.peer["reset_reason"] == "soft"


def test_exactly_once_across_a_noisy_line_and_a_reboot(sim: Simulator, host: SimHost) -> None:
    sim.noise("wall", "both", bit_error=0.0005, drop=0.0005, duplicate=0.0005, jitter_ms=3)
    for ch in (1, 2):
        host.request([PULSE, ch, 200])
    host.wait(lambda: all("door_open" in host.kinds("channel", ch) for ch in (1, 2)), 20000)
    for ch in (1, 2):
        sim.door("wall", ch, False)
    host.wait(lambda: all("door_closed" in host.kinds("channel", ch) for ch in (1, 2)), 20000)
    # a reboot with a command in flight: its outcome becomes unknown and is never repeated
    cid = host.request([PULSE, 3, 200])
    sim.advance(4)
    old_boot = host.boot_id
    sim.power("wall", "reboot")
    host.wait(lambda: host.session.established and host.boot_id != old_boot, 20000)
    host.request([PULSE, 4, 200])
    host.wait(lambda: "door_open" in host.kinds("channel", 4), 20000)
    sim.advance(1500)
    assert cid in host.unknown or cid in host.replies
    for ch in (1, 2, 4):
        assert len(_pulses(sim, ch)) == 1, (ch, _pulses(sim, ch))
    assert len(_pulses(sim, 3)) <= 1
    for ch in (1, 2):
        assert host.kinds("channel", ch).count("door_open") == 1
        assert host.kinds("channel", ch).count("door_closed") == 1
    assert host.kinds("channel", 4).count("door_open") == 1
    wall = sim.boards["wall"]
    faults = [wall.to_board.stats, wall.to_host.stats]
    assert sum(s["flipped"] + s["dropped"] + s["duplicated"] for s in faults) > 0


def test_forged_and_replayed_frames_never_move_an_output(sim: Simulator, host: SimHost) -> None:
    host.call([PULSE, 1, 100])
    sim.advance(300)
    captured = list(host.sent_frames)
    before = len(sim.output_edges("wall"))
    for frame in captured:  # replay within the session
        sim.write("wall", frame)
    sim.advance(300)
    for frame in captured:  # forged: one bit flipped in each
        forged = bytearray(frame)
        forged[len(forged) // 2] ^= 0x10
        sim.write("wall", bytes(forged))
    sim.advance(300)
    assert len(sim.output_edges("wall")) == before
    assert len(_pulses(sim, 1)) == 1
