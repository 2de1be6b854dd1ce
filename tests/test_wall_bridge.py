"""The wall's bridge source against the real terminal: the simulated firmware, the real
controller and SQLite (tests/terminal_rig.py), served by the real BridgeServer on a TCP
socket; the wall connects with the real client library and the pairing key.

The controller runs on the simulator's clock, ticked by a task on the event loop; the
bridge session runs on the real clock, so waits are on conditions with generous limits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from terminal_rig import TerminalRig, demo_rig
from test_bridge_terminal import eventually
from test_terminal_workflows import load_document
from test_wall_render import cells

from controller.api import county_origin
from controller.daemon import bridge_identity
from host_bridge.server import BridgeServer
from tools.wall.bridge_source import BridgeSource, _Recent
from tools.wall.errors import WallAuthError
from tools.wall.live import Feeder, first_picture
from tools.wall.model import Link, SourceKind, WallModel
from tools.wall.render import render
from tools.wall.targets import config_layout


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 180))


async def ticking(rig: TerminalRig) -> None:
    """The simulated world and the controller, moving on while the loop runs."""
    while True:
        rig.sim.tick()
        await asyncio.sleep(0)


def wall(rig: TerminalRig, url: str, key: bytes | None) -> Feeder:
    source = BridgeSource(url, key, refresh_s=0.5)
    model = WallModel(SourceKind.BRIDGE, source.description)
    model.apply("config", config_layout(rig.config), time.time())
    return Feeder(model, source)


def serve(rig: TerminalRig, endpoint: str = "tcp://127.0.0.1:0") -> BridgeServer:
    return BridgeServer(rig.ctl, [endpoint], rig.kiosk_key, bridge_identity(rig.config))


def frame(feeder: Feeder) -> list[str]:
    return render(feeder.model, time.time(), width=100)


def test_the_wall_follows_the_terminal_and_reads_again_after_a_reconnect(
    tmp_path: Path,
) -> None:
    with demo_rig(tmp_path / "amtomat.db") as rig:

        async def body() -> None:
            clock = asyncio.create_task(ticking(rig))
            server = serve(rig)
            await server.start()
            url = server.bound[0]
            feeder = wall(rig, url, rig.kiosk_key)
            model = feeder.model
            source = feeder.start()
            try:
                await eventually(lambda: model.complete, "the first picture")
                await eventually(lambda: model.feed.link is Link.UP, "the link up")
                before = cells(frame(feeder))
                assert before["A05"] == ["A05 [E] empty", "door closed", before["A05"][2]]
                assert all(c[0].endswith("[E] empty") for c in before.values())
                text = "\n".join(frame(feeder))
                assert "boards: 2/2 ready | wall-a ready (fw " in text
                assert "entrance: normal, door closed | return slot: idle, flap closed" in text
                assert "| live |" in text
                assert before["A01"][2].split()[:2] == ["led", "-"]  # no LED wired
                assert before["B01"][2].split()[:2] == ["led", "off"]

                # a pickup: the compartment's LED blinks while it is offered
                _, code = load_document(rig, "WALL-1", compartment="B01")
                assert code is not None
                await eventually(lambda: model.compartments["B01"].state == "loaded", "B01 loaded")
                assert rig.call("pickup", reference="WALL-1", code=code).ok
                await eventually(
                    lambda: (
                        model.compartments["B01"].led == "blink"
                        and model.compartments["B01"].door == "open"
                    ),
                    "the blinking LED of the opened compartment",
                )
                assert cells(frame(feeder))["B01"][1:] == ["door open", "led  blink      S"]
                b01 = rig.ctl.wall.get("B01")
                assert b01 is not None
                rig.sim.item(b01.board, b01.channel, False)  # the citizen takes the passport
                rig.sim.door(b01.board, b01.channel, False)
                await eventually(
                    lambda: (
                        model.compartments["B01"].state == "empty"
                        and model.compartments["B01"].led == "off"
                    ),
                    "the LED off after the pickup",
                )

                a05 = rig.ctl.wall.get("A05")
                assert a05 is not None
                rig.sim.door(a05.board, a05.channel, True)  # opened without a pulse
                await eventually(
                    lambda: (
                        model.compartments["A05"].state == "forced"
                        and model.compartments["A05"].door == "open"
                        and ("forced_open", "A05") in model.alarms
                    ),
                    "the forced door on the wall",
                )
                after = frame(feeder)
                assert cells(after)["A05"][:2] == ["A05 [F] FORCED", "door open"]
                assert any(line.split()[:2] == ["forced_open", "A05"] for line in after)
                rig.sim.door(a05.board, a05.channel, False)
                await eventually(
                    lambda: (
                        model.compartments["A05"].door == "closed"
                        and ("forced_open", "A05") not in model.alarms
                    ),
                    "the door closed and the alarm cleared",
                )

                await server.close()  # the daemon goes away
                await eventually(lambda: model.feed.link is Link.DOWN, "the link down")
                assert "daemon not reachable, retrying" in "\n".join(frame(feeder)[:4])
                # meanwhile the terminal changes; no notice reaches anybody
                result = rig.ctl.call(
                    "set_service",
                    {"compartment": "A07", "in_service": False, "reason": "door sticks"},
                    county_origin("it-test"),
                )
                assert result.ok, result
                server = serve(rig, url)
                await server.start()
                await eventually(
                    lambda: (
                        model.compartments["A07"].state == "out_of_service"
                        and model.feed.link is Link.UP
                    ),
                    "the state read again after the reconnect",
                )
                assert cells(frame(feeder))["A07"][0] == "A07 [S] out-svc"
                assert model.warnings == 0, model.last_warning
            finally:
                source.cancel()
                clock.cancel()
                await server.close()

        run(body())


def test_a_wrong_pairing_key_is_fatal_and_never_shown(tmp_path: Path) -> None:
    with demo_rig(tmp_path / "amtomat.db") as rig:

        async def body() -> None:
            clock = asyncio.create_task(ticking(rig))
            try:
                async with serve(rig) as server:
                    wrong = bytes(32)
                    feeder = wall(rig, server.bound[0], wrong)
                    try:
                        await first_picture(feeder, 60)
                    except WallAuthError as exc:
                        assert "wrong pairing key" in str(exc)
                        assert wrong.hex() not in str(exc) and repr(wrong) not in str(exc)
                    else:
                        raise AssertionError("a wrong key was accepted")
            finally:
                clock.cancel()

        run(body())


def test_a_notice_during_a_read_wins_over_the_reply() -> None:
    recent = _Recent()
    recent.note("compartment", {"compartment": "A01", "state": "open", "door": "open"})
    assert not recent.compartments  # no read under way: nothing to remember
    recent.start()
    recent.note("compartment", {"compartment": "A01", "state": "open", "door": "open"})
    recent.note("alarm", {"alarm": "jam", "active": True, "subject": "A02", "detail": None})
    recent.note("alarm", {"alarm": "tamper", "active": False, "subject": "cabinet"})
    recent.note("terminal", {"entrance": "lockdown", "boards_ready": 2, "boards": 2})
    listing = recent.patch_compartments(
        {
            "compartments": [
                {"compartment": "A01", "state": "loaded", "door": "closed", "size": "S"},
                {"compartment": "A02", "state": "empty", "door": "closed"},
            ]
        }
    )
    assert listing["compartments"][0] == {"compartment": "A01", "size": "S"}
    assert listing["compartments"][1]["state"] == "empty"
    state = recent.patch_state(
        {
            "entrance": "normal",
            "entrance_door": "closed",
            "boards_ready": 1,
            "boards": 2,
            "alarms": [{"alarm": "tamper", "subject": "cabinet", "detail": None}],
        }
    )
    assert state["entrance"] == {"door": "closed"} and "boards_ready" not in state
    assert [a["alarm"] for a in state["alarms"]] == ["jam"]
    # applied to a model, the notices' word stands
    m = WallModel(SourceKind.BRIDGE, "bridge")
    m.apply("compartment", {"compartment": "A01", "state": "open", "door": "open"}, 1)
    m.apply("terminal", {"entrance": "lockdown", "boards_ready": 2, "boards": 2}, 1)
    m.apply("compartments", listing, 2)
    m.apply("state", state, 2)
    assert (m.compartments["A01"].state, m.compartments["A01"].door) == ("open", "open")
    assert (m.entrance_mode, m.boards_ready, m.entrance_door) == ("lockdown", 2, "closed")
    assert list(m.alarms) == [("jam", "A02")]
    recent.stop()
