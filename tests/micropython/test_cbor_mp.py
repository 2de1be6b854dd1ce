"""protocol.cbor under MicroPython (and CPython): plain test_* functions with bare asserts."""

from protocol.cbor import MAX_DEPTH, dumps, loads, loads_prefix
from protocol.errors import CBORError

# (value, cbor2 6.2.1 encoding); single-key maps only, MicroPython dicts do not keep order.
VECTORS = [
    (0, "00"),
    (23, "17"),
    (24, "1818"),
    (256, "190100"),
    (65536, "1a00010000"),
    (2**32, "1b0000000100000000"),
    (2**64 - 1, "1bffffffffffffffff"),
    (-25, "3818"),
    (-(2**64), "3bffffffffffffffff"),
    ("", "60"),
    ("\u00fc\u20ac\U0001f600", "69c3bce282acf09f9880"),
    ("x" * 24, "7818" + "78" * 24),
    (b"\x01\x02", "420102"),
    ([1, [2, 3]], "8201820203"),
    ([0] * 24, "9818" + "00" * 24),
    ({"a": [True, False, None]}, "a1616183f5f4f6"),
    ({1: b"x"}, "a1014178"),
    (1.5, "fb3ff8000000000000"),
    (1e300, "fb7e37e43c8800759c"),
    (float("inf"), "f97c00"),
    (float("-inf"), "f9fc00"),
]

# (encoding as cbor2 writes it with canonical=True, value)
FLOATS = [
    ("f93c00", 1.0),
    ("f9c000", -2.0),
    ("f97bff", 65504.0),
    ("f90001", 5.960464477539063e-08),
    ("f903ff", 6.097555160522461e-05),
    ("fa47c35000", 100000.0),
    ("fb3ff199999999999a", 1.1),
    ("f9fc00", float("-inf")),
]

REFUSALS = [
    ("c0", "tag"),
    ("c249010000000000000000", "tag"),
    ("f7", "undefined"),
    ("e0", "simple value"),
    ("f820", "simple value"),
    ("5f4100ff", "indefinite"),
    ("7f6161ff", "indefinite"),
    ("9fff", "indefinite"),
    ("bfff", "indefinite"),
    ("ff", "break"),
    ("8200ff", "break"),
    ("1c", "additional info 28"),
    ("5e", "additional info 30"),
    ("fd", "additional info 29"),
    ("", "truncated input"),
    ("19ff", "truncated head"),
    ("43aabb", "truncated byte string at offset 0"),
    ("820045616263", "truncated byte string at offset 2"),
    ("6261", "truncated text string"),
    ("83", "truncated array"),
    ("a2010203", "truncated map"),
    ("fa0000", "truncated float"),
    ("0000", "1 trailing bytes after item at offset 1"),
    ("61ff", "invalid UTF-8"),
    ("62c080", "invalid UTF-8"),  # overlong, MicroPython's str() accepts it
    ("63eda080", "invalid UTF-8"),  # surrogate
    ("64f4908080", "invalid UTF-8"),  # above U+10FFFF
    ("62e282", "invalid UTF-8"),
    ("a1f501", "map key"),
    ("a1f93c0001", "map key"),
    ("a18001", "map key"),
    ("a201010102", "duplicate map key at offset 3"),
    ("a20100180100", "duplicate map key"),
    ("5b8000000000000000", "truncated byte string"),
    ("7bffffffffffffffff", "truncated text string"),
    ("9b8000000000000000", "truncated array"),
    ("bb8000000000000000", "truncated map"),
]


def _refused(data: object, fragment: str) -> None:
    """Assert loads(data) raises a CBORError (a ValueError) whose message holds ``fragment``."""
    try:
        loads(data)  # type: ignore[arg-type]
    except CBORError as err:
        assert isinstance(err, ValueError)
        assert fragment in str(err), str(err)
        return
    raise AssertionError("accepted: " + repr(data))


def _nested(levels: int) -> object:
    """``levels`` arrays nested around 0."""
    value: object = 0
    for _ in range(levels):
        value = [value]
    return value


def _is_negative_zero(value: object) -> bool:
    return isinstance(value, float) and value == 0.0 and str(value) == "-0.0"


