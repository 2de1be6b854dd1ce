"""Host throughput of the frame codec: our stack against pymavlink and a naive stack.

Measures, in one run, frames per second to encode and to decode + verify one typical
authenticated command frame (a ``pulse`` request) with

- our stack: protocol.cbor + protocol.frame (HMAC tag) + protocol.cobs, replay window;
- a full Session pair (request -> reply round trip through two Session objects);
- pymavlink: MAVLink 2 COMMAND_LONG, signed with a secret key, parsed by a second
  MAVLink instance holding the same key;
- a naive stack: cobs.cobs + cbor2 + stdlib hmac, producing the very same wire bytes.

Each figure is the median of REPS timed runs of N frames (after one warm-up run).
Run: ``.venv/bin/python bench/protocol_host.py`` (part of ``make bench``).
"""

from __future__ import annotations

import hmac as std_hmac
import importlib.metadata
import os
import platform
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cbor2  # noqa: E402
from cobs import cobs as cobs_ref  # noqa: E402
from pymavlink.dialects.v20 import common as mavlink2  # noqa: E402

from protocol import cbor, cobs, frame, session  # noqa: E402
from protocol.crypto import TAG_LEN, Hmac, ReplayWindow  # noqa: E402
from protocol.loopback import Mailbox, pump  # noqa: E402
from protocol.messages import BOARD, OK  # noqa: E402

N = 10000  # frames per timed run
REPS = 5  # timed runs per figure; the median is reported
SESSION_ROUNDS = 3000  # request -> reply rounds per timed run of the Session pair

KEY = bytes(range(32))  # a fixed, public key: benchmarks only
PULSE = 0x10
CID = 0x12345678  # a session draws 30-bit cids at random: 5 bytes of CBOR, as here
CHANNEL = 7
MS = 250
MAX_FRAME = cobs.MAX_FRAME
FLAGS = frame.F_SEQ  # from the initiator: DIR clear; AUTH is set by build() with a mac
IDENTITY = ["bench-board", "0.1.0", "bench", ["pulse"], 8, "cfg0", "power", 0, None, None]

Loop = Callable[[], int]  # one timed run; returns how many frames it handled correctly


# ----- measurement ------------------------------------------------------------------------


def median_ns(make_loop: Callable[[], Loop], expect: int, reps: int = REPS) -> int:
    """Median wall time in ns of reps runs (each on fresh state from make_loop)."""
    times: list[int] = []
    for rep in range(reps + 1):  # the first run warms up and is not counted
        loop = make_loop()
        t0 = time.perf_counter_ns()
        done = loop()
        t1 = time.perf_counter_ns()
        if done != expect:
            raise SystemExit(f"benchmark self-check failed: {done} of {expect} frames ok")
        if rep:
            times.append(t1 - t0)
    return int(statistics.median(times))


def reuse(loop: Loop) -> Callable[[], Loop]:
    """A make_loop for median_ns that hands out the same loop every run."""
    return lambda: loop


class Row:
    """One line of a result table."""

    def __init__(self, name: str, ns: int, count: int, size: int | None) -> None:
        self.name = name
        self.ns = ns
        self.count = count
        self.size = size

    @property
    def per_s(self) -> float:
        return self.count * 1e9 / self.ns

    @property
    def us(self) -> float:
        return self.ns / self.count / 1000


def print_table(title: str, rows: list[Row], unit: str = "frames/s") -> None:
    print()
    print(title)
    w = max(len(r.name) for r in rows)
    head = f"  {'':<{w}}  {unit:>11}  {'µs each':>8}  {'wire bytes':>10}"
    print(head)
    print("  " + "-" * (len(head) - 2))
    for r in rows:
        size = "" if r.size is None else str(r.size)
        print(f"  {r.name:<{w}}  {r.per_s:>11,.0f}  {r.us:>8.2f}  {size:>10}")


# ----- our stack --------------------------------------------------------------------------


def ours_encode_loop(out: list[bytes] | None = None) -> Loop:
    """CBOR encode + frame.build with the HMAC tag + COBS encode, into reused buffers."""
    mac = Hmac(KEY)
    tx = bytearray(MAX_FRAME)
    wire = bytearray(cobs.max_encoded_len(MAX_FRAME) + 1)
    dumps = cbor.dumps
    build = frame.build
    encode_into = cobs.encode_into

    def loop() -> int:
        for i in range(N):
            payload = dumps([PULSE, CID + i, CHANNEL, MS])
            k = build(tx, FLAGS, 0, i & 0xFF, 0, 4, i + 1, payload, mac)
            m = encode_into(wire, tx, k)
            if out is not None:
                out.append(bytes(wire[:m]))
        return N

    return loop


