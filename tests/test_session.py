"""Session behaviour: handshake, authentication, refusals and their counters, link-down,
back-pressure and exactly-once requests, between two real sessions."""

from __future__ import annotations

import pytest
from session_harness import Pair, unwrap, wrap

from protocol import cbor, session
from protocol.errors import MessageError, SessionError
from protocol.frame import F_SEQ, build
from protocol.messages import BAD_REQUEST, INTERNAL, NOT_CONFIGURED, OK, UNKNOWN_MESSAGE
from protocol.selftest import TEST_KEY

PULSE = 0x10


def established(p: Pair) -> bool:
    return p.host.state == session.ESTABLISHED and p.board.state == session.ESTABLISHED


def test_authenticated_handshake_reports_the_board_identity() -> None:
    p = Pair()
    p.connect()
    assert established(p)
    assert p.host.authenticated and p.board.authenticated
    assert p.host.peer["board_id"] == "sim-board"
    assert p.host.peer["provisioned"] is True
    assert p.host.peer["channels"] == 4
    assert p.board_states == ["connecting", "established"]


def test_unprovisioned_pair_works_without_authentication() -> None:
    p = Pair(host_key=None, board_key=None)
    p.connect()
    assert established(p) and not p.host.authenticated
    assert p.host.peer["provisioned"] is False


def request_and_answer(p: Pair, channel: int = 1) -> int:
    cid = p.host.request([PULSE, channel, 200])
    p.flush()
    msg = p.board.receive()
    assert msg is not None and msg[1] == cid
    p.board.reply(cid, OK, None, {"channel": channel})
    p.flush()
    reply = p.host.receive()
    assert reply is not None and reply[1] == cid and reply[2] == OK
    return cid


def test_request_reply_round_trip() -> None:
    p = Pair()
    p.connect()
    request_and_answer(p)
    assert p.board.counters()["tag_errors"] == 0


def test_host_without_key_refuses_a_provisioned_board() -> None:
    p = Pair(host_key=None)
    p.connect()
    p.advance(100)
    assert p.host.state == session.CONNECTING
    assert "provisioned but no key" in p.host.last_error


def test_downgrade_to_an_unauthenticated_board_is_refused_and_counted() -> None:
    # The host holds a key; whoever answers without authentication is not trusted.
    p = Pair(board_key=None)
    p.connect()
    p.advance(100)
    assert p.host.state == session.CONNECTING
    assert p.host.counters()["downgrades"] >= 1
    assert "downgrade refused" in p.host.last_error


def test_wrong_key_fails_authentication_and_is_counted() -> None:
    p = Pair(host_key=b"\x01" * 32)
    p.connect()
    p.advance(100)
    assert p.host.state == session.CONNECTING
    assert p.host.counters()["tag_errors"] >= 1
    assert "wrong key" in p.host.last_error


def test_version_mismatch_names_both_ranges() -> None:
    p = Pair()
    raw = bytearray(512)
    payload = cbor.dumps([1, 2, 3, b"n" * 16, 512, 4, "future"])
    p.board.feed(wrap(raw[: build(raw, 0, 0, 0, 0, 4, 0, payload, None)]), 0)
    refuse = unwrap(p.to_host.pop())
    msg = cbor.loads(bytes(refuse[5:-4]))
    assert isinstance(msg, list)
    assert msg[0] == 4 and "board speaks protocol 1..1, host offered 2..3" in msg[2]
    assert p.board.counters()["refused"] == 1
    p.host.connect(0)
    p.host.feed(wrap(refuse), 0)
    assert "host offered 2..3" in p.host.last_error


def test_forged_tag_is_refused_counted_and_has_no_effect() -> None:
    p = Pair()
    p.connect()
    p.host.request([PULSE, 1, 200])
    p.host.poll(p.now)
    raw = unwrap(p.to_board.pop())
    raw[-1] ^= 0x40
    p.board.feed(wrap(raw), p.now)
    assert p.board.receive() is None
    assert p.board.counters()["tag_errors"] == 1


