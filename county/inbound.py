"""What arrives from the broker, as the county link sees it (no paho types above the
connection)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InboundMessage:
    """One received PUBLISH with the MQTT 5 properties the link uses."""

    topic: str
    payload: bytes
    retain: bool
    qos: int
    response_topic: str | None = None
    correlation: bytes | None = None


@dataclass(frozen=True)
class Reply:
    """An answer to publish: topic, JSON-ready payload, correlation data to echo."""

    topic: str
    payload: dict[str, object]
    correlation: bytes | None = None
