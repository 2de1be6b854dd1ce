"""The county's command desk on the whole terminal: real firmware in the simulator, real
board links, the real controller with its SQLite file, on one simulated clock
(tests/terminal_rig.py). Commands arrive as InboundMessage values (the desk is sans-I/O;
the link's tests run it over a real broker)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from terminal_rig import STAFF_PIN, TerminalRig, demo_rig

from controller.api import COUNTY_REQUESTS, REQUESTS, Origin, Status, county_origin
from controller.boardlink import LinkState
from controller.compartments import CState
from controller.gpio import PiGpio, TimerHandle
from controller.mqttconfig import MqttSettings
from controller.secrets import hash_secret
from county.command_checks import SKEW_S
from county.commands import ANSWERS, CommandDesk
from county.hostinfo import rfc3339
from county.inbound import InboundMessage, Reply
from county.topics import Topics
from host_bridge.catalog import KIOSK
from protocol.errors import MessageError

OPERATORS = ("it-mueller", "it-schmidt")
SETTINGS = MqttSettings(enabled=True, host="mqtt.example", operators=OPERATORS)
REPLY_KEYS = {"id", "command", "answer", "reason", "result", "utc"}
NEW_CODE = "24681357"
_ids = itertools.count(1)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[TerminalRig]:
    with demo_rig(tmp_path / "amtomat.db") as r:
        yield r


@dataclass(frozen=True)
class Answer:
    """A reply as the operator reads it."""

    topic: str
    payload: dict[str, Any]
    correlation: bytes | None

    @staticmethod
    def of(reply: Reply) -> Answer:
        return Answer(reply.topic, dict(reply.payload), reply.correlation)


class County:
    """An operator's side of the desk: builds command messages, collects the replies."""

    def __init__(self, rig: TerminalRig, mqtt: MqttSettings = SETTINGS) -> None:
        self.rig = rig
        self.topics = Topics(rig.config.terminal.kiosk_id)
        self.replies: list[Reply] = []
        self.desk = CommandDesk(rig.ctl, self.topics, mqtt, self.replies.append)

    def message(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        cmd_id: str | None = None,
        operator: str = "it-mueller",
        issued: float = 0,
        expires: float = 300,
        retain: bool = False,
        response: str | None = "",
        correlation: bytes | None = b"corr-1",
        payload: bytes | None = None,
        topic: str | None = None,
    ) -> InboundMessage:
        """A command as the broker delivers it; times are seconds from the terminal's now."""
        now = self.rig.ctl.store.utc()
        doc: dict[str, Any] = {
            "id": cmd_id or f"cmd-{next(_ids)}",
            "operator": operator,
            "issued": rfc3339(now + issued),
            "expires": rfc3339(now + expires),
        }
        if args is not None:
            doc["args"] = args
        return InboundMessage(
            topic=topic if topic is not None else self.topics.command(name),
            payload=payload if payload is not None else json.dumps(doc).encode(),
            retain=retain,
            qos=1,
            response_topic=self.topics.reply_prefix + "op-1" if response == "" else response,
            correlation=correlation,
        )

    def deliver(self, msg: InboundMessage) -> Answer:
        """Hand one message to the desk; exactly one reply comes back at once."""
        before = len(self.replies)
        self.desk.receive(msg)
        assert len(self.replies) == before + 1, self.replies[before:]
        reply = self.replies[-1]
        assert set(reply.payload) == REPLY_KEYS
        assert reply.payload["answer"] in ANSWERS
        json.dumps(reply.payload)  # publishable as it is
        return Answer.of(reply)

    def send(self, name: str, args: dict[str, Any] | None = None, **kw: Any) -> Answer:
        """A well-formed command."""
        return self.deliver(self.message(name, args, **kw))

    def wait_reply(self, count: int, limit_ms: int = 10000) -> Answer:
        """Advance simulated time until the count-th reply arrived."""
        self.rig.wait(lambda: len(self.replies) >= count, limit_ms)
        return Answer.of(self.replies[count - 1])


