"""The privacy filter of ``event``: only allowlisted detail keys leave the terminal, free
text loses card numbers, hashes and phone numbers, and every key the source audits is
classified."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqtt_schemas import assert_no_secrets, validate

from controller.secrets import hash_secret
from controller.store import Store
from county.privacy import (
    ACTION_KEYS,
    MAX_ITEMS,
    MAX_TEXT,
    PUBLIC_KEYS,
    REMOVED,
    SECRET_KEYS,
    public_detail,
    scrub_text,
)

REPO = Path(__file__).resolve().parent.parent
AUDITING_PACKAGES = ("controller", "host_bridge", "county")
EVENT = "amtomat/v1/myk-01/event"
ENVELOPE = {
    "kiosk_id": "myk-01", "seq": 1, "boot": 1, "utc": "2026-11-21T10:15:02.118Z",
    "uptime_s": 1.0, "clock_synced": True, "historical": False, "actor": "system",
    "subject": "A3", "audit_seq": 1,
}  # fmt: skip
LONG_RUN = re.compile(r"\d(?:[ -]?\d){12}")  # 13 digits, spaces or dashes between
CLASSIFIED = PUBLIC_KEYS | SECRET_KEYS | frozenset().union(*ACTION_KEYS.values())


def as_event(action: str, detail: dict[str, Any]) -> bytes:
    return json.dumps({**ENVELOPE, "type": action, "detail": detail}).encode()


# ----- the lists -------------------------------------------------------------------------


def test_no_key_is_both_public_and_secret() -> None:
    assert not PUBLIC_KEYS & SECRET_KEYS
    for action, keys in ACTION_KEYS.items():
        assert not keys & SECRET_KEYS, action


def test_the_event_schema_denies_exactly_the_secret_keys() -> None:
    schema = json.loads((REPO / "docs/mqtt/event.schema.json").read_text(encoding="utf-8"))
    denied = schema["properties"]["detail"]["propertyNames"]["not"]["enum"]
    assert set(denied) == SECRET_KEYS


# ----- public_detail ---------------------------------------------------------------------


def test_an_assignment_keeps_its_public_keys_only() -> None:
    detail = {
        "op": 12, "reference": "BA-2026-004711", "code_issued": "terminal",
        "return_required": False, "expires_utc": 1_795_600_000.0,
        "code": "48213907", "code_hash": "scrypt$16384$8$1$c2FsdA==$ZGlnZXN0",
        "phone": "+49 170 1234567", "citizen": "Erika Mustermann",
    }  # fmt: skip
    assert public_detail("assignment_created", detail) == {
        "op": 12, "reference": "BA-2026-004711", "code_issued": "terminal",
        "return_required": False, "expires_utc": 1_795_600_000.0,
    }  # fmt: skip


def test_free_text_is_scrubbed_and_cut() -> None:
    out = public_detail(
        "alarm_raised",
        {"alarm": "jam", "detail": "card 4111 1111 1111 1111 stuck; " + "x" * 400},
    )
    assert out["alarm"] == "jam"
    assert out["detail"].startswith(f"card {REMOVED} stuck; xxx") and len(out["detail"]) == MAX_TEXT


def test_structured_values_only_where_the_action_allows_them() -> None:
    args = {"reference": "BA-1", "code_hash": "scrypt$16384$8$1$c2FsdA==$ZGlnZXN0", "x": 1}
    command = public_detail("county_command", {"command": "assign", "args": args})
    assert command == {"command": "assign", "args": {"reference": "BA-1"}}
    assert public_detail("compartment_state", {"args": args, "result": {"state": "x"}}) == {}


@pytest.mark.parametrize(
    "value",
    [
        4111111111111111,  # a card number as a number
        10**30,
        1e15,  # 1000000000000000.0
        float("nan"),
        float("inf"),
        b"bytes",
        {1, 2},
        object(),
        [1, [2]],  # one level of nesting only
        [{"op": 1}],
        list(range(MAX_ITEMS + 1)),
    ],
)
def test_values_json_or_privacy_cannot_keep_are_dropped(value: Any) -> None:
    assert public_detail("board_overflow", {"value": value}) == {}


def test_numbers_are_kept_short() -> None:
    out = public_detail("x", {"value": 0.1 + 0.2, "op": 999_999_999_999, "channel": -3})
    assert out == {"value": 0.3, "op": 999_999_999_999, "channel": -3}


def test_a_real_audit_entry_round_trip(tmp_path: Path) -> None:
    """What the store keeps (JSON, default=str) goes through the filter like the link does."""
    store = Store(tmp_path / "d.db")
    with store.tx():
        store.audit(
            "county:it-mueller", "county_command", "A3", command="assign", id="7f3c",
            args={"reference": "BA-1", "code_hash": "scrypt$16384$8$1$c2FsdA==$ZGlnZXN0"},
            answer="done", pin="1234",
        )  # fmt: skip
    (entry,) = store.audit_entries()
    detail = public_detail(entry.action, entry.detail)
    assert detail == {"command": "assign", "id": "7f3c", "args": {"reference": "BA-1"},
                      "answer": "done"}  # fmt: skip
    payload = as_event(entry.action, detail)
    validate(EVENT, payload)
    assert_no_secrets(EVENT, payload)


SCALAR = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.from_regex(r"[0-9]{4}([ -]?[0-9]{4}){2,3}[0-9]{0,3}", fullmatch=True)
    | st.from_regex(r"\+[0-9]{2} [0-9]{3} [0-9]{6,9}", fullmatch=True)
    | st.from_regex(r"scrypt\$[0-9]+\$[A-Za-z0-9+/=$]{4,30}", fullmatch=True)
)
VALUE = st.recursive(
    SCALAR,
    lambda inner: (
        st.lists(inner, max_size=25)
        | st.dictionaries(
            st.sampled_from(sorted(CLASSIFIED)) | st.text(max_size=8), inner, max_size=5
        )
        | st.tuples(inner, inner)
        | st.sets(st.integers(), max_size=2)
    ),
    max_leaves=12,
)
KEY = st.sampled_from(sorted(CLASSIFIED)) | st.text(max_size=12)


def _walk(value: Any) -> Iterator[tuple[str | None, Any]]:
    """Every (key, value) below value, keys None for list items."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield None, item
            yield from _walk(item)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    action=st.sampled_from(["county_command", "alarm_raised", "assignment_created", "x"]),
    detail=st.dictionaries(KEY, VALUE, max_size=8),
)
def test_no_secret_survives_any_detail(action: str, detail: dict[str, Any]) -> None:
    out = public_detail(action, detail)
    text = json.dumps(out, allow_nan=False)  # valid JSON, no NaN or infinity
    allowed = PUBLIC_KEYS | ACTION_KEYS.get(action, frozenset())
    assert set(out) <= allowed and set(out) <= set(detail)
    for key, value in _walk(out):
        assert key is None or key in CLASSIFIED - SECRET_KEYS, key
        if isinstance(value, str):
            assert len(value) <= MAX_TEXT
            assert not LONG_RUN.search(value), value
            assert "scrypt$" not in value.lower(), value
        if isinstance(value, (list, dict)):
            assert len(value) <= MAX_ITEMS
    assert not re.search(r"\d{13}", text), text
    payload = as_event(action, out)
    validate(EVENT, payload)
    assert_no_secrets(EVENT, payload)


