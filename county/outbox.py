"""The outbox: ``event`` and ``stats`` messages kept in the daemon's database until the
broker acknowledged them (docs/mqtt/README.md, "Events and statistics: the outbox").

A message is written in the same transaction as the change it reports, so either both
land or neither does. Its sequence number comes from SQLite's ``AUTOINCREMENT``: strictly
increasing, 64-bit, never handed out twice for committed rows, even after the newest
row was deleted or the file was reopened.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from controller.store import Store
from county.errors import OutboxError

# Two statements, run one by one: executescript would commit a caller's transaction.
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS county_outbox ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, key TEXT,"
    " created_utc REAL NOT NULL, fields TEXT NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS county_outbox_key ON county_outbox(key)"
    " WHERE key IS NOT NULL",
)
RESERVED: Final = frozenset({"seq", "historical"})  # added by OutboxRow.message
MAX_PENDING_BATCH: Final = 10_000
_COLUMNS: Final = "seq, topic, key, created_utc, fields"


@dataclass(frozen=True)
class OutboxRow:
    """One message waiting for the broker's acknowledgement."""

    seq: int
    topic: str
    key: str | None
    created_utc: float
    fields: dict[str, Any]

    def message(self, historical: bool) -> bytes:
        """The payload: the fields plus ``seq`` and ``historical``, compact JSON with
        sorted keys, UTF-8."""
        body = {**self.fields, "seq": self.seq, "historical": historical}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode()


class Outbox:
    """Messages that must reach the broker (event, stats), kept in the daemon's database
    until the broker acknowledged them; a 64-bit sequence number per terminal, never
    reused.

    Use it from the thread that owns the store (the daemon's loop): the store's
    transactions are not shared between threads.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        try:
            with store.tx():
                for statement in _SCHEMA:
                    store.db.execute(statement)
        except sqlite3.Error as exc:
            raise OutboxError(
                f"cannot create the outbox table in {store.path}: {exc}", str(store.path)
            ) from exc

    def put(self, topic: str, fields: Mapping[str, Any], key: str | None = None) -> int:
        """Queue one message inside the caller's ``store.tx()``; returns its sequence number.

        A ``key`` (e.g. ``"stats:2026-11-21T10"``) replaces a pending message with the
        same key; the new one gets a new sequence number. OutboxError outside a
        transaction, for a bad topic or key, and for a field that is not JSON (naming it).
        """
        if not self.store.db.in_transaction:
            raise OutboxError(
                f"outbox put for {topic!r} outside a transaction: call it inside store.tx(), "
                "together with the change it reports",
                topic,
            )
        _check_topic(topic)
        if key is not None and (not isinstance(key, str) or not key):
            raise OutboxError(f"outbox key {key!r}: use non-empty text or None", key)
        if not isinstance(fields, Mapping):
            raise OutboxError(
                f"outbox fields: a {type(fields).__name__}, not a mapping", type(fields).__name__
            )
        for name in fields:
            if name in RESERVED:
                raise OutboxError(
                    f"outbox field {name!r} is added when the message is sent; leave it out",
                    name,
                )
        _check_json(fields, "")
        text = json.dumps(dict(fields), sort_keys=True, separators=(",", ":"), allow_nan=False)
        if key is not None:
            self.store.db.execute("DELETE FROM county_outbox WHERE key = ?", (key,))
        cur = self.store.db.execute(
            "INSERT INTO county_outbox(topic, key, created_utc, fields) VALUES (?, ?, ?, ?)",
            (topic, key, self.store.utc(), text),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[OutboxRow]:
        """Messages with a sequence number above ``after_seq``, oldest first, at most
        ``limit``."""
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
            raise OutboxError(f"after_seq {after_seq!r}: use a whole number >= 0", after_seq)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise OutboxError(f"limit {limit!r}: use a whole number", limit)
        if not 1 <= limit <= MAX_PENDING_BATCH:
            raise OutboxError(f"limit {limit!r}: use 1 to {MAX_PENDING_BATCH}", limit)
        rows = self.store.db.execute(
            f"SELECT {_COLUMNS} FROM county_outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [_row(*row) for row in rows]

    def remove(self, seq: int) -> bool:
        """Forget an acknowledged message (its own transaction); False if it was not
        pending."""
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise OutboxError(f"outbox seq {seq!r}: use a whole number", seq)
        with self.store.tx():
            cur = self.store.db.execute("DELETE FROM county_outbox WHERE seq = ?", (seq,))
        return cur.rowcount == 1

    def depth(self) -> int:
        """How many messages wait."""
        row = self.store.db.execute("SELECT COUNT(*) FROM county_outbox").fetchone()
        return int(row[0])

    def max_seq(self) -> int:
        """The highest sequence number ever handed out (committed), 0 before the first;
        rows queued later get a higher one."""
        row = self.store.db.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'county_outbox'"
        ).fetchone()
        return 0 if row is None else int(row[0])

    def oldest_utc(self) -> float | None:
        """When the oldest waiting message was queued, or None when none waits."""
        row = self.store.db.execute("SELECT MIN(created_utc) FROM county_outbox").fetchone()
        return None if row[0] is None else float(row[0])


def _row(seq: int, topic: str, key: str | None, created_utc: float, text: str) -> OutboxRow:
    try:
        fields = json.loads(text)
    except ValueError as exc:
        raise OutboxError(f"outbox message {seq}: its stored fields are not JSON", seq) from exc
    if not isinstance(fields, dict):
        raise OutboxError(f"outbox message {seq}: its stored fields are not an object", seq)
    return OutboxRow(int(seq), str(topic), key, float(created_utc), fields)


def _check_topic(topic: object) -> None:
    if not isinstance(topic, str) or not topic or "+" in topic or "#" in topic:
        raise OutboxError(
            f"outbox topic {topic!r}: use a non-empty topic name without wildcards", topic
        )


def _check_json(value: object, where: str) -> None:
    """Raise OutboxError naming the first key (dotted path) whose value JSON cannot hold."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise OutboxError(f"outbox field {where!r}: {value!r} is not a JSON number", where)
        return
    if isinstance(value, Mapping):
        for name, item in value.items():
            path = f"{where}.{name}" if where else str(name)
            if not isinstance(name, str):
                raise OutboxError(f"outbox field {path!r}: the key {name!r} is not text", path)
            _check_json(item, path)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")
        return
    raise OutboxError(
        f"outbox field {where!r}: a {type(value).__name__} is not a JSON value "
        "(use text, numbers, true/false, null, lists and objects)",
        where,
    )
