"""``amtomat log`` against a real daemon database: the whole terminal on the simulated clock
writes it (tests/terminal_rig.py) while the command reads it read-only; the hash chain
check on tampered copies; filters, their bad values; no secret in the log; and the time
parser, property-tested."""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from terminal_rig import STAFF_PIN, TerminalRig, demo_rig
from test_terminal_workflows import load_document

from controller.store import Store
from tools.cli import main
from tools.diag.errors import UsageError
from tools.diag.timespec import MAX_AGO_S, UNITS, parse_when

WRONG_PIN = "975310"


@dataclass
class Terminal:
    """A database the rig filled, the rig still running, and the secrets it saw."""

    rig: TerminalRig
    db: Path
    secrets: list[str]


@pytest.fixture(scope="module")
def terminal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Terminal]:
    db = tmp_path_factory.mktemp("log") / "amtomat.db"
    with demo_rig(db) as rig:
        assert not rig.call("staff_login", staff="mueller", pin=WRONG_PIN).ok
        label, code = load_document(rig, "LOG-1")
        assert code is not None
        picked = rig.call("pickup", reference="LOG-1", code=code)
        assert picked.ok and picked.data is not None
        op, kiosk, c = picked.data["op"], rig.kiosk, rig.ctl.wall.by_label[label]
        assert kiosk is not None and rig.kiosk_key is not None
        rig.wait(lambda: c.door.value == "open", 5000)
        rig.sim.door(c.board, c.channel, False)
        rig.wait(lambda: kiosk.done(op) is not None)
        hashes = [str(r[0]) for r in rig.store.db.execute("SELECT code_hash FROM assignments")]
        keys = [k.hex() for k in rig.keys.values() if k] + [rig.kiosk_key.hex()]
        yield Terminal(rig, db, [code, STAFF_PIN, WRONG_PIN, *hashes, *keys])


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["log", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def rows(out: str) -> list[list[str]]:
    """The table's body rows, split on two or more spaces."""
    lines = out.splitlines()[3:]  # the chain sentence, the header, the dashes
    return [re.split(r"\s{2,}", line.strip()) for line in lines]


def count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0])


def test_the_chain_is_checked_and_the_last_entries_shown_newest_last(
    terminal: Terminal, capsys: pytest.CaptureFixture[str]
) -> None:
    n = count(terminal.db)
    status, out, _ = run(capsys, "--database", str(terminal.db), "--utc", "--limit", "5")
    assert status == 0
    assert out.splitlines()[0] == f"hash chain intact ({n} entries)"
    seqs = [int(r[0]) for r in rows(out)]
    assert seqs == list(range(n - 4, n + 1))
    assert rows(out)[0][1].startswith("2026-09-2") and rows(out)[0][1].endswith("Z")


