"""COBS framing: frames are COBS-encoded and end with one 0x00 delimiter.

The reader never holds more than one capped frame, drops anything that does not decode,
and resynchronises at the next delimiter, whatever bytes arrive and however split.
"""

from protocol.compat import const
from protocol.errors import FramingError

MAX_FRAME = const(512)  # default cap on a decoded frame, in bytes
DELIMITER = const(0)


def max_encoded_len(n: int) -> int:
    """Longest COBS encoding of n bytes, without the delimiter."""
    return n + n // 254 + 1


def encode_into(out: bytearray, data: "bytes | bytearray | memoryview", n: int = -1) -> int:
    """COBS-encode data[:n] into out followed by the 0x00 delimiter; returns bytes written."""
    if n < 0:
        n = len(data)
    if max_encoded_len(n) + 1 > len(out):
        raise FramingError("frame of %d bytes does not fit the output buffer" % n, n)
    code_at = 0
    w = 1
    code = 1
    for i in range(n):
        b = data[i]
        if b == 0:
            out[code_at] = code
            code_at = w
            w += 1
            code = 1
        else:
            out[w] = b
            w += 1
            code += 1
            if code == 0xFF:
                out[code_at] = code
                code_at = w
                w += 1
                code = 1
    out[code_at] = code
    out[w] = DELIMITER
    return w + 1


def encode(data: "bytes | bytearray | memoryview") -> bytes:
    """The wire form of one frame: COBS(data) + b'\\x00'."""
    out = bytearray(max_encoded_len(len(data)) + 1)
    n = encode_into(out, data)
    return bytes(out[:n])


def decode_into(out: bytearray, enc: "bytes | bytearray | memoryview", n: int = -1) -> int:
    """COBS-decode enc[:n] (no delimiter) into out; returns the decoded length.

    Raises FramingError if the encoding is invalid or the result does not fit out.
    """
    if n < 0:
        n = len(enc)
    r = 0
    w = 0
    cap = len(out)
    while r < n:
        code = enc[r]
        if code == 0:
            raise FramingError("zero byte inside a COBS frame at offset %d" % r, r)
        end = r + code
        if end > n:
            raise FramingError("COBS block at offset %d runs past the frame end" % r, r)
        k = code - 1
        if w + k > cap:
            raise FramingError("decoded frame longer than %d bytes" % cap, w + k)
        out[w : w + k] = enc[r + 1 : end]
        w += k
        r = end
        if code != 0xFF and r < n:
            if w >= cap:
                raise FramingError("decoded frame longer than %d bytes" % cap, w + 1)
            out[w] = 0
            w += 1
    return w


def decode(enc: "bytes | bytearray | memoryview") -> bytes:
    """Decode one COBS frame given with or without its trailing delimiter."""
    n = len(enc)
    if n and enc[n - 1] == DELIMITER:
        n -= 1
    body = bytes(enc[:n])
    if DELIMITER in body:
        at = body.index(DELIMITER)
        raise FramingError("zero byte inside a COBS frame at offset %d" % at, at)
    out = bytearray(n)
    return bytes(out[: decode_into(out, enc, n)])


class FrameReader:
    """Turns a byte stream into decoded frames; garbage and oversize frames are dropped.

    ``feed(data, on_frame)`` calls ``on_frame(view)`` for each complete frame, where view
    is a memoryview into a reused buffer: valid only during the call.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._raw = bytearray(max_encoded_len(max_frame))
        self._raw_view = memoryview(self._raw)
        self._frame = bytearray(max_frame)
        self._frame_view = memoryview(self._frame)
        self._n = 0
        self._overflow = False
        self.frames = 0  # frames handed up
        self.oversize = 0  # frames dropped for exceeding the cap
        self.invalid = 0  # frames dropped for a bad COBS encoding
        self.bytes_in = 0

    def reset(self) -> None:
        """Forget a partial frame (e.g. after the port was reopened)."""
        self._n = 0
        self._overflow = False

    def feed(self, data: "bytes | bytearray | memoryview", on_frame: "object") -> None:
        """Consume data; on_frame(memoryview) is called for every complete valid frame."""
        total = len(data)
        self.bytes_in += total
        raw = self._raw
        cap = len(raw)
        start = 0
        while start < total:
            end = _find_zero(data, start, total)
            chunk = (end if end >= 0 else total) - start
            if not self._overflow:
                if self._n + chunk > cap:
                    self._overflow = True
                else:
                    raw[self._n : self._n + chunk] = data[start : start + chunk]
                    self._n += chunk
            if end < 0:
                return
            start = end + 1
            self._complete(on_frame)

    def _complete(self, on_frame: "object") -> None:
        n = self._n
        overflow = self._overflow
        self._n = 0
        self._overflow = False
        if overflow:
            self.oversize += 1
            return
        if n == 0:
            return  # consecutive delimiters are padding, not frames
        try:
            length = decode_into(self._frame, self._raw_view, n)
        except FramingError:
            self.invalid += 1
            return
        self.frames += 1
        on_frame(self._frame_view[:length])  # type: ignore[operator]


def _find_zero(data: "bytes | bytearray | memoryview", start: int, end: int) -> int:
    if isinstance(data, bytes):  # no bound-method lookup: it would allocate on a board
        return data.find(b"\x00", start, end)
    for i in range(start, end):
        if data[i] == 0:
            return i
    return -1
