"""What of an audit entry may leave the terminal: detail keys by allowlist, free text scrubbed.

The county's ``event`` topic carries every audit entry (docs/mqtt/README.md). Its
``detail`` passes ``public_detail``: a key is published only when it is on
``PUBLIC_KEYS`` (or on ``ACTION_KEYS`` for its action); everything else is dropped, so a
key added to an ``.audit(...)`` call later stays private until somebody classifies it
(``tests/test_county_privacy.py`` fails until the key is on one of the lists).
``SECRET_KEYS`` is the documented deny list: keys that carry a secret or a personal
number and must never be made public.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

MAX_TEXT: Final = 200  # characters of one published text value
MAX_ITEMS: Final = 20  # items of one published list or object
REMOVED: Final = "[removed]"

# Every detail key the controller, the kiosk bridge and the county link audit (see the
# ast scan in tests/test_county_privacy.py), plus the county commands' arguments and
# results. None of them carries a secret or a personal number.
PUBLIC_KEYS: Final[frozenset[str]] = frozenset(
    {
        # controller/ audit calls
        "alarm",  # alarm name
        "attempts_left",  # wrong pickup codes left before the lockout
        "board",
        "channel",
        "code_issued",  # "county" or "terminal": who issued the code, not the code
        "command",  # a board command's name, or a county command's name
        "detail",  # an alarm's free text (scrubbed)
        "expires_utc",
        "forced",  # a compartment opened for service although it held a document
        "new",  # the new state
        "old",  # the previous state
        "op",  # operation number
        "open",  # the service door is open
        "reason",  # free text (scrubbed)
        "reference",  # the document reference (the county issued it; it opens nothing alone)
        "return_required",
        "value",  # a board event's number
        "why",  # free text (scrubbed)
        # county commands (docs/mqtt/README.md, "Commands"): names, arguments, results
        "answer",
        "compartment",
        "force",
        "hard",
        "id",  # the command's id
        "in_service",
        "mode",
        "operator",
        "state",
        "status",
    }
)

# Keys public only in the entries of one action: structured values whose own keys pass
# the same allowlist (a county command's arguments may hold a ``code_hash``).
ACTION_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "county_command": frozenset({"args", "result"}),
}

# Never published, whatever the action: secrets, secret hashes and personal numbers.
SECRET_KEYS: Final[frozenset[str]] = frozenset(
    {
        "card",
        "card_number",
        "code",
        "code_hash",
        "codes",
        "digest",
        "email",
        "hash",
        "iban",
        "key",
        "msisdn",
        "pan",
        "passphrase",
        "password",
        "phone",
        "phone_number",
        "pin",
        "pin_hash",
        "private_key",
        "salt",
        "secret",
        "token",
        "track2",
    }
)

# 13 or more digits, single spaces or dashes allowed between them: a card number (13-19),
# an account number, or something as long that nobody needs in an event.
_CARD: Final = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,}(?!\d)")
# The text of a secret's hash (controller/secrets.py): scrypt$N$r$p$salt$digest.
_SCRYPT: Final = re.compile(r"scrypt\$[A-Za-z0-9+/=$]*", re.IGNORECASE)
# A phone number in international form: "+" and 8 or more digits, with the usual separators.
_PHONE: Final = re.compile(r"\+[\s(]*\d(?:[\s\-/().]*\d){7,}")
_LONG_DIGITS: Final = re.compile(r"\d{13,}")

_DROP: Final = object()  # "leave this value out"


def scrub_text(text: str) -> str:
    """``text`` with every card-like number, scrypt hash and phone number replaced by
    ``[removed]``."""
    text = _SCRYPT.sub(REMOVED, text)
    text = _PHONE.sub(REMOVED, text)
    return _CARD.sub(REMOVED, text)


def public_detail(action: str, detail: Mapping[str, Any]) -> dict[str, Any]:
    """The audit entry's detail as published in ``event``: only public keys, only JSON
    scalars or short lists/objects of them, text scrubbed and cut to ``MAX_TEXT``."""
    allowed = PUBLIC_KEYS | ACTION_KEYS.get(action, frozenset())
    out: dict[str, Any] = {}
    for key, value in detail.items():
        if not isinstance(key, str) or key not in allowed:
            continue
        kept = _public_value(value, nested=True)
        if kept is not _DROP:
            out[key] = kept
    return out


def _public_value(value: Any, nested: bool) -> Any:
    """The published form of one value, or ``_DROP``; containers only one level deep."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return scrub_text(value)[:MAX_TEXT]
    if isinstance(value, int | float):
        return _public_number(value)
    if not nested:
        return _DROP
    if isinstance(value, list | tuple):
        items = [_public_value(item, nested=False) for item in value]
        if len(items) > MAX_ITEMS or any(item is _DROP for item in items):
            return _DROP
        return items
    if isinstance(value, Mapping):
        inner = {
            key: _public_value(item, nested=False)
            for key, item in value.items()
            if isinstance(key, str) and key in PUBLIC_KEYS
        }
        inner = {key: item for key, item in inner.items() if item is not _DROP}
        return inner if len(inner) <= MAX_ITEMS else _DROP
    return _DROP


def _public_number(value: int | float) -> Any:
    """Numbers as JSON writes them; dropped when not finite or when 13+ digits long (a card
    number stored as a number)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return _DROP
        value = round(value, 3)
    elif not isinstance(value, int):
        return _DROP
    if abs(value) >= 10**12:  # 13+ digits before the point, also in exponent form
        return _DROP
    text = json.dumps(value)
    return _DROP if _LONG_DIGITS.search(text) else value
