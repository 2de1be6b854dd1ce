"""Test helper: check a published MQTT message against docs/mqtt/*.schema.json and against
the privacy promise of docs/mqtt/README.md (no secret and no personal number in a payload).

Written apart from ``county/`` on purpose: a test must not judge the code with the code's
own rules.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

SCHEMA_DIR: Final = Path(__file__).resolve().parent.parent / "docs" / "mqtt"
ROOT: Final = "amtomat/v1/"

# topic suffix after amtomat/v1/<kiosk_id>/ -> schema name; "x/" matches every x/...
_EXACT: Final = {
    "status": "status",
    "birth": "birth",
    "state/entrance": "entrance",
    "event": "event",
    "stats": "stats",
    "metrics": "metrics",
    "notifier/code": "notifier",
}
_PREFIXES: Final = (
    ("state/compartment/", "compartment"),
    ("state/door/", "door"),
    ("alarm/", "alarm"),
    ("cmd/", "command"),
    ("reply/", "reply"),
)
SECRET_FIELDS: Final = frozenset({"code", "pin", "code_hash", "pin_hash", "card", "phone"})
_CARD_TEXT: Final = re.compile(r"[0-9](?:[ -]?[0-9]){12}")  # 13+ digits, spaces/dashes between
_SCRYPT: Final = re.compile(r"scrypt\$", re.IGNORECASE)
_LONGEST_NUMBER: Final = 10**12  # 13 digits and more: a card number stored as a number


def _split(topic: str) -> tuple[str, str] | None:
    """(kiosk_id, suffix) of ``amtomat/v1/<kiosk_id>/<suffix>``, or None."""
    if not topic.startswith(ROOT):
        return None
    kiosk, sep, suffix = topic[len(ROOT) :].partition("/")
    if not kiosk or not sep or not suffix:
        return None
    return kiosk, suffix


def schema_for(topic: str) -> str | None:
    """The schema name of a topic (``status``, ``compartment``, ...), or None for a topic
    outside the contract."""
    parts = _split(topic)
    if parts is None:
        return None
    suffix = parts[1]
    if suffix in _EXACT:
        return _EXACT[suffix]
    for prefix, name in _PREFIXES:
        if suffix.startswith(prefix) and len(suffix) > len(prefix):
            return name
    return None


@functools.cache
def validator(name: str) -> Draft202012Validator:
    """The validator of ``docs/mqtt/<name>.schema.json``."""
    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def _fail(topic: str, payload: bytes, problem: str) -> AssertionError:
    shown = payload[:400].decode("utf-8", "replace")
    return AssertionError(f"MQTT message on {topic!r}: {problem}\n  payload: {shown}")


def decode(topic: str, payload: bytes) -> Any:
    """The payload as JSON (AssertionError naming the topic when it is not UTF-8 JSON)."""
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(topic, payload, f"not UTF-8 JSON ({exc})") from None


def validate(topic: str, payload: bytes) -> None:
    """Raise AssertionError (topic, message and the schema's complaint) unless the payload
    fits the topic's schema. A zero-length payload is valid only on ``alarm/`` (a clear)."""
    name = schema_for(topic)
    if name is None:
        raise _fail(topic, payload, "no schema: the topic is not in docs/mqtt/README.md")
    if payload == b"":
        if name == "alarm":
            return
        raise _fail(topic, payload, "zero-length payload (only an alarm/ topic may be cleared)")
    doc = decode(topic, payload)
    error = best_match(validator(name).iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise _fail(topic, payload, f"{name}.schema.json: at {where}: {error.message}")
    _check_topic_matches(topic, payload, name, doc)


def _check_topic_matches(topic: str, payload: bytes, name: str, doc: Any) -> None:
    """Fields that repeat the topic's own levels must agree with it."""
    parts = _split(topic)
    assert parts is not None
    kiosk, suffix = parts
    if isinstance(doc, dict) and "kiosk_id" in doc and doc["kiosk_id"] != kiosk:
        raise _fail(topic, payload, f"kiosk_id {doc['kiosk_id']!r} is not the topic's {kiosk!r}")
    rest = suffix.partition("/")[2]
    if name in ("compartment", "door"):
        rest = rest.partition("/")[0] + "/" + unquote(rest.partition("/")[2])
    if name == "compartment" and doc["compartment"] != rest.partition("/")[2]:
        raise _fail(topic, payload, f"compartment {doc['compartment']!r} is not the topic's")
    if name == "door" and doc["door"] != rest.partition("/")[2]:
        raise _fail(topic, payload, f"door {doc['door']!r} is not the topic's")
    if name == "alarm":
        alarm, _, subject = rest.partition("/")
        alarm, subject = unquote(alarm), unquote(subject)
        if (doc["alarm"], doc["subject"]) != (alarm, subject):
            raise _fail(topic, payload, "alarm and subject are not the topic's")


def assert_no_secrets(topic: str, payload: bytes) -> None:
    """Raise AssertionError when what the terminal published has a field named like a
    secret (code, pin, code_hash, card, phone; allowed on ``notifier/code`` only), any
    ``scrypt$`` text, or a number of 13 or more digits (in text, spaces and dashes allowed
    between digits; as a number, except byte sizes: fields whose name ends in ``bytes``).

    Commands (``cmd/``) are the operators' words, not the terminal's: an ``assign`` carries
    a code hash by design, so they pass unchecked."""
    if payload == b"" or schema_for(topic) == "command":
        return
    notifier = schema_for(topic) == "notifier"
    _walk(topic, payload, decode(topic, payload), notifier, "")


def _walk(topic: str, payload: bytes, value: Any, notifier: bool, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if key in SECRET_FIELDS and not notifier:
                raise _fail(topic, payload, f"field {path!r} is named like a secret")
            if isinstance(item, int | float) and str(key).endswith("bytes"):
                continue
            _walk(topic, payload, item, notifier, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(topic, payload, item, notifier, f"{where}[{index}]")
    elif isinstance(value, str):
        if _SCRYPT.search(value):
            raise _fail(topic, payload, f"field {where!r} holds a scrypt hash")
        if _CARD_TEXT.search(value):
            raise _fail(topic, payload, f"field {where!r} holds a number of 13+ digits")
    elif (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and abs(value) >= _LONGEST_NUMBER
    ):
        raise _fail(topic, payload, f"field {where!r} is a number of 13+ digits")
