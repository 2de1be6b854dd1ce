"""The daemon's SQLite database: one file in WAL mode, every change inside a transaction.

A power cut at any point leaves either the whole of a transaction or none of it
(``synchronous=FULL``). The audit log is append-only (triggers refuse UPDATE and DELETE)
and hash-chained: each entry's hash covers the previous hash and the entry, so
``verify_audit`` finds any edit made behind the daemon's back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from controller.errors import ControllerError

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
GENESIS: Final = "0" * 64  # the "previous hash" of the first audit entry

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS compartments (
    label TEXT PRIMARY KEY, board TEXT NOT NULL, channel INTEGER NOT NULL,
    size TEXT NOT NULL, state TEXT NOT NULL, since_utc REAL NOT NULL,
    note TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS assignments (
    id INTEGER PRIMARY KEY, compartment TEXT NOT NULL, reference TEXT NOT NULL,
    code_hash TEXT NOT NULL, return_required INTEGER NOT NULL, expires_utc REAL NOT NULL,
    loaded_by TEXT NOT NULL, loaded_utc REAL NOT NULL, status TEXT NOT NULL,
    ended_utc REAL);
CREATE UNIQUE INDEX IF NOT EXISTS assignment_reference_open
    ON assignments(reference) WHERE status IN ('loading', 'active', 'expired');
CREATE TABLE IF NOT EXISTS operations (
    op INTEGER PRIMARY KEY, kind TEXT NOT NULL, compartment TEXT, origin TEXT NOT NULL,
    step TEXT NOT NULL, started_utc REAL NOT NULL, ended_utc REAL, outcome TEXT,
    detail TEXT);
CREATE TABLE IF NOT EXISTS board_commands (
    id INTEGER PRIMARY KEY, board TEXT NOT NULL, name TEXT NOT NULL, args TEXT NOT NULL,
    op INTEGER, status TEXT NOT NULL, sent_utc REAL NOT NULL, ended_utc REAL,
    result TEXT);
CREATE TABLE IF NOT EXISTS board_events (
    board TEXT NOT NULL, boot_id INTEGER NOT NULL, eid INTEGER NOT NULL,
    kind TEXT NOT NULL, unit TEXT NOT NULL, channel INTEGER, value INTEGER,
    t_ms INTEGER NOT NULL, utc REAL NOT NULL, PRIMARY KEY (board, boot_id, eid));
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY, request TEXT NOT NULL, utc REAL NOT NULL,
    status INTEGER NOT NULL, reason TEXT, data TEXT);
CREATE TABLE IF NOT EXISTS attempts (
    scope TEXT NOT NULL, key TEXT NOT NULL, failures INTEGER NOT NULL,
    window_start_utc REAL NOT NULL, locked_until_utc REAL NOT NULL,
    PRIMARY KEY (scope, key));
CREATE TABLE IF NOT EXISTS alarms (
    name TEXT NOT NULL, subject TEXT NOT NULL, raised_utc REAL NOT NULL, detail TEXT,
    PRIMARY KEY (name, subject));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, utc REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    subject TEXT NOT NULL, detail TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


def walk_audit(db: sqlite3.Connection) -> AuditCheck:
    """Walk the whole audit chain of db (which may be opened read-only); the first entry
    that does not fit is reported."""
    prev, expected, n = GENESIS, 1, 0
    rows = db.execute(
        "SELECT seq, utc, actor, action, subject, detail, prev, hash FROM audit ORDER BY seq"
    )
    for seq, utc, actor, action, subject, detail, stored_prev, digest in rows:
        n += 1
        if seq != expected:
            return AuditCheck(False, n, seq, f"entry {expected} is missing")
        if stored_prev != prev:
            return AuditCheck(False, n, seq, "its link to the previous entry is broken")
        if _entry_hash(prev, seq, utc, actor, action, subject, detail) != digest:
            return AuditCheck(False, n, seq, "its content does not match its hash")
        prev, expected = digest, expected + 1
    return AuditCheck(True, n)


class StoreError(ControllerError):
    """The database cannot be opened or used; names the file and the reason."""


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log."""

    seq: int
    utc: float
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    hash: str


@dataclass(frozen=True)
class AuditCheck:
    """Result of walking the hash chain."""

    ok: bool
    entries: int
    bad_seq: int | None = None
    problem: str | None = None


def _entry_hash(prev: str, seq: int, utc: float, actor: str, action: str, subject: str,
                detail: str) -> str:  # fmt: skip
    body = json.dumps([seq, repr(utc), actor, action, subject, detail], separators=(",", ":"))
    return hashlib.sha256((prev + "\n" + body).encode()).hexdigest()