def test_replayed_frame_is_refused_counted_and_has_no_second_effect() -> None:
    p = Pair()
    p.connect()
    p.host.request([PULSE, 1, 200])
    p.host.poll(p.now)
    captured = p.to_board[0]
    p.flush()
    assert p.board.receive() is not None
    p.board.feed(captured, p.now)
    assert p.board.receive() is None
    assert p.board.counters()["replays"] == 1


def test_frame_from_an_earlier_session_does_not_verify_in_the_next() -> None:
    p = Pair()
    p.connect()
    p.host.request([PULSE, 1, 200])
    p.host.poll(p.now)
    old = p.to_board.pop()
    p.connect()  # a new handshake: new nonces, new session key
    assert established(p)
    p.board.feed(old, p.now)
    assert p.board.receive() is None
    assert p.board.counters()["tag_errors"] == 1


def test_unauthenticated_command_to_a_provisioned_board_is_a_refused_downgrade() -> None:
    p = Pair()
    p.connect()
    raw = bytearray(512)
    n = build(raw, F_SEQ, 0, 0, 0, 4, 0, cbor.dumps([PULSE, 77, 1, 200]), None)
    p.board.feed(wrap(raw[:n]), p.now)
    assert p.board.receive() is None
    assert p.board.counters()["downgrades"] == 1


def forged_hello(ack: int) -> bytes:
    """A hello anyone on the wire could send, carrying an ack of its choosing."""
    raw = bytearray(512)
    payload = cbor.dumps([1, 1, 1, b"x" * 16, 512, 4, "intruder"])
    return wrap(raw[: build(raw, 0, 0, 0, ack, 4, 0, payload, None)])


def test_unauthenticated_hello_cannot_acknowledge_the_boards_frames() -> None:
    p = Pair()
    p.connect()
    p.board.send([0x60, 1, "door_open", "channel", 1, None, 5])
    p.board.poll(p.now)
    p.to_host.clear()  # the event is lost on the way
    p.board.feed(forged_hello(ack=1), p.now)
    p.to_host.clear()  # the welcome goes to nobody who can use it
    assert p.board.state == session.ESTABLISHED
    p.advance(500)  # retransmission must still happen
    msg = p.host.receive()
    assert msg is not None and msg[2] == "door_open"


def test_unauthenticated_hellos_cannot_keep_a_dead_link_alive() -> None:
    p = Pair()
    p.connect()
    for _ in range(40):
        p.now += 100
        p.board.feed(forged_hello(ack=0), p.now)
        p.to_host.clear()
        p.to_board.clear()
        p.board.poll(p.now)
    assert p.board.state != session.ESTABLISHED  # a forged hello may only start a handshake
    assert "down" in p.board_states and p.board.counters()["link_downs"] == 1


def test_own_frames_echoed_back_on_a_bus_are_ignored() -> None:
    p = Pair()
    p.connect()
    p.board.send([0x60, 1, "door_open", "channel", 1, None, 5])
    p.board.poll(p.now)
    p.board.feed(p.to_host[0], p.now)
    assert p.board.counters()["echoes"] == 1


def test_frames_for_another_bus_address_are_ignored() -> None:
    p = Pair(addr=3)
    p.host.addr = 3
    p.connect()
    assert established(p)
    other = Pair(addr=4)
    other.host.addr = 4
    other.host.connect(0)
    p.board.feed(other.to_board.pop(), p.now)
    assert p.board.counters()["other_addr"] == 1


def test_board_declares_link_down_within_the_bound_after_silence() -> None:
    p = Pair()
    p.connect()
    p.advance(session.LINK_TIMEOUT_MS - 10, deliver=False)
    assert p.board.state == session.ESTABLISHED
    p.advance(20, deliver=False)  # the bound: link timeout plus one poll step
    assert p.board.state == session.DOWN
    assert "no valid frame" in p.board.reason


def test_heartbeats_keep_an_idle_link_up() -> None:
    p = Pair()
    p.connect()
    p.advance(10 * session.LINK_TIMEOUT_MS)
    assert established(p)
    assert p.host.counters()["link_downs"] == 0


