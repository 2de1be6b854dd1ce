"""Exception root of the protocol package, one subclass per layer.

Every error carries the offending value in ``value`` so a log line can name it.
"""


class ProtocolError(ValueError):
    """Root of every error raised by ``protocol``; a ValueError so bad input is one family."""

    def __init__(self, message: str, value: object = None) -> None:
        super().__init__(message)
        self.value = value


class CBORError(ProtocolError):
    """A payload is not CBOR this codec accepts (type, truncation, trailing bytes, depth)."""


class FramingError(ProtocolError):
    """A frame cannot be COBS-decoded, is too long or too short."""


class IntegrityError(ProtocolError):
    """A frame's CRC or authentication tag does not verify, or its counter is replayed."""


class MessageError(ProtocolError):
    """A payload decodes but is not a message of the catalog (unknown id, bad field)."""


class SessionError(ProtocolError):
    """The session cannot do what was asked (not established, queue full, refused peer)."""
