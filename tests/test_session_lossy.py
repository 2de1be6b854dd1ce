"""Over a link that drops, duplicates, corrupts, reorders, splits and delays frames, every
command takes effect exactly once and every event arrives exactly once, in order."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.loopback import Faults
from protocol.selftest import scenario


def assert_exactly_once(r: dict[str, Any], commands: int, events: int) -> None:
    assert r["completed"], f"did not finish in {r['sim_ms']} ms of simulated time"
    effects = Counter(r["effects"])
    assert len(effects) == commands
    assert all(n == 1 for n in effects.values()), f"repeated effects: {effects.most_common(3)}"
    assert set(r["replies"]) == set(effects)
    assert all(n >= 1 for n in r["replies"].values())
    assert r["events"] == list(range(1, events + 1))
    assert r["gaps"] == 0


@pytest.mark.parametrize(
    "faults",
    [
        Faults(drop=200),
        Faults(duplicate=300),
        Faults(corrupt=200),
        Faults(reorder=300),
        Faults(chop=500),
        Faults(latency_ms=20, jitter_ms=40),
    ],
    ids=["drop", "duplicate", "corrupt", "reorder", "chop", "delay"],
)
@pytest.mark.parametrize("key", [b"\x07" * 32, None], ids=["authenticated", "crc-only"])
def test_each_fault_alone(faults: Faults, key: bytes | None) -> None:
    r = scenario(11, faults, commands=25, events=25, key=key)
    assert_exactly_once(r, 25, 25)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(1, 2**31),
    drop=st.integers(0, 150),
    duplicate=st.integers(0, 150),
    corrupt=st.integers(0, 100),
    reorder=st.integers(0, 150),
    chop=st.integers(0, 300),
    latency=st.integers(1, 15),
    jitter=st.integers(0, 15),
)
def test_any_mix_of_faults(
    seed: int, drop: int, duplicate: int, corrupt: int, reorder: int, chop: int,
    latency: int, jitter: int,
) -> None:  # fmt: skip
    faults = Faults(drop, duplicate, corrupt, reorder, chop, latency, jitter)
    r = scenario(seed, faults, commands=15, events=15)
    assert_exactly_once(r, 15, 15)


def test_counters_show_what_the_link_did() -> None:
    r = scenario(3, Faults(drop=150, corrupt=100), commands=20, events=20)
    assert_exactly_once(r, 20, 20)
    host, board = r["host"], r["board"]
    assert host["retransmits"] + board["retransmits"] > 0
    assert host["tag_errors"] + board["tag_errors"] > 0  # corrupted frames, refused


def test_a_pulled_cable_reconnects_and_nothing_is_repeated_or_lost() -> None:
    from protocol import session as S
    from protocol.loopback import Loopback
    from protocol.messages import BOARD
    from protocol.selftest import IDENTITY, TEST_KEY, MiniBoard, MiniHost

    link = Loopback(5, Faults(latency_ms=2))
    host_s = S.Session(S.INITIATOR, BOARD, link.forward.write, link.random, key=TEST_KEY)
    board_s = S.Session(S.RESPONDER, BOARD, link.back.write, link.random, key=TEST_KEY,
                        identity=IDENTITY)  # fmt: skip
    link.attach(host_s, board_s)
    host, board = MiniHost(host_s, 40), MiniBoard(board_s, 40)
    host_s.on_state, board_s.on_state = host.on_state, board.on_state

    def tick(now: int) -> None:
        host.tick(now)
        board.tick(now)

    link.run(60, 2, tick)  # some traffic gets through
    link.forward.enabled = link.back.enabled = False
    link.run(3000, 2, tick)  # cable out for 3 s: both sides see the link go down
    assert board_s.state != S.ESTABLISHED and host_s.state != S.ESTABLISHED
    link.forward.enabled = link.back.enabled = True
    done = link.run(60000, 2, tick, lambda: host.done() and len(host.events) == 40)
    assert done
    assert board.session_count >= 2
    effects = Counter(board.effect_cids)
    assert len(effects) == 40 and max(effects.values()) == 1
    assert host.events == list(range(1, 41))