def load_document(rig: TerminalRig, reference: str) -> tuple[str, str]:
    """Staff load a document at the kiosk; returns (compartment, the issued code)."""
    rig.staff("mueller", STAFF_PIN)
    result = rig.call("load", reference=reference)
    assert result.ok and result.data is not None, result
    label, op = result.data["compartment"], result.data["op"]
    c = rig.ctl.wall.get(label)
    kiosk = rig.kiosk
    assert c is not None and kiosk is not None
    rig.wait(lambda: "door_open" in kiosk.steps(op))
    rig.sim.advance(800)
    if rig.ctl.items.get(label) is not None:
        rig.sim.item(c.board, c.channel, True)
    rig.sim.advance(400)
    rig.sim.door(c.board, c.channel, False)
    rig.wait(lambda: kiosk.done(op) is not None)
    rig.call("staff_logout")
    assert c.state == CState.LOADED
    return label, str(result.data["code"])


def pickup(rig: TerminalRig, reference: str, code: str) -> str:
    """A citizen's pickup at the kiosk, door taken and closed; returns the outcome."""
    result = rig.call("pickup", reference=reference, code=code)
    assert result.ok and result.data is not None, result
    op, label = result.data["op"], result.data["compartment"]
    c = rig.ctl.wall.get(label)
    kiosk = rig.kiosk
    assert c is not None and kiosk is not None
    rig.wait(lambda: c.state == CState.OPEN)
    rig.sim.advance(300)
    if rig.ctl.items.get(label) is not None:
        rig.sim.item(c.board, c.channel, False)
    rig.sim.door(c.board, c.channel, False)
    rig.wait(lambda: kiosk.done(op) is not None)
    done = kiosk.done(op)
    assert done is not None
    return str(done["outcome"])


def audit_of(rig: TerminalRig, action: str) -> list[Any]:
    return rig.store.audit_entries(action=action)


def snapshot(rig: TerminalRig) -> tuple[Any, ...]:
    """What a command that was not carried out must leave alone."""
    db = rig.store.db
    return (
        db.execute("SELECT label, state FROM compartments ORDER BY label").fetchall(),
        db.execute("SELECT * FROM assignments ORDER BY id").fetchall(),
        rig.store.meta("entrance_mode"),
        {c.label: (c.state, c.busy_op) for c in rig.ctl.wall.by_label.values()},
        db.execute("SELECT COUNT(*) FROM board_commands").fetchone(),
    )


# ----- the commands carried out -------------------------------------------------------------


def test_set_service_done_audited_with_the_operator(rig: TerminalRig) -> None:
    county = County(rig)
    msg = county.message(
        "set_service", {"compartment": "A03", "in_service": False, "reason": "door sticks"}
    )
    reply = county.deliver(msg)
    assert reply.topic == msg.response_topic and reply.correlation == b"corr-1"
    assert reply.payload["answer"] == "done" and reply.payload["reason"] is None
    assert reply.payload["result"] == {"compartment": "A03", "state": "out_of_service"}
    assert reply.payload["command"] == "set_service"
    assert reply.payload["utc"] == rfc3339(rig.ctl.store.utc())
    assert rig.ctl.wall.get("A03").state == CState.OUT_OF_SERVICE  # type: ignore[union-attr]
    change = audit_of(rig, "compartment_state")[-1]
    assert change.actor == "county:it-mueller" and change.detail["why"] == "door sticks"
    entry = audit_of(rig, "county_command")[-1]
    assert (entry.actor, entry.subject) == ("county:it-mueller", "set_service")
    assert entry.detail == {"id": json.loads(msg.payload)["id"], "answer": "done", "reason": None}
    back = county.send(
        "set_service",
        {"compartment": "A03", "in_service": True, "reason": "fixed"},
        operator="it-schmidt",
    )
    assert back.payload["result"] == {"compartment": "A03", "state": "empty"}
    assert audit_of(rig, "county_command")[-1].actor == "county:it-schmidt"


def test_entrance_mode(rig: TerminalRig) -> None:
    county = County(rig)
    reply = county.send("entrance_mode", {"mode": "lockdown"})
    assert reply.payload["answer"] == "done" and reply.payload["result"] == {"mode": "lockdown"}
    assert rig.ctl.entrance.mode.value == "lockdown"
    assert audit_of(rig, "entrance_mode")[-1].actor == "county:it-mueller"
    bad = county.send("entrance_mode", {"mode": "party"})
    assert bad.payload["answer"] == "rejected" and "'party'" in bad.payload["reason"]
    assert bad.payload["result"] == {"status": 1, "status_name": "bad_request"}
    assert rig.ctl.entrance.mode.value == "lockdown"


