"""The checks of a county command before it runs: size, JSON shape, the envelope's fields
(id, operator, issued, expires, args), the response topic and the times (see the
"Commands" section of docs/mqtt/README.md). Each check raises ``CommandRefused`` with the
answer (``rejected`` or ``expired``) and a reason naming the offending value."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any, Final

from controller.api import shown
from county.errors import CountyError
from county.topics import Topics

REJECTED: Final = "rejected"
EXPIRED: Final = "expired"
ID_MAX: Final = 64
SKEW_S: Final = 300  # a command issued this far in the terminal's future is still taken
TOPIC_MAX: Final = 1024
FIELDS: Final = ("id", "operator", "issued", "expires", "args")
_OPERATOR_RE: Final = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_RFC3339_RE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


class CommandRefused(CountyError):
    """A command that is not carried out: ``answer`` is rejected, expired or duplicate,
    ``result`` what the reply carries (None, or e.g. the first answer of a duplicate)."""

    def __init__(
        self, answer: str, reason: str, value: object = None, result: dict[str, Any] | None = None
    ) -> None:
        super().__init__(reason, value)
        self.answer = answer
        self.reason = reason
        self.result = result


@dataclass(frozen=True)
class Envelope:
    """A command's checked fields; times as POSIX seconds."""

    id: str
    operator: str
    issued: float
    expires: float
    args: dict[str, Any]


def reject(reason: str, value: object = None) -> CommandRefused:
    """A ``rejected`` refusal."""
    return CommandRefused(REJECTED, reason, value)


def parse_payload(payload: bytes, max_bytes: int) -> dict[str, Any]:
    """The payload as a JSON object; refused when over max_bytes (then not parsed), not
    UTF-8, not JSON (NaN and Infinity included) or not an object."""
    if len(payload) > max_bytes:
        raise reject(
            f"payload of {len(payload)} bytes is over max_command_bytes ({max_bytes})",
            len(payload),
        )
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise reject(f"payload is not UTF-8 (byte {exc.start})", exc.start) from None
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise reject(f"payload is not JSON: {shown(str(exc), 80)}", text[:40]) from None
    if not isinstance(doc, dict):
        raise reject(f"payload is a JSON {type(doc).__name__}, not an object", type(doc).__name__)
    return doc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def valid_id(value: object) -> str | None:
    """The command id when it is 1..64 printable characters, else None."""
    if isinstance(value, str) and 1 <= len(value) <= ID_MAX and value.isprintable():
        return value
    return None


def valid_operator(value: object) -> str | None:
    """The operator when it is 1..64 of ``A-Z a-z 0-9 . _ @ -``, else None."""
    if isinstance(value, str) and _OPERATOR_RE.fullmatch(value):
        return value
    return None


def check_envelope(doc: dict[str, Any]) -> Envelope:
    """The envelope's fields in order: id, operator, issued, expires, args."""
    unknown = sorted(str(k) for k in doc if k not in FIELDS)
    if unknown:
        raise reject(f"unknown field {shown(unknown[0])}; a command has {', '.join(FIELDS)}")
    cmd_id = valid_id(doc.get("id"))
    if cmd_id is None:
        raise reject(f"id {shown(doc.get('id'))} is not 1 to {ID_MAX} printable characters")
    operator = valid_operator(doc.get("operator"))
    if operator is None:
        raise reject(f"operator {shown(doc.get('operator'))} is not 1 to 64 of A-Z a-z 0-9 . _ @ -")
    issued = parse_time(doc.get("issued"), "issued")
    expires = parse_time(doc.get("expires"), "expires")
    args = doc.get("args", {})
    if not isinstance(args, dict):
        raise reject(f"args {shown(args)} is not a JSON object")
    return Envelope(cmd_id, operator, issued, expires, args)


def parse_time(value: object, name: str) -> float:
    """An RFC 3339 time with its offset (``2026-11-21T10:15:00.000Z``) as POSIX seconds."""
    problem = f"{name} {shown(value)} is not an RFC 3339 time such as 2026-11-21T10:15:00.000Z"
    if not isinstance(value, str) or not _RFC3339_RE.fullmatch(value):
        raise reject(problem, value)
    text = value.upper()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(text)
        if when.tzinfo is None:
            raise ValueError("no time zone")
        return when.timestamp()
    except (ValueError, OverflowError):
        raise reject(problem, value) from None


def check_operator(operator: str, allowed: tuple[str, ...]) -> None:
    """Refused when a list of operators is configured and the operator is not on it."""
    if allowed and operator not in allowed:
        raise reject(f"operator {shown(operator)} is not in [mqtt] operators", operator)


def reply_topic(topics: Topics, response_topic: str | None) -> str | None:
    """The response topic when it is usable: under ``.../reply/``, no wildcards, no NUL."""
    if not isinstance(response_topic, str) or len(response_topic) > TOPIC_MAX:
        return None
    rest = response_topic[len(topics.reply_prefix) :]
    if not response_topic.startswith(topics.reply_prefix) or not rest:
        return None
    if any(ch in response_topic for ch in "+#\x00"):
        return None
    return response_topic


def check_response_topic(topics: Topics, response_topic: str | None) -> None:
    """Refused without a usable response topic."""
    if response_topic is None:
        raise reject("the command has no response topic (MQTT 5 property)")
    if reply_topic(topics, response_topic) is None:
        raise reject(
            f"response topic {shown(response_topic)} is not under {topics.reply_prefix}",
            response_topic,
        )


def check_times(env: Envelope, now: float, max_age_s: int) -> None:
    """Expired when expires has passed; refused when it expires before it was issued, or
    later than max_age_s after, or was issued more than SKEW_S in the future."""
    if env.expires <= now:
        raise CommandRefused(EXPIRED, f"the command expired {now - env.expires:.0f} s ago")
    if env.expires < env.issued:
        raise reject("expires is before issued")
    if env.expires - env.issued > max_age_s:
        span = env.expires - env.issued
        raise reject(
            f"expires is {span:.0f} s after issued; at most command_max_age_s ({max_age_s})",
            span,
        )
    if env.issued > now + SKEW_S:
        ahead = env.issued - now
        raise reject(
            f"issued is {ahead:.0f} s ahead of the terminal's clock (at most {SKEW_S} s)",
            ahead,
        )