def ours_decode_loop(frames: list[bytes]) -> Loop:
    """FrameReader.feed + Frame.load + tag check + replay window + CBOR decode."""
    mac = Hmac(KEY)
    reader = cobs.FrameReader(MAX_FRAME)
    fr = frame.Frame()
    replay = ReplayWindow()
    loads = cbor.loads
    ok = 0

    def on_frame(view: memoryview) -> None:
        nonlocal ok
        fr.load(view)
        if not fr.tag_ok(mac):
            return
        counter = fr.counter
        if not replay.check(counter):
            return
        replay.commit(counter)
        msg = loads(fr.payload)
        if isinstance(msg, list) and msg[3] == MS:
            ok += 1

    def loop() -> int:
        feed = reader.feed
        for data in frames:
            feed(data, on_frame)
        return ok

    return loop


def ours_stage_loops(frames: list[bytes]) -> list[tuple[str, Loop]]:
    """Each step of our encode and decode path alone, N times, for the breakdown."""
    mac = Hmac(KEY)
    msg: list[object] = [PULSE, CID, CHANNEL, MS]
    payload = cbor.dumps(msg)
    tx = bytearray(MAX_FRAME)
    k = frame.build(tx, FLAGS, 0, 0, 0, 4, 1, payload, mac)
    wire = bytearray(cobs.max_encoded_len(MAX_FRAME) + 1)
    decoded = memoryview(bytearray(tx[:k]))
    fr = frame.Frame()
    fr.load(decoded)

    def enc_cbor() -> int:
        for _ in range(N):
            cbor.dumps(msg)
        return N

    def enc_build() -> int:
        for i in range(N):
            frame.build(tx, FLAGS, 0, 0, 0, 4, i + 1, payload, mac)
        return N

    def enc_cobs() -> int:
        for _ in range(N):
            cobs.encode_into(wire, tx, k)
        return N

    def dec_feed() -> int:
        reader = cobs.FrameReader(MAX_FRAME)
        seen = 0

        def nothing(view: memoryview) -> None:
            nonlocal seen
            seen += 1

        for data in frames:
            reader.feed(data, nothing)
        return seen

    def dec_load() -> int:
        for _ in range(N):
            fr.load(decoded)
        return N

    def dec_tag() -> int:
        ok = 0
        for _ in range(N):
            ok += fr.tag_ok(mac)
        return ok

    def dec_replay() -> int:
        replay = ReplayWindow()
        ok = 0
        for i in range(1, N + 1):
            if replay.check(i):
                replay.commit(i)
                ok += 1
        return ok

    def dec_cbor() -> int:
        p = fr.payload
        for _ in range(N):
            cbor.loads(p)
        return N

    return [
        ("encode: cbor.dumps", enc_cbor),
        ("encode: frame.build + HMAC tag", enc_build),
        ("encode: cobs.encode_into", enc_cobs),
        ("decode: FrameReader.feed (COBS)", dec_feed),
        ("decode: Frame.load", dec_load),
        ("decode: Frame.tag_ok (HMAC)", dec_tag),
        ("decode: ReplayWindow check+commit", dec_replay),
        ("decode: cbor.loads", dec_cbor),
    ]


# ----- a full Session pair ----------------------------------------------------------------


