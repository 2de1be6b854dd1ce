"""The message-catalog tables of docs/protocol.md, generated from protocol/messages.py.

``python -m tools.protocol_docs`` prints them; a test checks the document contains them.
"""

from __future__ import annotations

import sys

from protocol.messages import BOARD_MESSAGES, STATUS, kind_of

_DIRECTIONS = {"i2r": "i→r", "r2i": "r→i", "both": "both"}


def catalog_markdown() -> str:
    """The overview table, one field table per message, and the status table."""
    lines = ["| id | name | direction | kind | meaning |", "|---|---|---|---|---|"]
    for mid, name, direction, _, meaning in BOARD_MESSAGES:
        lines.append(
            f"| 0x{mid:02x} | `{name}` | {_DIRECTIONS[direction]} | {kind_of(mid)} | {meaning} |"
        )
    for mid, name, direction, fields, _ in BOARD_MESSAGES:
        lines += ["", f"#### 0x{mid:02x} `{name}` ({_DIRECTIONS[direction]}, {kind_of(mid)})", ""]
        lines += ["| # | field | type | meaning |", "|---|---|---|---|"]
        for i, (fname, ftype, fmeaning) in enumerate(fields, 1):
            lines.append(f"| {i} | `{fname}` | `{ftype}` | {fmeaning} |")
    lines += ["", "### Status codes", "", "| code | name | meaning |", "|---|---|---|"]
    lines += [f"| {code} | `{name}` | {meaning} |" for code, name, meaning in STATUS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(catalog_markdown())