def test_assign_sets_a_new_code_and_the_hash_stays_out_of_the_audit_log(
    rig: TerminalRig,
) -> None:
    label, old_code = load_document(rig, "DOC-A")
    county = County(rig)
    code_hash = hash_secret(NEW_CODE)
    reply = county.send("assign", {"reference": "DOC-A", "code_hash": code_hash})
    assert reply.payload["answer"] == "done", reply.payload
    assert reply.payload["result"] == {"reference": "DOC-A", "compartment": label,
                                       "status": "active"}  # fmt: skip
    assert rig.call("pickup", reference="DOC-A", code=old_code).status == Status.WRONG_CODE
    assert pickup(rig, "DOC-A", NEW_CODE) == "completed"
    entry = audit_of(rig, "pickup_assigned")[-1]
    assert entry.actor == "county:it-mueller" and entry.subject == label
    assert "code_hash" not in entry.detail
    # unknown reference, malformed hash: refused with the terminal's status
    missing = county.send("assign", {"reference": "NO-SUCH", "code_hash": code_hash})
    assert missing.payload["answer"] == "rejected"
    assert missing.payload["result"] == {"status": 35, "status_name": "not_found"}
    assert "'NO-SUCH'" in missing.payload["reason"]
    broken = county.send("assign", {"reference": "DOC-A", "code_hash": "scrypt$1$1$1$$"})
    assert broken.payload["result"]["status_name"] == "bad_request"
    assert "code_hash" in broken.payload["reason"]
    everything = json.dumps(
        [(e.actor, e.subject, e.detail) for e in rig.store.audit_entries(limit=100000)]
    )
    assert code_hash not in everything and code_hash.split("$")[-1] not in everything
    assert all(code_hash not in json.dumps(r.payload) for r in county.replies)


def test_assign_keeps_an_expired_document_expired(rig: TerminalRig) -> None:
    label, _ = load_document(rig, "DOC-E")
    county = County(rig)
    assert county.send("revoke", {"reference": "DOC-E", "reason": "x"}).payload["answer"] == "done"
    reply = county.send("assign", {"reference": "DOC-E", "code_hash": hash_secret(NEW_CODE)})
    assert reply.payload["result"]["status"] == "expired"
    assert rig.ctl.wall.get(label).state == CState.EXPIRED  # type: ignore[union-attr]
    assert rig.call("pickup", reference="DOC-E", code=NEW_CODE).status == Status.NOT_FOUND


def test_revoke_refuses_the_pickup_and_lists_the_document_for_retrieval(
    rig: TerminalRig,
) -> None:
    label, code = load_document(rig, "DOC-R")
    county = County(rig)
    reply = county.send("revoke", {"reference": "DOC-R", "reason": "citizen moved away"})
    assert reply.payload["answer"] == "done", reply.payload
    assert reply.payload["result"] == {"reference": "DOC-R", "compartment": label,
                                       "state": "expired"}  # fmt: skip
    c = rig.ctl.wall.get(label)
    assert c is not None and c.state == CState.EXPIRED
    refused = rig.call("pickup", reference="DOC-R", code=code)
    assert refused.status == Status.NOT_FOUND
    rig.staff("mueller", STAFF_PIN)
    listing = rig.call("retrieval_list")
    assert listing.data is not None
    assert [e["reference"] for e in listing.data["expired"]] == ["DOC-R"]
    entry = audit_of(rig, "pickup_revoked")[-1]
    assert entry.actor == "county:it-mueller"
    assert entry.detail == {"reference": "DOC-R", "reason": "citizen moved away"}
    missing = county.send("revoke", {"reference": "NO-SUCH", "reason": "x"})
    assert missing.payload["result"] == {"status": 35, "status_name": "not_found"}
    no_reason = county.send("revoke", {"reference": "DOC-R"})
    assert no_reason.payload["result"]["status_name"] == "bad_request"


def test_board_reset_soft(rig: TerminalRig) -> None:
    county = County(rig)
    link = rig.links["wall-b"]
    boot = link.boot_id
    reply = county.send("board_reset", {"board": "wall-b"})
    assert reply.payload["answer"] == "done", reply.payload
    assert reply.payload["result"] == {"board": "wall-b", "hard": False}
    rig.wait(lambda: link.boot_id != boot and link.state == LinkState.READY, 20000)
    assert link.identity["reset_reason"] == "soft"
    entry = audit_of(rig, "board_reset")[-1]
    assert (entry.actor, entry.subject, entry.detail) == (
        "county:it-mueller", "wall-b", {"hard": False},
    )  # fmt: skip
    unknown = county.send("board_reset", {"board": "wall-z"})
    assert unknown.payload["result"] == {"status": 35, "status_name": "not_found"}
    assert "'wall-z'" in unknown.payload["reason"]