# ----- scrub_text ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("card 4111111111111111 refused", f"card {REMOVED} refused"),
        ("pan 4111-1111-1111-1111.", f"pan {REMOVED}."),
        ("amex 3782 822463 10005", f"amex {REMOVED}"),
        ("call +49 30 1234567 now", f"call {REMOVED} now"),
        ("call +49 (0)30 123-4567", f"call {REMOVED}"),
        ("hash scrypt$16384$8$1$c2FsdA==$ZGln/ZXN0+ end", f"hash {REMOVED} end"),
        ("SCRYPT$x", REMOVED),
        ("door did not open after 2 pulses", "door did not open after 2 pulses"),
        ("at 2026-11-21 10:15:02, op 1234567", "at 2026-11-21 10:15:02, op 1234567"),
        ("+49 short", "+49 short"),
        ("12345678901 2", "12345678901 2"),  # 12 digits
    ],
)
def test_scrub_text_examples(text: str, scrubbed: str) -> None:
    assert scrub_text(text) == scrubbed


def test_a_real_hash_is_scrubbed() -> None:
    encoded = hash_secret("48213907")
    assert scrub_text(f"assign with {encoded}") == f"assign with {REMOVED}"


CARD = st.lists(st.integers(0, 9), min_size=13, max_size=19).flatmap(
    lambda digits: st.lists(
        st.sampled_from(["", " ", "-"]), min_size=len(digits), max_size=len(digits)
    ).map(lambda seps: "".join(f"{d}{s}" for d, s in zip(digits, seps, strict=True)).strip(" -"))
)


@settings(max_examples=300)
@given(before=st.text(max_size=20), card=CARD, after=st.text(max_size=20))
def test_a_card_number_anywhere_is_removed(before: str, card: str, after: str) -> None:
    out = scrub_text(before + card + after)
    assert not LONG_RUN.search(out), out
    assert scrub_text(out) == out  # scrubbing is idempotent


@given(st.text(alphabet=st.characters(blacklist_characters="+$0123456789")))
def test_text_without_digits_is_unchanged(text: str) -> None:
    if not any(c.isdigit() for c in text):
        assert scrub_text(text) == text


# ----- every audited key is classified ---------------------------------------------------


Scope = ast.Module | ast.FunctionDef | ast.AsyncFunctionDef


def _scopes(tree: ast.Module) -> Iterator[Scope]:
    yield tree
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _calls(scope: Scope) -> Iterator[ast.Call]:
    """The calls of one scope, not those of functions defined inside it."""
    todo: list[ast.AST] = list(scope.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Call):
            yield node
        todo.extend(ast.iter_child_nodes(node))


def _kwarg(scope: Scope) -> str | None:
    if isinstance(scope, ast.Module) or scope.args.kwarg is None:
        return None
    return scope.args.kwarg.arg


