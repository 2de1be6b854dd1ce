"""Framing, crypto, frame layout and the session on a simulated clock, runnable on
MicroPython (and CPython): plain functions with bare asserts, no pytest."""

from protocol import cbor, cobs, crypto, frame
from protocol import session as S
from protocol.errors import FramingError, ProtocolError, SessionError
from protocol.loopback import Faults
from protocol.messages import BOARD, OK
from protocol.selftest import IDENTITY, TEST_KEY, scenario


def _frames_of(stream, reader=None):
    got = []
    r = reader if reader is not None else cobs.FrameReader()
    r.feed(stream, lambda v: got.append(bytes(v)))
    return got


def test_cobs_known_encodings():
    assert cobs.encode(b"") == b"\x01\x00"
    assert cobs.encode(b"\x00") == b"\x01\x01\x00"
    assert cobs.encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33\x00"
    data = bytes(range(1, 256))
    assert cobs.decode(cobs.encode(data)) == data
    assert cobs.encode(b"\x01" * 254)[:2] == b"\xff\x01"


def test_cobs_reader_resyncs_after_garbage_and_one_byte_at_a_time():
    frames = [b"abc", b"\x00\x00", bytes(range(300 % 256))]
    stream = b"\x13\x37garbage\x00" + b"".join(cobs.encode(f) for f in frames)
    got = []
    r = cobs.FrameReader()
    for i in range(len(stream)):
        r.feed(stream[i : i + 1], lambda v: got.append(bytes(v)))
    assert got[-3:] == frames


def test_cobs_reader_drops_oversize_and_continues():
    r = cobs.FrameReader(64)
    got = _frames_of(cobs.encode(b"x" * 300) + cobs.encode(b"ok"), r)
    assert got == [b"ok"] and r.oversize == 1


def test_cobs_invalid_raises_framing_error():
    try:
        cobs.decode(b"\x05\x01\x00")
    except FramingError as exc:
        assert isinstance(exc, ValueError)
        return
    raise AssertionError("no error")


def test_hmac_rfc4231_case_2():
    mac = crypto.Hmac(b"Jefe")
    want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert mac.digest(b"what do ya want for nothing?").hex() == want


def test_hmac_long_key_is_hashed_first():
    # RFC 4231 case 6: a 131-byte key
    mac = crypto.Hmac(b"\xaa" * 131)
    got = mac.digest(b"Test Using Larger Than Block-Size Key - Hash Key First").hex()
    assert got == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"


def test_constant_time_compare_on_both_paths():
    from protocol import compat

    assert compat.equal_constant_time(b"abc", b"abc")
    assert not compat.equal_constant_time(b"abc", b"abd")
    assert not compat.equal_constant_time(b"abc", b"ab")


def test_replay_window():
    w = crypto.ReplayWindow()
    for c in (1, 3, 2, 30):
        assert w.check(c)
        w.commit(c)
    assert not w.check(3) and not w.check(30) and not w.check(1)
    assert w.check(29) and not w.check(2)  # 2 is too old below 30


def test_frame_build_load_and_checks():
    out = bytearray(128)
    mac = crypto.Hmac(b"k" * 32)
    n = frame.build(out, frame.F_SEQ, 3, 7, 9, 4, 1234567, b"\x82\x10\x01", mac)
    f = frame.Frame()
    f.load(memoryview(out)[:n])
    assert (f.addr, f.seq, f.ack, f.win, f.counter) == (3, 7, 9, 4, 1234567)
    assert f.tag_ok(mac) and f.sequenced and f.authenticated
    out[6] ^= 1
    f.load(memoryview(out)[:n])
    assert not f.tag_ok(mac)
    n = frame.build(out, 0, 0, 0, 0, 4, 0, b"\x81\x03", None)
    f.load(memoryview(out)[:n])
    assert f.crc_ok()
    assert frame.crc32(b"123456789") == 0xCBF43926


def test_frame_refuses_bad_layouts():
    for raw in (b"\x10\x00", b"\x20" + bytes(8), b"\x18" + bytes(8), b"\x12" + bytes(8)):
        try:
            frame.Frame().load(memoryview(raw))
        except FramingError:
            continue
        raise AssertionError("accepted %r" % raw)


def test_catalog_validation():
    BOARD.check([0x10, 1, 2, 3])
    for bad in ([0x10, 1, "two", 3], [0x10, 1], [0x7E], [True, 1], "x"):
        try:
            BOARD.check(bad)
        except ProtocolError:
            continue
        raise AssertionError("accepted %r" % (bad,))


def _pair(host_key=TEST_KEY, board_key=TEST_KEY):
    from protocol.loopback import Mailbox, Rng, pump

    rng = Rng(3)
    to_board, to_host = Mailbox(), Mailbox()
    h = S.Session(S.INITIATOR, BOARD, to_board.write, rng.bytes, host_key)
    b = S.Session(S.RESPONDER, BOARD, to_host.write, rng.bytes, board_key, identity=list(IDENTITY))

    def flush(now):
        pump(h, to_host, b, to_board, now)

    return h, b, [to_board.frames, to_host.frames], flush


def test_session_handshake_request_reply_on_micropython():
    h, b, _, flush = _pair()
    h.connect(0)
    flush(0)
    assert h.established and b.established and h.authenticated
    assert h.peer["board_id"] == "sim-board"
    cid = h.request([0x10, 2, 100])
    flush(5)
    msg = b.receive()
    assert msg[0] == 0x10 and msg[1] == cid and msg[2] == 2
    b.reply(cid, OK, None, {"ok": True})
    flush(10)
    rep = h.receive()
    assert rep[1] == cid and rep[2] == OK


def test_session_refuses_forged_and_replayed_frames_on_micropython():
    h, b, wires, flush = _pair()
    h.connect(0)
    flush(0)
    h.request([0x10, 1, 100])
    h.poll(1)
    good = wires[0].pop()
    raw = bytearray(cobs.decode(good))
    raw[-1] ^= 1
    b.feed(cobs.encode(raw), 1)
    assert b.receive() is None and b.counters()["tag_errors"] == 1
    b.feed(good, 2)
    assert b.receive() is not None
    b.feed(good, 3)
    assert b.receive() is None and b.counters()["replays"] == 1


def test_session_downgrade_refused_on_micropython():
    h, _, _, flush = _pair(board_key=None)
    h.connect(0)
    flush(0)
    assert not h.established and h.counters()["downgrades"] >= 1


def test_session_link_down_on_silence_on_micropython():
    h, b, wires, flush = _pair()
    h.connect(0)
    flush(0)
    t = 0
    while t < S.LINK_TIMEOUT_MS + 20:
        t += 10
        wires[0].clear()
        wires[1].clear()
        b.poll(t)
    assert b.state == S.DOWN
    try:
        b.send([0x60, 1, "door_open", "channel", 1, None, 5])
    except SessionError:
        return
    raise AssertionError("sent without a session")


def test_exactly_once_over_a_faulty_link_on_micropython():
    faults = Faults(
        drop=100, duplicate=100, corrupt=50, reorder=100, chop=100, latency_ms=3, jitter_ms=3
    )
    r = scenario(21, faults, commands=12, events=12)
    assert r["completed"]
    assert sorted(r["effects"]) == sorted(set(r["effects"])) and len(r["effects"]) == 12
    assert r["events"] == list(range(1, 13))


def test_cbor_payload_of_a_request_round_trips():
    msg = [0x10, 123456789, 7, 300]
    assert cbor.loads(cbor.dumps(msg)) == msg