def test_board_reset_hard_needs_a_reset_line(rig: TerminalRig) -> None:
    county = County(rig)
    reply = county.send("board_reset", {"board": "wall-a", "hard": True})
    assert reply.payload["answer"] == "rejected"
    assert reply.payload["result"] == {"status": 5, "status_name": "not_configured"}
    assert "wall-a" in reply.payload["reason"]
    assert not audit_of(rig, "board_reset")


def test_board_reset_hard_pulses_the_reset_line(rig: TerminalRig) -> None:
    def call_later(delay_s: float, action: Any) -> TimerHandle:
        return rig.ctl.timers.after(round(delay_s * 1000), action, "gpio")

    gpio = PiGpio(
        "mock", reset_lines={"wall-a": 17}, status_led=None, tamper=None,
        tamper_active_high=True, entrance=None, deliver=lambda f: f(),
        on_input=lambda name, active: None, call_later=call_later,
    )  # fmt: skip
    try:
        rig.ctl.gpio = gpio
        run = gpio.pin_factory.pin(17)
        assert run.state is True
        county = County(rig)
        reply = county.send("board_reset", {"board": "wall-a", "hard": True})
        assert reply.payload["answer"] == "done", reply.payload
        assert reply.payload["result"] == {"board": "wall-a", "hard": True}
        assert run.state is False  # RUN held low
        rig.sim.power("wall-a", "reset")  # the wire from the pin to the board's RUN
        rig.sim.advance(250)
        assert run.state is True
        link = rig.links["wall-a"]
        rig.wait(lambda: link.state == LinkState.READY, 20000)
        assert audit_of(rig, "board_reset")[-1].detail == {"hard": True}
        other = county.send("board_reset", {"board": "wall-b", "hard": True})
        assert other.payload["result"]["status_name"] == "not_configured"
        bad = county.send("board_reset", {"board": "wall-a", "hard": "yes"})
        assert bad.payload["result"]["status_name"] == "bad_request"
    finally:
        gpio.close()


def test_service_open_of_an_empty_compartment_answers_twice(rig: TerminalRig) -> None:
    county = County(rig)
    msg = county.message("service_open", {"compartment": "B02", "reason": "clean it"},
                         correlation=b"\x00\xff")  # fmt: skip
    reply = county.deliver(msg)
    assert reply.payload["answer"] == "accepted", reply.payload
    op = reply.payload["result"]["op"]
    assert isinstance(op, int)
    c = rig.ctl.wall.get("B02")
    assert c is not None
    rig.wait(lambda: c.state == CState.OPEN)
    assert len(county.replies) == 1
    rig.sim.advance(500)
    rig.sim.door(c.board, c.channel, False)
    second = county.wait_reply(2)
    assert (second.topic, second.correlation) == (msg.response_topic, b"\x00\xff")
    assert second.payload["answer"] == "done" and second.payload["id"] == reply.payload["id"]
    assert second.payload["result"] == {"op": op, "outcome": "completed", "status": 0}
    assert c.state == CState.EMPTY
    assert [e.actor for e in audit_of(rig, "service_open_completed")] == ["county:it-mueller"]
    assert len(audit_of(rig, "county_command")) == 1  # audited once, not per answer


def test_service_open_of_a_loaded_compartment_needs_force(rig: TerminalRig) -> None:
    label, _ = load_document(rig, "DOC-F")
    c = rig.ctl.wall.get(label)
    assert c is not None
    county = County(rig)
    refused = county.send("service_open", {"compartment": label, "reason": "check"})
    assert refused.payload["answer"] == "rejected"
    assert refused.payload["result"] == {"status": 39, "status_name": "conflict"}
    assert "send force: true with a reason" in refused.payload["reason"]
    assert c.state == CState.LOADED
    no_reason = county.send("service_open", {"compartment": label, "force": True})
    assert no_reason.payload["result"]["status_name"] == "bad_request"
    forced = county.send(
        "service_open", {"compartment": label, "reason": "smell of smoke", "force": True}
    )
    assert forced.payload["answer"] == "accepted", forced.payload
    rig.wait(lambda: c.state == CState.OPEN)
    opening = [e for e in audit_of(rig, "compartment_state") if e.detail["new"] == "opening"]
    assert opening[-1].detail["forced"] is True
    assert opening[-1].actor == "county:it-mueller"
    rig.sim.door(c.board, c.channel, False)
    second = county.wait_reply(4)
    assert second.payload["answer"] == "done"
    assert c.state == CState.LOADED  # the document is still assigned