def _literal_keys(node: ast.expr) -> set[str] | None:
    """The keys of a dict literal (or a choice between dict literals), None otherwise."""
    if isinstance(node, ast.IfExp):
        body, orelse = _literal_keys(node.body), _literal_keys(node.orelse)
        return None if body is None or orelse is None else body | orelse
    if isinstance(node, ast.Dict):
        keys = [k.value if isinstance(k, ast.Constant) else None for k in node.keys]
        return (
            {k for k in keys if isinstance(k, str)}
            if all(isinstance(k, str) for k in keys)
            else None
        )
    return None


def _local_dicts(scope: Scope) -> dict[str, set[str] | None]:
    """name -> keys of the dict literals assigned to it in this scope (None: not only)."""
    found: dict[str, set[str] | None] = {}
    todo: list[ast.AST] = list(scope.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    keys, before = _literal_keys(node.value), found.get(target.id, set())
                    found[target.id] = None if keys is None or before is None else before | keys
        todo.extend(ast.iter_child_nodes(node))
    return found


def _method(call: ast.Call) -> str | None:
    return call.func.attr if isinstance(call.func, ast.Attribute) else None


def audited_keys(sources: dict[str, str]) -> tuple[dict[str, set[str]], list[str]]:
    """Detail keys of every ``.audit(...)`` call: (key -> places, problems).

    A function that passes its own ``**kwargs`` on to ``.audit`` (``Wall.set_state``,
    ``Operation.finish``) forwards its callers' keywords: those count too. A ``**`` the
    scan cannot see through is a problem, named with its place.
    """
    trees = {name: ast.parse(text, name) for name, text in sources.items()}
    forwarders: dict[str, set[str]] = {}  # function name -> its named parameters
    for tree in trees.values():
        for scope in _scopes(tree):
            kwarg = _kwarg(scope)
            if kwarg is None or isinstance(scope, ast.Module):
                continue
            for call in _calls(scope):
                starred = [k.value for k in call.keywords if k.arg is None]
                if _method(call) == "audit" and any(
                    isinstance(v, ast.Name) and v.id == kwarg for v in starred
                ):
                    params = scope.args.posonlyargs + scope.args.args + scope.args.kwonlyargs
                    forwarders[scope.name] = {a.arg for a in params}
    keys: dict[str, set[str]] = {}
    problems: list[str] = []
    for name, tree in trees.items():
        for scope in _scopes(tree):
            kwarg, local = _kwarg(scope), _local_dicts(scope)
            for call in _calls(scope):
                method = _method(call)
                if method is None or (method != "audit" and method not in forwarders):
                    continue
                skip = {"actor", "action", "subject"} if method == "audit" else forwarders[method]
                where = f"{name}:{call.lineno}"
                for keyword in call.keywords:
                    if keyword.arg is not None:
                        if keyword.arg not in skip:
                            keys.setdefault(keyword.arg, set()).add(where)
                        continue
                    value = keyword.value
                    if isinstance(value, ast.Name) and value.id == kwarg:
                        continue  # forwarded: its callers' keywords are scanned
                    if isinstance(value, ast.Name):
                        literal = local.get(value.id)
                    else:
                        literal = _literal_keys(value)
                    if literal is None:
                        problems.append(f"{where}: ** of something the scan cannot read")
                    for key in literal or ():
                        keys.setdefault(key, set()).add(where)
    return keys, problems


def _sources() -> dict[str, str]:
    return {
        str(path.relative_to(REPO)): path.read_text(encoding="utf-8")
        for package in AUDITING_PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
    }


def test_every_audited_detail_key_is_classified() -> None:
    keys, problems = audited_keys(_sources())
    assert not problems, "audit calls the scan cannot read (list the keys literally):\n" + (
        "\n".join(problems)
    )
    # the scan sees what it must (forwarding through **detail: the test below)
    assert {"code_issued", "attempts_left", "alarm", "why", "reference"} <= set(keys)
    unclassified = {k: sorted(w) for k, w in keys.items() if k not in CLASSIFIED}
    assert not unclassified, (
        "audit detail keys on neither county.privacy.PUBLIC_KEYS nor SECRET_KEYS: "
        f"{unclassified}; add each to one of them"
    )


def test_the_scan_finds_a_new_key_and_forwarded_keys() -> None:
    source = """
class Wall:
    def set_state(self, c, new, actor, why, **detail):
        self.store.audit(actor, "compartment_state", c, why=why, **detail)

def work(store, wall, extra, flag):
    store.audit("system", "thing", "x", new_secret_thing=1, **{"literal_key": 2})
    wall.set_state(c, new, "system", "because", op=3, pin=4)
    store.audit("system", "thing", "x", **extra)
    more = {"chosen": 1} if flag else {"other": 2}
    store.audit("system", "thing", "x", **more)
    store.audit("system", "thing", "x", **dict(a=1))
"""
    keys, problems = audited_keys({"m.py": source})
    assert set(keys) == {"why", "new_secret_thing", "literal_key", "op", "pin", "chosen", "other"}
    assert set(problems) == {
        "m.py:9: ** of something the scan cannot read",
        "m.py:12: ** of something the scan cannot read",
    }
