"""Exception root of the kiosk bridge and its client library; each error carries ``value``."""

from __future__ import annotations


class KioskError(Exception):
    """Root of every error raised by ``host_bridge``; ``value`` is the offending value."""

    def __init__(self, message: str, value: object = None) -> None:
        super().__init__(message)
        self.value = value


class EndpointError(KioskError):
    """An endpoint string is malformed; the message names it and the accepted forms."""


class BridgeConfigError(KioskError):
    """The bridge's own settings (pairing key, identity) are invalid; names the setting."""


class KioskUsageError(KioskError):
    """A client call names an unknown request or argument, or a value of the wrong type."""


class KioskConnectionError(KioskError):
    """The client cannot reach the bridge, or the client is closed."""


class KioskAuthError(KioskConnectionError):
    """The handshake failed on the pairing key: wrong key, missing key, or a downgrade."""


class KioskTimeout(KioskError, TimeoutError):
    """A reply or notice did not arrive in time; ``value`` names what was awaited."""
