"""protocol.cbor: byte compatibility with cbor2 6.2.1 both ways, strict refusals, fuzzing."""

import array
import math
import struct
import time
import tracemalloc
from collections.abc import Callable

import cbor2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from protocol import cbor
from protocol.cbor import MAX_DEPTH, dumps, loads, loads_prefix
from protocol.errors import CBORError

U64 = 2**64 - 1
BOUNDARIES = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, U64]
BOUNDARY_INTS = sorted({v for b in BOUNDARIES for v in (b, -b, -b - 1) if v >= -(2**64)})

ints = st.one_of(st.integers(-(2**64), U64), st.sampled_from(BOUNDARY_INTS))
keys = st.one_of(ints, st.text(max_size=8), st.binary(max_size=8))
scalars = st.one_of(
    st.none(), st.booleans(), ints, st.floats(), st.binary(max_size=40), st.text(max_size=40)
)


def depth(value: object) -> int:
    """Number of containers nested at the deepest point of ``value``."""
    if isinstance(value, (list, tuple)):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=24,
).filter(lambda v: depth(v) <= MAX_DEPTH)


def same(expected: object, actual: object) -> bool:
    """Deep equality that also checks types, -0.0 vs 0.0 and NaN == NaN; tuples are lists."""
    if isinstance(expected, tuple):
        expected = list(expected)
    if type(expected) is not type(actual):
        return False
    if isinstance(expected, float) and isinstance(actual, float):
        if math.isnan(expected):
            return math.isnan(actual)
        return struct.pack(">d", expected) == struct.pack(">d", actual)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(map(same, expected, actual))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return len(expected) == len(actual) and all(
            same(ek, ak) and same(ev, av)
            for (ek, ev), (ak, av) in zip(expected.items(), actual.items(), strict=True)
        )
    return expected == actual


def nested(levels: int, wrap: Callable[[object], object]) -> object:
    """``levels`` containers made by ``wrap`` around 0."""
    value: object = 0
    for _ in range(levels):
        value = wrap(value)
    return value


def refused(data: object, pattern: str) -> CBORError:
    """Assert loads(data) raises CBORError (a ValueError) whose message matches ``pattern``."""
    with pytest.raises(CBORError, match=pattern) as info:
        loads(data)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    return info.value


# --- compatibility with cbor2 ------------------------------------------------------------


@given(values)
def test_dumps_is_byte_identical_to_cbor2(value: object) -> None:
    assert dumps(value) == cbor2.dumps(value)


@given(values)
def test_loads_reads_what_cbor2_writes(value: object) -> None:
    assert same(value, loads(cbor2.dumps(value)))


@given(values)
def test_cbor2_reads_what_dumps_writes(value: object) -> None:
    assert same(value, cbor2.loads(dumps(value)))


@pytest.mark.parametrize("value", BOUNDARY_INTS)
def test_integer_boundaries_match_cbor2(value: int) -> None:
    encoded = dumps(value)
    assert encoded == cbor2.dumps(value)
    assert loads(encoded) == value
    magnitude = value if value >= 0 else -1 - value
    head_len = next(
        n
        for limit, n in ((24, 1), (2**8, 2), (2**16, 3), (2**32, 5), (2**64, 9))
        if magnitude < limit
    )
    assert len(encoded) == head_len


