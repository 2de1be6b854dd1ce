"""``amtomat log``: the audit log, read straight from the database, with its hash chain.

The database is opened read-only (WAL lets the daemon write meanwhile). The whole chain
is checked first by the daemon's own walk (``controller.store.walk_audit``, the rule of
docs/controller.md section 12); then the entries that pass the filters are shown, newest
last. A detail key that names a secret is shown as ``<hidden>`` (the daemon writes none).
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from controller.store import walk_audit
from tools.diag import render
from tools.diag.daemon import DEFAULT_CONFIG, load_config
from tools.diag.errors import EXIT_FAILED, EXIT_OK, DatabaseUnreadable, UsageError
from tools.diag.timespec import parse_when

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 1_000_000
SECRET_KEYS: Final = frozenset({"pin", "code", "code_hash", "key", "password", "secret", "token"})
HIDDEN: Final = "<hidden>"
_KIND: Final = re.compile(r"[a-z0-9_*?]{1,64}")
_PRINTABLE_MAX: Final = 64


@dataclass(frozen=True)
class ChainCheck:
    """The hash chain walked over the whole log: intact, or the first bad entry."""

    intact: bool
    entries: int
    bad_seq: int | None = None
    problem: str | None = None

    def sentence(self) -> str:
        """``hash chain intact (N entries)`` or the first bad entry and what is wrong."""
        if self.intact:
            return f"hash chain intact ({self.entries} entries)"
        return (
            f"hash chain BROKEN at entry {self.bad_seq}: {self.problem} "
            f"({self.entries} entries read)"
        )


@dataclass(frozen=True)
class Filters:
    """Which entries to show; None means no restriction."""

    since: float | None = None
    until: float | None = None
    kinds: tuple[str, ...] = ()
    compartment: str | None = None
    actor: str | None = None
    limit: int | None = DEFAULT_LIMIT


@dataclass(frozen=True)
class Entry:
    """One audit entry as shown (secret-named detail values hidden)."""

    seq: int
    utc: float
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]


def open_readonly(path: Path) -> sqlite3.Connection:
    """The database, read-only; DatabaseUnreadable naming the file and the reason."""
    if not path.is_file():
        raise DatabaseUnreadable(
            f"no database at {path}: check daemon.database in the terminal TOML, or give "
            "--database",
            str(path),
        )
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True)
        db.execute("PRAGMA busy_timeout=5000")
        tables = {str(r[0]) for r in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as exc:
        raise DatabaseUnreadable(
            f"cannot read the database {path}: {exc} (run as the daemon's user, e.g. "
            "sudo -u amtomat, or as root)",
            str(path),
        ) from None
    if "audit" not in tables:
        db.close()
        raise DatabaseUnreadable(f"{path} is not an amtomat database (no audit table)", str(path))
    return db


def check_chain(db: sqlite3.Connection) -> ChainCheck:
    """Walk every entry in order (the daemon's own walk); the first that does not fit
    ends the walk."""
    walked = walk_audit(db)
    return ChainCheck(walked.ok, walked.entries, walked.bad_seq, walked.problem)


def hide_secrets(value: Any) -> Any:
    """The value with every map entry whose key names a secret replaced by <hidden>."""
    if isinstance(value, dict):
        return {
            k: HIDDEN if str(k).lower() in SECRET_KEYS else hide_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [hide_secrets(v) for v in value]
    return value


def _word(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    if not value or len(value) > _PRINTABLE_MAX or not value.isprintable():
        raise UsageError(
            f"{option} {value!r} must be 1 to {_PRINTABLE_MAX} printable characters", value
        )
    return value


def filters_from(args: argparse.Namespace, db: sqlite3.Connection, now: float) -> Filters:
    """The command line's filters, checked; UsageError naming the first bad value."""
    since = None if args.since is None else parse_when(args.since, now, args.utc, "--since")
    until = None if args.until is None else parse_when(args.until, now, args.utc, "--until")
    if since is not None and until is not None and since > until:
        raise UsageError(f"--since {args.since!r} is after --until {args.until!r}", args.since)
    kinds = tuple(args.kind or ())
    for kind in kinds:
        if not _KIND.fullmatch(kind):
            raise UsageError(
                f"--kind {kind!r} is not an action name such as pickup_completed (a-z, 0-9, "
                "_, with * and ? as wildcards: pickup_*)",
                kind,
            )
    compartment = _word(args.compartment, "--compartment")
    if compartment is not None:
        known = [str(r[0]) for r in db.execute("SELECT label FROM compartments ORDER BY label")]
        if compartment not in known:
            listed = ", ".join(known[:40]) + (", ..." if len(known) > 40 else "")
            raise UsageError(
                f"--compartment {compartment!r} is not a compartment of this terminal "
                f"(known: {listed or 'none'})",
                compartment,
            )
    limit = None if args.all else args.limit
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"--limit {limit} is not 1..{MAX_LIMIT} (or use --all)", limit)
    return Filters(since, until, kinds, compartment, _word(args.actor, "--actor"), limit)


