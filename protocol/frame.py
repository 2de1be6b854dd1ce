"""Frame layout: a 5-byte header, an optional counter, a CBOR payload and a check trailer.

    0  flags   bits 7-4 protocol version, bit 2 DIR, bit 1 SEQ, bit 0 AUTH
    1  addr    board address on the bus (0 on a point-to-point link)
    2  seq     sequence number of a SEQ frame
    3  ack     next sequence number the sender expects (cumulative acknowledgement)
    4  win     frames the sender can still accept beyond ack
    5  ctr     u32 little-endian per-direction counter, only when AUTH
    .. payload CBOR array [message id, fields...], empty on an ACK-only frame
    -  check   CRC-32 (little-endian) without AUTH, else HMAC-SHA256 tag truncated to 8 bytes

The check covers every byte before it, exactly as they were on the wire.
"""

try:
    from binascii import crc32 as _crc32
except ImportError:  # pragma: no cover - boards without binascii.crc32
    _crc32 = None  # type: ignore[assignment]

from protocol.compat import const
from protocol.crypto import TAG_LEN, Hmac
from protocol.errors import FramingError

VERSION = const(1)
F_AUTH = const(0x01)
F_SEQ = const(0x02)
F_DIR = const(
    0x04
)  # set on frames sent by the responder (board or bridge), clear from the initiator
_F_RESERVED = const(0x08)
HEADER_LEN = const(5)
CTR_LEN = const(4)
CRC_LEN = const(4)
MIN_FRAME = const(9)  # header + CRC, an unauthenticated ACK-only frame


def crc32(data: "bytes | bytearray | memoryview") -> int:
    """CRC-32 (IEEE 802.3, as zlib and binascii compute it)."""
    if _crc32 is not None:
        return int(_crc32(data)) & 0xFFFFFFFF
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def trailer_len(flags: int) -> int:
    """Length of the check trailer for a frame with these flags."""
    return TAG_LEN if flags & F_AUTH else CRC_LEN


class Frame:
    """The fields of one received frame; one instance is reused for every frame."""

    def __init__(self) -> None:
        self.flags = 0
        self.addr = 0
        self.seq = 0
        self.ack = 0
        self.win = 0
        self.counter = 0
        self.body_end = 0  # offset of the trailer: the check covers view[:body_end]
        self.view = memoryview(b"")
        self.payload = memoryview(b"")

    @property
    def authenticated(self) -> bool:
        """The frame carries a counter and a tag rather than a CRC."""
        return bool(self.flags & F_AUTH)

    @property
    def sequenced(self) -> bool:
        """The frame carries a payload that takes a sequence number."""
        return bool(self.flags & F_SEQ)

    @property
    def from_responder(self) -> bool:
        """The frame was sent by the responder (board, bridge)."""
        return bool(self.flags & F_DIR)

    def load(self, view: memoryview) -> None:
        """Parse the layout of a decoded frame; the check is not verified here."""
        n = len(view)
        if n < MIN_FRAME:
            raise FramingError("frame of %d bytes is shorter than %d" % (n, MIN_FRAME), n)
        flags = view[0]
        if flags >> 4 != VERSION:
            raise FramingError(
                "frame of protocol version %d, expected %d" % (flags >> 4, VERSION), flags >> 4
            )
        if flags & _F_RESERVED:
            raise FramingError("reserved flag bit 3 is set", flags)
        start = HEADER_LEN
        end = n - trailer_len(flags)
        if flags & F_AUTH:
            start += CTR_LEN
            if end < start:
                raise FramingError("authenticated frame of %d bytes is too short" % n, n)
            self.counter = view[5] | view[6] << 8 | view[7] << 16 | view[8] << 24
        else:
            self.counter = 0
        if flags & F_SEQ and end == start:
            raise FramingError("SEQ frame without payload", flags)
        self.flags = flags
        self.addr = view[1]
        self.seq = view[2]
        self.ack = view[3]
        self.win = view[4]
        self.body_end = end
        self.view = view
        self.payload = view[start:end]

    def crc_ok(self) -> bool:
        """True when the CRC trailer of an unauthenticated frame matches."""
        v = self.view
        e = self.body_end
        got = v[e] | v[e + 1] << 8 | v[e + 2] << 16 | v[e + 3] << 24
        return got == crc32(v[:e])

    def tag_ok(self, mac: Hmac) -> bool:
        """True when the tag of an authenticated frame verifies under mac (constant time)."""
        e = self.body_end
        return mac.verify(self.view[:e], self.view[e : e + TAG_LEN])


def build(
    out: bytearray,
    flags: int,
    addr: int,
    seq: int,
    ack: int,
    win: int,
    counter: int,
    payload: "bytes | None",
    mac: "Hmac | None",
) -> int:
    """Write a decoded frame into out and return its length.

    With mac the frame is authenticated (AUTH set, counter and tag written); without, a CRC.
    """
    flags = (VERSION << 4) | (flags & (F_SEQ | F_DIR))
    if mac is not None:
        flags |= F_AUTH
    plen = len(payload) if payload else 0
    n = HEADER_LEN + (CTR_LEN if mac is not None else 0) + plen + trailer_len(flags)
    if n > len(out):
        raise FramingError("frame of %d bytes exceeds the %d-byte limit" % (n, len(out)), n)
    out[0] = flags
    out[1] = addr
    out[2] = seq & 0xFF
    out[3] = ack & 0xFF
    out[4] = win
    w = HEADER_LEN
    if mac is not None:
        out[5] = counter & 0xFF
        out[6] = (counter >> 8) & 0xFF
        out[7] = (counter >> 16) & 0xFF
        out[8] = (counter >> 24) & 0xFF
        w += CTR_LEN
    if payload:
        out[w : w + plen] = payload
        w += plen
    view = memoryview(out)
    if mac is not None:
        out[w : w + TAG_LEN] = mac.tag(view[:w])
        return w + TAG_LEN
    crc = crc32(view[:w])
    out[w] = crc & 0xFF
    out[w + 1] = (crc >> 8) & 0xFF
    out[w + 2] = (crc >> 16) & 0xFF
    out[w + 3] = (crc >> 24) & 0xFF
    return w + CRC_LEN