def test_a_failed_long_command_ends_with_error(rig: TerminalRig) -> None:
    county = County(rig)
    c = rig.ctl.wall.get("A07")
    assert c is not None
    rig.sim.jam(c.board, c.channel, True)
    reply = county.send("service_open", {"compartment": "A07", "reason": "jam test"})
    assert reply.payload["answer"] == "accepted"
    second = county.wait_reply(2, 20000)
    assert second.payload["answer"] == "error"
    assert second.payload["result"]["outcome"] == "jammed"
    assert second.payload["reason"]


# ----- the checks ---------------------------------------------------------------------------


def _rejected(county: County, msg: InboundMessage, *needles: str, answer: str = "rejected",
              topic: str | None = None) -> Answer:  # fmt: skip
    before = snapshot(county.rig)
    audited = len(audit_of(county.rig, "county_command"))
    reply = county.deliver(msg)
    assert reply.payload["answer"] == answer, reply.payload
    for needle in needles:
        assert needle in reply.payload["reason"], (needle, reply.payload["reason"])
    assert reply.topic == (topic or msg.response_topic)
    assert reply.correlation == msg.correlation
    assert snapshot(county.rig) == before
    assert len(audit_of(county.rig, "county_command")) == audited + 1
    return reply


def test_every_check_refuses_with_the_offending_value(rig: TerminalRig) -> None:
    county = County(rig)
    args = {"compartment": "A02", "in_service": False, "reason": "r"}
    m = county.message
    reply = _rejected(county, m("set_service", args, retain=True), "retain")
    assert reply.payload["id"] is None and reply.payload["command"] == "set_service"
    big = json.dumps({"id": "x", "pad": "a" * 9000}).encode()
    _rejected(county, m("set_service", payload=big), "9", "max_command_bytes (8192)")
    _rejected(county, m("set_service", payload=b"\xff\xfe{}"), "not UTF-8")
    _rejected(county, m("set_service", payload=b"{nope"), "not JSON")
    _rejected(county, m("set_service", payload=b'{"id": NaN}'), "not JSON")
    _rejected(county, m("set_service", payload=b"[1, 2]"), "list, not an object")
    _rejected(county, m("set_service", payload=b"[" * 4000 + b"]" * 4000), "not JSON")
    doc = json.loads(m("set_service", args).payload)
    for change, needles in (
        ({"extra": 1}, ("'extra'",)),
        ({"id": ""}, ("id ''",)),
        ({"id": "x" * 65}, ("id 'xxx",)),
        ({"id": "a\nb"}, ("id 'a\\nb'",)),
        ({"id": 7}, ("id 7",)),
        ({"operator": "it mueller"}, ("operator 'it mueller'",)),
        ({"operator": None}, ("operator None",)),
        ({"issued": "2026-11-21T10:15:00"}, ("issued '2026-11-21T10:15:00'",)),
        ({"issued": "yesterday"}, ("issued 'yesterday'",)),
        ({"expires": "2026-13-45T10:15:00Z"}, ("expires '2026-13-45T10:15:00Z'",)),
        ({"expires": 1790000000}, ("expires 1790000000",)),
        ({"args": [1]}, ("args [1]",)),
        ({"operator": "it-meier"}, ("operator 'it-meier'", "[mqtt] operators")),
    ):
        reply = _rejected(county, m("set_service", payload=json.dumps(doc | change).encode()),
                          *needles)  # fmt: skip
        readable = change.get("operator", "it-mueller")
        actor = f"county:{readable}" if readable in ("it-mueller", "it-meier") else "county:?"
        assert audit_of(rig, "county_command")[-1].actor == actor, change
    reply = _rejected(county, m("set_service", args, response=None), "no response topic",
                      topic=county.topics.rejected_replies)  # fmt: skip
    assert reply.payload["id"] is not None
    elsewhere = "amtomat/v1/other-kiosk/reply/x"
    _rejected(county, m("set_service", args, response=elsewhere), repr(elsewhere),
              topic=county.topics.rejected_replies)  # fmt: skip
    wild = county.topics.reply_prefix + "#"
    _rejected(county, m("set_service", args, response=wild), "response topic",
              topic=county.topics.rejected_replies)  # fmt: skip
    _rejected(county, m("set_service", args, issued=-400, expires=-1), "expired",
              answer="expired")  # fmt: skip
    _rejected(county, m("set_service", args, issued=-3600, expires=1), "3601 s after issued",
              "command_max_age_s (3600)")  # fmt: skip
    _rejected(county, m("set_service", args, issued=SKEW_S + 60, expires=SKEW_S + 120),
              "360 s ahead")  # fmt: skip
    _rejected(county, m("set_service", args, issued=100, expires=50), "before issued")
    _rejected(county, m("reboot_everything", {}), "unknown command 'reboot_everything'")
    _rejected(county, m("x", args, topic="amtomat/v1/demo-01/state/entrance"), "unknown command")
    assert audit_of(rig, "county_command")[-1].subject == "?"
    _rejected(county, m("x", args, topic=county.topics.base + "/cmd/a/b"), "unknown command")
    # a command name of the kiosk's that is no county command
    _rejected(county, m("pickup", {"reference": "X", "code": "1"}), "unknown command 'pickup'")


