"""The county link end to end against a real Mosquitto with the shipped fleet ACL: the
whole terminal on the simulated clock (tests/terminal_rig.py) with the real CountyLink,
Connection and outbox, and operator, SMS-gateway and terminal accounts as peers.

Every message an operator account receives is checked against its JSON schema and for
secrets when the test ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mosquitto import Broker, Client, Received
from mqtt_schemas import assert_no_secrets, validate
from terminal_rig import STAFF_PIN, TerminalRig, demo_rig
from test_terminal_workflows import load_document

from controller.mqttconfig import MqttSettings
from county.link import CountyLink
from county.topics import Topics

ACL = Path(__file__).resolve().parent.parent / "docs" / "mqtt" / "acl"
KIOSK = "demo-01"
T = Topics(KIOSK)
PASSWORDS = {KIOSK: "terminal-pw-1", "it-mueller": "operator-pw-1", "sms-gateway": "gateway-pw-1"}
LIMIT_S = 30.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path, users=PASSWORDS, acl=ACL.read_text()) as b:
        yield b


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[TerminalRig]:
    with demo_rig(tmp_path / "amtomat.db") as r:
        yield r


def settings(broker: Broker, tmp_path: Path) -> MqttSettings:
    pw = tmp_path / "mqtt.password"
    pw.write_text(PASSWORDS[KIOSK] + "\n")
    pw.chmod(0o600)
    return MqttSettings(
        enabled=True,
        host=broker.host,
        port=broker.port,
        tls=False,
        username=KIOSK,
        password_file=pw,
        client_id=KIOSK,
        reconnect_min_s=1,
        reconnect_max_s=2,
        metrics_s=10,
    )


def operator(broker: Broker, *, client_id: str = "op-1", persistent: bool = False) -> Client:
    """The county's operator account, subscribed to the whole terminal."""
    c = Client(
        broker,
        client_id,
        username="it-mueller",
        password=PASSWORDS["it-mueller"],
        clean_start=not persistent,
        session_expiry_s=3600 if persistent else 0,
    )
    c.connect()
    c.subscribe(f"{T.base}/#", qos=1)
    return c


def checked(messages: list[Received]) -> None:
    """Every message valid by its schema and free of secrets (notifier excepted)."""
    for m in messages:
        validate(m.topic, m.payload)
        if m.topic != T.notifier:
            assert_no_secrets(m.topic, m.payload)