def test_filters_pick_the_entries(terminal: Terminal, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(terminal.db)
    status, out, _ = run(capsys, "--database", db, "--kind", "pickup_*", "--all")
    assert status == 0
    assert [r[3] for r in rows(out)] == ["pickup_started", "pickup_completed"]
    status, out, _ = run(capsys, "--database", db, "--kind", "staff_login_failed")
    (failed,) = rows(out)
    assert failed[3] == "staff_login_failed" and failed[4] == "mueller"
    status, out, _ = run(capsys, "--database", db, "--actor", "mueller", "--all", "--json")
    doc = json.loads(out)
    assert doc["entries"] and {e["actor"] for e in doc["entries"]} == {"mueller"}
    label = next(e["subject"] for e in doc["entries"] if e["action"] == "assignment_created")
    status, out, _ = run(capsys, "--database", db, "--compartment", label, "--all", "--json")
    subjects = {e["subject"] for e in json.loads(out)["entries"]}
    assert subjects == {label}
    status, out, _ = run(capsys, "--database", db, "--until", "2026-09-20", "--utc")
    assert status == 0 and out.splitlines()[1] == "no entries match"
    status, out, _ = run(capsys, "--database", db, "--since", "2026-09-21T00:00:00Z", "--all")
    assert len(rows(out)) == count(terminal.db)


def test_no_secret_reaches_the_log(terminal: Terminal, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--database", str(terminal.db), "--all", "--json")
    assert status == 0 and json.loads(out)["chain"]["intact"] is True
    with sqlite3.connect(terminal.db) as conn:
        raw = repr(conn.execute("SELECT * FROM audit").fetchall())
    assert len(terminal.secrets) >= 5
    for secret in terminal.secrets:
        assert secret not in out and secret not in raw


def test_secret_named_details_are_hidden(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(tmp_path / "a.db")
    with store.tx():
        store.audit("someone", "odd_entry", "x", pin="4711", nested={"code": "K7Q2"}, ok=1)
    store.close()
    status, out, _ = run(capsys, "--database", str(tmp_path / "a.db"))
    assert status == 0 and "4711" not in out and "K7Q2" not in out
    assert "pin=<hidden>" in out and '"code": "<hidden>"' in out and "ok=1" in out


def _copy(db: Path, to: Path) -> Path:
    """A consistent copy (WAL content included) whose audit log can be edited."""
    with sqlite3.connect(db) as src, sqlite3.connect(to) as dst:
        src.backup(dst)
        dst.execute("DROP TRIGGER audit_no_update")
        dst.execute("DROP TRIGGER audit_no_delete")
    return to


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        ('UPDATE audit SET detail=\'{"why":"nothing"}\' WHERE seq=5', "its content does not match"),
        ("DELETE FROM audit WHERE seq=7", "entry 7 is missing"),
        ("UPDATE audit SET prev='ab' || substr(prev, 3) WHERE seq=9", "its link to the previous"),
    ],
)
def test_a_tampered_copy_names_the_first_bad_entry(
    terminal: Terminal,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: str,
    problem: str,
) -> None:
    copy = _copy(terminal.db, tmp_path / "copy.db")
    with sqlite3.connect(copy) as conn:
        conn.execute(edit)
    status, out, err = run(capsys, "--database", str(copy))
    bad = 8 if "DELETE" in edit else (5 if "seq=5" in edit else 9)
    assert status == 1
    assert out.startswith(f"hash chain BROKEN at entry {bad}: {problem}")
    assert err.startswith(f"amtomat log: hash chain BROKEN at entry {bad}")
    check = Store(copy).verify_audit()  # the daemon's own check agrees
    assert not check.ok and check.bad_seq == bad and problem in str(check.problem)
    status, out, _ = run(capsys, "--database", str(copy), "--json")
    chain: dict[str, Any] = json.loads(out)["chain"]
    assert status == 1 and chain["intact"] is False and chain["bad_seq"] == bad


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--kind", "Pickup!"], "'Pickup!'"),
        (["--compartment", "Z9"], "'Z9'"),
        (["--since", "yesterday"], "'yesterday'"),
        (["--since", "2026-09-22", "--until", "2026-09-21"], "is after --until"),
        (["--actor", "\x07bell"], "'\\x07bell'"),
        (["--until", "2026-13-01"], "'2026-13-01'"),
    ],
)
def test_a_bad_filter_exits_2_naming_the_value(
    terminal: Terminal, capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    status, out, err = run(capsys, "--database", str(terminal.db), *argv)
    assert status == 2 and out == ""
    assert err.startswith("amtomat log: ") and named in err


@pytest.mark.parametrize("argv", [["--limit", "0"], ["--limit", "x"], ["--all", "--limit", "3"]])
def test_bad_arguments_are_usage_errors(
    terminal: Terminal, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["log", "--database", str(terminal.db), *argv])
    assert info.value.code == 2
    assert "amtomat log: error: argument" in capsys.readouterr().err


def test_a_missing_or_foreign_database_and_a_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "--database", str(tmp_path / "none.db"))
    assert status == 66 and f"no database at {tmp_path / 'none.db'}" in err
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.commit()
    status, _, err = run(capsys, "--database", str(tmp_path / "other.db"))
    assert status == 66 and "not an amtomat database" in err
    status, _, err = run(capsys, "--config", str(tmp_path / "none.toml"))
    assert status == 78 and "none.toml" in err


# ----- the time parser ---------------------------------------------------------------------

NOW = 1_790_000_000.0


@given(n=st.integers(0, 999_999_999), unit=st.sampled_from(sorted(UNITS)))
def test_a_span_ago_is_that_many_seconds_before_now(n: int, unit: str) -> None:
    if n * UNITS[unit] > MAX_AGO_S:
        with pytest.raises(UsageError, match=f"'{n}{unit}' reaches back more than a century"):
            parse_when(f"{n}{unit}", NOW)
        return
    assert parse_when(f"{n}{unit}", NOW) == NOW - n * UNITS[unit]


@given(
    moment=st.datetimes(
        min_value=dt.datetime(1971, 1, 2),
        max_value=dt.datetime(9000, 1, 1),
        timezones=st.just(dt.UTC),
    ).map(lambda d: d.replace(microsecond=0))
)
def test_an_iso_time_with_an_offset_or_z_is_that_instant(moment: dt.datetime) -> None:
    assert parse_when(moment.isoformat(), NOW) == moment.timestamp()
    assert parse_when(moment.isoformat().replace("+00:00", "Z"), NOW) == moment.timestamp()
    naive = moment.replace(tzinfo=None).isoformat()
    assert parse_when(naive, NOW, in_utc=True) == moment.timestamp()


@given(text=st.text(max_size=50))
def test_any_text_is_a_time_or_a_usage_error_naming_it(text: str) -> None:
    try:
        value = parse_when(text, NOW, option="--since")
    except UsageError as exc:
        assert str(exc).startswith(f"--since {text!r} ")
        return
    assert isinstance(value, float)
