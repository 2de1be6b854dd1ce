"""The kiosk catalog is generated from controller.api's tables, and docs/kiosk-bridge.md
carries exactly its tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.api import NOTICES, REQUESTS, STATUS_MEANINGS, Status
from host_bridge import catalog as C
from host_bridge.errors import BridgeConfigError
from protocol.messages import REPLY_FIELDS, REPLY_ID, WELCOME_FIELDS

DOC = Path(__file__).resolve().parent.parent / "docs" / "kiosk-bridge.md"
BEGIN = "<!-- catalog:begin (python -m host_bridge.catalog) -->\n"
END = "<!-- catalog:end -->"


def test_one_request_per_api_request_in_table_order_with_cid_first() -> None:
    for i, (name, args) in enumerate(REQUESTS.items()):
        mid = 0x10 + i
        assert C.KIOSK.id_of(name) == mid == C.REQUEST_IDS[name]
        fields = C.KIOSK.spec(mid)[3]
        assert fields[0][:2] == ("cid", "uint")
        assert fields[1:] == args
    assert len(C.REQUEST_IDS) == len(REQUESTS)


def test_one_event_per_api_notice_in_table_order() -> None:
    for i, (name, fields) in enumerate(NOTICES.items()):
        assert C.KIOSK.id_of(name) == 0x60 + i == C.NOTICE_IDS[name]
        assert C.KIOSK.spec(0x60 + i)[3] == fields
        assert C.NOTICE_NAMES[0x60 + i] == name


def test_session_messages_and_reply_are_the_protocols_with_the_kiosk_identity() -> None:
    welcome = C.KIOSK.spec(C.KIOSK.id_of("welcome"))[3]
    assert welcome == WELCOME_FIELDS + C.IDENTITY_FIELDS
    assert [f[0] for f in C.IDENTITY_FIELDS] == [
        "kiosk_id", "site", "sw_version", "features", "compartments",
    ]  # fmt: skip
    assert C.KIOSK.spec(REPLY_ID)[3] == REPLY_FIELDS
    assert {C.KIOSK.name_of(i) for i in (1, 2, 3, 4)} == {"hello", "welcome", "heartbeat", "refuse"}


def test_every_request_and_notice_has_a_written_meaning() -> None:
    assert set(C.REQUEST_MEANINGS) == set(REQUESTS)
    assert set(C.NOTICE_MEANINGS) == set(NOTICES)


def test_optional_arguments_trail_and_types_are_known() -> None:
    with pytest.raises(BridgeConfigError, match="required field b follows"):
        C._checked_fields("x", (("a", "text?", ""), ("b", "uint", "")))
    with pytest.raises(BridgeConfigError, match="unknown type 'float'"):
        C._checked_fields("x", (("a", "float", ""),))


def test_identity_values_follow_the_catalog_order() -> None:
    identity = {
        "compartments": 20,
        "features": ("a",),
        "sw_version": "1",
        "site": "s",
        "kiosk_id": "k",
    }
    assert C.identity_values(identity) == ["k", "s", "1", ["a"], 20]
    with pytest.raises(BridgeConfigError, match="compartments must be uint, got True"):
        C.identity_values({**identity, "compartments": True})


def test_status_table_names_every_status_with_its_meaning() -> None:
    rows = {code: (name, meaning) for code, name, meaning in C.status_rows()}
    for status in Status:
        assert rows[int(status)] == (status.name.lower(), STATUS_MEANINGS[status])
    assert rows[8][0] == "unsupported_version" and rows[9][0] == "auth_required"


def test_the_doc_carries_exactly_the_generated_tables() -> None:
    doc = DOC.read_text()
    assert BEGIN in doc and END in doc, "marker comments missing in docs/kiosk-bridge.md"
    between = doc.split(BEGIN, 1)[1].split(END, 1)[0]
    assert between == C.catalog_markdown(), "paste the output of python -m host_bridge.catalog"