def test_operators_list_empty_accepts_any_operator(rig: TerminalRig) -> None:
    county = County(rig, MqttSettings(enabled=True, host="mqtt.example"))
    reply = county.send("entrance_mode", {"mode": "normal"}, operator="someone.else@county")
    assert reply.payload["answer"] == "done"
    assert audit_of(rig, "county_command")[-1].actor == "county:someone.else@county"


def test_a_time_with_an_offset_and_nanoseconds_is_read(rig: TerminalRig) -> None:
    county = County(rig)
    doc = json.loads(county.message("entrance_mode", {"mode": "normal"}).payload)
    now = rig.ctl.store.utc()
    doc["issued"] = rfc3339(now - 1)[:-1] + "456789z"  # nanoseconds, a lower-case z
    later = dt.datetime.fromtimestamp(now + 60, dt.timezone(dt.timedelta(hours=2)))
    doc["expires"] = later.strftime("%Y-%m-%dT%H:%M:%S+02:00")
    reply = county.deliver(county.message("entrance_mode", payload=json.dumps(doc).encode()))
    assert reply.payload["answer"] == "done", reply.payload


def test_duplicate_across_a_restart_is_not_carried_out_again(rig: TerminalRig) -> None:
    county = County(rig)
    out = {"compartment": "A04", "in_service": False, "reason": "broken"}
    first = county.send("set_service", out, cmd_id="dup-1")
    assert first.payload["answer"] == "done"
    back = {"compartment": "A04", "in_service": True, "reason": "fixed"}
    assert county.send("set_service", back).payload["answer"] == "done"
    rig.restart()
    rig.ready()
    county = County(rig)
    again = county.send("set_service", out, cmd_id="dup-1", correlation=b"corr-2")
    assert again.payload["answer"] == "duplicate"
    assert "'dup-1'" in again.payload["reason"]
    assert again.payload["result"] == {"original": first.payload}
    assert again.correlation == b"corr-2"
    assert rig.ctl.wall.get("A04").state == CState.EMPTY  # type: ignore[union-attr]
    # a rejected command's id is remembered too; a refused-by-checks one is not
    bad = county.send("set_service", {"compartment": "Z9"}, cmd_id="dup-2")
    assert bad.payload["answer"] == "rejected"
    assert county.send("set_service", {}, cmd_id="dup-2").payload["answer"] == "duplicate"
    early = county.send("entrance_mode", {"mode": "normal"}, cmd_id="dup-3", expires=-1)
    assert early.payload["answer"] == "expired"
    assert (
        county.send("entrance_mode", {"mode": "normal"}, cmd_id="dup-3").payload["answer"] == "done"
    )


def test_ids_are_forgotten_after_30_days_pruned_at_most_hourly(rig: TerminalRig) -> None:
    county = County(rig)
    base = rig.store.utc

    def at(seconds: float) -> None:
        rig.store.utc = lambda: base() + seconds

    lockdown = {"mode": "normal"}
    at(0)
    assert county.send("entrance_mode", lockdown, cmd_id="old").payload["answer"] == "done"
    at(20 * 60)
    assert county.send("entrance_mode", lockdown, cmd_id="newer").payload["answer"] == "done"
    day30 = 30 * 86400
    at(day30 + 600)  # prunes "old" (30 days + 10 min), keeps "newer" (29 d 23 h 50 min)
    assert county.send("entrance_mode", lockdown, cmd_id="old").payload["answer"] == "done"
    assert county.send("entrance_mode", lockdown, cmd_id="newer").payload["answer"] == "duplicate"
    at(day30 + 1500)  # "newer" is now older than 30 days, but the last pruning was 15 min ago
    assert county.send("entrance_mode", lockdown, cmd_id="newer").payload["answer"] == "duplicate"
    at(day30 + 600 + 3601)
    assert county.send("entrance_mode", lockdown, cmd_id="newer").payload["answer"] == "done"


