"""Exceptions of ``amtomat wall``: one root, one subclass per kind of failure; each says
what went wrong and what to do, carries the offending value in ``value`` and never a
secret (pairing key, password)."""

from __future__ import annotations


class WallError(Exception):
    """Root of every error raised by ``tools.wall``; ``value`` is the offending value."""

    def __init__(self, message: str, value: object = None) -> None:
        super().__init__(message)
        self.value = value


class WallSetupError(WallError):
    """The view cannot start: a config, key, password or certificate file is missing or
    unusable, or the configured bridge has no endpoint the wall can connect to."""


class WallAuthError(WallError):
    """The data source refused the wall's credentials (pairing key, broker login):
    retrying will not help."""
