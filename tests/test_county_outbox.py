"""The county outbox on a real SQLite file: rows written with the change they report, kept
across restarts, sequence numbers that only grow, keyed replacement, refused misuse."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)
from mqtt_schemas import validate

from controller.store import Store
from county.errors import CountyError, OutboxError
from county.outbox import Outbox, OutboxRow

EVENT = "amtomat/v1/myk-01/event"
STATS = "amtomat/v1/myk-01/stats"


class FakeUtc:
    """A UTC clock the test moves."""

    def __init__(self) -> None:
        self.t = 1_795_000_000.25

    def __call__(self) -> float:
        return self.t


def open_outbox(path: Path, utc: FakeUtc | None = None) -> tuple[Store, Outbox]:
    store = Store(path, utc=utc or FakeUtc())
    return store, Outbox(store)


def put(
    store: Store, outbox: Outbox, topic: str, fields: dict[str, Any], key: str | None = None
) -> int:
    with store.tx():
        return outbox.put(topic, fields, key)


def test_put_pending_remove(tmp_path: Path) -> None:
    utc = FakeUtc()
    store, outbox = open_outbox(tmp_path / "d.db", utc)
    assert outbox.pending() == [] and outbox.depth() == 0 and outbox.oldest_utc() is None
    first = put(store, outbox, EVENT, {"type": "a", "detail": {"op": 1}})
    utc.t += 5
    second = put(store, outbox, STATS, {"period": "2026-11-21T10"}, key="stats:2026-11-21T10")
    assert 1 <= first < second
    rows = outbox.pending()
    assert rows == [
        OutboxRow(first, EVENT, None, 1_795_000_000.25, {"type": "a", "detail": {"op": 1}}),
        OutboxRow(second, STATS, "stats:2026-11-21T10", 1_795_000_005.25,
                  {"period": "2026-11-21T10"}),
    ]  # fmt: skip
    assert outbox.depth() == 2 and outbox.oldest_utc() == 1_795_000_000.25
    assert [r.seq for r in outbox.pending(after_seq=first)] == [second]
    assert [r.seq for r in outbox.pending(limit=1)] == [first]
    assert outbox.remove(first) is True
    assert outbox.remove(first) is False  # a second PUBACK for the same row
    assert outbox.depth() == 1 and outbox.oldest_utc() == 1_795_000_005.25
    assert outbox.remove(second) is True
    assert outbox.pending() == [] and outbox.oldest_utc() is None


def test_message_is_compact_sorted_json_with_seq_and_historical(tmp_path: Path) -> None:
    store, outbox = open_outbox(tmp_path / "d.db")
    seq = put(store, outbox, EVENT, {"z": 1, "a": "Bürgeramt", "m": [True, None]})
    (row,) = outbox.pending()
    live = row.message(historical=False)
    expected = '{"a":"Bürgeramt","historical":false,"m":[true,null],"seq":SEQ,"z":1}'
    assert live == expected.replace("SEQ", str(seq)).encode()
    assert json.loads(row.message(historical=True)) == {
        "a": "Bürgeramt", "historical": True, "m": [True, None], "seq": seq, "z": 1,
    }  # fmt: skip


def test_an_event_message_fits_the_event_schema(tmp_path: Path) -> None:
    store, outbox = open_outbox(tmp_path / "d.db")
    fields = {
        "kiosk_id": "myk-01", "boot": 3, "utc": "2026-11-21T10:15:02.118Z",
        "uptime_s": 12.5, "clock_synced": True, "type": "compartment_state",
        "actor": "system", "subject": "A3", "audit_seq": 17,
        "detail": {"old": "opening", "new": "jammed", "op": 4},
    }  # fmt: skip
    put(store, outbox, EVENT, fields)
    (row,) = outbox.pending()
    validate(EVENT, row.message(historical=False))
    validate(EVENT, row.message(historical=True))


def test_seq_grows_after_the_newest_row_was_removed(tmp_path: Path) -> None:
    store, outbox = open_outbox(tmp_path / "d.db")
    a = put(store, outbox, EVENT, {"n": 1})
    b = put(store, outbox, EVENT, {"n": 2})
    assert outbox.remove(b) and outbox.remove(a)
    assert outbox.max_seq() == b
    c = put(store, outbox, EVENT, {"n": 3})
    assert c > b  # a plain INTEGER PRIMARY KEY would hand out b again here


def test_seq_grows_across_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    store, outbox = open_outbox(path)
    seqs = [put(store, outbox, EVENT, {"n": i}) for i in range(3)]
    for seq in seqs:
        outbox.remove(seq)
    store.close()
    store, outbox = open_outbox(path)
    assert outbox.max_seq() == seqs[-1] and outbox.depth() == 0
    assert put(store, outbox, EVENT, {"n": 3}) > seqs[-1]


def test_rows_outlive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    store, outbox = open_outbox(path)
    seq = put(store, outbox, EVENT, {"type": "pickup_completed"})
    # a second process (another connection) sees the committed row at once
    other = sqlite3.connect(path)
    assert other.execute("SELECT seq FROM county_outbox").fetchall() == [(seq,)]
    other.close()
    store.close()
    store, outbox = open_outbox(path)
    assert [(r.seq, r.fields) for r in outbox.pending()] == [(seq, {"type": "pickup_completed"})]


def test_a_key_replaces_the_pending_row_with_a_new_seq(tmp_path: Path) -> None:
    store, outbox = open_outbox(tmp_path / "d.db")
    other = put(store, outbox, STATS, {"period": "2026-11-21T09", "n": 1}, key="stats:09")
    first = put(store, outbox, STATS, {"period": "2026-11-21T10", "n": 1}, key="stats:10")
    plain = put(store, outbox, EVENT, {"type": "x"})
    second = put(store, outbox, STATS, {"period": "2026-11-21T10", "n": 2}, key="stats:10")
    assert second > plain > first
    assert [(r.seq, r.key, r.fields.get("n")) for r in outbox.pending()] == [
        (other, "stats:09", 1), (plain, None, None), (second, "stats:10", 2),
    ]  # fmt: skip
    assert outbox.remove(first) is False  # a late PUBACK of the replaced row
    assert outbox.remove(second) is True
    third = put(store, outbox, STATS, {"period": "2026-11-21T10", "n": 3}, key="stats:10")
    assert third > second and outbox.depth() == 3


def test_put_outside_a_transaction_is_refused(tmp_path: Path) -> None:
    _, outbox = open_outbox(tmp_path / "d.db")
    with pytest.raises(OutboxError, match="outside a transaction") as err:
        outbox.put(EVENT, {"type": "x"})
    assert err.value.value == EVENT and isinstance(err.value, CountyError)
    assert outbox.depth() == 0 and outbox.max_seq() == 0


def test_a_rolled_back_put_leaves_nothing(tmp_path: Path) -> None:
    store, outbox = open_outbox(tmp_path / "d.db")
    kept = put(store, outbox, STATS, {"n": 1}, key="stats:10")
    with pytest.raises(RuntimeError), store.tx():
        outbox.put(EVENT, {"type": "x"})
        outbox.put(STATS, {"n": 2}, key="stats:10")  # replaces the pending row ...
        store.audit("system", "x", "y")
        raise RuntimeError("power cut")
    # ... and the rollback brings it back, together with the rest of the transaction
    assert [(r.seq, r.fields) for r in outbox.pending()] == [(kept, {"n": 1})]
    assert store.audit_entries() == []


def test_making_the_outbox_inside_a_transaction_does_not_commit_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.db")
    with pytest.raises(RuntimeError), store.tx():
        store.audit("system", "before", "x")
        Outbox(store)
        raise RuntimeError("abort")
    assert store.audit_entries() == []


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"when": dt.datetime(2026, 11, 21, tzinfo=dt.UTC)}, "when"),
        ({"detail": {"raw": b"\x00\x01"}}, "detail.raw"),
        ({"detail": {"list": [1, {3, 4}]}}, "detail.list[1]"),
        ({"uptime_s": float("nan")}, "uptime_s"),
        ({"uptime_s": float("inf")}, "uptime_s"),
        ({"detail": {1: "x"}}, "detail.1"),
        ({"seq": 5}, "seq"),
        ({"historical": True}, "historical"),
    ],
)
def test_fields_json_cannot_hold_are_refused_naming_the_key(
    tmp_path: Path, fields: dict[str, Any], named: str
) -> None:
    store, outbox = open_outbox(tmp_path / "d.db")
    with pytest.raises(OutboxError) as err, store.tx():
        outbox.put(EVENT, fields)
    assert named in str(err.value) and named in str(err.value.value)
    assert outbox.depth() == 0


@pytest.mark.parametrize("topic", ["", "amtomat/v1/+/event", "amtomat/v1/#", None, 7])
def test_a_bad_topic_is_refused(tmp_path: Path, topic: Any) -> None:
    store, outbox = open_outbox(tmp_path / "d.db")
    with pytest.raises(OutboxError, match="topic") as err, store.tx():
        outbox.put(topic, {"n": 1})
    assert err.value.value == topic


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"after_seq": -1}, "after_seq"), ({"limit": 0}, "limit"), ({"limit": True}, "limit"),
     ({"limit": 10**6}, "limit"), ({"after_seq": "3"}, "after_seq")],
)  # fmt: skip
def test_bad_pending_arguments_are_refused(
    tmp_path: Path, kwargs: dict[str, Any], named: str
) -> None:
    _, outbox = open_outbox(tmp_path / "d.db")
    with pytest.raises(OutboxError, match=named):
        outbox.pending(**kwargs)


def test_bad_keys_and_seqs_are_refused(tmp_path: Path) -> None:
    store, outbox = open_outbox(tmp_path / "d.db")
    with pytest.raises(OutboxError, match="key"), store.tx():
        outbox.put(STATS, {"n": 1}, key="")
    with pytest.raises(OutboxError, match="seq"):
        outbox.remove("1")  # type: ignore[arg-type]


# ----- a state machine against a simple model ------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False)
)
FIELD_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELDS = st.dictionaries(
    st.text(max_size=6).filter(lambda k: k not in ("seq", "historical")), FIELD_VALUES, max_size=4
)
KEYS = st.sampled_from(["stats:2026-11-21T10", "stats:2026-11-21T11", "x"])


class OutboxMachine(RuleBasedStateMachine):
    """Put, put with a key, remove and reopen, checked against a dict of pending rows."""

    seqs = Bundle("seqs")

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="outbox-")
        self.path = Path(self.dir) / "d.db"
        self.utc = FakeUtc()
        self.store, self.outbox = open_outbox(self.path, self.utc)
        self.model: dict[int, tuple[str, str | None, dict[str, Any], float]] = {}
        self.highest = 0

    def _put(self, topic: str, fields: dict[str, Any], key: str | None) -> int:
        self.utc.t += 1
        seq = put(self.store, self.outbox, topic, fields, key)
        assert seq > self.highest, f"seq {seq} after {self.highest}"
        self.highest = seq
        if key is not None:
            self.model = {s: row for s, row in self.model.items() if row[1] != key}
        self.model[seq] = (topic, key, json.loads(json.dumps(fields)), self.utc.t)
        return seq

    @rule(target=seqs, topic=st.sampled_from([EVENT, STATS]), fields=FIELDS)
    def put_plain(self, topic: str, fields: dict[str, Any]) -> int:
        return self._put(topic, fields, None)

    @rule(target=seqs, fields=FIELDS, key=KEYS)
    def put_keyed(self, fields: dict[str, Any], key: str) -> int:
        return self._put(STATS, fields, key)

    @rule(seq=consumes(seqs))
    def remove(self, seq: int) -> None:
        assert self.outbox.remove(seq) is (seq in self.model)
        self.model.pop(seq, None)

    @rule(seq=st.integers(-5, 10**6))
    def remove_any(self, seq: int) -> None:
        assert self.outbox.remove(seq) is (seq in self.model)
        self.model.pop(seq, None)

    @precondition(lambda self: len(self.model) > 0)
    @rule(data=st.data())
    def fail_a_transaction(self, data: st.DataObject) -> None:
        key = data.draw(st.none() | KEYS)
        with pytest.raises(RuntimeError), self.store.tx():
            self.outbox.put(STATS, {"lost": True}, key)
            raise RuntimeError("power cut")

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store, self.outbox = open_outbox(self.path, self.utc)

    @rule()
    def drain_half(self) -> None:
        rows = self.outbox.pending(limit=max(1, len(self.model) // 2))
        for row in rows:
            assert self.outbox.remove(row.seq)
            del self.model[row.seq]

    @invariant()
    def matches_the_model(self) -> None:
        rows = self.outbox.pending(limit=10_000)
        assert [(r.seq, r.topic, r.key, r.fields, r.created_utc) for r in rows] == [
            (s, *self.model[s]) for s in sorted(self.model)
        ]
        assert self.outbox.depth() == len(self.model)
        assert self.outbox.oldest_utc() == min((r[3] for r in self.model.values()), default=None)
        assert self.outbox.max_seq() == self.highest

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


OutboxMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
TestOutboxMachine = OutboxMachine.TestCase
