"""The message-catalog tables of docs/protocol.md, generated from protocol/messages.py.

``python -m tools.protocol_docs`` prints them; a test checks the document contains them.
"""

from __future__ import annotations

import sys

from protocol.inspect import catalog_markdown as messages_markdown
from protocol.messages import BOARD_MESSAGES, STATUS

_DIRECTIONS = {"i2r": "i→r", "r2i": "r→i", "both": "both"}


def catalog_markdown() -> str:
    """The overview table, one field table per message, and the status table."""
    return messages_markdown(BOARD_MESSAGES, STATUS, _DIRECTIONS)


if __name__ == "__main__":
    sys.stdout.write(catalog_markdown())