def select(db: sqlite3.Connection, f: Filters) -> list[Entry]:
    """The entries passing f, oldest first (the last ``limit`` of them)."""
    where: list[str] = []
    values: list[Any] = []
    if f.since is not None:
        where.append("utc >= ?")
        values.append(f.since)
    if f.until is not None:
        where.append("utc <= ?")
        values.append(f.until)
    if f.kinds:
        where.append("(" + " OR ".join("action GLOB ?" for _ in f.kinds) + ")")
        values.extend(f.kinds)
    if f.compartment is not None:
        where.append("subject = ?")
        values.append(f.compartment)
    if f.actor is not None:
        where.append("actor = ?")
        values.append(f.actor)
    sql = "SELECT seq, utc, actor, action, subject, detail FROM audit"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY seq DESC"
    if f.limit is not None:
        sql += " LIMIT ?"
        values.append(f.limit)
    out = []
    for seq, utc, actor, action, subject, detail in db.execute(sql, values):
        try:
            parsed = json.loads(detail)
        except (TypeError, ValueError):
            parsed = {"unparsed": str(detail)}
        if not isinstance(parsed, dict):
            parsed = {"value": parsed}
        out.append(
            Entry(int(seq), float(utc), str(actor), str(action), str(subject), hide_secrets(parsed))
        )
    out.reverse()
    return out


def detail_text(detail: dict[str, Any]) -> str:
    """``key=value`` pairs, sorted; text values quoted only when they hold spaces."""
    parts = []
    for key in sorted(detail):
        value = detail[key]
        if isinstance(value, str) and value and " " not in value and "=" not in value:
            shown = value
        else:
            shown = json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}={shown}")
    return " ".join(parts)


def show(entries: Sequence[Entry], in_utc: bool) -> str:
    """The entries as a table."""
    rows = [
        [
            str(e.seq),
            render.when(e.utc, in_utc),
            e.actor,
            e.action,
            e.subject,
            detail_text(e.detail),
        ]
        for e in entries
    ]
    return render.table(["seq", "time", "actor", "action", "subject", "detail"], rows)


def database_path(args: argparse.Namespace) -> Path:
    """--database, else daemon.database of the terminal TOML."""
    if args.database is not None:
        return Path(args.database)
    return load_config(args.config).daemon.database


def _run(args: argparse.Namespace) -> int:
    def body() -> int:
        path = database_path(args)
        db = open_readonly(path)
        try:
            chain = check_chain(db)
            filters = filters_from(args, db, time.time())
            entries = select(db, filters)
        finally:
            db.close()
        if args.json:
            doc = {
                "database": str(path),
                "chain": {
                    "intact": chain.intact,
                    "entries": chain.entries,
                    "bad_seq": chain.bad_seq,
                    "problem": chain.problem,
                },
                "entries": [e.__dict__ for e in entries],
            }
            print(render.as_json(doc))
        else:
            print(chain.sentence())
            print(show(entries, args.utc) if entries else "no entries match")
        if not chain.intact:
            print(f"amtomat log: {chain.sentence()}", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_OK

    return render.run("log", body)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{text!r} is not 1..{MAX_LIMIT}")
    return value


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``log``."""
    p = sub.add_parser(
        "log",
        parents=[common],
        help="the audit log, filtered, with its hash chain checked",
        description="Check the audit log's hash chain over the whole log, then show the "
        "entries that pass the filters, newest last. Exit status 0 when the chain is "
        "intact, 1 when it is broken, 2 for a bad filter, 66 when the database cannot be "
        "read, 78 for a bad config.",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"the terminal TOML, for daemon.database (default {DEFAULT_CONFIG})",
    )
    p.add_argument("--database", type=Path, help="read this database file instead (e.g. a copy)")
    p.add_argument("--since", metavar="WHEN", help="from this time: 2h (ago), 2026-09-21T08:00")
    p.add_argument("--until", metavar="WHEN", help="up to this time, same forms as --since")
    p.add_argument(
        "--kind",
        action="append",
        metavar="ACTION",
        help="only this action (repeatable; * and ? match: pickup_*)",
    )
    p.add_argument("--compartment", metavar="ID", help="only entries about this compartment")
    p.add_argument("--actor", metavar="WHO", help="only entries by this actor (staff id, system)")
    limits = p.add_mutually_exclusive_group()
    limits.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"show the last N matching entries (default {DEFAULT_LIMIT})",
    )
    limits.add_argument("--all", action="store_true", help="show every matching entry")
    p.add_argument("--utc", action="store_true", help="show and read times in UTC, not local")
    p.add_argument("--json", action="store_true", help="print the check and entries as JSON")
    p.set_defaults(func=_run)
