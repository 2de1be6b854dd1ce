"""The MQTT session counter: one number per connect attempt, kept in the daemon's SQLite
file (``meta.mqtt_session``) so it grows across restarts (docs/mqtt/README.md)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Final

from county.errors import CountyError

KEY: Final = "mqtt_session"


class SessionCounterError(CountyError):
    """The session counter cannot be read or written; names the database file."""


class SessionCounter:
    """The counter through its own sqlite3 connection (WAL, busy_timeout 5000), usable from
    any thread (paho's network thread calls ``next``)."""

    def __init__(self, db_path: Path) -> None:
        self.path = Path(db_path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # The Store makes this table; made here too so the counter works on its own.
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
        except sqlite3.Error as exc:
            raise SessionCounterError(
                f"cannot open the session counter in {self.path}: {exc}", str(self.path)
            ) from exc

    def next(self) -> int:
        """Add one and return the new value (1 on the first call); on disk before it
        returns."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    value = self._read() + 1
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (KEY, str(value))
                    )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise SessionCounterError(
                    f"cannot count the MQTT session in {self.path}: {exc}", str(self.path)
                ) from exc
            return value

    def current(self) -> int:
        """The last value ``next`` returned (0 before the first)."""
        with self._lock:
            try:
                return self._read()
            except sqlite3.Error as exc:
                raise SessionCounterError(
                    f"cannot read the MQTT session in {self.path}: {exc}", str(self.path)
                ) from exc

    def close(self) -> None:
        """Close the connection; the counter is unusable afterwards."""
        with self._lock:
            self._db.close()

    def _read(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (KEY,)).fetchone()
        if row is None:
            return 0
        try:
            value = int(row[0])
        except ValueError:
            value = -1
        if value < 0:
            raise SessionCounterError(
                f"meta.{KEY} in {self.path} is {row[0]!r}, not a session number: "
                "delete that row to start counting again at 1",
                row[0],
            )
        return value
