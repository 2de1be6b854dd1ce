"""Hourly statistics from the controller's counters: what each counter grew by during
one hour of UTC, keyed by that hour so a replay overwrites and never counts twice.

The counters only grow while the daemon runs, so the difference between the snapshot
taken at an hour's start (or at the daemon's first start in it) and the one taken at its
end is exactly that hour's activity, even across restarts and outages: a daemon that was
down across a boundary closes the old hour at its next start.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from controller.store import Store
from county.hostinfo import rfc3339

HOUR_S: Final = 3600
_BASE_KEY: Final = "county_stats_base"
# stats field -> counters whose growth it sums (controller/ bumps them)
COUNTS: Final[dict[str, tuple[str, ...]]] = {
    "pickups": ("pickups",),
    "dropoffs": ("dropoff_completed",),
    "loads": ("load_completed",),
    "entrance_grants": ("entrance_grants",),
    "failed_code_attempts": ("pickup_wrong_code",),
    "pickups_outside_office_hours": ("pickups_outside_office_hours",),
    "expired": ("expired",),
}


def period_of(utc: float) -> str:
    """The hour holding utc, as ``YYYY-MM-DDTHH``."""
    return dt.datetime.fromtimestamp(utc, dt.UTC).strftime("%Y-%m-%dT%H")


@dataclass(frozen=True)
class HourStats:
    """One closed hour: its period key and the ``stats`` fields without the envelope."""

    period: str
    fields: dict[str, Any]


def _growth(now: Mapping[str, int], base: Mapping[str, int], names: tuple[str, ...]) -> int:
    return sum(max(0, now.get(n, 0) - base.get(n, 0)) for n in names)


def close_hour(store: Store, utc: float) -> HourStats | None:
    """Inside a transaction: when the hour of the stored snapshot has ended by utc, the
    stats of that hour (and a new snapshot); None while it runs. The first call only
    takes the snapshot."""
    counters = store.counters()
    raw = store.meta(_BASE_KEY)
    if raw is None:
        store.set_meta(_BASE_KEY, json.dumps({"period": period_of(utc), "counters": counters}))
        return None
    base = json.loads(raw)
    period = str(base["period"])
    if period == period_of(utc):
        return None
    before: dict[str, int] = {str(k): int(v) for k, v in base["counters"].items()}
    counts = {name: _growth(counters, before, names) for name, names in COUNTS.items()}
    alarms = [n for n in set(counters) | set(before) if n.startswith("alarms_")]
    counts["alarms"] = _growth(counters, before, tuple(alarms))
    dwell = _growth(counters, before, ("dwell_seconds",))
    start = dt.datetime.strptime(period, "%Y-%m-%dT%H").replace(tzinfo=dt.UTC).timestamp()
    fields = {
        "period": period,
        "start": rfc3339(start),
        "end": rfc3339(start + HOUR_S),
        "counts": counts,
        "dwell_seconds": {
            "total": dwell,
            "mean": round(dwell / counts["pickups"], 1) if counts["pickups"] else None,
        },
    }
    store.set_meta(_BASE_KEY, json.dumps({"period": period_of(utc), "counters": counters}))
    return HourStats(period, fields)
