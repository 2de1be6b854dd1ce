"""The SQLite store: transactions, the append-only hash-chained audit log, request memory,
event de-duplication, and attempt limits that survive a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from controller.attempts import AttemptLimiter
from controller.compartments import CState, TransitionError, Wall
from controller.store import Store, StoreError
from controller.timers import Timers


class FakeUtc:
    """A UTC clock the test moves."""

    def __init__(self) -> None:
        self.t = 1_790_000_000.0

    def __call__(self) -> float:
        return self.t


def test_transaction_is_all_or_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.db")
    with pytest.raises(RuntimeError), store.tx():
        store.audit("x", "first", "s")
        store.bump("n")
        raise RuntimeError("power cut")
    assert store.audit_entries() == [] and store.counters() == {}
    with store.tx():
        store.audit("x", "second", "s", k=1)
    assert [e.action for e in store.audit_entries()] == ["second"]


def test_changes_outside_a_transaction_are_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.db")
    with pytest.raises(StoreError):
        store.audit("x", "y", "z")


def test_audit_chain_detects_edits_and_refuses_updates(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = Store(path)
    with store.tx():
        for i in range(5):
            store.audit("staff", "act", f"c{i}", n=i)
    assert store.verify_audit().ok and store.verify_audit().entries == 5
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("UPDATE audit SET actor='mallory' WHERE seq=2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("DELETE FROM audit WHERE seq=2")
    store.close()
    # someone with the file drops the trigger and edits an entry
    raw = sqlite3.connect(path)
    raw.execute("DROP TRIGGER audit_no_update")
    raw.execute("UPDATE audit SET detail='{\"n\":99}' WHERE seq=3")
    raw.commit()
    raw.close()
    check = Store(path).verify_audit()
    assert not check.ok and check.bad_seq == 3 and "content" in (check.problem or "")


def test_audit_chain_detects_a_removed_entry(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = Store(path)
    with store.tx():
        for i in range(3):
            store.audit("a", "b", "c", i=i)
    store.close()
    raw = sqlite3.connect(path)
    raw.execute("DROP TRIGGER audit_no_delete")
    raw.execute("DELETE FROM audit WHERE seq=2")
    raw.commit()
    raw.close()
    check = Store(path).verify_audit()
    assert not check.ok and check.bad_seq == 3 and "missing" in (check.problem or "")


def test_schema_version_mismatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = Store(path)
    with store.tx():
        store.set_meta("schema_version", "99")
    store.close()
    with pytest.raises(StoreError, match="schema 99"):
        Store(path)


def test_unopenable_database_names_the_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(StoreError, match="cannot open the database"):
        Store(target / "sub" / "a.db")


def test_board_events_are_stored_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.db")
    with store.tx():
        assert store.record_event("wall-a", 7, 1, "door_open", "channel", 1, None, 5)
        assert not store.record_event("wall-a", 7, 1, "door_open", "channel", 1, None, 5)
        assert store.record_event("wall-a", 8, 1, "door_open", "channel", 1, None, 5)


def test_request_results_are_remembered_per_request_name(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.db")
    with store.tx():
        store.remember_request("k/1", "pickup", 0, None, {"op": 3})
    assert store.request_result("k/1", "pickup") == (0, None, {"op": 3})
    assert store.request_result("k/1", "load") is None  # an id reused for another request


def test_attempt_limits_lock_out_and_survive_a_restart(tmp_path: Path) -> None:
    utc = FakeUtc()
    path = tmp_path / "a.db"
    store = Store(path, utc=utc)
    limiter = AttemptLimiter(store, "reference", limit=3, window_s=600, lockout_s=900)
    assert limiter.failure("R").remaining == 2
    assert limiter.failure("R").remaining == 1
    verdict = limiter.failure("R")
    assert verdict.locked_until == utc.t + 900
    store.close()
    store = Store(path, utc=utc)
    limiter = AttemptLimiter(store, "reference", limit=3, window_s=600, lockout_s=900)
    assert limiter.locked_until("R") == utc.t + 900
    utc.t += 901
    assert limiter.locked_until("R") is None
    assert limiter.failure("R").remaining == 2  # a fresh window after the lockout


def test_failures_outside_the_window_start_over(tmp_path: Path) -> None:
    utc = FakeUtc()
    limiter = AttemptLimiter(Store(tmp_path / "a.db", utc=utc), "t", 3, 600, 900)
    limiter.failure("k")
    limiter.failure("k")
    utc.t += 601
    assert limiter.failure("k").remaining == 2
    limiter.success("k")
    assert limiter.failure("k").remaining == 2


def test_wall_keeps_states_and_refuses_undefined_transitions(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = Store(path)
    wall = Wall(store, [("A01", "wall-a", 1, "S"), ("A02", "wall-a", 2, "L")])
    a01 = wall.get("A01")
    assert a01 is not None and a01.state.value == "empty"
    seen: list[tuple[str, CState, str]] = []
    wall.listeners.append(lambda c, old, why: seen.append((c.label, old, why)))
    wall.set_state(a01, CState.LOADING, "staff", "loading")
    with pytest.raises(TransitionError, match="A01: loading -> emptied"):
        wall.set_state(a01, CState.EMPTIED, "staff", "nonsense")
    assert a01.state == CState.LOADING and seen == [("A01", CState.EMPTY, "loading")]
    store.close()
    store = Store(path)
    again = Wall(store, [("A01", "wall-a", 1, "S")])
    reloaded = again.get("A01")
    assert reloaded is not None and reloaded.state == CState.LOADING
    entries = store.audit_entries(action="compartment_state")
    assert [(e.detail["old"], e.detail["new"]) for e in entries] == [("empty", "loading")]


def test_every_state_can_reach_out_of_service_and_back() -> None:
    from controller.compartments import RESTING, TRANSITIONS

    for state, targets in TRANSITIONS.items():
        assert CState.OUT_OF_SERVICE in targets or state == CState.OUT_OF_SERVICE
    assert TRANSITIONS[CState.OUT_OF_SERVICE] >= RESTING
    assert set(TRANSITIONS) == set(CState)


def test_timers_fire_in_order_and_survive_a_failing_action() -> None:
    timers = Timers()
    fired: list[str] = []
    timers.after(30, lambda: fired.append("b"))
    timers.after(10, lambda: fired.append("a"))
    cancelled = timers.after(20, lambda: fired.append("never"))
    cancelled.cancel()

    def broken() -> None:
        raise ValueError("boom")

    timers.after(25, broken)
    assert timers.run_due(29) == 2
    assert fired == ["a"]
    timers.run_due(30)
    assert fired == ["a", "b"] and timers.pending() == 0
