"""Keeps one terminal's topics on the broker over a Connection.

- Retained topics (birth, state, alarms) are cached and published again after every
  connect, right after ``status``; an unchanged value is not published twice.
- The outbox (event, stats) drains in sequence order with at most ``window`` messages
  awaiting their PUBACK; a row leaves the outbox only when its PUBACK arrives. paho keeps
  what it was handed across reconnects and sends it again, so a row is handed once per
  process; after a restart every pending row is handed again.
- Rows that were waiting when the connection came up, or were written while it was down,
  go out with ``historical: true``; rows written while connected go out live.
- Messages that must not touch the disk (command replies, pickup codes for the SMS
  gateway) wait in memory until the broker acknowledged them.

Everything here runs on the event loop's thread; the Connection marshals its callbacks.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from county.hostinfo import rfc3339
from county.outbox import Outbox
from county.topics import Topics

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 100  # outbox rows awaiting their PUBACK at once


class Link(Protocol):
    """What the publisher needs of a connection (county.connection.Connection)."""

    @property
    def connected(self) -> bool: ...

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        correlation: bytes | None = None,
    ) -> int | None: ...

    async def stop(
        self, final: tuple[str, bytes] | None = None, timeout_s: float = 2.0
    ) -> None: ...


def encode(fields: dict[str, Any]) -> bytes:
    """Compact JSON, keys sorted: the one encoding of every payload."""
    return json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()


@dataclass
class _Once:
    """A message kept in memory until acknowledged."""

    topic: str
    payload: bytes
    correlation: bytes | None
    mid: int | None = None


@dataclass
class PublisherCounters:
    """What the publisher did since it started."""

    live: int = 0
    historical: int = 0
    acked: int = 0
    refused: int = 0  # PUBACK with a failure reason code (e.g. not authorised)
    retained: int = 0
    once: int = 0


class Publisher:
    """See the module docstring. ``status`` gives the current status fields (state,
    reason); ``on_connected`` runs after status and before the retained cache goes out."""

    def __init__(
        self,
        topics: Topics,
        outbox: Outbox,
        *,
        utc: Callable[[], float],
        status: Callable[[], tuple[str, str | None]],
        on_connected: Callable[[], None] = lambda: None,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self.topics = topics
        self.outbox = outbox
        self.utc = utc
        self.status = status
        self.on_connected_hook = on_connected
        self.window = window
        self.link: Link | None = None
        self.session = 0
        self.counters = PublisherCounters()
        self._retained: dict[str, bytes] = {}
        self._sent_status: bytes | None = None
        self._in_flight: dict[int, int] = {}  # mid -> outbox seq
        self._handed_up_to = 0  # every pending row with a seq up to this was handed
        self._live_after: int | None = None  # rows above this seq go out live
        self._once: list[_Once] = []
        self._once_mids: dict[int, _Once] = {}
        self._drain_scheduled = False
        self._connecting = False

    # ----- connection callbacks (loop thread) ------------------------------------------

    def will(self, session: int) -> tuple[str, bytes]:
        """The last will of a connection with this session number."""
        return self.topics.status, encode(
            self._status_fields("offline", "connection lost", session)
        )

    def connected(self, session: int) -> None:
        """CONNACK: status, the link's own start-up, retained topics, memory, outbox."""
        self.session = session
        self._live_after = self.outbox.max_seq()
        self._sent_status = None
        self.publish_status()
        self._connecting = True  # the hook's retain() calls only fill the cache
        try:
            self.on_connected_hook()
        finally:
            self._connecting = False
        link = self._link()
        for topic, payload in list(self._retained.items()):
            link.publish(topic, payload, qos=1, retain=True)
            self.counters.retained += 1
        for msg in self._once:
            if msg.mid is None:
                self._send_once(msg)
        self.drain()

    def disconnected(self, reason: str) -> None:
        """The connection is gone: what comes now waits in the outbox as historical."""
        self._live_after = None
        log.info("county link down: %s", reason)

    def acked(self, mid: int, reason_code: int) -> None:
        """A PUBACK: the row leaves the outbox (a refusal is logged and dropped too: the
        broker will refuse it again)."""
        if reason_code >= 0x80:
            self.counters.refused += 1
            log.error("the broker refused message %d (reason code %d)", mid, reason_code)
        seq = self._in_flight.pop(mid, None)
        if seq is not None:
            self.outbox.remove(seq)
            self.counters.acked += 1
            self.drain()
            return
        msg = self._once_mids.pop(mid, None)
        if msg is not None and msg in self._once:
            self._once.remove(msg)

    # ----- what the link publishes -----------------------------------------------------

    def publish_status(self) -> None:
        """Publish the current status (retained) when it changed."""
        state, reason = self.status()
        payload = encode(self._status_fields(state, reason, self.session))
        if payload == self._sent_status or not self._is_up():
            return
        self._link().publish(self.topics.status, payload, qos=1, retain=True)
        self._sent_status = payload

    def retain(self, topic: str, fields: dict[str, Any] | None) -> None:
        """Set a retained topic (None clears it with a zero-length retained message)."""
        if fields is None:
            if self._retained.pop(topic, None) is None:
                return
            payload = b""
        else:
            payload = encode(fields)
            if self._retained.get(topic) == payload:
                return
            self._retained[topic] = payload
        if self._is_up() and not self._connecting:
            self._link().publish(topic, payload, qos=1, retain=True)
            self.counters.retained += 1

    def clear_unknown(self, topic: str) -> None:
        """Clear a retained topic this process never set (left over from before a crash)."""
        if topic not in self._retained and self._is_up():
            self._link().publish(topic, b"", qos=1, retain=True)

    def send_once(
        self, topic: str, fields: dict[str, Any], correlation: bytes | None = None
    ) -> None:
        """Publish QoS 1, kept in memory (never on disk) until the broker acknowledged it."""
        msg = _Once(topic, encode(fields), correlation)
        self._once.append(msg)
        if self._is_up():
            self._send_once(msg)

    def send_live(self, topic: str, fields: dict[str, Any]) -> None:
        """Publish QoS 0 when connected (metrics); dropped otherwise."""
        if self._is_up():
            self._link().publish(topic, encode(fields), qos=0, retain=False)

    def kick(self) -> None:
        """New outbox rows: drain once the current transaction has committed."""
        if not self._drain_scheduled:
            self._drain_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_drain)

    def drain(self) -> None:
        """Hand pending outbox rows to the connection, in order, up to the window."""
        if not self._is_up():
            return
        room = self.window - len(self._in_flight)
        if room <= 0:
            return
        link = self._link()
        for row in self.outbox.pending(after_seq=self._handed_up_to, limit=room):
            historical = self._live_after is None or row.seq <= self._live_after
            mid = link.publish(row.topic, row.message(historical), qos=1)
            if mid is None:
                return  # the connection just went; the row stays pending
            self._in_flight[mid] = row.seq
            self._handed_up_to = row.seq
            if historical:
                self.counters.historical += 1
            else:
                self.counters.live += 1

    async def stop(self, reason: str) -> None:
        """Publish ``offline`` with reason and disconnect cleanly (no will)."""
        if self.link is None:
            return
        final = (self.topics.status, encode(self._status_fields("offline", reason, self.session)))
        await self.link.stop(final if self.session else None)

    # ----- internals -------------------------------------------------------------------

    def _scheduled_drain(self) -> None:
        self._drain_scheduled = False
        self.drain()

    def _send_once(self, msg: _Once) -> None:
        mid = self._link().publish(msg.topic, msg.payload, qos=1, correlation=msg.correlation)
        if mid is not None:
            msg.mid = mid
            self._once_mids[mid] = msg
            self.counters.once += 1

    def _status_fields(self, state: str, reason: str | None, session: int) -> dict[str, Any]:
        return {
            "state": state,
            "session": max(1, session),
            "utc": rfc3339(self.utc()),
            "reason": reason,
        }

    def _is_up(self) -> bool:
        return self.link is not None and self.link.connected and self.session > 0

    def _link(self) -> Link:
        assert self.link is not None
        return self.link
