"""The JSON schemas of docs/mqtt: valid draft 2020-12, their examples pass, every file is in
the README's table, and hand-made bad payloads fail. Also the test helper that other
tests use to check every published message (tests/mqtt_schemas.py)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from mqtt_schemas import SCHEMA_DIR, assert_no_secrets, schema_for, validate

from controller.compartments import CState
from county.topics import Topics

NAMES = sorted(p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json"))
K = "amtomat/v1/myk-01"
TOPIC = {
    "status": f"{K}/status",
    "birth": f"{K}/birth",
    "compartment": f"{K}/state/compartment/A3",
    "door": f"{K}/state/door/service",
    "entrance": f"{K}/state/entrance",
    "alarm": f"{K}/alarm/jam/A3",
    "event": f"{K}/event",
    "stats": f"{K}/stats",
    "metrics": f"{K}/metrics",
    "command": f"{K}/cmd/set_service",
    "reply": f"{K}/reply/it-mueller/42",
    "notifier": f"{K}/notifier/code",
}


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8")
    )
    return loaded


def example(name: str) -> dict[str, Any]:
    return copy.deepcopy(schema(name)["examples"][0])


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def nodes(node: Any) -> Iterator[dict[str, Any]]:
    """Every subschema (dict) of a schema, examples left out."""
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key not in ("examples", "enum", "const", "required", "default"):
                yield from nodes(value)
    elif isinstance(node, list):
        for item in node:
            yield from nodes(item)


# ----- the files -------------------------------------------------------------------------


def test_there_is_a_schema_for_every_topic_kind() -> None:
    assert sorted(TOPIC) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_a_schema_is_valid_and_documented(name: str) -> None:
    doc = schema(name)
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"] == f"{name}.schema.json"
    assert len(doc["description"]) > 40
    assert len(doc["examples"]) == 1


@pytest.mark.parametrize("name", NAMES)
def test_its_example_is_a_valid_message_without_secrets(name: str) -> None:
    payload = encode(example(name))
    assert schema_for(TOPIC[name]) == name
    validate(TOPIC[name], payload)
    assert_no_secrets(TOPIC[name], payload)


@pytest.mark.parametrize("name", NAMES)
def test_every_object_closes_its_properties(name: str) -> None:
    for node in nodes(schema(name)):
        if "properties" in node:
            assert node.get("additionalProperties") is False, node
            assert set(node["required"]) <= set(node["properties"]), node
        elif node.get("type") == "object" or "object" in node.get("type", []):
            assert "additionalProperties" in node, node  # a map says what its values are


@pytest.mark.parametrize("name", NAMES)
def test_every_time_has_a_pattern(name: str) -> None:
    def times(node: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        for key, sub in node.get("properties", {}).items():
            if key.endswith("utc") or key in ("issued", "expires", "start", "end"):
                yield key, sub

    doc = schema(name)
    for node in nodes(doc):
        for key, sub in times(node):
            sub = doc["$defs"]["utc"] if sub == {"$ref": "#/$defs/utc"} else sub
            if "anyOf" in sub:  # a time or null
                sub = doc["$defs"]["utc"]
            assert "pattern" in sub, (name, key)


def test_every_schema_file_is_in_the_readme_table() -> None:
    readme = (SCHEMA_DIR / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    named = set(re.findall(r"`([a-z]+)\.schema\.json`", "\n".join(rows)))
    assert named == set(NAMES)


def test_the_compartment_states_are_the_controllers() -> None:
    states = schema("compartment")["properties"]["state"]["enum"]
    assert states == [s.value for s in CState] and len(states) == 12


# ----- bad payloads fail -----------------------------------------------------------------


def _without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


def _with(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


BAD: list[tuple[str, Any, str]] = [
    # missing fields
    ("status", lambda d: _without(d, "session"), "'session' is a required property"),
    ("event", lambda d: _without(d, "seq"), "'seq' is a required property"),
    ("birth", lambda d: _with(d, "software", {"amtomat": "0.1.0"}), "'python' is a required"),
    ("stats", lambda d: _with(d, "counts", _without(d["counts"], "alarms")), "'alarms'"),
    ("notifier", lambda d: _without(d, "reference"), "'reference' is a required property"),
    ("command", lambda d: _without(d, "expires"), "'expires' is a required property"),
    # extra fields
    ("status", lambda d: {**d, "extra": 1}, "Additional properties"),
    ("birth", lambda d: _with(d, "boards.0.serial", "x"), "Additional properties"),
    ("metrics", lambda d: _with(d, "disk.mount", "/"), "Additional properties"),
    ("command", lambda d: {**d, "retain": True}, "Additional properties"),
    # wrong enums and constants
    ("status", lambda d: {**d, "state": "sleeping"}, "'sleeping' is not one of"),
    ("compartment", lambda d: {**d, "state": "broken"}, "'broken' is not one of"),
    ("door", lambda d: {**d, "state": "ajar"}, "'ajar' is not one of"),
    ("entrance", lambda d: {**d, "mode": "open"}, "'open' is not one of"),
    ("reply", lambda d: {**d, "answer": "ok"}, "'ok' is not one of"),
    ("birth", lambda d: {**d, "schema": 2}, "1 was expected"),
    # wrong types, ranges and patterns
    ("status", lambda d: {**d, "session": 0}, "less than the minimum"),
    ("event", lambda d: {**d, "seq": 2**63}, "greater than the maximum"),
    ("event", lambda d: {**d, "historical": "no"}, "is not of type 'boolean'"),
    ("event", lambda d: _with(d, "detail.code", "48213907"), "should not be valid"),
    ("event", lambda d: _with(d, "detail.why", "card 4111 1111 1111 1111"), "should not be"),
    ("event", lambda d: _with(d, "detail.args", {"a": {"b": 1}}), "is not valid"),
    ("stats", lambda d: {**d, "period": "2026-11-21T10:00"}, "does not match"),
    ("status", lambda d: {**d, "utc": "2026-11-21T10:15:02Z"}, "does not match"),
    ("status", lambda d: {**d, "utc": "2026-11-21 10:15:02.118Z"}, "does not match"),
    ("alarm", lambda d: {**d, "raised_utc": "2026-13-21T10:15:02.118Z"}, "does not match"),
    ("metrics", lambda d: _with(d, "outbox.oldest_utc", "yesterday"), "does not match"),
    ("metrics", lambda d: _with(d, "boards.b1.counters.frames_in", "many"), "not of type"),
    ("command", lambda d: {**d, "operator": "it mueller"}, "does not match"),
    ("command", lambda d: {**d, "id": "x" * 65}, "does not match"),
    ("command", lambda d: {**d, "expires": "tomorrow"}, "does not match"),
    ("notifier", lambda d: {**d, "code": "12ab56"}, "does not match"),
    ("birth", lambda d: {**d, "kiosk_id": "MYK_01"}, "does not match"),
]


@pytest.mark.parametrize(("name", "spoil", "complaint"), BAD)
def test_a_bad_payload_fails(name: str, spoil: Any, complaint: str) -> None:
    topic = TOPIC[name]
    payload = encode(spoil(example(name)))
    with pytest.raises(AssertionError) as err:
        validate(topic, payload)
    text = str(err.value)
    assert topic in text and f"{name}.schema.json" in text and complaint in text


def test_good_variants_pass() -> None:
    validate(TOPIC["command"], encode(_without(example("command"), "args")))  # args optional
    validate(
        TOPIC["command"], encode({**example("command"), "expires": "2026-11-21T11:20:00+01:00"})
    )
    validate(TOPIC["status"], encode({**example("status"), "state": "offline", "reason": None}))
    validate(TOPIC["metrics"], encode(_with(example("metrics"), "outbox.oldest_utc", None)))
    validate(TOPIC["reply"], encode({**example("reply"), "id": None, "command": None,
                                     "answer": "rejected", "result": None}))  # fmt: skip
    validate(TOPIC["stats"], encode(_with(example("stats"), "dwell_seconds.mean", None)))


# ----- the helper ------------------------------------------------------------------------


def test_a_zero_length_payload_is_valid_only_on_alarm_topics() -> None:
    validate(f"{K}/alarm/jam/A3", b"")
    for name in ("status", "compartment", "event", "birth"):
        with pytest.raises(AssertionError, match="zero-length"):
            validate(TOPIC[name], b"")


@pytest.mark.parametrize(
    "topic",
    [f"{K}/statusx", f"{K}/cmd/", f"{K}", "amtomat/v1//status", "other/v1/myk-01/status",
     f"{K}/state/compartment/", f"{K}/notifier/other"],
)  # fmt: skip
def test_a_topic_outside_the_contract_has_no_schema(topic: str) -> None:
    assert schema_for(topic) is None
    with pytest.raises(AssertionError, match="no schema"):
        validate(topic, encode(example("status")))


def test_not_json_is_named() -> None:
    with pytest.raises(AssertionError, match="not UTF-8 JSON") as err:
        validate(TOPIC["status"], b"\xff{")
    assert TOPIC["status"] in str(err.value)


def test_fields_that_repeat_the_topic_must_agree_with_it() -> None:
    with pytest.raises(AssertionError, match="kiosk_id"):
        validate("amtomat/v1/myk-02/event", encode(example("event")))
    with pytest.raises(AssertionError, match="compartment"):
        validate(f"{K}/state/compartment/A4", encode(example("compartment")))
    with pytest.raises(AssertionError, match="door"):
        validate(f"{K}/state/door/entrance", encode(example("door")))
    with pytest.raises(AssertionError, match="alarm and subject"):
        validate(f"{K}/alarm/jam/A4", encode(example("alarm")))
    label = {**example("compartment"), "compartment": "b1/3"}  # default labels hold a slash
    validate(f"{K}/state/compartment/b1/3", encode(label))


@given(st.text(st.characters(blacklist_characters="/+#\x00"), min_size=1, max_size=16))
def test_every_topic_of_a_terminal_maps_to_its_schema(label: str) -> None:
    t = Topics("myk-01")
    assert schema_for(t.status) == "status" and schema_for(t.birth) == "birth"
    assert schema_for(t.event) == "event" and schema_for(t.stats) == "stats"
    assert schema_for(t.metrics) == "metrics" and schema_for(t.entrance) == "entrance"
    assert schema_for(t.notifier) == "notifier"
    assert schema_for(t.compartment(label)) == "compartment"
    assert schema_for(t.door(label)) == "door"
    assert schema_for(t.alarm("jam", label)) == "alarm"
    assert schema_for(t.command("ping")) == "command"
    assert schema_for(t.rejected_replies) == "reply"
    assert schema_for(t.reply_prefix + label) == "reply"


@pytest.mark.parametrize(
    ("name", "spoil", "complaint"),
    [
        ("event", lambda d: _with(d, "detail.code", "48213907"), "named like a secret"),
        ("reply", lambda d: _with(d, "result.pin", "1234"), "named like a secret"),
        ("reply", lambda d: {**d, "reason": "hash scrypt$16384$8$1$abc"}, "scrypt hash"),
        ("status", lambda d: {**d, "reason": "card 4111-1111-1111-1111"}, r"13\+ digits"),
        ("event", lambda d: _with(d, "detail.value", 4111111111111111), r"13\+ digits"),
        ("metrics", lambda d: _with(d, "boards.b1.counters.frames_in", 10**13), r"13\+ digits"),
    ],
)
def test_assert_no_secrets_finds_them(name: str, spoil: Any, complaint: str) -> None:
    with pytest.raises(AssertionError, match=complaint) as err:
        assert_no_secrets(TOPIC[name], encode(spoil(example(name))))
    assert TOPIC[name] in str(err.value)


def test_assert_no_secrets_allows_what_belongs_there() -> None:
    assert_no_secrets(TOPIC["notifier"], encode(example("notifier")))  # the code's own topic
    big_disk = _with(example("metrics"), "disk.total_bytes", 16 * 10**12)
    assert_no_secrets(TOPIC["metrics"], encode(big_disk))  # byte sizes may be long
    assign = {**example("command"), "args": {"reference": "BA-1", "code_hash": "scrypt$1$2"}}
    assert_no_secrets(f"{K}/cmd/assign", encode(assign))  # the operator's words
    assert_no_secrets(f"{K}/alarm/jam/A3", b"")  # a clear
