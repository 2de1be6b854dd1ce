"""HMAC, key derivation, replay window and the frame layout's checks."""

from __future__ import annotations

import binascii
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import crypto, frame
from protocol.errors import FramingError


@given(st.binary(max_size=150), st.binary(max_size=300))
def test_hmac_matches_the_standard_library(key: bytes, data: bytes) -> None:
    assert crypto.Hmac(key).digest(data) == hmac.new(key, data, hashlib.sha256).digest()


def test_hmac_rfc4231_case_2() -> None:
    mac = crypto.Hmac(b"Jefe")
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert mac.digest(b"what do ya want for nothing?").hex() == expected


def test_tag_verification_is_exact() -> None:
    mac = crypto.Hmac(b"k" * 32)
    tag = mac.tag(b"frame")
    assert len(tag) == crypto.TAG_LEN
    assert mac.verify(b"frame", tag)
    assert not mac.verify(b"frame", bytes([tag[0] ^ 1]) + tag[1:])
    assert not mac.verify(b"framf", tag)


def test_session_key_binds_both_nonces_in_order() -> None:
    key = bytes(range(32))
    a, b = b"A" * 16, b"B" * 16
    k = crypto.derive_session_key(key, a, b)
    assert k == hmac.new(key, b"amtomat session v1" + a + b, hashlib.sha256).digest()
    assert k != crypto.derive_session_key(key, b, a)


@given(st.lists(st.integers(1, 200), max_size=200))
def test_replay_window_accepts_each_counter_once_and_nothing_too_old(counters: list[int]) -> None:
    window = crypto.ReplayWindow()
    seen: set[int] = set()
    highest = 0
    for c in counters:
        expected = c not in seen and (c > highest or highest - c < crypto.REPLAY_WINDOW)
        assert window.check(c) == expected
        if expected:
            window.commit(c)
            seen.add(c)
            highest = max(highest, c)


def test_replay_window_check_alone_changes_nothing() -> None:
    window = crypto.ReplayWindow()
    assert window.check(5) and window.check(5)
    window.commit(5)
    assert not window.check(5)
    assert not window.check(0)


def test_replay_window_survives_a_huge_jump() -> None:
    window = crypto.ReplayWindow()
    window.commit(1)
    window.commit(2**31)
    assert not window.check(1)
    assert window.check(2**31 - 1)


@given(st.binary(max_size=400))
def test_crc32_matches_binascii_and_the_fallback(data: bytes) -> None:
    assert frame.crc32(data) == binascii.crc32(data)


def test_crc32_fallback_without_binascii(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bitwise path exists for boards built without binascii.crc32.
    monkeypatch.setattr(frame, "_crc32", None)
    assert frame.crc32(b"123456789") == 0xCBF43926


fields = st.tuples(
    st.sampled_from([0, frame.F_SEQ, frame.F_DIR, frame.F_SEQ | frame.F_DIR]),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 8),
    st.integers(1, 2**32 - 1),
    st.binary(min_size=1, max_size=100),
    st.booleans(),
)


@given(fields)
def test_built_frames_load_back_with_the_same_fields(f: tuple) -> None:  # type: ignore[type-arg]
    flags, addr, seq, ack, win, counter, payload, auth = f
    mac = crypto.Hmac(b"s" * 32) if auth else None
    out = bytearray(512)
    n = frame.build(out, flags, addr, seq, ack, win, counter, payload, mac)
    fr = frame.Frame()
    fr.load(memoryview(out)[:n])
    assert (fr.addr, fr.seq, fr.ack, fr.win) == (addr, seq, ack, win)
    assert bytes(fr.payload) == payload
    assert fr.sequenced == bool(flags & frame.F_SEQ)
    assert fr.from_responder == bool(flags & frame.F_DIR)
    assert fr.authenticated == auth
    if auth:
        assert mac is not None and fr.tag_ok(mac) and fr.counter == counter
    else:
        assert fr.crc_ok()


@given(fields, st.data())
def test_any_flipped_bit_fails_the_check(f: tuple, data: st.DataObject) -> None:  # type: ignore[type-arg]
    flags, addr, seq, ack, win, counter, payload, auth = f
    mac = crypto.Hmac(b"s" * 32) if auth else None
    out = bytearray(512)
    n = frame.build(out, flags, addr, seq, ack, win, counter, payload, mac)
    bit = data.draw(st.integers(0, n * 8 - 1))
    out[bit // 8] ^= 1 << (bit % 8)
    fr = frame.Frame()
    try:
        fr.load(memoryview(out)[:n])
    except FramingError:
        return  # version, reserved bit or length now wrong: refused before any check
    if fr.authenticated:
        assert not fr.tag_ok(mac or crypto.Hmac(b"s" * 32))
    else:
        assert not fr.crc_ok()


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\x10\x00\x00\x00", "shorter than 9"),
        (b"\x20\x00\x00\x00\x00\x00\x00\x00\x00", "protocol version 2"),
        (b"\x18\x00\x00\x00\x00\x00\x00\x00\x00", "reserved flag"),
        (b"\x12\x00\x00\x00\x00\x00\x00\x00\x00", "SEQ frame without payload"),
        (b"\x11\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", "too short"),
    ],
)
def test_malformed_layouts_are_refused_with_a_reason(raw: bytes, problem: str) -> None:
    with pytest.raises(FramingError, match=problem):
        frame.Frame().load(memoryview(raw))


def test_build_refuses_a_frame_over_the_limit() -> None:
    with pytest.raises(FramingError, match="exceeds the 64-byte limit"):
        frame.build(bytearray(64), frame.F_SEQ, 0, 0, 0, 4, 0, b"x" * 60, None)