def test_unacknowledged_frame_brings_the_link_down_after_max_tries() -> None:
    p = Pair(link_timeout_ms=10**6)
    p.host.link_timeout_ms = 10**6
    p.connect()
    p.board.send([0x60, 1, "door_open", "channel", 1, None, 5])
    # the host hears the board but everything it sends is lost
    for _ in range(3000):
        p.now += 10
        p.to_board.clear()
        while p.to_host:
            p.host.feed(p.to_host.pop(0), p.now)
        p.board.poll(p.now)
        p.host.poll(p.now)
        if p.board.state == session.DOWN:
            break
    assert p.board.state == session.DOWN
    assert "no acknowledgement after 8 sends" in p.board.reason


def test_window_applies_back_pressure_until_the_board_drains() -> None:
    p = Pair()
    p.connect()
    cids = []
    for ch in range(1, 13):
        cids.append(p.host.request([PULSE, ch, 100]))
    with pytest.raises(SessionError, match="send queue full"):
        for _ in range(20):
            p.host.request([PULSE, 1, 100])
    p.advance(200)
    assert len(p.board._inbox) == p.board.inbox_cap  # the board took only its window
    assert p.host.sender.in_flight + p.host.sender.queued > 0
    got = []
    for _ in range(200):
        msg = p.board.receive()
        if msg is not None:
            got.append(msg[1])
        p.advance(10)
    assert got[:12] == cids


def test_rtt_is_measured_and_the_timeout_follows_it() -> None:
    p = Pair()
    p.connect()
    for _ in range(10):
        cid = p.host.request([PULSE, 1, 100])
        p.host.poll(p.now)
        p.now += 30  # 30 ms on the wire each way
        p.flush()
        p.board.receive()
        p.board.reply(cid, OK)
        p.board.poll(p.now)
        p.now += 30
        p.flush()
        p.host.receive()
    c = p.host.counters()
    assert 20 <= c["srtt_ms"] <= 70
    assert c["rto_ms"] >= c["srtt_ms"]


def test_duplicate_request_after_reconnect_gets_the_cached_reply_without_effect() -> None:
    p = Pair()
    p.connect()
    cid = request_and_answer(p)
    p.connect()  # new session, same board object
    p.host.resend_request([PULSE, 1, 200], cid)
    p.flush()
    assert p.board.receive() is None  # the board application never sees it again
    reply = p.host.receive()
    assert reply is not None and reply[1] == cid and reply[4] == {"channel": 1}
    assert p.board.counters()["duplicate_requests"] == 1


def test_unknown_request_id_is_answered_unknown_message() -> None:
    p = Pair()
    p.connect()
    raw_send = p.host._enqueue  # a newer host's request the board does not know
    raw_send(cbor.dumps([0x3E, 55, "future"]))
    p.flush()
    assert p.board.receive() is None
    reply = p.host.receive()
    assert reply is not None and reply[1] == 55 and reply[2] == UNKNOWN_MESSAGE


def test_malformed_request_is_answered_bad_request_naming_the_field() -> None:
    p = Pair()
    p.connect()
    p.host._enqueue(cbor.dumps([PULSE, 56, "three", 100]))
    p.flush()
    assert p.board.receive() is None
    reply = p.host.receive()
    assert reply is not None and reply[2] == BAD_REQUEST and "channel" in reply[3]


def test_reply_to_an_unknown_cid_is_an_error() -> None:
    p = Pair()
    p.connect()
    with pytest.raises(SessionError, match="no request with cid 12345"):
        p.board.reply(12345, OK)


def test_reply_held_while_the_link_is_down_is_delivered_on_retry() -> None:
    p = Pair()
    p.connect()
    cid = p.host.request([PULSE, 2, 200])
    p.flush()
    assert p.board.receive() is not None
    p.advance(3000, deliver=False)  # link lost before the board answers
    p.board.reply(cid, NOT_CONFIGURED, "channel 2 is not wired")
    assert p.board.counters()["replies_held"] == 1
    p.connect()
    p.host.resend_request([PULSE, 2, 200], cid)
    p.flush()
    reply = p.host.receive()
    assert reply is not None and reply[2] == NOT_CONFIGURED


