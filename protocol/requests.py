"""Exactly-once requests: which command ids are being worked on, and the replies already
given, so a repeated request gets the same reply and never a second effect.

The ledger outlives sessions: a request re-sent after a reconnect is still recognised.
"""

from protocol.compat import const
from protocol.errors import SessionError

REPLY_CACHE = const(16)  # answered command ids remembered for duplicates

# What to do with an arriving request (RequestLedger.admit)
NEW = const(0)  # first arrival: hand it to the application
IN_PROGRESS = const(1)  # the application has it and has not answered yet: drop it
ANSWERED = const(2)  # answered before: send ledger.cached(cid) again


class RequestLedger:
    """Pending command ids and a ring of the last REPLY_CACHE answered ones."""

    def __init__(self) -> None:
        self._pending: "list[int]" = []
        self._done_cids = [-1] * REPLY_CACHE
        self._done_replies = [b""] * REPLY_CACHE
        self._next = 0

    def admit(self, cid: int) -> int:
        """NEW (now pending), IN_PROGRESS or ANSWERED for a request arriving with cid."""
        if cid in self._pending:
            return IN_PROGRESS
        if cid in self._done_cids:
            return ANSWERED
        self._pending.append(cid)
        return NEW

    def cached(self, cid: int) -> bytes:
        """The reply payload given to cid (which admit() reported ANSWERED)."""
        return self._done_replies[self._done_cids.index(cid)]

    def answer(self, cid: int, reply: bytes) -> None:
        """Record the reply to a pending cid; SessionError if cid is not pending."""
        if cid not in self._pending:
            raise SessionError("no request with cid %d is waiting for a reply" % cid, cid)
        self._pending.remove(cid)
        i = self._next
        self._done_cids[i] = cid
        self._done_replies[i] = reply
        self._next = (i + 1) % REPLY_CACHE
