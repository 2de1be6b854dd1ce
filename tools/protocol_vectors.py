"""Generate docs/protocol-vectors.json from real sessions with fixed keys and nonces.

``python -m tools.protocol_vectors`` prints the vectors; ``--write`` updates the file;
``--check`` exits 1 when the file differs from what the code produces now.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from protocol import cbor, cobs, session
from protocol.crypto import derive_session_key
from protocol.frame import build
from protocol.inspect import Inspector
from protocol.loopback import Rng
from protocol.messages import BOARD, NOT_CONFIGURED, OK
from protocol.selftest import IDENTITY, TEST_KEY

VECTORS_PATH = Path(__file__).resolve().parent.parent / "docs" / "protocol-vectors.json"


class _Capture:
    """Collects the frames one session writes."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, view: memoryview) -> None:
        self.frames.append(bytes(view))

    def take(self) -> bytes:
        assert len(self.frames) == 1, f"expected one frame, got {len(self.frames)}"
        return self.frames.pop()


def _pair(
    seed: int, key: bytes | None, addr: int = 0
) -> tuple[session.Session, _Capture, session.Session, _Capture]:
    rng = Rng(seed)
    hc, bc = _Capture(), _Capture()
    host = session.Session(
        session.INITIATOR,
        BOARD,
        hc.write,
        rng.bytes,
        key=key,
        addr=addr,
        peer_name="amtomat-host 0.1.0",
    )
    board = session.Session(
        session.RESPONDER, BOARD, bc.write, rng.bytes, key=key, addr=addr, identity=IDENTITY
    )
    return host, hc, board, bc


def _frames() -> list[tuple[str, bytes, bytes | None, str]]:
    """(name, wire bytes, session key or None, note) for every vector, in session order."""
    out: list[tuple[str, bytes, bytes | None, str]] = []
    host, hc, board, bc = _pair(1, TEST_KEY)
    t = 1000
    host.connect(t)
    hello = hc.take()
    out.append(("hello", hello, None, "initiator starts a session; CRC-checked"))
    board.feed(hello, t)
    welcome = bc.take()
    board_nonce = board._nonce
    skey = derive_session_key(TEST_KEY, host._nonce, board_nonce)
    out.append(
        (
            "welcome_authenticated",
            welcome,
            skey,
            "provisioned board accepts; tagged with the derived session key",
        )
    )
    host.feed(welcome, t)
    confirm = hc.take()
    out.append(
        (
            "heartbeat_key_confirmation",
            confirm,
            skey,
            "the initiator's first authenticated frame proves it holds the key",
        )
    )
    board.feed(confirm, t)
    t += 5
    cid = host.request([0x10, 3, 250])
    host.poll(t)
    pulse = hc.take()
    out.append(("request_pulse", pulse, skey, "sequenced command: pulse channel 3 for 250 ms"))
    board.feed(pulse, t)
    board.poll(t)
    ack = bc.take()
    out.append(("ack_only", ack, skey, "acknowledges seq 0 before the reply is ready"))
    host.feed(ack, t)
    msg = board.receive()
    assert msg is not None
    board.reply(cid, OK, None, {"channel": 3, "on_ms": 250})
    t += 300
    board.poll(t)
    reply = bc.take()
    out.append(("reply_ok", reply, skey, "reply with the same cid, status ok and result data"))
    host.feed(reply, t)
    board.send([0x60, 17, "door_open", "channel", 3, None, 123456])
    board.poll(t)
    event = bc.take()
    out.append(("event_door_open", event, skey, "event, piggy-backing nothing new"))
    host.feed(event, t)
    assert host.receive() is not None and host.receive() is not None
    host.send([0x61, 17])
    host.poll(t)
    events_ack = hc.take()
    out.append(("events_ack", events_ack, skey, "host stored events up to id 17"))
    board.feed(events_ack, t)
    cid2 = host.request([0x10, 99, 250])
    host.poll(t)
    bad = hc.take()
    out.append(("request_pulse_unknown_channel", bad, skey, "pulse of a channel not configured"))
    board.feed(bad, t)
    board.receive()
    board.receive()
    board.reply(cid2, NOT_CONFIGURED, "channel 99 is not configured (board has 4)")
    board.poll(t)
    refused = bc.take()
    out.append(("reply_error", refused, skey, "status not_configured with a reason"))
    host.feed(refused, t)
    host.receive()
    host.poll(t)
    board.feed(hc.take(), t)  # the host's ack of the error reply
    t += session.HEARTBEAT_MS
    host.poll(t)
    out.append(("heartbeat", hc.take(), skey, "idle link: heartbeat carrying the current ack"))

    # An unprovisioned board on RS-485 address 3: every frame is CRC-checked.
    host, hc, board, bc = _pair(2, None, addr=3)
    host.connect(0)
    hello = hc.take()
    board.feed(hello, 0)
    out.append(
        (
            "welcome_unprovisioned",
            bc.take(),
            None,
            "board without key at bus address 3; no authentication",
        )
    )
    host.feed(out[-1][1], 0)
    board.feed(hc.take(), 0)  # its heartbeat after the welcome
    cid = host.request([0x12, 5000])
    host.poll(1)
    strike = hc.take()
    out.append(("request_strike_crc", strike, None, "entrance strike, CRC-checked, address 3"))
    board.feed(strike, 1)
    board.receive()
    board.reply(cid, OK)
    board.poll(2)
    out.append(("reply_ok_crc", bc.take(), None, "reply without data, CRC-checked"))

    # A hello offering only protocol versions 2..3: the board refuses it.
    rng = Rng(3)
    payload = cbor.dumps([1, 2, 3, rng.bytes(16), 512, 4, "future-host 9.0"])
    raw = bytearray(cobs.MAX_FRAME)
    n = build(raw, 0, 0, 0, 0, 4, 0, payload, None)
    future_hello = cobs.encode(raw[:n])
    out.append(("hello_future_versions", future_hello, None, "a host that speaks only 2..3"))
    _, _, board, bc = _pair(4, TEST_KEY)
    board.feed(future_hello, 0)
    out.append(("refuse_version", bc.take(), None, "the board names both version ranges"))
    return out


