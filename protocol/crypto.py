"""HMAC-SHA256 on hashlib.sha256 alone, the session-key derivation and the replay window.

Runs on boards, which have hashlib.sha256 but no hmac module.
"""

import hashlib

from protocol.compat import const, equal_constant_time

KEY_LEN = const(32)  # board keys and session keys are 32 bytes
NONCE_LEN = const(16)  # each side's handshake nonce
TAG_LEN = const(8)  # truncated HMAC-SHA256 tag on every authenticated frame
REPLAY_WINDOW = const(24)  # counters this far below the highest seen are still accepted once
_WINDOW_MASK = const(0xFFFFFF)  # stays a small int on 32-bit boards
_BLOCK = const(64)
SESSION_LABEL = b"amtomat session v1"


class Hmac:
    """HMAC-SHA256 with a fixed key; the pads are computed once."""

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        padded = bytearray(_BLOCK)
        padded[: len(key)] = key
        self._ipad = bytes(b ^ 0x36 for b in padded)
        self._opad = bytes(b ^ 0x5C for b in padded)

    def digest(self, data: "bytes | bytearray | memoryview") -> bytes:
        """HMAC-SHA256(key, data), 32 bytes."""
        inner = hashlib.sha256(self._ipad)
        inner.update(data)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()

    def tag(self, data: "bytes | bytearray | memoryview") -> bytes:
        """The truncated tag carried by a frame."""
        return self.digest(data)[:TAG_LEN]

    def verify(self, data: "bytes | bytearray | memoryview", tag: "bytes | memoryview") -> bool:
        """True when tag is the tag of data; compares in constant time."""
        return equal_constant_time(self.tag(data), tag)


def derive_session_key(board_key: bytes, nonce_initiator: bytes, nonce_responder: bytes) -> bytes:
    """K_s = HMAC-SHA256(board_key, label || nonce_initiator || nonce_responder)."""
    return Hmac(board_key).digest(SESSION_LABEL + nonce_initiator + nonce_responder)


class ReplayWindow:
    """Accepts each counter value at most once; counters may arrive somewhat out of order.

    ``check`` only looks; ``commit`` records, and is called after the tag verified.
    """

    def __init__(self) -> None:
        self.highest = 0  # counters start at 1, so 0 means "none seen"
        self._seen = 0  # bit i set: counter (highest - i) was accepted

    def check(self, counter: int) -> bool:
        """True when counter is new and not too old."""
        if counter > self.highest:
            return True
        age = self.highest - counter
        if counter == 0 or age >= REPLAY_WINDOW:
            return False
        return not (self._seen >> age) & 1

    def commit(self, counter: int) -> None:
        """Record counter as used."""
        if counter > self.highest:
            shift = counter - self.highest
            # mask before shifting, so the value never leaves the small-int range on a board
            if shift < REPLAY_WINDOW:
                self._seen = ((self._seen & (_WINDOW_MASK >> shift)) << shift) | 1
            else:
                self._seen = 1
            self.highest = counter
        else:
            self._seen |= 1 << (self.highest - counter)
