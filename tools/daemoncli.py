"""``amtomat run`` (the daemon) and ``amtomat verify-audit`` (the audit log's hash chain)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from controller.errors import ControllerError

EX_CONFIG = 78  # sysexits EX_CONFIG: systemd's unit does not restart on it
_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class JournalFormatter(logging.Formatter):
    """Lines with a syslog priority prefix (<4> = warning) that journald understands."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITY.get(record.levelname, 6)}>{super().format(record)}"


def _log_to_journal() -> None:
    """Under systemd (JOURNAL_STREAM set), prefix priorities and leave out the time."""
    if not os.environ.get("JOURNAL_STREAM"):
        return
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))


def _config(path: Path) -> Any:
    from controller.config import load

    return load(path)


def _run(args: argparse.Namespace) -> int:
    from controller.daemon import serve

    try:
        cfg = _config(args.config)
    except ControllerError as exc:
        print(f"amtomat run: {exc}", file=sys.stderr)
        return EX_CONFIG
    if args.verbose == 0:
        logging.getLogger().setLevel(cfg.daemon.log_level.upper())
    _log_to_journal()
    return asyncio.run(serve(cfg))


def _verify_audit(args: argparse.Namespace) -> int:
    from controller.store import Store

    try:
        cfg = _config(args.config)
        store = Store(cfg.daemon.database)
    except ControllerError as exc:
        print(f"amtomat verify-audit: {exc}", file=sys.stderr)
        return EX_CONFIG
    try:
        check = store.verify_audit()
    finally:
        store.close()
    if check.ok:
        print(f"audit log {cfg.daemon.database}: {check.entries} entries, hash chain intact")
        return 0
    print(
        f"audit log {cfg.daemon.database}: entry {check.bad_seq}: {check.problem} "
        f"({check.entries} entries read)"
    )
    return 1


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``run`` and ``verify-audit``."""
    p = sub.add_parser(
        "run",
        parents=[common],
        help="run the controller daemon",
        description="Run the daemon: boards, compartments, workflows, kiosk bridge. "
        f"Stops on SIGTERM or SIGINT; exits {EX_CONFIG} on a config error.",
    )
    p.add_argument("--config", type=Path, required=True, help="the terminal TOML file")
    p.set_defaults(func=_run)
    p = sub.add_parser(
        "verify-audit",
        parents=[common],
        help="check the audit log's hash chain",
        description="Walk the audit log and check every entry's hash; exit 1 if broken.",
    )
    p.add_argument("--config", type=Path, required=True, help="the terminal TOML file")
    p.set_defaults(func=_verify_audit)
