"""Errors of the fake USB board: one root, a class per failure, each naming the bad value."""

from __future__ import annotations


class FakeBoardError(Exception):
    """Root of the fake board's errors; ``value`` is the offending value (never a secret)."""

    def __init__(self, message: str, value: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.value = value

    def __str__(self) -> str:
        return self.message


class BadOption(FakeBoardError):
    """An argument of FakeBoard (serial number, version, capacity, pattern) is unusable."""


class FlashDirError(FakeBoardError):
    """The flash folder cannot be read or written, or holds something a board cannot."""


class BoardStateError(FakeBoardError):
    """The call does not fit the board's state (started twice, used after close)."""


class VMError(FakeBoardError):
    """The MicroPython VM behind the board failed or cannot be started (node missing)."""