@pytest.mark.parametrize("length", [0, 23, 24, 255, 256, 65535, 65536])
def test_length_heads_match_cbor2(length: int) -> None:
    text = "é" * (length // 2) + "x" * (length % 2)  # ``length`` bytes of UTF-8
    for value in (b"\x07" * length, text, [None] * length, dict.fromkeys(range(length))):
        assert dumps(value) == cbor2.dumps(value)
        assert same(value, loads(cbor2.dumps(value)))


VECTORS = [
    (0, "00"),
    (24, "1818"),
    (65536, "1a00010000"),
    (2**64 - 1, "1bffffffffffffffff"),
    (-25, "3818"),
    (-(2**64), "3bffffffffffffffff"),
    ("ü€😀", "69c3bce282acf09f9880"),
    (b"\x01\x02", "420102"),
    ([1, [2, 3]], "8201820203"),
    ({"a": [True, False, None]}, "a1616183f5f4f6"),
    ({"z": 1, "a": 2, "m": 3}, "a3617a01616102616d03"),
    (1.5, "fb3ff8000000000000"),
    (-0.0, "fb8000000000000000"),
    (float("inf"), "f97c00"),
    (float("-inf"), "f9fc00"),
    (float("nan"), "f97e00"),
]


@pytest.mark.parametrize(("value", "hexed"), VECTORS)
def test_known_vectors(value: object, hexed: str) -> None:
    assert cbor2.dumps(value).hex() == hexed  # the vector itself is cbor2's
    assert dumps(value).hex() == hexed
    assert same(value, loads(bytes.fromhex(hexed)))


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        -float("nan"),
        struct.unpack(">d", bytes.fromhex("7ff0000000000001"))[0],
        struct.unpack(">d", bytes.fromhex("fff8000000000abc"))[0],
    ],
)
def test_every_nan_encodes_like_cbor2(value: float) -> None:
    assert math.isnan(value)
    assert dumps(value) == cbor2.dumps(value) == b"\xf9\x7e\x00"


@given(st.floats())
def test_float_encoding_matches_cbor2(value: float) -> None:
    assert dumps(value) == cbor2.dumps(value)


def test_bytes_likes_encode_as_byte_strings() -> None:
    raw = bytes(range(40))
    expected = cbor2.dumps(raw)
    assert dumps(bytearray(raw)) == expected
    assert dumps(memoryview(raw)) == expected
    assert dumps(memoryview(raw)[::3]) == cbor2.dumps(raw[::3])
    typed = array.array("H", range(20))
    assert dumps(memoryview(typed)) == cbor2.dumps(typed.tobytes())
    assert dumps([memoryview(b"ab")]) == cbor2.dumps([b"ab"])


# --- floats decoded in every width ----------------------------------------------------------

FLOATS = [
    0.0,
    -0.0,
    1.0,
    -2.0,
    1.5,
    65504.0,
    2.0**-24,
    -(2.0**-24),
    2.0**-14 - 2.0**-24,
    2.0**-14,
    2.0**-149,
    2.0**-126,
    3.4028234663852886e38,
    100000.0,
    1.1,
    5e-324,
    1e300,
    float("inf"),
    float("-inf"),
    float("nan"),
]


@pytest.mark.parametrize("value", FLOATS)
def test_shortest_floats_decode(value: float) -> None:
    encoded = cbor2.dumps(value, canonical=True)
    assert same(value, loads(encoded))


def test_float_widths_are_all_exercised() -> None:
    firsts = {cbor2.dumps(v, canonical=True)[0] for v in FLOATS}
    assert firsts == {0xF9, 0xFA, 0xFB}


@given(st.one_of(st.floats(width=16), st.floats(width=32), st.floats()))
def test_canonical_floats_decode(value: float) -> None:
    assert same(value, loads(cbor2.dumps(value, canonical=True)))


def test_every_half_float_pattern() -> None:
    for h in range(0x10000):
        raw = h.to_bytes(2, "big")
        assert same(struct.unpack(">e", raw)[0], loads(b"\xf9" + raw)), raw.hex()


@given(st.binary(min_size=4, max_size=4), st.binary(min_size=8, max_size=8))
def test_single_and_double_patterns(single: bytes, double: bytes) -> None:
    assert same(struct.unpack(">f", single)[0], loads(b"\xfa" + single))
    assert same(struct.unpack(">d", double)[0], loads(b"\xfb" + double))


# --- loads_prefix -------------------------------------------------------------------------