class SessionPair:
    """A host (initiator) and a board (responder) Session joined back to back."""

    NOW = 1000  # the clock stands still: no retransmit, heartbeat or link timeout fires

    def __init__(self) -> None:
        self._board_box, self._host_box = Mailbox(), Mailbox()
        self.to_board = self._board_box.frames
        self.to_host = self._host_box.frames
        self.host = session.Session(
            session.INITIATOR,
            BOARD,
            self._board_box.write,
            os.urandom,
            key=KEY,
            max_frame=MAX_FRAME,
        )
        self.board = session.Session(
            session.RESPONDER,
            BOARD,
            self._host_box.write,
            os.urandom,
            key=KEY,
            identity=IDENTITY,
            max_frame=MAX_FRAME,
        )
        self.host.connect(self.NOW)
        pump(self.host, self._host_box, self.board, self._board_box, self.NOW)
        if not (self.host.established and self.board.established and self.board.authenticated):
            raise SystemExit("benchmark self-check failed: session pair did not connect")

    def rounds(self, n: int, split: list[int]) -> int:
        """n request -> reply rounds; split accumulates ns per leg (4 legs)."""
        host = self.host
        board = self.board
        to_board = self.to_board
        to_host = self.to_host
        now = self.NOW
        clock = time.perf_counter_ns
        ok = 0
        request: list[object] = [PULSE, CHANNEL, MS]
        for _ in range(n):
            t0 = clock()
            cid = host.request(request)
            host.poll(now)  # the request frame (it also acknowledges the last reply)
            t1 = clock()
            board.feed(to_board.pop(), now)
            msg = board.receive()
            t2 = clock()
            if msg is None or msg[1] != cid:
                break
            board.reply(cid, OK)
            board.poll(now)  # the reply frame (it also acknowledges the request)
            t3 = clock()
            host.feed(to_host.pop(), now)
            answer = host.receive()
            t4 = clock()
            if answer is None or answer[1] != cid or to_board or to_host:
                break
            split[0] += t1 - t0
            split[1] += t2 - t1
            split[2] += t3 - t2
            split[3] += t4 - t3
            ok += 1
        return ok


def session_figures() -> tuple[list[Row], int, int]:
    """Median per-leg times of the Session pair; also the two frames' wire lengths."""
    per_leg: list[list[int]] = [[], [], [], []]
    totals: list[int] = []
    for rep in range(REPS + 1):
        pair = SessionPair()
        split = [0, 0, 0, 0]
        t0 = time.perf_counter_ns()
        done = pair.rounds(SESSION_ROUNDS, split)
        t1 = time.perf_counter_ns()
        if done != SESSION_ROUNDS:
            raise SystemExit(f"benchmark self-check failed: {done} of {SESSION_ROUNDS} rounds")
        if rep:
            totals.append(t1 - t0)
            for leg in range(4):
                per_leg[leg].append(split[leg])
    # sizes: one more round with the frames captured
    pair = SessionPair()
    pair.host.request([PULSE, CHANNEL, MS])
    pair.host.poll(pair.NOW)
    req_len = len(pair.to_board[-1])
    pair.board.feed(pair.to_board.pop(), pair.NOW)
    msg = pair.board.receive()
    assert msg is not None
    pair.board.reply(msg[1], OK)
    pair.board.poll(pair.NOW)
    rep_len = len(pair.to_host[-1])
    med = [int(statistics.median(x)) for x in per_leg]
    rows = [
        Row("host: request() + poll() -> request frame", med[0], SESSION_ROUNDS, req_len),
        Row("board: feed() + receive() <- request frame", med[1], SESSION_ROUNDS, req_len),
        Row("board: reply() + poll() -> reply frame", med[2], SESSION_ROUNDS, rep_len),
        Row("host: feed() + receive() <- reply frame", med[3], SESSION_ROUNDS, rep_len),
        Row(
            "whole round (all four legs + harness)",
            int(statistics.median(totals)),
            SESSION_ROUNDS,
            None,
        ),
    ]
    return rows, req_len, rep_len


# ----- pymavlink --------------------------------------------------------------------------


class Sink:
    """A file for pymavlink's MAVLink.send: keeps what was written."""

    def __init__(self, out: list[bytes] | None) -> None:
        self.out = out
        self.last = b""

    def write(self, data: bytes) -> None:
        self.last = data
        if self.out is not None:
            self.out.append(data)


def mavlink_sender(out: list[bytes] | None) -> tuple[mavlink2.MAVLink, Sink]:
    sink = Sink(out)
    mav = mavlink2.MAVLink(sink, srcSystem=255, srcComponent=190)
    mav.signing.secret_key = KEY
    mav.signing.link_id = 1
    mav.signing.timestamp = 1
    mav.signing.sign_outgoing = True
    return mav, sink


