"""CBOR codec for CPython and MicroPython: byte-compatible with cbor2 6.2.1, strict on input."""

# Encodes None, bool, int in [-2**64, 2**64-1], float, str, bytes-likes, list/tuple and dict
# (keys int, str or bytes) with shortest-form heads. Floats as cbor2 does by default: finite
# values always float64 (0xfb), NaN as f97e00, inf as f97c00, -inf as f9fc00. Decoding takes
# definite-length major types 0-5, false/true/null and half/single/double floats; anything else
# (tags, undefined, other simple values, indefinite lengths, truncation, trailing bytes, bad
# UTF-8, non-int/str/bytes or duplicate map keys, nesting deeper than MAX_DEPTH) is CBORError.

import struct

from protocol.compat import const
from protocol.errors import CBORError

MAX_DEPTH = const(16)  # containers nested deeper than this are refused both ways

_UINT_MAX = const(0xFFFFFFFFFFFFFFFF)
_INF = float("inf")
_NAN = float("nan")


def dumps(obj: object) -> bytes:
    """Encode ``obj`` to CBOR bytes, or raise CBORError naming what cannot be encoded."""
    out = bytearray()
    _enc(obj, out, 0)
    return bytes(out)


def _head(out: bytearray, major: int, n: int) -> None:
    """Append a head (major type already shifted) with the shortest argument encoding."""
    if n < 24:
        out.append(major | n)
        return
    if n < 0x100:
        out.append(major | 24)
        out.append(n)
        return
    if n < 0x10000:
        out.append(major | 25)
        shift = 8
    elif n < 0x100000000:
        out.append(major | 26)
        shift = 24
    else:
        out.append(major | 27)
        shift = 56
    while shift >= 0:
        out.append((n >> shift) & 0xFF)
        shift -= 8


def _enc(obj: object, out: bytearray, depth: int) -> None:
    """Append the encoding of ``obj`` at container nesting ``depth``."""
    if obj is None:
        out.append(0xF6)
    elif obj is True:
        out.append(0xF5)
    elif obj is False:
        out.append(0xF4)
    elif isinstance(obj, int):
        if 0 <= obj <= _UINT_MAX:
            _head(out, 0x00, obj)
        elif -_UINT_MAX - 1 <= obj < 0:
            _head(out, 0x20, -1 - obj)
        else:
            raise CBORError(f"integer out of range [-2**64, 2**64-1]: {obj}", obj)
    elif isinstance(obj, float):
        if obj != obj:
            out.extend(b"\xf9\x7e\x00")
        elif obj == _INF:
            out.extend(b"\xf9\x7c\x00")
        elif obj == -_INF:
            out.extend(b"\xf9\xfc\x00")
        else:
            out.append(0xFB)
            out.extend(struct.pack(">d", obj))
    elif isinstance(obj, str):
        try:
            raw = obj.encode("utf-8")
        except UnicodeError:
            raise CBORError("str is not encodable as UTF-8 (lone surrogate)", obj) from None
        _head(out, 0x60, len(raw))
        out.extend(raw)
    elif isinstance(obj, (bytes, bytearray)):
        _head(out, 0x40, len(obj))
        out.extend(obj)
    elif isinstance(obj, memoryview):
        _enc(bytes(obj), out, depth)  # raw bytes of any view (cbor2 would emit an array)
    elif isinstance(obj, (list, tuple)):
        _check_depth(depth, obj)
        _head(out, 0x80, len(obj))
        for item in obj:
            _enc(item, out, depth + 1)
    elif isinstance(obj, dict):
        _check_depth(depth, obj)
        _head(out, 0xA0, len(obj))
        for key, value in obj.items():
            if key is True or key is False or not isinstance(key, (int, str, bytes)):
                raise CBORError(f"map key must be int, str or bytes, not {_tname(key)}", key)
            _enc(key, out, depth + 1)
            _enc(value, out, depth + 1)
    else:
        raise CBORError(f"cannot encode object of type {_tname(obj)}", obj)


def _check_depth(depth: int, obj: object) -> None:
    """Refuse encoding a container at nesting ``depth`` >= MAX_DEPTH."""
    if depth >= MAX_DEPTH:
        raise CBORError(f"nesting deeper than {MAX_DEPTH} containers", _tname(obj))


def _tname(obj: object) -> str:
    """Name of ``obj``'s type for error messages."""
    return type(obj).__name__


def loads(data: "bytes | bytearray | memoryview") -> object:
    """Decode exactly one CBOR item filling all of ``data``; refuse anything else."""
    mv = _view(data)
    end = len(mv)
    obj, pos = _item(mv, 0, end, 0)
    if pos != end:
        raise CBORError(f"{end - pos} trailing bytes after item at offset {pos}", pos)
    return obj


def loads_prefix(data: "bytes | bytearray | memoryview", start: int = 0) -> "tuple[object, int]":
    """Decode one CBOR item starting at ``start``; return (item, offset just after it)."""
    mv = _view(data)
    if not isinstance(start, int) or start < 0:
        raise CBORError(f"start offset must be a non-negative int, not {start!r}", start)
    return _item(mv, start, len(mv), 0)