def test_loads_prefix_walks_a_buffer() -> None:
    buf = bytearray(b"\xff\xff") + dumps([1, "a"]) + dumps({"k": b"v"}) + b"\x00"
    obj, end = loads_prefix(buf, 2)
    assert obj == [1, "a"] and end == 2 + 4
    obj, end = loads_prefix(memoryview(buf), end)
    assert obj == {"k": b"v"} and end == len(buf) - 1
    assert loads_prefix(bytes(buf), end) == (0, len(buf))
    with pytest.raises(CBORError, match="truncated input: item expected at offset 12"):
        loads_prefix(buf, len(buf))
    with pytest.raises(CBORError, match="start offset"):
        loads_prefix(buf, -1)
    with pytest.raises(CBORError, match="start offset"):
        loads_prefix(buf, "2")  # type: ignore[arg-type]


def test_loads_accepts_every_buffer_type() -> None:
    encoded = dumps({"x": [1, 2.5, b"z"]})
    for data in (encoded, bytearray(encoded), memoryview(encoded)):
        assert loads(data) == {"x": [1, 2.5, b"z"]}
    assert loads(memoryview(b"\x00" + encoded)[1:]) == {"x": [1, 2.5, b"z"]}


def test_loads_reads_typed_views_as_raw_bytes() -> None:
    encoded = dumps([1, 2, 3])
    assert len(encoded) == 4
    assert loads(memoryview(encoded).cast("H")) == [1, 2, 3]
    assert loads(memoryview(encoded).cast("B", (2, 2))) == [1, 2, 3]


def test_decoded_types() -> None:
    value = loads(bytes.fromhex("a3414101624242820102616b40"))
    assert value == {b"A": 1, "BB": [1, 2], "k": b""}
    assert isinstance(value, dict)
    assert [type(k) for k in value] == [bytes, str, str]
    assert type(value["k"]) is bytes and type(value["BB"]) is list


# --- refusals when decoding ---------------------------------------------------------------

REFUSALS = [
    ("c0", "tag"),
    ("c249010000000000000000", "tag"),
    ("d818", "tag"),
    ("f7", "undefined"),
    ("e0", "simple value"),
    ("f3", "simple value"),
    ("f820", "simple value"),
    ("5f4100ff", "indefinite"),
    ("7f6161ff", "indefinite"),
    ("9fff", "indefinite"),
    ("bfff", "indefinite"),
    ("1f", "additional info 31"),
    ("3f", "additional info 31"),
    ("ff", "break"),
    ("8200ff", "break"),
    ("1c", "additional info 28"),
    ("3d", "additional info 29"),
    ("5e", "additional info 30"),
    ("7c", "additional info 28"),
    ("9d", "additional info 29"),
    ("be", "additional info 30"),
    ("fc", "additional info 28"),
    ("fe", "additional info 30"),
    ("", "truncated input"),
    ("18", "truncated head"),
    ("1900", "truncated head"),
    ("1b00000000000000", "truncated head"),
    ("41", "truncated byte string"),
    ("5a00000002ff", "truncated byte string"),
    ("6261", "truncated text string"),
    ("82", "truncated array"),
    ("8201", "truncated array"),
    ("828100", "truncated input: item expected at offset 3"),
    ("a1", "truncated map"),
    ("a2010203", "truncated map"),
    ("a1010203", "1 trailing bytes"),
    ("f900", "truncated float"),
    ("fa000000", "truncated float"),
    ("fb00000000000000", "truncated float"),
    ("0000", "1 trailing bytes after item at offset 1"),
    ("61ff", "invalid UTF-8"),
    ("6180", "invalid UTF-8"),
    ("62c080", "invalid UTF-8"),
    ("63e08080", "invalid UTF-8"),
    ("63eda080", "invalid UTF-8"),
    ("64f4908080", "invalid UTF-8"),
    ("64f5808080", "invalid UTF-8"),
    ("62e282", "invalid UTF-8"),
    ("a1f501", "map key"),
    ("a1f601", "map key"),
    ("a1f93c0001", "map key"),
    ("a18001", "map key"),
    ("a1a001", "map key"),
    ("a1c00101", "map key"),
    ("a201010102", "duplicate map key at offset 3"),
    ("a2616b00616b01", "duplicate map key"),
    ("a2410001410002", "duplicate map key"),
    ("a20100180100", "duplicate map key"),
    ("a2201820380000", "duplicate map key"),
]


