"""``amtomat boards|status|log|test-channel``: registers the diagnostics commands."""

from __future__ import annotations

import argparse
from typing import Any

from tools.diag import auditlog, boards, status, testchannel


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``boards``, ``status``, ``log`` and ``test-channel``."""
    boards.add_parser(sub, common)
    status.add_parser(sub, common)
    auditlog.add_parser(sub, common)
    testchannel.add_parser(sub, common)