def test_send_validates_against_the_catalog() -> None:
    p = Pair()
    p.connect()
    with pytest.raises(MessageError, match="field kind must be text"):
        p.board.send([0x60, 1, 5, "channel", 1, None, 5])
    with pytest.raises(MessageError, match="unknown message id 0x7e"):
        p.board.send([0x7E])


def test_sending_without_a_session_names_the_state() -> None:
    p = Pair()
    with pytest.raises(SessionError, match="session is idle"):
        p.board.send([0x60, 1, "door_open", "channel", 1, None, 5])


def test_only_the_initiator_connects() -> None:
    with pytest.raises(SessionError):
        Pair().board.connect(0)


def test_lost_welcome_is_answered_again_for_the_same_hello() -> None:
    p = Pair()
    p.host.connect(0)
    p.board.feed(p.to_board.pop(), 0)
    first_welcome = p.to_host.pop()  # lost
    p.now = 1000
    p.host.poll(p.now)  # hello retry, same nonce
    p.flush()
    assert established(p)
    assert p.to_host == [] and first_welcome


def test_keys_never_appear_in_state_reasons_or_counters() -> None:
    p = Pair()
    p.connect()
    text = repr(p.host.counters()) + p.host.reason + p.board.reason + repr(p.host.peer)
    assert TEST_KEY.hex() not in text and repr(TEST_KEY) not in text


def test_hello_retries_are_byte_identical_so_a_late_welcome_still_matches() -> None:
    p = Pair()
    p.host.connect(0)
    first = p.to_board.pop()
    p.host._inbox.append([0x60])  # the host's free window changes between retries
    p.now = 1000
    p.host.poll(p.now)
    retry = p.to_board.pop()
    assert retry == first
    p.host._inbox.clear()
    p.board.feed(first, p.now)
    p.flush()
    assert established(p)


def test_oversize_message_is_refused_at_send_and_the_session_keeps_working() -> None:
    p = Pair()
    p.connect()
    limit = p.board.payload_limit()
    with pytest.raises(MessageError, match=f"exceeds the {limit}-byte payload limit"):
        p.board.send([0x60, 1, "x" * 600, "channel", 1, None, 5])
    p.advance(100)
    assert established(p)
    request_and_answer(p)


def test_oversize_reply_becomes_an_internal_error_reply() -> None:
    p = Pair()
    p.connect()
    cid = p.host.request([PULSE, 1, 100])
    p.flush()
    p.board.receive()
    p.board.reply(cid, OK, None, {"blob": b"x" * 600})
    p.flush()
    reply = p.host.receive()
    assert reply is not None and reply[2] == INTERNAL and "exceeds the frame limit" in reply[3]
    assert p.board.counters()["oversize_replies"] == 1


def test_a_smaller_max_frame_offered_by_the_peer_is_respected() -> None:
    p = Pair()
    p.host.max_frame = 128
    p.connect()
    assert p.board.peer_max_frame == 128
    with pytest.raises(MessageError, match="payload limit"):
        p.board.send([0x60, 1, "x" * 120, "channel", 1, None, 5])


def test_boolean_is_not_a_message_id() -> None:
    p = Pair(host_key=None, board_key=None)
    raw = bytearray(512)
    payload = cbor.dumps([True, 1, 1, b"n" * 16, 512, 4, "x"])
    p.board.feed(wrap(raw[: build(raw, 0, 0, 0, 0, 4, 0, payload, None)]), 0)
    assert p.board.state == session.IDLE and p.to_host == []


def test_handshake_pending_when_the_old_session_times_out_still_completes() -> None:
    p = Pair()
    p.connect()
    p.host.connect(p.now)
    p.board.feed(p.to_board.pop(), p.now)  # hello: the board answers, keeps old session
    welcome = p.to_host.pop()
    p.now += session.LINK_TIMEOUT_MS + 10
    p.board.poll(p.now)
    assert p.board.state == session.DOWN  # the old session timed out meanwhile
    p.host.feed(welcome, p.now)  # now the host confirms the new key
    p.flush()
    assert established(p)