def test_local_commands_are_routed_and_their_failures_answered(rig: TerminalRig) -> None:
    from controller.api import ok

    def ping(args: Any) -> Any:
        return ok(pong=True, args=dict(args))

    def broken(args: Any) -> Any:
        raise RuntimeError("secret-ish detail")

    county = County(rig)
    county.desk = CommandDesk(rig.ctl, county.topics, SETTINGS, county.replies.append,
                              local={"ping": ping, "rebirth": broken})  # fmt: skip
    assert county.send("ping").payload["result"] == {"pong": True, "args": {}}
    reply = county.send("rebirth")
    assert reply.payload["answer"] == "error"
    assert reply.payload["reason"] == "internal error (logged)"
    assert audit_of(rig, "county_command")[-1].detail["answer"] == "error"


def test_a_reply_that_cannot_be_sent_does_not_raise(rig: TerminalRig) -> None:
    def send(reply: Reply) -> None:
        raise OSError("broker gone")

    desk = CommandDesk(rig.ctl, Topics("demo-01"), SETTINGS, send)
    county = County(rig)
    desk.receive(county.message("entrance_mode", {"mode": "lockdown"}))
    assert rig.ctl.entrance.mode.value == "lockdown"
    assert audit_of(rig, "county_command")[-1].detail["answer"] == "done"


# ----- bad input never raises and changes nothing -----------------------------------------

_VALID_HASH: list[str] = []


def _valid_hash() -> str:
    if not _VALID_HASH:
        _VALID_HASH.append(hash_secret("11223344"))
    return _VALID_HASH[0]


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.sampled_from(
        ["A01", "B08", "wall-a", "wall-z", "normal", "lockdown", "DOC-H", "scrypt$1$1$1$$", "hash"]
    ),
)
ARG_NAMES = sorted({a[0] for t in (REQUESTS, COUNTY_REQUESTS) for spec in t.values() for a in spec})
GOOD: dict[str, list[Any]] = {
    "compartment": ["A01", "B08", "A05"], "reason": ["check", "r"], "in_service": [True, False],
    "mode": ["normal", "lockdown"], "reference": ["DOC-H", "NO-SUCH"], "code_hash": ["hash"],
    "board": ["wall-a", "wall-z"], "hard": [True, False, None], "force": [True, None],
}  # fmt: skip
COMMANDS = ["service_open", "set_service", "assign", "revoke", "board_reset", "entrance_mode",
            "pickup"]  # fmt: skip


@st.composite
def commands(draw: st.DrawFn, county: County) -> InboundMessage:
    """Mostly well-formed commands with plausible arguments, some broken in one place."""
    rng = draw(st.randoms(use_true_random=False))

    def rarely() -> bool:
        return rng.random() > 0.9

    name = draw(st.sampled_from(COMMANDS))
    args = draw(st.dictionaries(st.one_of(st.sampled_from(ARG_NAMES), st.text(max_size=8)),
                                values, max_size=2))  # fmt: skip
    for arg, _, _ in {**REQUESTS, **COUNTY_REQUESTS}.get(name, ()):
        if rarely():
            continue
        good = GOOD.get(arg)
        args[arg] = rng.choice(good) if good and rng.random() < 0.8 else draw(values)
    if args.get("code_hash") == "hash":
        args["code_hash"] = _valid_hash()
    kw: dict[str, Any] = {
        "operator": "it-mueller",
        "retain": rarely(),
        "correlation": draw(st.one_of(st.none(), st.binary(max_size=8))),
    }
    if rarely():
        kw["cmd_id"] = draw(st.sampled_from(["same-1", "same-2"]))  # duplicates
    if rarely():
        kw["operator"] = draw(st.sampled_from(["it-meier", "", "a b", "x" * 65]))
    if rarely():
        kw["issued"] = draw(st.sampled_from([-100, -4000, 400]))
        kw["expires"] = draw(st.sampled_from([-1, 5000, 50]))
    if rarely():
        kw["response"] = draw(st.one_of(st.none(), st.text(max_size=20)))
    if rarely():
        kw["payload"] = draw(st.binary(max_size=200))
    if rarely():
        kw["topic"] = draw(st.text(max_size=40))
    return county.message(name, None if rarely() else args, **kw)


