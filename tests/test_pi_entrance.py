"""An entrance wired to the Pi: gpiozero's mock pins (the only fake: hardware) feed the
real controller, whose decisions drive the strike relay pin; time is simulated."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_gpio import ENTRANCE, EXIT, Rig, make_rig

from controller.config import EntranceSettings, load
from controller.store import Store
from controller.terminal import TerminalController

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo-terminal.toml"


@pytest.fixture
def wired(tmp_path: Path) -> Iterator[tuple[TerminalController, Rig]]:
    cfg = load(DEMO)
    cfg = dataclasses.replace(cfg, entrance=EntranceSettings(board="pi", strike_ms=3000))
    ctl = TerminalController(cfg, Store(tmp_path / "a.db"))
    rig = make_rig(on_input=ctl.on_pi_input)
    ctl.gpio = rig.gpio
    yield ctl, rig
    rig.gpio.close()


def _advance(ctl: TerminalController, rig: Rig, seconds: float) -> None:
    rig.advance(seconds)
    ctl.step(ctl.timers.now_ms + int(seconds * 1000))


def _press(rig: Rig, bcm: int, active: bool, inverted: bool) -> None:
    pin = rig.pin(bcm)
    if active != inverted:
        pin.drive_high()
    else:
        pin.drive_low()


def test_grant_releases_the_strike_and_the_door_ends_it_early(
    wired: tuple[TerminalController, Rig],
) -> None:
    ctl, rig = wired
    strike = rig.pin(ENTRANCE.strike)
    _press(rig, ENTRANCE.door, False, False)
    _advance(ctl, rig, 0.2)
    _press(rig, ENTRANCE.grant, True, True)
    _advance(ctl, rig, 0.1)
    assert strike.state  # released
    assert ctl.store.counters()["entrance_grants"] == 1
    _press(rig, ENTRANCE.door, True, False)
    _advance(ctl, rig, 0.1)
    assert not strike.state  # released early once the door opened
    assert ("forced_open", "entrance") not in ctl.alarms.active


def test_lockdown_refuses_grants_but_the_exit_button_still_opens(
    wired: tuple[TerminalController, Rig],
) -> None:
    ctl, rig = wired
    strike = rig.pin(ENTRANCE.strike)
    assert ctl.entrance.set_mode("lockdown", "test").ok
    _press(rig, ENTRANCE.grant, True, True)
    _advance(ctl, rig, 0.1)
    assert not strike.state
    assert ctl.store.counters()["entrance_refused"] == 1
    _press(rig, ENTRANCE.grant, False, True)
    _press(rig, EXIT, True, True)
    _advance(ctl, rig, 0.1)
    assert strike.state


def test_door_opened_without_a_grant_is_forced(wired: tuple[TerminalController, Rig]) -> None:
    ctl, rig = wired
    _press(rig, ENTRANCE.door, False, False)
    _advance(ctl, rig, 0.2)
    _press(rig, ENTRANCE.door, True, False)
    _advance(ctl, rig, 0.2)
    assert ("forced_open", "entrance") in ctl.alarms.active
    _advance(ctl, rig, 61)
    assert ("held_open", "entrance") in ctl.alarms.active
    _press(rig, ENTRANCE.door, False, False)
    _advance(ctl, rig, 0.2)
    assert not ctl.alarms.active