class Store:
    """The database; use ``tx()`` for every change."""

    def __init__(self, path: str | Path, utc: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.utc = utc
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA busy_timeout=5000")
            self.db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}", str(path)) from exc
        self._in_tx = False
        # Called with each new audit entry inside its transaction (the county link's
        # outbox joins it there); one that raises is logged and does not undo the entry.
        self.audit_listeners: list[Callable[[AuditEntry], None]] = []
        with self.tx():
            version = self.meta("schema_version")
            if version is None:
                self.set_meta("schema_version", str(SCHEMA_VERSION))
            elif version != str(SCHEMA_VERSION):
                raise StoreError(
                    f"database {self.path} has schema {version}, this daemon needs "
                    f"{SCHEMA_VERSION}: upgrade the daemon or restore a matching backup",
                    version,
                )

    def close(self) -> None:
        """Close the file (WAL checkpoint happens here)."""
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it lands, or none of it."""
        if self._in_tx:
            yield self.db  # part of the enclosing transaction
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")
        finally:
            self._in_tx = False

    def _require_tx(self) -> None:
        if not self._in_tx:
            raise StoreError("a change outside a transaction", None)

    # ----- small tables --------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        """A value of the meta table."""
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a meta value (inside a transaction)."""
        self._require_tx()
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def bump(self, name: str, by: int = 1) -> None:
        """Add to a counter (inside a transaction)."""
        self._require_tx()
        self.db.execute(
            "INSERT INTO counters(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def counters(self) -> dict[str, int]:
        """Every counter by name."""
        return {str(n): int(v) for n, v in self.db.execute("SELECT name, value FROM counters")}

    # ----- audit log -----------------------------------------------------------------

    def audit(self, actor: str, action: str, subject: str, **detail: Any) -> int:
        """Append one entry (inside a transaction); returns its sequence number."""
        self._require_tx()
        row = self.db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (1, GENESIS) if row is None else (int(row[0]) + 1, str(row[1]))
        utc = self.utc()
        text = json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str)
        digest = _entry_hash(prev, seq, utc, actor, action, subject, text)
        self.db.execute(
            "INSERT INTO audit(seq, utc, actor, action, subject, detail, prev, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, utc, actor, action, subject, text, prev, digest),
        )
        if self.audit_listeners:
            entry = AuditEntry(seq, utc, actor, action, subject, json.loads(text), digest)
            for listener in list(self.audit_listeners):
                try:
                    listener(entry)
                except Exception:
                    log.exception("audit listener failed on entry %d (%s)", seq, action)
        return seq

    def audit_entries(
        self,
        *,
        since_seq: int = 0,
        limit: int = 1000,
        actor: str | None = None,
        action: str | None = None,
        subject: str | None = None,
    ) -> list[AuditEntry]:
        """Entries after since_seq, oldest first, optionally filtered by equality."""
        where, args = ["seq > ?"], [since_seq]
        for column, value in (("actor", actor), ("action", action), ("subject", subject)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)  # type: ignore[arg-type]
        rows = self.db.execute(
            f"SELECT seq, utc, actor, action, subject, detail, hash FROM audit "
            f"WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
            (*args, limit),
        )
        return [
            AuditEntry(int(s), float(u), str(a), str(ac), str(su), json.loads(d), str(h))
            for s, u, a, ac, su, d, h in rows
        ]

    def verify_audit(self) -> AuditCheck:
        """Walk the whole chain; the first entry that does not fit is reported."""
        return walk_audit(self.db)

    # ----- de-duplication of front-end requests --------------------------------------

    def request_result(self, request_id: str, request: str) -> tuple[int, str | None, Any] | None:
        """The stored (status, reason, data) of a request id seen before for the same
        request, or None (an id reused for another request is a new request)."""
        row = self.db.execute(
            "SELECT status, reason, data FROM requests WHERE request_id=? AND request=?",
            (request_id, request),
        ).fetchone()
        if row is None:
            return None
        return int(row[0]), row[1], None if row[2] is None else json.loads(row[2])

    def remember_request(
        self, request_id: str, request: str, status: int, reason: str | None, data: Any
    ) -> None:
        """Store a request's result for its duplicates (inside a transaction)."""
        self._require_tx()
        self.db.execute(
            "INSERT OR REPLACE INTO requests(request_id, request, utc, status, reason, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (request_id, request, self.utc(), status, reason,
             None if data is None else json.dumps(data)),
        )  # fmt: skip

    def forget_requests(self, before_utc: float) -> int:
        """Drop remembered requests older than before_utc; returns how many."""
        with self.tx():
            cur = self.db.execute("DELETE FROM requests WHERE utc < ?", (before_utc,))
        return cur.rowcount

    # ----- board events and commands -------------------------------------------------

    def record_event(
        self, board: str, boot_id: int, eid: int, kind: str, unit: str,
        channel: int | None, value: int | None, t_ms: int,
    ) -> bool:  # fmt: skip
        """Store a board event (inside a transaction); False if it was stored before."""
        self._require_tx()
        cur = self.db.execute(
            "INSERT OR IGNORE INTO board_events"
            "(board, boot_id, eid, kind, unit, channel, value, t_ms, utc) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (board, boot_id, eid, kind, unit, channel, value, t_ms, self.utc()),
        )
        return cur.rowcount == 1

    def command_sent(self, board: str, name: str, args: Mapping[str, Any], op: int | None) -> int:
        """Record a board command before it is written; returns its row id."""
        with self.tx():
            cur = self.db.execute(
                "INSERT INTO board_commands(board, name, args, op, status, sent_utc) "
                "VALUES (?, ?, ?, ?, 'sent', ?)",
                (board, name, json.dumps(dict(args)), op, self.utc()),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def command_ended(self, row: int, status: str, result: Any) -> None:
        """Record a command's outcome: done, refused or unknown."""
        with self.tx():
            self.db.execute(
                "UPDATE board_commands SET status=?, ended_utc=?, result=? WHERE id=?",
                (status, self.utc(), json.dumps(result, default=str), row),
            )

    def commands_in_flight(self) -> list[tuple[int, str, str, int | None]]:
        """Commands sent whose outcome never came back: (row, board, name, op)."""
        rows = self.db.execute(
            "SELECT id, board, name, op FROM board_commands WHERE status='sent' ORDER BY id"
        )
        return [(int(i), str(b), str(n), None if o is None else int(o)) for i, b, n, o in rows]