def mavlink_encode_loop(out: list[bytes] | None = None) -> Loop:
    """COMMAND_LONG (MAV_CMD_DO_REPEAT_RELAY: channel, 1 cycle, time), signed."""
    mav, _sink = mavlink_sender(out)
    cmd = mavlink2.MAV_CMD_DO_REPEAT_RELAY

    def loop() -> int:
        send = mav.command_long_send
        for _ in range(N):
            send(1, 1, cmd, 0, float(CHANNEL), 1.0, MS / 1000.0, 0.0, 0.0, 0.0, 0.0)
        return N

    return loop


def mavlink_decode_loop(frames: list[bytes]) -> Loop:
    """A second MAVLink instance with the same key parses and verifies each frame."""
    rx = mavlink2.MAVLink(None, srcSystem=1, srcComponent=1)
    rx.signing.secret_key = KEY  # no allow_unsigned_callback: a bad signature raises

    def loop() -> int:
        parse = rx.parse_char
        ok = 0
        for data in frames:
            m = parse(data)
            if m is not None and m.get_msgId() == mavlink2.MAVLINK_MSG_ID_COMMAND_LONG:
                ok += 1
        return ok if rx.signing.goodsig_count == len(frames) else -1

    return loop


# ----- the naive stack --------------------------------------------------------------------

_HEADER = struct.Struct("<BBBBBI")  # flags addr seq ack win counter


def naive_encode_loop(out: list[bytes] | None = None) -> Loop:
    """cbor2.dumps + bytes concatenation + hmac.new(...).digest()[:8] + cobs.cobs.encode."""
    flags = (frame.VERSION << 4) | FLAGS | frame.F_AUTH

    def loop() -> int:
        for i in range(N):
            body = _HEADER.pack(flags, 0, i & 0xFF, 0, 4, i + 1) + cbor2.dumps(
                [PULSE, CID + i, CHANNEL, MS]
            )
            tag = std_hmac.new(KEY, body, "sha256").digest()[:TAG_LEN]
            wire = cobs_ref.encode(body + tag) + b"\x00"
            if out is not None:
                out.append(wire)
        return N

    return loop


def naive_decode_loop(frames: list[bytes]) -> Loop:
    """Split at 0x00 + cobs.cobs.decode + hmac.compare_digest + counter check + cbor2."""

    def loop() -> int:
        buf = b""
        last = 0
        ok = 0
        for data in frames:
            buf += data
            while True:
                enc, sep, rest = buf.partition(b"\x00")
                if not sep:
                    break
                buf = rest
                try:
                    body = cobs_ref.decode(enc)
                except cobs_ref.DecodeError:
                    continue
                if body[0] >> 4 != frame.VERSION or not body[0] & frame.F_AUTH:
                    continue
                end = len(body) - TAG_LEN
                want = std_hmac.new(KEY, body[:end], "sha256").digest()[:TAG_LEN]
                if not std_hmac.compare_digest(want, body[end:]):
                    continue
                counter = int.from_bytes(body[5:9], "little")
                if counter <= last:
                    continue
                last = counter
                msg = cbor2.loads(body[9:end])
                if msg[3] == MS:
                    ok += 1
        return ok

    return loop


def tampered(wire: bytes) -> bytes:
    """The frame with one bit flipped in the middle (COBS stays valid)."""
    b = bytearray(wire)
    i = len(b) // 2
    b[i] ^= 0x01 if b[i] not in (0x00, 0x01) else 0x02
    return bytes(b)


def check_rejections(ours: bytes, mav: bytes) -> None:
    """Every decoder must refuse a frame with a flipped bit: verification is real."""
    if ours_decode_loop([tampered(ours)])() != 0:
        raise SystemExit("benchmark self-check failed: our decoder accepted a tampered frame")
    if naive_decode_loop([tampered(ours)])() != 0:
        raise SystemExit("benchmark self-check failed: naive decoder accepted a tampered frame")
    rx = mavlink2.MAVLink(None, srcSystem=1, srcComponent=1)
    rx.signing.secret_key = KEY
    bad = bytearray(mav)
    bad[-3] ^= 0x01  # a signature byte: the CRC still matches, the signature does not
    try:
        accepted = rx.parse_char(bytes(bad)) is not None
    except mavlink2.MAVError:
        accepted = False
    if accepted:
        raise SystemExit("benchmark self-check failed: pymavlink accepted a bad signature")