@pytest.mark.parametrize(("hexed", "pattern"), REFUSALS)
def test_refusals(hexed: str, pattern: str) -> None:
    data = bytes.fromhex(hexed)
    refused(data, pattern)
    refused(bytearray(data), pattern)
    refused(memoryview(data), pattern)


def test_refusal_names_offset_of_nested_problem() -> None:
    refused(bytes.fromhex("820045616263"), "truncated byte string at offset 2")
    refused(bytes.fromhex("83010261ff"), "invalid UTF-8 in text string at offset 3")
    refused(bytes.fromhex("8201f7"), "undefined .* at offset 2")
    err = refused(bytes.fromhex("a2616101616101"), "duplicate map key at offset 4")
    assert err.value == "a"


@pytest.mark.parametrize("data", ["text", 5, None, [0], array.array("B", [0])])
def test_loads_refuses_non_buffers(data: object) -> None:
    refused(data, "expected bytes, bytearray or memoryview")


@pytest.mark.parametrize("head", [0x5B, 0x7B, 0x9B, 0xBB])
@pytest.mark.parametrize("declared", [2**63, U64, 2**32, 1000])
def test_huge_declared_length_is_refused_without_allocating(head: int, declared: int) -> None:
    data = bytes([head]) + declared.to_bytes(8, "big") + b"\x00" * 16
    tracemalloc.start()
    began = time.perf_counter()
    try:
        refused(data, "truncated (byte string|text string|array|map) at offset 0")
        elapsed = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024
    assert elapsed < 0.5


# --- depth --------------------------------------------------------------------------------

WRAPPERS: list[tuple[Callable[[object], object], int]] = [
    (lambda v: [v], 1),
    (lambda v: {"k": v}, 1),
    (lambda v: (v, 1), 1),
    (lambda v: [{1: v}], 2),
]


@pytest.mark.parametrize(("wrap", "per_level"), WRAPPERS)
def test_depth_limit_both_ways(wrap: Callable[[object], object], per_level: int) -> None:
    deepest = nested(MAX_DEPTH // per_level, wrap)
    assert depth(deepest) == MAX_DEPTH
    assert dumps(deepest) == cbor2.dumps(deepest)
    assert same(deepest, loads(cbor2.dumps(deepest)))
    too_deep = [deepest]
    with pytest.raises(CBORError, match=f"nesting deeper than {MAX_DEPTH}"):
        dumps(too_deep)
    refused(cbor2.dumps(too_deep), f"nesting deeper than {MAX_DEPTH} at offset")


def test_depth_refused_before_reading_the_rest() -> None:
    data = b"\x81" * (MAX_DEPTH + 1) + b"\x1b"  # the truncated int is never reached
    refused(data, f"nesting deeper than {MAX_DEPTH} at offset {MAX_DEPTH}")
    refused(b"\x81" * 100_000 + b"\x00", "nesting deeper")


def test_self_referencing_list_is_refused() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(CBORError, match="nesting deeper"):
        dumps(loop)


# --- refusals when encoding ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        (2**64, "integer out of range"),
        (-(2**64) - 1, "integer out of range"),
        ([1, 2**70], "integer out of range"),
        ({1, 2}, "type set"),
        (object(), "type object"),
        (1j, "type complex"),
        ([None, frozenset()], "type frozenset"),
        ({"a": range(3)}, "type range"),
        ({True: 1}, "map key must be int, str or bytes, not bool"),
        ({None: 1}, "not NoneType"),
        ({1.5: 1}, "not float"),
        ({(1, 2): 1}, "not tuple"),
        ("\ud800", "UTF-8"),
    ],
)
def test_dumps_refusals(value: object, pattern: str) -> None:
    with pytest.raises(CBORError, match=pattern) as info:
        dumps(value)
    assert isinstance(info.value, ValueError)


