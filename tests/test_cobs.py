"""COBS framing: byte compatibility with the reference `cobs` package and framer torture."""

from __future__ import annotations

import pytest
from cobs import cobs as reference
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import cobs
from protocol.errors import FramingError, ProtocolError


class Collector:
    """on_frame callback that keeps copies of the frames it is given."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def __call__(self, view: memoryview) -> None:
        self.frames.append(bytes(view))


def feed_all(reader: cobs.FrameReader, chunks: list[bytes]) -> list[bytes]:
    got = Collector()
    for chunk in chunks:
        reader.feed(chunk, got)
    return got.frames


@given(st.binary(max_size=700))
def test_encoding_matches_the_reference_implementation(data: bytes) -> None:
    wire = cobs.encode(data)
    assert wire == reference.encode(data) + b"\x00"
    assert 0 not in wire[:-1]
    assert len(wire) <= cobs.max_encoded_len(len(data)) + 1


@given(st.binary(max_size=700))
def test_decode_inverts_encode_and_the_reference(data: bytes) -> None:
    assert cobs.decode(cobs.encode(data)) == data
    assert cobs.decode(reference.encode(data)) == data


@pytest.mark.parametrize(
    ("encoded", "problem"),
    [
        (b"\x05\x01\x02", "runs past the frame end"),
        (b"\x02\x00\x01", "zero byte inside"),
    ],
)
def test_invalid_encodings_are_refused_with_a_reason(encoded: bytes, problem: str) -> None:
    with pytest.raises(FramingError, match=problem) as info:
        cobs.decode(encoded)
    assert isinstance(info.value, ValueError)


def test_decode_into_refuses_output_overflow() -> None:
    out = bytearray(4)
    with pytest.raises(FramingError, match="longer than 4"):
        cobs.decode_into(out, reference.encode(b"\x01" * 10))


def frames_strategy() -> st.SearchStrategy[list[bytes]]:
    return st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=8)


@given(frames_strategy(), st.data())
def test_frames_survive_any_chunking(frames: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(cobs.encode(f) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert feed_all(cobs.FrameReader(), chunks) == frames


def test_frames_fed_one_byte_at_a_time() -> None:
    frames = [b"\x00", b"abc", bytes(range(256)), b"\x00\x00\x01"]
    stream = b"".join(cobs.encode(f) for f in frames)
    reader = cobs.FrameReader()
    assert feed_all(reader, [stream[i : i + 1] for i in range(len(stream))]) == frames
    assert reader.frames == 4


@given(st.binary(max_size=300), frames_strategy())
def test_garbage_before_a_delimiter_is_dropped_and_frames_after_it_recovered(
    garbage: bytes, frames: list[bytes]
) -> None:
    # Boot banners and REPL noise come before the first frame; a 0x00 resyncs.
    stream = garbage + b"\x00" + b"".join(cobs.encode(f) for f in frames)
    got = feed_all(cobs.FrameReader(), [stream])
    assert got[-len(frames) :] == frames


def test_stray_delimiters_are_padding_not_frames() -> None:
    reader = cobs.FrameReader()
    stream = b"\x00\x00" + cobs.encode(b"one") + b"\x00\x00\x00" + cobs.encode(b"two") + b"\x00"
    assert feed_all(reader, [stream]) == [b"one", b"two"]
    assert reader.invalid == 0 and reader.oversize == 0


def test_oversize_frame_is_dropped_and_the_next_frame_still_arrives() -> None:
    reader = cobs.FrameReader(max_frame=64)
    huge = cobs.encode(b"x" * 500)
    assert feed_all(reader, [huge[:100], huge[100:], cobs.encode(b"ok")]) == [b"ok"]
    assert reader.oversize == 1


def test_endless_bytes_without_delimiter_keep_the_buffer_bounded() -> None:
    reader = cobs.FrameReader(max_frame=64)
    for _ in range(1000):
        reader.feed(b"\x01" * 97, Collector())
    assert len(reader._raw) == cobs.max_encoded_len(64)
    assert feed_all(reader, [b"\x00" + cobs.encode(b"after")]) == [b"after"]
    assert reader.oversize == 1


def test_frame_that_decodes_longer_than_the_cap_is_refused() -> None:
    # 65 bytes of encoding can decode to 65 bytes: over a 64-byte cap, within the raw buffer.
    reader = cobs.FrameReader(max_frame=64)
    assert feed_all(reader, [reference.encode(b"\x00" * 65) + b"\x00"]) == []
    assert reader.invalid + reader.oversize == 1


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=120), max_size=30))
def test_no_byte_string_crashes_or_hangs_the_reader(chunks: list[bytes]) -> None:
    reader = cobs.FrameReader(max_frame=128)
    got = feed_all(reader, chunks)
    assert all(len(f) <= 128 for f in got)
    assert reader.frames == len(got)


@given(st.binary(max_size=300))
def test_decode_of_arbitrary_bytes_raises_only_framing_errors(data: bytes) -> None:
    try:
        cobs.decode(data)
    except ProtocolError as exc:
        assert isinstance(exc, FramingError)