async def until(cond: Callable[[], bool], what: str, timeout: float = LIMIT_S) -> None:
    """Let the event loop run (the link's callbacks) until cond holds."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def last(client: Client, topic: str) -> dict[str, Any] | None:
    got = client.received(topic)
    if not got or not got[-1].payload:
        return None
    value: dict[str, Any] = json.loads(got[-1].payload)
    return value


def events(client: Client) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in client.received(T.event)]


@asynccontextmanager
async def county(rig: TerminalRig, s: MqttSettings) -> AsyncIterator[CountyLink]:
    link = CountyLink(rig.ctl, s, version="test", features=["pickup"])
    await link.start()
    try:
        await until(lambda: link.publisher.session > 0, "the link to connect")
        yield link
    finally:
        await link.stop("test over")


def test_state_birth_events_and_codes(rig: TerminalRig, broker: Broker, tmp_path: Path) -> None:
    op = operator(broker)
    gateway = Client(broker, "gw", username="sms-gateway", password=PASSWORDS["sms-gateway"])
    gateway.connect()
    gateway.subscribe(f"{T.base}/notifier/#")

    async def run() -> None:
        async with county(rig, settings(broker, tmp_path)) as link:
            await until(lambda: len(op.received(T.birth)) >= 1, "birth")
            status = last(op, T.status)
            assert status is not None and status["state"] in ("online", "degraded")
            assert status["session"] == link.publisher.session >= 1
            birth = last(op, T.birth)
            assert birth is not None
            assert len(birth["compartments"]) == len(rig.config.compartments)
            assert {b["state"] for b in birth["boards"]} == {"ready"}
            labels = {c.label for c in rig.config.compartments}
            await until(
                lambda: {m.topic for m in op.received()} >= {T.compartment(x) for x in labels},
                "every compartment's state",
            )
            label, code = load_document(rig, "DOC-77")
            assert code is not None
            await until(lambda: bool(gateway.received(T.notifier)), "the code for the gateway")
            sms = json.loads(gateway.received(T.notifier)[0].payload)
            assert sms["reference"] == "DOC-77" and sms["code"] == code
            assert sms["compartment"] == label
            c = rig.ctl.wall.get(label)
            assert c is not None
            result = rig.call("pickup", reference="DOC-77", code=code)
            assert result.ok, result
            rig.wait(lambda: c.state.value == "open")
            rig.sim.door(c.board, c.channel, False)
            rig.wait(lambda: c.state.value == "empty")
            await until(lambda: link.outbox.depth() == 0, "the outbox to drain")
            await until(
                lambda: any(e["type"] == "pickup_completed" for e in events(op)),
                "the pickup's event",
            )
            state = last(op, T.compartment(label))
            assert state is not None and state["state"] == "empty"
            rig.sim.advance(10_500)  # metrics every 10 s of the controller's clock
            await until(lambda: bool(op.received(T.metrics)), "metrics")
            metrics = last(op, T.metrics)
            assert metrics is not None and metrics["outbox"]["depth"] >= 0
            assert set(metrics["boards"]) == {b.board_id for b in rig.config.terminal.boards}
            for board in metrics["boards"].values():  # each link's own counters
                assert board["state"] == "ready" and board["counters"]["connects"] >= 1

    asyncio.run(run())
    evs = events(op)
    seqs = [e["seq"] for e in evs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [e["audit_seq"] for e in evs] == sorted(e["audit_seq"] for e in evs)
    assert not any(e["historical"] for e in evs)  # the link was up all along
    assert {"staff_login", "load_started", "pickup_completed"} <= {e["type"] for e in evs}
    assert not op.received(T.notifier)  # operators never see codes
    final = last(op, T.status)
    assert final is not None and final["state"] == "offline" and final["reason"] == "test over"
    checked(op.received())
    op.close()
    gateway.close()


def test_alarm_is_retained_and_cleared(rig: TerminalRig, broker: Broker, tmp_path: Path) -> None:
    op = operator(broker)
    c = rig.ctl.wall.get("A05")
    assert c is not None
    topic = T.alarm("forced_open", "A05")

    async def run() -> None:
        async with county(rig, settings(broker, tmp_path)):
            rig.sim.door(c.board, c.channel, True)
            rig.wait(lambda: ("forced_open", "A05") in rig.ctl.alarms.active)
            await until(lambda: last(op, topic) is not None, "the retained alarm")
            await until(lambda: (last(op, T.status) or {}).get("state") == "degraded", "degraded")
            late = operator(broker, client_id="op-late")
            await until(lambda: bool(late.received(topic)), "the retained alarm for a newcomer")
            assert late.received(topic)[0].retain
            late.close()
            rig.sim.door(c.board, c.channel, False)
            rig.wait(lambda: ("forced_open", "A05") not in rig.ctl.alarms.active)
            await until(lambda: op.received(topic)[-1].payload == b"", "the alarm's clear")
            fresh = operator(broker, client_id="op-fresh")
            await until(lambda: bool(fresh.received(T.birth)), "retained topics for a newcomer")
            assert not fresh.received(topic)  # cleared: no longer retained
            fresh.close()

    asyncio.run(run())
    types = [e["type"] for e in events(op)]
    assert "alarm_raised" in types and "alarm_cleared" in types
    checked(op.received())
    op.close()


def test_an_alarm_that_ended_while_the_link_was_down_is_cleared(
    rig: TerminalRig, broker: Broker, tmp_path: Path
) -> None:
    op = operator(broker)
    c = rig.ctl.wall.get("A06")
    assert c is not None
    topic = T.alarm("forced_open", "A06")
    s = settings(broker, tmp_path)

    async def run() -> None:
        async with county(rig, s):
            rig.sim.door(c.board, c.channel, True)
            rig.wait(lambda: ("forced_open", "A06") in rig.ctl.alarms.active)
            await until(lambda: last(op, topic) is not None, "the retained alarm")
        rig.sim.door(c.board, c.channel, False)  # ends while nobody reports it
        rig.wait(lambda: ("forced_open", "A06") not in rig.ctl.alarms.active)
        rig.restart()  # a new daemon on the same database
        rig.ready()
        async with county(rig, s):
            await until(lambda: op.received(topic)[-1].payload == b"", "the stale alarm's clear")

    asyncio.run(run())
    checked(op.received())
    op.close()


def command(
    op: Client,
    name: str,
    args: dict[str, Any],
    *,
    cid: str,
    retain: bool = False,
    expires_in: float = 300,
    response: str | None = f"{T.base}/reply/op-1",
    raw: bytes | None = None,
) -> None:
    now = time.time()

    def stamp(t: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))

    body = (
        raw
        if raw is not None
        else json.dumps(
            {
                "id": cid,
                "operator": "it-mueller",
                "issued": stamp(now - 1),
                "expires": stamp(now + expires_in),
                "args": args,
            }
        ).encode()
    )
    op.publish(
        T.command(name), body, retain=retain, response_topic=response, correlation=cid.encode()
    )


def reply(op: Client, cid: str) -> list[dict[str, Any]]:
    return [
        json.loads(m.payload)
        for m in op.received()
        if m.topic.startswith(T.reply_prefix) and m.correlation == cid.encode()
    ]


def test_commands_over_the_broker(rig: TerminalRig, broker: Broker, tmp_path: Path) -> None:
    op = operator(broker)
    s = dataclasses.replace(settings(broker, tmp_path), max_command_bytes=1024)
    rig.utc_offset = time.time() - rig.clock.utc()  # commands carry wall-clock times

    async def run() -> None:
        async with county(rig, s):
            command(op, "ping", {}, cid="c-ping")
            await until(lambda: bool(reply(op, "c-ping")), "ping's reply")
            assert reply(op, "c-ping")[0]["answer"] == "done"
            args = {"compartment": "A03", "in_service": False, "reason": "door sticks"}
            command(op, "set_service", args, cid="c-svc")
            await until(lambda: bool(reply(op, "c-svc")), "set_service's reply")
            assert reply(op, "c-svc")[0]["answer"] == "done"
            rig.sim.advance(50)
            await until(
                lambda: (last(op, T.compartment("A03")) or {}).get("state") == "out_of_service",
                "A03 out of service",
            )
            command(op, "set_service", args, cid="c-svc")  # the same id again
            await until(lambda: len(reply(op, "c-svc")) == 2, "the duplicate's reply")
            assert reply(op, "c-svc")[1]["answer"] == "duplicate"
            before = {c.label: c.state for c in rig.ctl.wall.by_label.values()}
            back = {"compartment": "A03", "in_service": True, "reason": "fixed"}
            command(op, "set_service", back, cid="c-ret", retain=True)
            command(op, "set_service", back, cid="c-old", expires_in=-10)
            command(op, "set_service", back, cid="c-big", raw=b"{" + b" " * 2000 + b"}")
            command(op, "set_service", back, cid="c-bad", raw=b"\xff not json")
            command(op, "set_service", back, cid="c-nort", response=None)
            await until(
                lambda: all(reply(op, c) for c in ("c-ret", "c-old", "c-big", "c-bad")),
                "the refusals",
            )
            answers = {c: reply(op, c)[0]["answer"] for c in ("c-ret", "c-old", "c-big", "c-bad")}
            assert answers == {
                "c-ret": "rejected",
                "c-old": "expired",
                "c-big": "rejected",
                "c-bad": "rejected",
            }
            assert "retain" in reply(op, "c-ret")[0]["reason"]
            await until(lambda: bool(op.received(T.rejected_replies)), "the reply/rejected answer")
            rig.sim.advance(50)
            assert {c.label: c.state for c in rig.ctl.wall.by_label.values()} == before
            # clear the retained command so nobody else receives it
            op.publish(T.command("set_service"), b"", retain=True)

    asyncio.run(run())
    audited = rig.store.audit_entries(action="county_command")
    # the unreadable commands (oversized, not JSON) have no operator to name
    assert {e.actor for e in audited} == {"county:it-mueller", "county:?"}
    assert len(audited) >= 8
    checked([m for m in op.received() if not m.topic.startswith(f"{T.base}/cmd/")])
    op.close()


def test_broker_outage_loses_nothing(rig: TerminalRig, broker: Broker, tmp_path: Path) -> None:
    op = operator(broker, client_id="county-events", persistent=True)

    async def run() -> list[dict[str, Any]]:
        async with county(rig, settings(broker, tmp_path)) as link:
            for _ in range(3):
                rig.staff("mueller", STAFF_PIN)
                rig.call("staff_logout")
            await until(lambda: link.outbox.depth() == 0, "the outbox to drain")
            broker.stop()
            await until(lambda: not link.publisher.link.connected, "the link to notice")  # type: ignore[union-attr]
            for _ in range(10):
                rig.staff("mueller", STAFF_PIN)
                rig.call("staff_logout")
            assert link.outbox.depth() >= 20
            await asyncio.sleep(1.5)  # the link retries against the dead broker
            broker.start()
            await until(lambda: link.outbox.depth() == 0, "the outbox to drain", 60)
        back = Client(
            broker,
            "county-events",
            username="it-mueller",
            password=PASSWORDS["it-mueller"],
            clean_start=False,
            session_expiry_s=3600,
        )
        back.connect()
        await until(lambda: len(events(op)) + len(events(back)) >= 26, "every event")
        got = events(op) + events(back)
        back.close()
        return got

    got = asyncio.run(run())
    by_seq = {e["seq"]: e for e in got}  # the consumer de-duplicates by seq
    seqs = sorted(by_seq)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap in the sequence"
    arrival = [e["seq"] for e in got]
    first_seen = list(dict.fromkeys(arrival))
    assert first_seen == sorted(first_seen), "out of order"
    assert any(e["historical"] for e in by_seq.values())
    logins = [e for e in by_seq.values() if e["type"] == "staff_login"]
    assert len(logins) == 13
    checked([m for m in op.received() if m.topic == T.event])
    op.close()


def test_hourly_stats(rig: TerminalRig, broker: Broker, tmp_path: Path) -> None:
    op = operator(broker)

    async def run() -> None:
        async with county(rig, settings(broker, tmp_path)) as link:
            label, code = load_document(rig, "DOC-5")
            c = rig.ctl.wall.get(label)
            assert c is not None and code is not None
            assert rig.call("pickup", reference="DOC-5", code="00000000").status != 0
            assert rig.call("pickup", reference="DOC-5", code=code).ok
            rig.wait(lambda: c.state.value == "open")
            rig.sim.door(c.board, c.channel, False)
            rig.wait(lambda: c.state.value == "empty")
            rig.utc_offset += 3600  # the hour ends
            rig.sim.advance(1500)
            await until(lambda: bool(op.received(T.stats)), "the hour's stats")
            await until(lambda: link.outbox.depth() == 0, "the outbox to drain")

    asyncio.run(run())
    stats = [json.loads(m.payload) for m in op.received(T.stats)]
    assert len(stats) == 1
    s = stats[0]
    assert s["period"] == time.strftime("%Y-%m-%dT%H", time.gmtime(1_790_000_000))
    assert s["counts"]["pickups"] == 1 and s["counts"]["loads"] == 1
    assert s["counts"]["failed_code_attempts"] == 1
    assert s["dwell_seconds"]["total"] > 0 and s["dwell_seconds"]["mean"] > 0
    checked(op.received(T.stats))
    op.close()
