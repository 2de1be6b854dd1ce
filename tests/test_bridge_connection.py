"""BridgeConnection, sans-I/O: a real initiator Session with the kiosk catalog on one side,
the bridge on the other, joined by byte buffers on a clock the test advances."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bridge_terminal import IDENTITY, KEY, OTHER_KEY, PICKUP_CODE, STAFF_PIN, TerminalApi

from controller.api import Status
from host_bridge.catalog import KIOSK, KIOSK_MESSAGES, NOTICE_IDS, REQUEST_IDS
from host_bridge.connection import KIOSK_MAX_FRAME, BridgeConnection, RecentResults
from host_bridge.errors import BridgeConfigError
from protocol import cbor, cobs
from protocol import session as S
from protocol.errors import MessageError
from protocol.frame import F_SEQ, build
from protocol.messages import I2R, REPLY_ID, Catalog

GARBAGE = b"\x13\x37\xff\x00\x00garbage\x01\x02\x00"

# The kiosk catalog with every request id 0x10..0x3f taking anything after its cid: lets
# a test send what a broken or hostile kiosk would, through a real session.
LOOSE = Catalog(
    "loose",
    tuple(r for r in KIOSK_MESSAGES if r[0] < 0x10 or r[0] >= 0x40)
    + tuple((i, f"r{i:02x}", I2R, (("cid", "uint", ""),), "") for i in range(0x10, 0x40)),
)


class Wire:
    """A kiosk session and a BridgeConnection joined by byte buffers."""

    def __init__(
        self,
        api: TerminalApi,
        *,
        bridge_key: bytes | None = KEY,
        kiosk_key: bytes | None = KEY,
        peer: str = "kiosk",
        one_byte_at_a_time: bool = False,
        garbage: bool = False,
        recent: RecentResults | None = None,
        catalog: Catalog = KIOSK,
        seed: int = 1,
    ) -> None:
        self.now = 0
        self.api = api
        self.to_bridge = bytearray()
        self.to_kiosk = bytearray()
        self.one_byte = one_byte_at_a_time
        self.garbage = garbage
        self.received: list[list[Any]] = []
        rng = random.Random(seed)
        self.kiosk = S.Session(
            S.INITIATOR,
            catalog,
            self.to_bridge.extend,
            rng.randbytes,
            key=kiosk_key,
            max_frame=KIOSK_MAX_FRAME,
            peer_name=peer,
        )
        self.bridge = BridgeConnection(
            api,
            bridge_key,
            self.to_kiosk.extend,
            random=rng.randbytes,
            identity=IDENTITY,
            now_ms=lambda: self.now,
            name="bridge:test",
            recent=recent,
        )

    def deliver(self) -> None:
        data = bytes(self.to_bridge)
        self.to_bridge.clear()
        if self.garbage and data:
            data = data.replace(b"\x00", b"\x00" + GARBAGE)
        if self.one_byte:
            for i in range(len(data)):
                self.bridge.feed(data[i : i + 1], self.now)
        elif data:
            self.bridge.feed(data, self.now)
        data = bytes(self.to_kiosk)
        self.to_kiosk.clear()
        if data:
            self.kiosk.feed(data, self.now)
        msg = self.kiosk.receive()
        while msg is not None:
            self.received.append(msg)
            msg = self.kiosk.receive()

    def step(self, ms: int = 10) -> None:
        self.now += ms
        self.kiosk.poll(self.now)
        self.bridge.poll(self.now)
        self.deliver()

    def until(self, cond: Any, limit_ms: int = 5000) -> None:
        end = self.now + limit_ms
        while not cond():
            assert self.now < end, f"not reached within {limit_ms} ms"
            self.step()

    def connect(self) -> None:
        self.kiosk.connect(self.now)
        self.until(lambda: self.kiosk.established and self.bridge.established)

    def request(self, name: str, *args: Any) -> int:
        return self.kiosk.request([REQUEST_IDS[name], *args])

    def reply(self, cid: int) -> list[Any]:
        def found() -> list[Any] | None:
            return next((m for m in self.received if m[0] == REPLY_ID and m[1] == cid), None)

        self.until(lambda: found() is not None)
        msg = found()
        assert msg is not None
        return msg

    def call(self, name: str, *args: Any) -> list[Any]:
        return self.reply(self.request(name, *args))

    def notices(self) -> list[tuple[str, dict[str, Any]]]:
        return [(KIOSK.name_of(m[0]), KIOSK.to_dict(m)) for m in self.received if m[0] >= 0x60]


def test_handshake_tells_the_kiosk_who_the_terminal_is() -> None:
    w = Wire(TerminalApi())
    w.connect()
    assert w.kiosk.authenticated and w.bridge.session.authenticated
    assert {k: w.kiosk.peer[k] for k in IDENTITY} == IDENTITY
    assert w.bridge.peer == "kiosk"


def test_a_request_reaches_the_api_with_its_origin_and_request_id() -> None:
    w = Wire(TerminalApi(), peer="vendor-app 2.1")
    w.connect()
    cid = w.request("state")
    reply = w.reply(cid)
    assert reply[2] == Status.OK and reply[4]["entrance"] == "normal"
    call = w.api.calls[-1]
    assert (call.request, call.origin, call.request_id) == (
        "state",
        "bridge:test",
        f"vendor-app 2.1/{cid}",
    )


def test_whole_flow_byte_by_byte_with_garbage_between_frames() -> None:
    w = Wire(TerminalApi(), one_byte_at_a_time=True, garbage=True)
    w.connect()
    assert w.call("staff_login", "anna", STAFF_PIN)[2] == Status.OK
    loaded = w.call("load", "R-1", None, "A2")
    assert loaded[2] == Status.OK and loaded[4]["compartment"] == "A2"
    w.api.finish(loaded[4]["op"])
    w.until(lambda: any(name == "done" for name, _ in w.notices()))
    wrong = w.call("pickup", "R-1", "000000")
    assert wrong[2] == Status.WRONG_CODE and "R-1" in wrong[3]
    assert w.call("pickup", "R-1", PICKUP_CODE)[2] == Status.OK
    counters = w.bridge.counters()
    assert counters["malformed"] + counters["crc_errors"] > 0  # the garbage was seen
    assert counters["requests"] == 4 and counters["internal_errors"] == 0


def test_optional_arguments_may_be_left_out_and_arrive_as_none() -> None:
    w = Wire(TerminalApi())
    w.connect()
    w.call("staff_login", "anna", STAFF_PIN)
    assert w.call("load", "R-2")[2] == Status.OK
    assert w.api.calls[-1].args == {
        "reference": "R-2",
        "size": None,
        "compartment": None,
        "code_hash": None,
        "return_required": None,
        "expires_days": None,
    }


def test_bad_requests_get_a_reply_naming_the_field_and_never_reach_the_api() -> None:
    w = Wire(TerminalApi(), catalog=LOOSE)
    w.connect()
    pin_wrong = w.reply(w.kiosk.request([REQUEST_IDS["staff_login"], "anna", 4711]))
    assert pin_wrong[2] == Status.BAD_REQUEST and "pin" in pin_wrong[3]
    missing = w.reply(w.kiosk.request([REQUEST_IDS["pickup"], "R-1"]))
    assert missing[2] == Status.BAD_REQUEST and "code" in missing[3]
    unknown = w.reply(w.kiosk.request([0x3E, 1, 2]))
    assert unknown[2] == Status.UNKNOWN_MESSAGE and "0x3e" in unknown[3]
    assert w.api.calls == []
    assert w.call("state")[2] == Status.OK  # the connection carries on


def test_an_exception_in_the_api_becomes_an_internal_reply_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = Wire(TerminalApi())
    w.connect()
    w.api.explode = RuntimeError("database is locked")
    with caplog.at_level(logging.ERROR, logger="amtomat.bridge"):
        reply = w.call("staff_login", "anna", STAFF_PIN)
    assert reply[2] == Status.INTERNAL and "staff_login" in reply[3]
    assert "database" not in reply[3]  # details stay in the log
    assert "database is locked" in caplog.text and STAFF_PIN not in caplog.text
    assert w.call("state")[2] == Status.OK
    assert w.bridge.counters()["internal_errors"] == 1


def test_unencodable_reply_data_becomes_an_internal_reply() -> None:
    api = TerminalApi()
    w = Wire(api)
    w.connect()
    api.compartments["A1"]["door"] = {1, 2}  # a set: not CBOR
    reply = w.call("compartments")
    assert reply[2] == Status.INTERNAL and "cannot be encoded" in reply[3]


def test_notices_are_pushed_as_events_and_those_of_a_request_follow_its_reply() -> None:
    w = Wire(TerminalApi())
    w.connect()
    w.call("staff_login", "anna", STAFF_PIN)
    cid = w.request("load", "R-3")
    w.reply(cid)
    kinds = [m[0] for m in w.received]
    reply_at = next(i for i, m in enumerate(w.received) if m[0] == REPLY_ID and m[1] == cid)
    assert kinds[reply_at + 1] == NOTICE_IDS["progress"]
    op = w.received[reply_at][4]["op"]
    w.api.finish(op)  # outside any request: goes out at once
    w.until(lambda: len(w.notices()) == 4)
    names = [name for name, _ in w.notices()]
    assert names == ["progress", "progress", "done", "compartment"]
    assert w.notices()[2][1] == {
        "op": op,
        "operation": "load",
        "status": 0,
        "outcome": "completed",
        "reason": None,
    }


def test_a_burst_of_notices_arrives_complete_and_in_order() -> None:
    api = TerminalApi()
    w = Wire(api)
    w.connect()
    for i in range(300):
        api.emit("compartment", compartment=f"C{i}", state="loaded", door="closed")
    w.until(lambda: len(w.notices()) == 300)
    assert [f["compartment"] for _, f in w.notices()] == [f"C{i}" for i in range(300)]
    assert w.bridge.counters()["notices_dropped"] == 0


def test_notices_while_no_session_is_up_are_dropped_and_counted() -> None:
    api = TerminalApi()
    w = Wire(api)
    api.emit("terminal", entrance="normal", boards_ready=1, boards=2)
    w.connect()
    api.emit("alarm", alarm="tamper", active=True, subject="cabinet")
    w.until(lambda: len(w.notices()) == 1)
    assert w.notices()[0] == (
        "alarm",
        {"alarm": "tamper", "active": True, "subject": "cabinet", "detail": None},
    )
    w.kiosk.connect(w.now)  # the kiosk starts over; nothing more is delivered for a while
    w.to_bridge.clear()
    for _ in range(300):
        w.now += 10
        w.bridge.poll(w.now)
        w.to_kiosk.clear()
    assert not w.bridge.established
    api.emit("alarm", alarm="tamper", active=False, subject="cabinet")
    assert w.bridge.counters()["notices_dropped"] == 2


def test_a_notice_that_does_not_fit_the_catalog_is_counted_not_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = TerminalApi()
    w = Wire(api)
    w.connect()
    with caplog.at_level(logging.WARNING, logger="amtomat.bridge"):
        api.emit("alarm", alarm="tamper", active="yes", subject="cabinet")
        api.emit("weather", sunny=True)
    assert w.bridge.counters()["notices_invalid"] == 2
    assert "active" in caplog.text and "weather" in caplog.text
    w.step()
    assert w.notices() == []


def test_a_request_resent_in_a_new_session_is_answered_from_the_cache() -> None:
    w = Wire(TerminalApi())
    w.connect()
    w.call("staff_login", "anna", STAFF_PIN)
    cid = w.request("load", "R-4")
    w.reply(cid)
    w.received.clear()
    w.kiosk.connect(w.now)
    w.until(lambda: w.kiosk.established and w.bridge.sessions == 2)
    w.kiosk.resend_request([REQUEST_IDS["load"], "R-4"], cid)
    again = w.reply(cid)
    assert again[2] == Status.OK
    assert len(w.api.calls_of("load")) == 1


def test_connections_sharing_recent_results_call_the_api_once_per_request_id() -> None:
    api = TerminalApi()
    recent = RecentResults()
    first = Wire(api, recent=recent, seed=1)
    first.connect()
    cid = first.request("state")
    answer = first.reply(cid)
    second = Wire(api, recent=recent, seed=2)  # the same kiosk after a reconnect
    second.connect()
    second.kiosk.resend_request([REQUEST_IDS["state"]], cid)
    assert second.reply(cid)[2:] == answer[2:]
    other = Wire(api, recent=recent, peer="other-kiosk", seed=3)
    other.connect()
    other.kiosk.resend_request([REQUEST_IDS["state"]], cid)
    other.reply(cid)
    assert [c.request_id for c in api.calls_of("state")] == [f"kiosk/{cid}", f"other-kiosk/{cid}"]
    assert second.bridge.counters()["replayed_results"] == 1


def test_a_staff_login_lasts_one_session_and_ends_on_close() -> None:
    api = TerminalApi()
    w = Wire(api)
    w.connect()
    w.call("staff_login", "anna", STAFF_PIN)
    assert w.bridge.origin.staff == "anna"
    w.kiosk.connect(w.now)
    w.until(lambda: w.bridge.sessions == 2 and w.kiosk.established)
    w.step()
    assert w.bridge.origin.staff is None and len(api.calls_of("staff_logout")) == 1
    w.call("staff_login", "anna", STAFF_PIN)
    w.bridge.close()
    assert w.bridge.origin.staff is None and len(api.calls_of("staff_logout")) == 2
    assert api.listeners == []
    w.bridge.close()  # idempotent
    assert len(api.calls_of("staff_logout")) == 2


@pytest.mark.parametrize(
    ("kiosk_key", "bridge_key", "why"),
    [
        (OTHER_KEY, KEY, "wrong key"),
        (None, KEY, "no key is configured"),
        (KEY, None, "downgrade refused"),
    ],
)
def test_a_kiosk_without_the_pairing_key_never_gets_a_session(
    kiosk_key: bytes | None, bridge_key: bytes | None, why: str
) -> None:
    api = TerminalApi()
    w = Wire(api, kiosk_key=kiosk_key, bridge_key=bridge_key)
    w.kiosk.connect(w.now)
    for _ in range(300):
        w.step()
    assert not w.kiosk.established
    assert why in w.kiosk.last_error
    assert api.calls == []


def test_unauthenticated_requests_are_dropped_when_a_key_is_set() -> None:
    api = TerminalApi()
    w = Wire(api)
    w.connect()
    out = bytearray(64)
    payload = cbor.dumps([REQUEST_IDS["state"], 5])
    n = build(out, F_SEQ, 0, 0, 0, 8, 0, payload, None)
    w.bridge.feed(cobs.encode(out[:n]) + b"\x00", w.now)
    for _ in range(5):
        w.step()
    assert api.calls == [] and w.bridge.counters()["downgrades"] == 1
    assert not any(m[0] == REPLY_ID and m[1] == 5 for m in w.received)


def test_bad_settings_are_refused_naming_the_setting_never_the_key() -> None:
    api = TerminalApi()
    secret = b"s3cret-pairing-key-16"
    with pytest.raises(BridgeConfigError) as err:
        BridgeConnection(api, secret, print, identity=IDENTITY, now_ms=lambda: 0)
    assert err.value.value == len(secret) and "s3cret" not in str(err.value)
    for broken, word in [
        ({**IDENTITY, "compartments": -1}, "compartments"),
        ({k: v for k, v in IDENTITY.items() if k != "site"}, "site"),
        ({**IDENTITY, "colour": "red"}, "colour"),
        ({**IDENTITY, "features": [1]}, "features"),
    ]:
        with pytest.raises(BridgeConfigError, match=word):
            BridgeConnection(api, None, print, identity=broken, now_ms=lambda: 0)
    assert api.listeners == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.binary(max_size=600), max_size=20), keyed=st.booleans())
def test_random_byte_streams_never_raise(chunks: list[bytes], keyed: bool) -> None:
    api = TerminalApi()
    bridge = BridgeConnection(
        api, KEY if keyed else None, lambda b: None, identity=IDENTITY, now_ms=lambda: 0
    )
    for i, chunk in enumerate(chunks):
        bridge.feed(chunk, i * 7)
        bridge.poll(i * 7 + 3)
    assert api.calls == []  # random bytes never make a request


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.binary(max_size=300), max_size=10))
def test_random_bytes_inside_an_established_session_never_raise(chunks: list[bytes]) -> None:
    w = Wire(TerminalApi(), bridge_key=None, kiosk_key=None)
    w.connect()
    for chunk in chunks:
        w.bridge.feed(chunk, w.now)
        w.step()
    w.bridge.feed(b"\x00", w.now)  # end whatever partial frame the noise left
    assert w.call("state")[2] == Status.OK  # and the kiosk's session still works


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.text(max_size=12)
    | st.binary(max_size=12)
    | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=st.lists(st.tuples(st.integers(0x10, 0x3F), st.lists(_values, max_size=7)), max_size=6)
)
def test_any_request_a_kiosk_can_frame_gets_exactly_one_reply(
    requests: list[tuple[int, list[Any]]],
) -> None:
    w = Wire(TerminalApi(), bridge_key=None, kiosk_key=None, catalog=LOOSE)
    w.connect()
    cids = []
    for mid, fields in requests:
        try:
            cids.append(w.kiosk.request([mid, *fields]))
        except MessageError:
            continue  # larger than a frame: the kiosk cannot send it
        w.step()
    w.until(lambda: sum(m[0] == REPLY_ID for m in w.received) >= len(cids))
    w.step(50)
    replies = [m for m in w.received if m[0] == REPLY_ID]
    assert sorted(m[1] for m in replies) == sorted(cids)
    for m in replies:
        assert isinstance(m[2], int) and (m[2] == Status.OK or isinstance(m[3], str))
