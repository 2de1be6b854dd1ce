"""The wall's MQTT source against a real Mosquitto with the shipped fleet ACL, fed by the
real county link of the whole simulated terminal (tests/terminal_rig.py): the wall logs in
as an operator, gets the retained picture, follows an alarm raised and cleared, and shows
the terminal's last will. Plus TLS, a refused login, and the topic translation fuzzed.

Waits are on conditions with generous limits; no durations are asserted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mosquitto import Broker, Client
from terminal_rig import TerminalRig, demo_rig
from test_county_link import ACL, KIOSK, PASSWORDS, T, county
from test_county_link import settings as link_settings
from test_wall_render import cells

from tools.wall.errors import WallAuthError, WallSetupError
from tools.wall.live import Feeder, first_picture
from tools.wall.model import Link, SourceKind, WallModel
from tools.wall.mqtt_source import MqttSource, MqttTarget, parse_host, translate
from tools.wall.render import freshness, render

LIMIT_S = 30.0
OPERATOR = "it-mueller"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path, users=PASSWORDS, acl=ACL.read_text()) as b:
        yield b


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[TerminalRig]:
    with demo_rig(tmp_path / "amtomat.db") as r:
        yield r


class Recording(Feeder):
    """A feeder that also keeps the freshness phrase after every message, so a passing
    state (a last will followed by a reconnect) can be checked afterwards."""

    phrases: list[str]

    def emit(self, kind: str, fields: Any) -> None:
        super().emit(kind, fields)
        self.phrases.append(freshness(self.model, self.clock(), 180)[0])


def operator_wall(broker: Broker, **overrides: Any) -> Recording:
    fields: dict[str, Any] = {
        "username": OPERATOR,
        "password": PASSWORDS[OPERATOR],
        "tls": False,
    }
    fields.update(overrides)
    source = MqttSource(MqttTarget(broker.host, broker.port, KIOSK, **fields))
    feeder = Recording(WallModel(SourceKind.MQTT, source.description), source)
    feeder.phrases = []
    return feeder


async def until(cond: Callable[[], bool], what: str, limit: float = LIMIT_S) -> None:
    end = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def frame(m: WallModel) -> list[str]:
    return render(m, time.time(), width=120, stale_s=180)


def test_the_wall_over_mqtt_follows_alarms_and_shows_the_last_will(
    rig: TerminalRig, broker: Broker, tmp_path: Path
) -> None:
    a05 = rig.ctl.wall.get("A05")
    assert a05 is not None

    async def run() -> None:
        async with county(rig, link_settings(broker, tmp_path)) as link:
            feeder = operator_wall(broker)
            model = feeder.model
            source = feeder.start()
            try:
                await until(lambda: model.complete, "the retained picture")
                shown = cells(frame(model))
                assert set(shown) == {c.label for c in rig.config.compartments}
                assert all(c[0].endswith("[E] empty") for c in shown.values())
                text = "\n".join(frame(model))
                assert "boards: 2/2 ready | wall-a ready" in text
                assert f"session {link.publisher.session}" in text
                assert "entrance: normal, door closed" in text
                assert "service door: closed" in text
                assert shown["A01"][2].split()[:2] == ["led", "-"]  # no LED wired
                assert shown["B01"][2].split()[:2] == ["led", "off"]

                rig.sim.door(a05.board, a05.channel, True)  # opened without a pulse
                rig.wait(lambda: ("forced_open", "A05") in rig.ctl.alarms.active)
                await until(
                    lambda: (
                        ("forced_open", "A05") in model.alarms
                        and model.compartments["A05"].state == "forced"
                    ),
                    "the alarm and the forced compartment",
                )
                alarm = model.alarms[("forced_open", "A05")]
                assert alarm.raised is not None  # the terminal's raised_utc
                after = frame(model)
                assert cells(after)["A05"][:2] == ["A05 [F] FORCED", "door open"]
                assert any(line.split()[:2] == ["forced_open", "A05"] for line in after)
                assert "terminal: degraded" in "\n".join(after)

                rig.sim.door(a05.board, a05.channel, False)
                rig.wait(lambda: ("forced_open", "A05") not in rig.ctl.alarms.active)
                await until(lambda: not model.alarms, "the zero-length clear")
                assert "alarms: none" in frame(model)

                # the terminal's connection dies: the broker publishes its last will
                session = link.publisher.session
                thief = Client(broker, KIOSK, username=KIOSK, password=PASSWORDS[KIOSK])
                assert thief.connect() == "Success"  # takes over: the old one is cut off
                await until(
                    lambda: "terminal offline (last will)" in feeder.phrases, "the last will"
                )
                thief.close()
                await until(
                    lambda: (
                        model.status is not None
                        and model.status.session > session
                        and model.status.state != "offline"
                    ),
                    "the terminal back with a new session",
                )
                assert "| live |" in frame(model)[1]
                assert model.warnings == 0, model.last_warning
            finally:
                source.cancel()

    asyncio.run(asyncio.wait_for(run(), 180))


def test_a_refused_login_is_fatal_and_keeps_the_password_secret(broker: Broker) -> None:
    async def run() -> None:
        feeder = operator_wall(broker, password="not-the-password-42")
        with pytest.raises(WallAuthError) as info:
            await first_picture(feeder, LIMIT_S)
        assert "refused the login" in str(info.value) and OPERATOR in str(info.value)
        assert "not-the-password-42" not in str(info.value)
        assert feeder.model.feed.link is Link.DOWN

    asyncio.run(asyncio.wait_for(run(), 60))


def retained_terminal(broker: Broker, **login: Any) -> None:
    """A terminal's retained status, birth and one compartment, as the county link
    publishes them (the payloads of docs/mqtt/*.schema.json)."""
    with Client(broker, "term", username=KIOSK, password=PASSWORDS[KIOSK], **login) as c:
        assert c.connect() == "Success"
        utc = "2026-11-21T10:15:02.118Z"
        birth = {
            "schema": 1,
            "kiosk_id": KIOSK,
            "site": "Mayen",
            "session": 3,
            "boot": 1,
            "utc": utc,
            "software": {"amtomat": "0.1.0", "python": "3.11"},
            "boards": [{"board": "b1", "address": 1, "channels": 8, "state": "ready",
                        "firmware": "1.4.0"}],
            "compartments": [{"compartment": "A1", "size": "S", "board": "b1", "channel": 0}],
            "capabilities": [],
            "commands": [],
        }  # fmt: skip
        for topic, body in (
            (T.status, {"state": "online", "session": 3, "utc": utc, "reason": None}),
            (T.birth, birth),
            (T.compartment("A1"), {"compartment": "A1", "state": "loaded", "door": "closed",
                                   "size": "S", "utc": utc, "led": "on"}),
            (f"{T.base}/state/compartment/A2", b"{broken"),
        ):  # fmt: skip
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            assert not c.publish(topic, payload, retain=True).is_failure


def test_tls_with_the_county_ca_and_without_it(tmp_path: Path) -> None:
    with Broker(tmp_path, users=PASSWORDS, acl=ACL.read_text(), tls=True) as broker:
        assert broker.ca is not None
        retained_terminal(broker)

        async def run() -> None:
            good = operator_wall(broker, tls=True, cafile=broker.ca.cert if broker.ca else None)
            assert await first_picture(good, LIMIT_S)
            m = good.model
            assert m.compartments["A1"].state == "loaded" and m.compartments["A1"].led == "on"
            assert m.boards["b1"].firmware == "1.4.0"
            assert m.warnings == 1  # the broken payload, named in the warning
            assert "must be a map, got b'{broken'" in (m.last_warning or "")
            assert "(TLS)" in frame(m)[1]
            stranger = operator_wall(broker, tls=True)  # only the system's CAs
            assert not await first_picture(stranger, 3)
            assert stranger.model.feed.link is not Link.UP
            problem = stranger.model.feed.problem or ""
            assert "certificate" in problem, problem

        asyncio.run(asyncio.wait_for(run(), 60))


def test_unreadable_tls_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ca.crt"
    source = MqttSource(MqttTarget("127.0.0.1", 8883, KIOSK, cafile=missing))

    async def run() -> None:
        with pytest.raises(WallSetupError, match=f"--cafile {missing}: cannot read it"):
            await source.run(lambda kind, fields: None)

    asyncio.run(run())


def test_parse_host() -> None:
    assert parse_host("mqtt.example", True) == ("mqtt.example", 8883)
    assert parse_host("mqtt.example", False) == ("mqtt.example", 1883)
    assert parse_host("10.0.0.1:1884", True) == ("10.0.0.1", 1884)
    assert parse_host("[::1]:8884", True) == ("::1", 8884)
    assert parse_host("[::1]", True) == ("::1", 8883)
    for bad in ("", ":80", "host:0", "host:99999", "host:x", "a/b", "[::1", "h#", "a b"):
        with pytest.raises(WallSetupError) as info:
            parse_host(bad, True)
        assert repr(bad) in str(info.value)


def test_translate_maps_topics_to_model_messages() -> None:
    base = T.base
    assert translate(base, f"{base}/status", b'{"state":"online"}') == (
        "status",
        {"state": "online"},
    )
    assert translate(base, f"{base}/birth", b"{}") == ("layout", {})
    assert translate(base, f"{base}/state/entrance", b"{}") == ("entrance", {})
    assert translate(base, f"{base}/state/door/service", b"{}") == ("door", {})
    assert translate(base, f"{base}/alarm/jam/wall-a%2F3", b"") == (
        "alarm",
        {"alarm": "jam", "subject": "wall-a/3", "active": False},
    )
    assert translate(base, f"{base}/alarm/jam/A1", b'{"alarm":"jam"}') == (
        "alarm",
        {"alarm": "jam", "active": True},
    )
    assert translate(base, f"{base}/state/compartment/A1", b"") is None  # a cleared topic
    assert translate(base, f"{base}/event", b"{}") is None
    assert translate(base, "amtomat/v1/other/status", b"{}") is None
    assert translate(base, f"{base}/state/compartment/A1", b"\xff") == (
        "compartment",
        b"\xff",
    )


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.sampled_from(["status", "birth", "metrics", "state/entrance", "alarm/jam/A1",
                         "state/compartment/A1", "state/door/x", "alarm/x", "state/slot/return"]),
        st.text(max_size=30),
    ),
    st.one_of(st.binary(max_size=40), st.builds(lambda v: json.dumps(v).encode(), st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8)),
        lambda inner: st.one_of(st.lists(inner, max_size=3),
                                st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=10,
    ))),
)  # fmt: skip
def test_any_mqtt_message_is_translated_or_ignored_never_raised(
    suffix: str, payload: bytes
) -> None:
    m = WallModel(SourceKind.MQTT, "mqtt")
    found = translate(T.base, f"{T.base}/{suffix}", payload)
    if found is not None:
        kind, fields = found
        before = m.warnings
        if not m.apply(kind, fields, 0.0):
            assert m.warnings == before + 1
    render(m, 0.0, width=80)