def test_dumps_error_carries_the_value() -> None:
    marker = object()
    with pytest.raises(CBORError) as info:
        dumps({"a": [marker]})
    assert info.value.value is marker


# --- fuzzing ------------------------------------------------------------------------------


def check_against_cbor2(data: bytes) -> None:
    """loads only raises CBORError; whatever it accepts, cbor2 accepts with the same value."""
    try:
        ours = loads(data)
    except CBORError:
        return
    theirs = cbor2.loads(data)
    assert same(theirs, ours)
    assert same(ours, loads(dumps(ours)))


@settings(max_examples=2000)
@given(st.binary(max_size=48))
def test_fuzz_random_bytes(data: bytes) -> None:
    check_against_cbor2(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid encoding, truncated, bit-flipped, extended or with bytes inserted."""
    data = bytearray(cbor2.dumps(draw(values)))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["truncate", "flip", "extend", "insert", "set"]))
        where = draw(st.integers(0, len(data)))
        if how == "truncate":
            del data[where:]
        elif how == "flip" and data:
            data[where % len(data)] ^= 1 << draw(st.integers(0, 7))
        elif how == "extend":
            data += draw(st.binary(min_size=1, max_size=8))
        elif how == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=4))
        elif data:
            data[where % len(data)] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_mutated_encodings(data: bytes) -> None:
    check_against_cbor2(data)


@given(st.binary(max_size=48), st.integers(0, 60))
def test_fuzz_loads_prefix(data: bytes, start: int) -> None:
    try:
        obj, end = loads_prefix(data, start)
    except CBORError:
        return
    assert start < end <= len(data)
    assert same(obj, loads(data[start:end]))


@settings(max_examples=1000)
@given(
    st.one_of(
        st.binary(max_size=16),
        st.text(max_size=8).map(lambda s: s.encode()),
        st.tuples(st.text(min_size=1, max_size=8), st.integers(0, 63), st.integers(0, 255)).map(
            lambda t: bytes(
                b if i != t[1] % len(t[0].encode()) else t[2] for i, b in enumerate(t[0].encode())
            )
        ),
    )
)
def test_utf8_check_agrees_with_cpython(raw: bytes) -> None:
    try:
        raw.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    # the hand-written check is what MicroPython relies on, so test it on its own
    assert cbor._utf8_ok(memoryview(raw), 0, len(raw)) == valid
    head = cbor2.dumps(raw)[: -len(raw)] if raw else b"\x40"
    if valid:
        assert loads(bytes([head[0] ^ 0x20]) + head[1:] + raw) == raw.decode()
    else:
        refused(bytes([head[0] ^ 0x20]) + head[1:] + raw, "invalid UTF-8")


def utf8_cases() -> list[bytes]:
    """Every 1- and 2-byte string, and 3/4-byte strings around every boundary of each lead."""
    edges = [0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF]
    cases = [bytes([a]) for a in range(256)]
    cases += [bytes([a, b]) for a in range(256) for b in range(256)]
    cases += [bytes([a, b, c]) for a in range(0xC0, 0x100) for b in range(256) for c in edges]
    cases += [
        bytes([a, b, c, d])
        for a in range(0xE0, 0x100)
        for b in range(256)
        for c in (0x7F, 0x80, 0xBF, 0xC0)
        for d in (0x7F, 0x80, 0xBF, 0xC0)
    ]
    return cases


def test_utf8_check_exhaustively_agrees_with_cpython() -> None:
    for raw in utf8_cases():
        try:
            raw.decode("utf-8")
            valid = True
        except UnicodeDecodeError:
            valid = False
        for framed in (raw, b"a" + raw, raw + b"a"):
            assert (
                cbor._utf8_ok(memoryview(b"x" + framed + b"\x80"), 1, len(framed) + 1) == valid
            ), framed.hex()


@given(values)
def test_dumps_output_is_accepted_by_loads(value: object) -> None:
    assume(not isinstance(value, float) or not math.isnan(value))
    assert same(value, loads(dumps(value)))