def test_vectors_encode() -> None:
    for value, hexed in VECTORS:
        assert dumps(value) == bytes.fromhex(hexed), hexed


def test_vectors_decode() -> None:
    for value, hexed in VECTORS:
        assert loads(bytes.fromhex(hexed)) == value, hexed


def test_special_floats() -> None:
    assert dumps(float("nan")) == b"\xf9\x7e\x00"
    assert dumps(-0.0) == bytes.fromhex("fb8000000000000000")
    nan = loads(b"\xf9\x7e\x00")
    assert isinstance(nan, float) and nan != nan
    assert _is_negative_zero(loads(bytes.fromhex("f98000")))
    assert _is_negative_zero(loads(bytes.fromhex("fb8000000000000000")))


def test_floats_decode_in_every_width() -> None:
    for hexed, value in FLOATS:
        assert loads(bytes.fromhex(hexed)) == value, hexed


def test_round_trip() -> None:
    value = {
        "id": 7,
        "neg": -70000,
        "big": 2**63 + 5,
        "bin": bytes(range(256)),
        "txt": "Fach 12 \u00f6ffnen",
        "list": [None, True, False, 0.25, [b"", ""], {}],
        "map": {1: {"x": [1, 2, 3]}, b"k": -1},
    }
    assert loads(dumps(value)) == value
    assert loads(bytearray(dumps(value))) == value
    assert loads(memoryview(dumps(value))) == value


def test_tuples_and_bytes_likes() -> None:
    assert dumps((1, "a")) == dumps([1, "a"]) == bytes.fromhex("82016161")
    assert dumps(bytearray(b"ab")) == dumps(memoryview(b"ab")) == bytes.fromhex("426162")
    assert loads(dumps((1, (2,)))) == [1, [2]]


def test_length_heads() -> None:
    for length, head in ((23, "57"), (24, "5818"), (255, "58ff"), (256, "590100")):
        encoded = dumps(b"\x07" * length)
        assert encoded[: len(head) // 2] == bytes.fromhex(head)
        assert loads(encoded) == b"\x07" * length


def test_loads_prefix() -> None:
    buf = b"\xff" + dumps([1, "a"]) + dumps(-1) + b"\xf6"
    assert loads_prefix(buf, 1) == ([1, "a"], 5)
    assert loads_prefix(buf, 5) == (-1, 6)
    assert loads_prefix(memoryview(buf), 6) == (None, 7)
    assert loads_prefix(b"\x00\x01") == (0, 1)


def test_decoding_refusals() -> None:
    for hexed, fragment in REFUSALS:
        _refused(bytes.fromhex(hexed), fragment)
        _refused(bytearray(bytes.fromhex(hexed)), fragment)


def test_non_buffer_refused() -> None:
    _refused("text", "expected bytes")
    _refused(None, "expected bytes")


def test_encoding_refusals() -> None:
    bad = [
        (2**64, "integer out of range"),
        (-(2**64) - 1, "integer out of range"),
        ({1, 2}, "type set"),
        (object(), "type object"),
        ({True: 1}, "map key"),
        ({1.5: 1}, "map key"),
        ({None: 1}, "map key"),
    ]
    for value, fragment in bad:
        try:
            dumps(value)
        except CBORError as err:
            assert isinstance(err, ValueError)
            assert fragment in str(err), str(err)
            continue
        raise AssertionError("encoded: " + repr(value))


def test_depth_limit() -> None:
    deepest = _nested(MAX_DEPTH)
    encoded = dumps(deepest)
    assert encoded == b"\x81" * MAX_DEPTH + b"\x00"
    assert loads(encoded) == deepest
    _refused(b"\x81" * (MAX_DEPTH + 1) + b"\x00", "nesting deeper than 16 at offset 16")
    _refused(b"\xa1\x00" * (MAX_DEPTH + 1) + b"\x00", "nesting deeper")
    try:
        dumps([deepest])
    except CBORError as err:
        assert "nesting deeper" in str(err)
    else:
        raise AssertionError("encoded 17 levels")
    loop: list[object] = []
    loop.append(loop)
    try:
        dumps(loop)
    except CBORError:
        pass
    else:
        raise AssertionError("encoded a self-referencing list")