# ----- report -----------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            if line.split(":")[0].strip() == key:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def lib(name: str, func: object) -> str:
    """A library's version and whether the function measured is compiled or Python."""
    kind = "C extension" if type(func).__name__ == "builtin_function_or_method" else "Python"
    return f"{name} {importlib.metadata.version(name)} ({kind})"


def main() -> int:
    print("amtomat protocol, host benchmark")
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.machine()}, CPU: {cpu_model()}, {os.cpu_count()} cores"
    )
    print(
        f"libraries: {lib('pymavlink', mavlink2.MAVLink.parse_char)}, "
        f"{lib('cbor2', cbor2.dumps)}, {lib('cobs', cobs_ref.encode)}; ours is pure Python"
    )
    print(f"{N} frames per run, median of {REPS} runs after one warm-up run")
    started = time.perf_counter()

    ours_frames: list[bytes] = []
    ours_encode_loop(ours_frames)()
    naive_frames: list[bytes] = []
    naive_encode_loop(naive_frames)()
    if ours_frames != naive_frames:
        raise SystemExit("benchmark self-check failed: naive and our wire bytes differ")
    mav_frames: list[bytes] = []
    mavlink_encode_loop(mav_frames)()
    check_rejections(ours_frames[0], mav_frames[0])
    our_len = len(ours_frames[0])
    mav_len = len(mav_frames[0])
    decoded_len = len(cobs.decode(ours_frames[0]))
    payload_len = len(cbor.dumps([PULSE, CID, CHANNEL, MS]))
    print(
        f"frame: pulse [0x10, cid, channel, ms] = {payload_len} B CBOR; decoded frame "
        f"{decoded_len} B (5 header + 4 counter + {payload_len} payload + {TAG_LEN} tag); "
        f"on the wire {our_len} B with COBS and delimiter"
    )
    print(
        f"pymavlink {getattr(mavlink2, 'WIRE_PROTOCOL_VERSION', '2.0')}: signed COMMAND_LONG, "
        f"{mav_len} B on the wire (10 header + payload + 2 CRC + 13 signature); "
        f"CRC by {'fastcrc' if mavlink2.mcrf4xx is not None else 'pure Python'}"
    )

    enc = [
        Row("ours (cbor + frame.build + HMAC + COBS)", median_ns(ours_encode_loop, N), N, our_len),
        Row(
            "pymavlink (MAVLink 2 COMMAND_LONG, signed)",
            median_ns(mavlink_encode_loop, N),
            N,
            mav_len,
        ),
        Row("naive (cbor2 + hmac + cobs.cobs)", median_ns(naive_encode_loop, N), N, our_len),
    ]
    dec = [
        Row(
            "ours (FrameReader + load + tag + replay + cbor)",
            median_ns(lambda: ours_decode_loop(ours_frames), N),
            N,
            our_len,
        ),
        Row(
            "pymavlink (parse_char + CRC + signature)",
            median_ns(lambda: mavlink_decode_loop(mav_frames), N),
            N,
            mav_len,
        ),
        Row(
            "naive (cobs.cobs + hmac + cbor2)",
            median_ns(lambda: naive_decode_loop(naive_frames), N),
            N,
            our_len,
        ),
    ]
    print_table("Encode: message fields -> wire bytes", enc)
    print_table("Decode + verify: wire bytes -> verified message", dec)
    print()
    print("Ratios (frames/s of ours divided by theirs; > 1 means ours is faster)")
    print(
        f"  encode         ours/pymavlink {enc[0].per_s / enc[1].per_s:5.2f}   "
        f"ours/naive {enc[0].per_s / enc[2].per_s:5.2f}"
    )
    print(
        f"  decode+verify  ours/pymavlink {dec[0].per_s / dec[1].per_s:5.2f}   "
        f"ours/naive {dec[0].per_s / dec[2].per_s:5.2f}"
    )

    stages = [
        Row(name, median_ns(reuse(loop), N), N, None)
        for name, loop in ours_stage_loops(ours_frames)
    ]
    print_table("Our stack step by step (each step alone, same frame)", stages)

    rows, _req, _rep = session_figures()
    print_table(
        f"Optional: full Session pair, authenticated, {SESSION_ROUNDS} request -> reply "
        "rounds per run (2 frames a round; includes catalog checks, reliability, a bytes "
        "copy in the write callback)",
        rows,
        unit="per second",
    )
    print()
    print(f"total benchmark time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