def _negative(frames: list[tuple[str, bytes, bytes | None, str]]) -> list[dict[str, Any]]:
    """Frames a receiver must refuse, with the reason decode gives."""
    by_name = {name: (wire, key) for name, wire, key, _ in frames}
    wire, key = by_name["request_pulse"]
    raw = bytearray(cobs.decode(wire))
    raw[-1] ^= 0x01
    forged = cobs.encode(raw)
    wire2, _ = by_name["request_strike_crc"]
    raw2 = bytearray(cobs.decode(wire2))
    raw2[-6] ^= 0x80  # a payload bit flipped on the line
    return [
        {
            "name": "forged_tag",
            "wire_hex": forged.hex(),
            "key_hex": key.hex() if key else None,
            "decoded": None,
            "error": "authentication tag does not verify",
            "note": "last tag bit flipped: must be refused and counted",
        },
        {
            "name": "corrupted_crc",
            "wire_hex": cobs.encode(raw2).hex(),
            "key_hex": None,
            "decoded": None,
            "error": "CRC mismatch",
            "note": "one payload bit flipped: the CRC no longer matches",
        },
    ]


def vectors() -> list[dict[str, Any]]:
    """Every vector: name, wire_hex, key_hex, decoded (what decode prints) and a note."""
    frames = _frames()
    out: list[dict[str, Any]] = []
    for name, wire, key, note in frames:
        decoded = Inspector(session_key=key).describe(wire)
        entry: dict[str, Any] = {
            "name": name,
            "wire_hex": wire.hex(),
            "key_hex": key.hex() if key is not None else None,
            "decoded": json.loads(json.dumps(decoded)),
            "note": note,
        }
        if name == "welcome_authenticated":
            entry["board_key_hex"] = TEST_KEY.hex()
        out.append(entry)
    return out + _negative(frames)


def render() -> str:
    """The file's exact text."""
    return json.dumps(vectors(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print, write or check the vectors file."""
    parser = argparse.ArgumentParser(prog="python -m tools.protocol_vectors", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help=f"write {VECTORS_PATH.name}")
    group.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        VECTORS_PATH.write_text(text)
        print(f"wrote {len(json.loads(text))} vectors to {VECTORS_PATH}")
        return 0
    if args.check:
        current = VECTORS_PATH.read_text() if VECTORS_PATH.exists() else ""
        if current != text:
            print(
                f"{VECTORS_PATH} is stale: run python -m tools.protocol_vectors --write",
                file=sys.stderr,
            )
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
