"""Failed-attempt limits with lockout, persisted so a restart does not reset them."""

from __future__ import annotations

from dataclasses import dataclass

from controller.store import Store


@dataclass(frozen=True)
class Verdict:
    """After a failure: locked until (UTC seconds) or None, and attempts left."""

    locked_until: float | None
    remaining: int


class AttemptLimiter:
    """At most ``limit`` failures per key within ``window_s``, then ``lockout_s`` locked."""

    def __init__(self, store: Store, scope: str, limit: int, window_s: int, lockout_s: int) -> None:
        self.store = store
        self.scope = scope
        self.limit = limit
        self.window_s = window_s
        self.lockout_s = lockout_s

    def _row(self, key: str) -> tuple[int, float, float] | None:
        row = self.store.db.execute(
            "SELECT failures, window_start_utc, locked_until_utc FROM attempts "
            "WHERE scope=? AND key=?",
            (self.scope, key),
        ).fetchone()
        return None if row is None else (int(row[0]), float(row[1]), float(row[2]))

    def locked_until(self, key: str) -> float | None:
        """UTC seconds until which key is locked, or None."""
        row = self._row(key)
        if row is None or row[2] <= self.store.utc():
            return None
        return row[2]

    def failure(self, key: str) -> Verdict:
        """Count one failure (in its own transaction, or the caller's)."""
        now = self.store.utc()
        row = self._row(key)
        failures, start = (0, now) if row is None or now - row[1] > self.window_s else row[:2]
        failures += 1
        locked = now + self.lockout_s if failures >= self.limit else 0.0
        with self.store.tx():
            self.store.db.execute(
                "INSERT OR REPLACE INTO attempts(scope, key, failures, window_start_utc, "
                "locked_until_utc) VALUES (?, ?, ?, ?, ?)",
                (self.scope, key, 0 if locked else failures, now if locked else start, locked),
            )
        return Verdict(locked or None, 0 if locked else self.limit - failures)

    def success(self, key: str) -> None:
        """Forget the failures of key."""
        with self.store.tx():
            self.store.db.execute("DELETE FROM attempts WHERE scope=? AND key=?", (self.scope, key))
