"""Active alarms: raised and cleared explicitly, persisted, audited, announced."""

from __future__ import annotations

import logging
from collections.abc import Callable

from controller.store import Store

log = logging.getLogger(__name__)

Announce = Callable[[str, dict[str, object]], None]


class Alarms:
    """The set of active alarms, keyed by (name, subject)."""

    def __init__(self, store: Store, announce: Announce) -> None:
        self.store = store
        self.announce = announce
        self.active: dict[tuple[str, str], str | None] = {
            (str(n), str(s)): d
            for n, s, d in store.db.execute("SELECT name, subject, detail FROM alarms")
        }

    def raise_(self, name: str, subject: str, detail: str | None = None) -> bool:
        """Raise an alarm; False if it was already active (nothing happens then)."""
        if (name, subject) in self.active:
            return False
        with self.store.tx():
            self.store.db.execute(
                "INSERT INTO alarms(name, subject, raised_utc, detail) VALUES (?, ?, ?, ?)",
                (name, subject, self.store.utc(), detail),
            )
            self.store.audit("system", "alarm_raised", subject, alarm=name, detail=detail)
            self.store.bump(f"alarms_{name}")
        self.active[(name, subject)] = detail
        log.warning("ALARM %s on %s: %s", name, subject, detail or "")
        self.announce(
            "alarm", {"alarm": name, "active": True, "subject": subject, "detail": detail}
        )
        return True

    def clear(self, name: str, subject: str, actor: str = "system", why: str = "") -> bool:
        """Clear an alarm; False if it was not active."""
        if (name, subject) not in self.active:
            return False
        with self.store.tx():
            self.store.db.execute("DELETE FROM alarms WHERE name=? AND subject=?", (name, subject))
            self.store.audit(actor, "alarm_cleared", subject, alarm=name, why=why)
        del self.active[(name, subject)]
        log.info("alarm %s on %s cleared (%s)", name, subject, why)
        self.announce(
            "alarm", {"alarm": name, "active": False, "subject": subject, "detail": why or None}
        )
        return True

    def clear_subject(self, subject: str, actor: str, why: str) -> None:
        """Clear every alarm about one subject (staff put it back in service)."""
        for name, subj in list(self.active):
            if subj == subject:
                self.clear(name, subj, actor, why)

    def listing(self) -> list[dict[str, object]]:
        """Active alarms, for state requests."""
        return [{"alarm": n, "subject": s, "detail": d} for (n, s), d in self.active.items()]
