"""Exception root of the county link; every error carries the offending value."""

from __future__ import annotations


class CountyError(Exception):
    """Root of every error raised by ``county``."""

    def __init__(self, message: str, value: object = None) -> None:
        super().__init__(message)
        self.value = value


class LinkSetupError(CountyError):
    """The link cannot be set up: a password or certificate file is missing, unreadable
    or too open. Names the file; never shows a secret."""


class OutboxError(CountyError):
    """The outbox was used wrongly (e.g. a write outside a transaction)."""
