"""tools.sim.noise: the deterministic line fault injector, on simulated time."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tools.sim.noise import SETTINGS, LineNoise

chunks = st.lists(st.binary(max_size=64), max_size=12)
seeds = st.integers(min_value=0, max_value=2**32)
probabilities = st.floats(min_value=0.0, max_value=1.0)


def run(noise: LineNoise, pieces: list[bytes], step_ms: int = 1, settle_ms: int = 0) -> bytes:
    """Push one piece per tick, pulling every tick, then pull until the line is empty."""
    out = bytearray()
    now = 0
    for piece in pieces:
        noise.push(piece, now)
        out += noise.pull(now)
        now += step_ms
    now += settle_ms
    out += noise.pull(now)
    assert noise.pending == 0
    return bytes(out)


def is_subsequence(small: bytes, big: bytes) -> bool:
    it = iter(big)
    return all(any(b == c for c in it) for b in small)


@given(seeds, chunks)
def test_perfect_line_is_identity_in_the_same_tick(seed: int, pieces: list[bytes]) -> None:
    noise = LineNoise(seed)
    for now, piece in enumerate(pieces):
        noise.push(piece, now)
        assert noise.pull(now) == piece
        assert noise.pending == 0
    total = sum(map(len, pieces))
    assert noise.stats == {
        "pushed": total,
        "delivered": total,
        "dropped": 0,
        "duplicated": 0,
        "flipped": 0,
        "cut_lost": 0,
    }


@given(seeds, chunks, probabilities)
def test_drops_leave_a_subsequence(seed: int, pieces: list[bytes], drop: float) -> None:
    noise = LineNoise(seed)
    noise.drop = drop
    data = b"".join(pieces)
    out = run(noise, pieces)
    assert is_subsequence(out, data)
    assert len(out) == len(data) - noise.stats["dropped"]
    assert noise.stats["delivered"] == len(out)


@given(seeds, chunks, probabilities)
def test_duplicates_add_exactly_the_counted_bytes(
    seed: int, pieces: list[bytes], duplicate: float
) -> None:
    noise = LineNoise(seed)
    noise.duplicate = duplicate
    data = b"".join(pieces)
    out = run(noise, pieces)
    assert len(out) == len(data) + noise.stats["duplicated"]
    # Every input byte is there, in order; each value occurs at least as often as sent.
    assert is_subsequence(data, out)
    for value in set(data):
        assert data.count(value) <= out.count(value) <= 2 * data.count(value)


@given(seeds, chunks, probabilities)
def test_bit_errors_keep_length_and_flip_one_bit_per_counted_byte(
    seed: int, pieces: list[bytes], bit_error: float
) -> None:
    noise = LineNoise(seed)
    noise.bit_error = bit_error
    data = b"".join(pieces)
    out = run(noise, pieces)
    assert len(out) == len(data)
    differing = [(a, b) for a, b in zip(data, out, strict=True) if a != b]
    assert len(differing) == noise.stats["flipped"]
    assert all((a ^ b).bit_count() == 1 for a, b in differing)


@given(
    seeds,
    st.lists(st.binary(min_size=1, max_size=32), max_size=10),
    st.integers(0, 50),
    st.integers(0, 50),
    st.integers(1, 20),
)
def test_delay_and_jitter_preserve_order_and_are_never_early(
    seed: int, pieces: list[bytes], delay: int, jitter: int, step: int
) -> None:
    noise = LineNoise(seed)
    noise.configure(delay_ms=delay, jitter_ms=jitter)
    # Tag every byte with its position so order is visible even for repeated values.
    data = bytes(i % 256 for i in range(sum(map(len, pieces))))
    tagged: list[bytes] = []
    pos = 0
    for piece in pieces:
        tagged.append(data[pos : pos + len(piece)])
        pos += len(piece)
    out = bytearray()
    arrivals: list[int] = []
    for now in range(len(tagged) * step + delay + jitter + 1):
        if now % step == 0 and now // step < len(tagged):
            noise.push(tagged[now // step], now)
        got = noise.pull(now)
        out += got
        arrivals += [now] * len(got)
    assert bytes(out) == data
    assert noise.pending == 0
    # Each byte arrives no earlier than push time + delay, no later than + delay + jitter
    # (or behind the byte before it).
    pos = 0
    latest = 0
    for index in range(len(tagged)):
        pushed_at = index * step
        for _ in tagged[index]:
            assert arrivals[pos] >= pushed_at + delay
            latest = max(latest, pushed_at + delay + jitter)
            assert arrivals[pos] <= latest
            pos += 1


def test_delay_holds_bytes_until_due() -> None:
    noise = LineNoise(1)
    noise.delay_ms = 10
    noise.push(b"abc", 100)
    assert noise.pull(109) == b""
    assert noise.pending == 3
    assert noise.next_due_ms == 110
    assert noise.pull(110) == b"abc"
    assert noise.next_due_ms is None


def test_bytes_never_overtake_when_the_delay_shrinks() -> None:
    noise = LineNoise(1)
    noise.delay_ms = 100
    noise.push(b"slow", 0)
    noise.delay_ms = 0
    noise.push(b"fast", 1)
    assert noise.pull(99) == b""
    assert noise.pull(100) == b"slowfast"


@given(
    seeds,
    chunks,
    st.fixed_dictionaries(
        {
            "bit_error": probabilities,
            "drop": probabilities,
            "duplicate": probabilities,
            "delay_ms": st.integers(0, 20),
            "jitter_ms": st.integers(0, 20),
        }
    ),
)
def test_same_seed_same_everything(seed: int, pieces: list[bytes], config: dict[str, Any]) -> None:
    results = []
    for _ in range(2):
        noise = LineNoise(seed)
        noise.configure(**config)
        out = run(noise, pieces, settle_ms=41)
        results.append((out, noise.stats))
    assert results[0] == results[1]


def test_different_seeds_differ() -> None:
    outs = set()
    for seed in range(5):
        noise = LineNoise(seed)
        noise.configure(bit_error=0.5, drop=0.2, duplicate=0.2)
        noise.push(bytes(range(256)), 0)
        outs.add(noise.pull(0))
    assert len(outs) == 5


@given(seeds, st.binary(max_size=64), st.binary(max_size=64), st.binary(max_size=64))
def test_cut_loses_everything_pushed_while_cut(
    seed: int, before: bytes, during: bytes, after: bytes
) -> None:
    noise = LineNoise(seed)
    noise.delay_ms = 5
    noise.push(before, 0)
    noise.cut = True
    noise.push(during, 1)
    noise.cut = False
    noise.push(after, 2)
    # Bytes already on the line when it was cut still arrive.
    assert noise.pull(100) == before + after
    assert noise.stats["cut_lost"] == len(during)
    assert noise.stats["pushed"] == len(before) + len(during) + len(after)


def test_configure_returns_settings_and_clear_restores_a_perfect_line() -> None:
    noise = LineNoise(7)
    assert noise.perfect
    settings = noise.configure(drop=1, delay_ms=3, cut=True)
    assert settings == {
        "bit_error": 0.0,
        "drop": 1.0,
        "duplicate": 0.0,
        "delay_ms": 3,
        "jitter_ms": 0,
        "cut": True,
    }
    assert list(settings) == list(SETTINGS)
    assert not noise.perfect
    noise.push(b"x", 0)
    assert noise.stats["cut_lost"] == 1
    noise.clear()
    assert noise.perfect
    assert noise.settings == dict.fromkeys(SETTINGS, 0) | {"cut": False}
    noise.push(b"y", 1)
    assert noise.pull(1) == b"y"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("bit_error", -0.1, "bit_error must be between 0 and 1, got -0.1"),
        ("drop", 1.5, "drop must be between 0 and 1, got 1.5"),
        ("duplicate", math.nan, "duplicate must be between 0 and 1, got nan"),
        ("drop", "0.1", "drop must be a number between 0 and 1, got '0.1'"),
        ("drop", True, "drop must be a number between 0 and 1, got True"),
        ("delay_ms", -1, "delay_ms must be between 0 and 3600000 ms, got -1"),
        ("jitter_ms", 1.5, "jitter_ms must be a whole number of milliseconds, got 1.5"),
        ("delay_ms", 10**9, "delay_ms must be between 0 and 3600000 ms, got 1000000000"),
        ("cut", 1, "cut must be True or False, got 1"),
    ],
)
def test_bad_settings_name_the_setting_and_value(name: str, value: object, message: str) -> None:
    noise = LineNoise(0)
    with pytest.raises(ValueError) as info:
        setattr(noise, name, value)
    assert str(info.value) == message
    with pytest.raises(ValueError) as info:
        noise.configure(**{name: value})
    assert str(info.value) == message
    assert noise.perfect


def test_configure_is_all_or_nothing_and_names_unknown_settings() -> None:
    noise = LineNoise(0)
    with pytest.raises(ValueError, match="drop must be between 0 and 1"):
        noise.configure(delay_ms=5, drop=2)
    assert noise.delay_ms == 0
    with pytest.raises(ValueError) as info:
        noise.configure(latency=5)
    assert str(info.value) == (
        "unknown line noise setting 'latency'; valid settings: "
        "bit_error, drop, duplicate, delay_ms, jitter_ms, cut"
    )
