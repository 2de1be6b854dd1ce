"""Topic names under ``amtomat/v1/<kiosk_id>/`` (docs/mqtt/README.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

ROOT: Final = "amtomat/v1"
_ESCAPES: Final = str.maketrans({"%": "%25", "/": "%2F", "+": "%2B", "#": "%23", "\0": "%00"})


def level(text: str) -> str:
    """An id (compartment, alarm, subject) as one topic level: ``%``, ``/``, ``+``, ``#``
    and NUL are percent-encoded (``wall-a/3`` becomes ``wall-a%2F3``); the payload
    carries the id unchanged."""
    return text.translate(_ESCAPES)


SCHEMA_VERSION: Final = 1


@dataclass(frozen=True)
class Topics:
    """Every topic of one terminal."""

    kiosk_id: str

    @property
    def base(self) -> str:
        """``amtomat/v1/<kiosk_id>``."""
        return f"{ROOT}/{self.kiosk_id}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def birth(self) -> str:
        return f"{self.base}/birth"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    @property
    def metrics(self) -> str:
        return f"{self.base}/metrics"

    @property
    def entrance(self) -> str:
        return f"{self.base}/state/entrance"

    @property
    def notifier(self) -> str:
        """Locally issued pickup codes, for the county's SMS gateway only."""
        return f"{self.base}/notifier/code"

    @property
    def commands(self) -> str:
        """The subscription for every command: ``.../cmd/+``."""
        return f"{self.base}/cmd/+"

    @property
    def reply_prefix(self) -> str:
        """Response topics must start with this: ``.../reply/``."""
        return f"{self.base}/reply/"

    @property
    def rejected_replies(self) -> str:
        """Where answers go when a command has no usable response topic."""
        return f"{self.base}/reply/rejected"

    def command(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    def compartment(self, label: str) -> str:
        return f"{self.base}/state/compartment/{level(label)}"

    def door(self, name: str) -> str:
        """A compartment's door by its id, or ``entrance`` or ``service``."""
        return f"{self.base}/state/door/{level(name)}"

    def alarm(self, name: str, subject: str) -> str:
        return f"{self.base}/alarm/{level(name)}/{level(subject)}"

    def command_name(self, topic: str) -> str | None:
        """The ``<name>`` of ``.../cmd/<name>``, or None for another topic."""
        prefix = f"{self.base}/cmd/"
        if not topic.startswith(prefix):
            return None
        name = topic[len(prefix) :]
        return name if name and "/" not in name else None