def test_any_message_gets_exactly_one_answer_and_bad_ones_change_nothing(
    rig: TerminalRig,
) -> None:
    load_document(rig, "DOC-H")
    county = County(rig)

    @settings(max_examples=250, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        msg = data.draw(commands(county))
        before = snapshot(rig)
        seq = rig.store.audit_entries(limit=1_000_000)[-1].seq
        n = len(county.replies)
        county.desk.receive(msg)
        new = county.replies[n:]
        assert new, "no answer"
        first = new[0].payload
        assert set(first) == REPLY_KEYS and first["answer"] in ANSWERS
        json.dumps(first)
        if first["answer"] == "accepted":
            assert len(new) <= 2 and all(r.payload["answer"] in ("done", "error") for r in new[1:])
        else:
            assert len(new) == 1, new
        if first["answer"] not in ("done", "accepted"):
            assert snapshot(rig) == before
            added = rig.store.audit_entries(since_seq=seq)
            assert [e.action for e in added] == ["county_command"], added
        if first["reason"] is not None:
            assert isinstance(first["reason"], str) and first["reason"]

    check()
    assert rig.store.verify_audit().ok


# ----- county-only requests, code listeners --------------------------------------------------


def test_county_requests_are_forbidden_for_every_other_origin(rig: TerminalRig) -> None:
    label, _ = load_document(rig, "DOC-K")
    admin = Origin("bridge:test", staff="admin", staff_until_ms=rig.ctl.timers.now_ms + 10**9)
    impostors = [
        admin,
        Origin("county:it-mueller"),  # the name alone is not enough
        Origin("bridge:x", attrs={"county": True}),  # nor the flag alone
    ]
    for origin in impostors:
        for request, args in (
            ("assign", {"reference": "DOC-K", "code_hash": _valid_hash()}),
            ("revoke", {"reference": "DOC-K", "reason": "x"}),
            ("board_reset", {"board": "wall-a"}),
        ):
            result = rig.ctl.call(request, args, origin, request_id=f"{origin.name}/{request}")
            assert result.status == Status.FORBIDDEN, (origin, request, result)
            assert request in (result.reason or "")
    for request in COUNTY_REQUESTS:  # not in the kiosk's catalog: no wire id at all
        with pytest.raises(MessageError, match=request):
            KIOSK.id_of(request)
    assert rig.ctl.wall.get(label).state == CState.LOADED  # type: ignore[union-attr]
    # the kiosk's rule for a loaded compartment is unchanged: force does not replace admin
    rig.staff("mueller", STAFF_PIN)
    result = rig.call("service_open", compartment=label, reason="look", force=True)
    assert result.status == Status.FORBIDDEN
    # a county origin's staff is only set for its call
    origin = county_origin("it-mueller")
    assert rig.ctl.call("entrance_mode", {"mode": "normal"}, origin).ok
    assert origin.staff is None


def test_code_listeners_get_a_locally_issued_code_and_nothing_logs_it(
    rig: TerminalRig, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[dict[str, Any]] = []

    def broken(issued: dict[str, Any]) -> None:
        raise ValueError(f"cannot send {issued['code']}")

    rig.ctl.code_listeners.extend([broken, heard.append])
    notices: list[tuple[str, dict[str, Any]]] = []
    rig.ctl.subscribe(lambda name, fields: notices.append((name, fields)))
    with caplog.at_level(logging.DEBUG):
        label, code = load_document(rig, "DOC-L")
    assert len(heard) == 1
    issued = heard[0]
    assert issued == {"reference": "DOC-L", "code": code, "compartment": label,
                      "expires_utc": issued["expires_utc"]}  # fmt: skip
    assert isinstance(issued["expires_utc"], float)
    assert issued["expires_utc"] > rig.ctl.store.utc() + 86400
    assert "ValueError" in caplog.text and code not in caplog.text
    assert code not in json.dumps(notices)
    # a code the county issued (a hash) is not the terminal's to tell
    rig.staff("mueller", STAFF_PIN)
    result = rig.call("load", reference="DOC-M", code_hash=_valid_hash())
    assert result.ok
    assert len(heard) == 1