def _view(data: object) -> memoryview:
    """A memoryview of single bytes over ``data``, or CBORError for a non-buffer type."""
    if isinstance(data, (bytes, bytearray)):
        return memoryview(data)
    if isinstance(data, memoryview):
        if getattr(data, "format", "B") != "B" or getattr(data, "ndim", 1) != 1:
            return memoryview(bytes(data))  # CPython only: typed or multi-dim view
        return data
    raise CBORError(f"cannot decode {_tname(data)}, expected bytes, bytearray or memoryview")


def _half(h: int) -> float:
    """Value of an IEEE 754 binary16 bit pattern, computed by hand (no struct 'e')."""
    exp = (h >> 10) & 0x1F
    mant = h & 0x3FF
    if exp == 0x1F:
        val = _NAN if mant else _INF
    elif exp == 0:
        val = mant * 5.960464477539063e-08  # 2**-24, exact
    else:
        val = (mant | 0x400) * 2.0 ** (exp - 25)
    return -val if h & 0x8000 else val


def _utf8_ok(mv: memoryview, pos: int, stop: int) -> bool:
    """True when mv[pos:stop] is well-formed UTF-8 (no overlongs, surrogates, > U+10FFFF).

    MicroPython's own check lets those through, so this runs on both implementations.
    """
    while pos < stop:
        c = mv[pos]
        pos += 1
        if c < 0x80:
            continue
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= c <= 0xDF:
            n = 1
        elif 0xE0 <= c <= 0xEF:
            n = 2
            if c == 0xE0:
                lo = 0xA0
            elif c == 0xED:
                hi = 0x9F
        elif 0xF0 <= c <= 0xF4:
            n = 3
            if c == 0xF0:
                lo = 0x90
            elif c == 0xF4:
                hi = 0x8F
        else:
            return False
        if pos + n > stop or not lo <= mv[pos] <= hi:
            return False
        for i in range(pos + 1, pos + n):
            if mv[i] & 0xC0 != 0x80:
                return False
        pos += n
    return True


def _item(mv: memoryview, pos: int, end: int, depth: int) -> "tuple[object, int]":
    """Decode the item at ``pos`` (container nesting ``depth``); return (item, next offset)."""
    if pos >= end:
        raise CBORError(f"truncated input: item expected at offset {pos}", pos)
    start = pos
    ib = mv[pos]
    major = ib >> 5
    ai = ib & 0x1F
    pos += 1
    if major == 7:
        if ai == 20:
            return False, pos
        if ai == 21:
            return True, pos
        if ai == 22:
            return None, pos
        if 25 <= ai <= 27:
            n = 1 << (ai - 24)
            if pos + n > end:
                raise CBORError(f"truncated float at offset {start}", start)
            if ai == 25:
                return _half((mv[pos] << 8) | mv[pos + 1]), pos + n
            return struct.unpack_from(">f" if ai == 26 else ">d", mv, pos)[0], pos + n
        if ai == 23:
            raise CBORError(f"undefined (0xf7) is not supported, at offset {start}", ib)
        if ai == 31:
            raise CBORError(f"unexpected break byte 0xff at offset {start}", ib)
        if ai >= 28:
            raise CBORError(f"reserved or invalid additional info {ai} at offset {start}", ib)
        raise CBORError(f"simple value (0x{ib:02x}) is not supported, at offset {start}", ib)
    if major == 6:
        raise CBORError(f"tag (major type 6) is not supported, at offset {start}", ib)
    if ai < 24:
        arg = ai
    elif ai < 28:
        n = 1 << (ai - 24)
        if pos + n > end:
            raise CBORError(f"truncated head at offset {start}", start)
        arg = 0
        for i in range(pos, pos + n):
            arg = (arg << 8) | mv[i]
        pos += n
    elif ai == 31 and major >= 2:
        raise CBORError(f"indefinite length is not supported, at offset {start}", ib)
    else:
        raise CBORError(f"reserved or invalid additional info {ai} at offset {start}", ib)
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major <= 3:
        kind = "byte string" if major == 2 else "text string"
        if arg > end - pos:
            raise CBORError(f"truncated {kind} at offset {start}", arg)
        stop = pos + arg
        if major == 2:
            return bytes(mv[pos:stop]), stop
        try:
            if _utf8_ok(mv, pos, stop):
                return str(mv[pos:stop], "utf-8"), stop
        except UnicodeError:
            pass
        raise CBORError(f"invalid UTF-8 in text string at offset {start}", bytes(mv[pos:stop]))
    if depth >= MAX_DEPTH:
        raise CBORError(f"nesting deeper than {MAX_DEPTH} at offset {start}", start)
    depth += 1
    if major == 4:
        if arg > end - pos:  # every item takes at least one byte
            raise CBORError(f"truncated array at offset {start}", arg)
        items: list[object] = []
        for _ in range(arg):
            item, pos = _item(mv, pos, end, depth)
            items.append(item)
        return items, pos
    if arg > (end - pos) >> 1:  # every pair takes at least two bytes
        raise CBORError(f"truncated map at offset {start}", arg)
    result: dict[object, object] = {}
    for _ in range(arg):
        if pos < end and mv[pos] >> 5 > 3:
            raise CBORError(f"map key must be int, str or bytes, at offset {pos}", mv[pos])
        key, kpos = _item(mv, pos, end, depth)
        if key in result:
            raise CBORError(f"duplicate map key at offset {pos}", key)
        value, pos = _item(mv, kpos, end, depth)
        result[key] = value
    return result, pos
