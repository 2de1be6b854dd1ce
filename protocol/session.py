"""The session: handshake, authentication, replay protection, heartbeat, link-down
detection, reliable delivery and exactly-once requests, as a sans-I/O state machine.

Bytes go in with ``feed(data, now)``, timers run in ``poll(now)``, encoded frames leave
through the ``write`` callback, and received messages wait in an inbox read by
``receive()``. ``now`` is a millisecond clock that may wrap at 2**30 (time.ticks_ms).
The same object serves the asyncio host (initiator) and the board loop (responder).
"""

import hashlib

from protocol import cbor, cobs
from protocol.compat import const, ticks_diff
from protocol.crypto import NONCE_LEN, Hmac, ReplayWindow, derive_session_key
from protocol.errors import MessageError, ProtocolError, SessionError
from protocol.frame import F_DIR, F_SEQ, Frame, build
from protocol.link import MAX_WINDOW, Receiver, Sender
from protocol.messages import (
    BAD_REQUEST,
    HEARTBEAT,
    HELLO,
    INTERNAL,
    REFUSE,
    REPLY_ID,
    REQUEST,
    UNKNOWN_MESSAGE,
    UNSUPPORTED_VERSION,
    WELCOME,
    kind_of,
)
from protocol.requests import ANSWERED, NEW, RequestLedger

TYPE_CHECKING = False  # mypy treats this name as true; MicroPython has no typing module
if TYPE_CHECKING:
    from collections.abc import Callable

    from protocol.messages import Catalog, Message

INITIATOR = const(0)  # host or kiosk: starts sessions
RESPONDER = const(1)  # board or bridge: answers them

# Session states; the one place that changes them is Session._set_state.
IDLE = const(0)  # nothing yet (responder: waiting for a hello)
CONNECTING = const(1)  # initiator: hello sent; responder: welcome sent, key not yet proven
ESTABLISHED = const(2)
DOWN = const(3)  # the link was lost; a new handshake is needed
STATE_NAMES = ("idle", "connecting", "established", "down")

PROTO_MIN = const(1)
PROTO_MAX = const(1)
HEARTBEAT_MS = const(400)
LINK_TIMEOUT_MS = const(1500)
MAX_TRIES = const(8)  # sends of one frame before the link is declared down
HELLO_RETRY_MS = const(250)
HELLO_RETRY_MAX_MS = const(2000)
DIGEST_LEN = const(16)
_COUNTER_LIMIT = const(0x3FFFFFFF)  # re-handshake long before the u32 counter wraps
_AUTH_OVERHEAD = const(17)  # header 5 + counter 4 + tag 8
MIN_PEER_FRAME = const(64)  # a peer advertising less is treated as advertising this


STAT_NAMES = (
    "frames_in",
    "frames_out",
    "bytes_in",
    "bytes_out",
    "malformed",
    "crc_errors",
    "tag_errors",
    "replays",
    "downgrades",
    "echoes",
    "other_addr",
    "no_session",
    "bad_payload",
    "rx_full",
    "duplicate_requests",
    "replies_held",
    "handshakes",
    "link_downs",
    "hello_attempts",
    "refused",
    "oversize_replies",
)


class Session:
    """One end of a link; see the module docstring for how it is driven."""

    def __init__(
        self,
        role: int,
        catalog: "Catalog",
        write: "Callable[[memoryview], object]",
        random: "Callable[[int], bytes]",
        key: "bytes | None" = None,
        addr: int = 0,
        identity: "Message | None" = None,
        max_frame: int = cobs.MAX_FRAME,
        inbox_cap: int = 4,
        heartbeat_ms: int = HEARTBEAT_MS,
        link_timeout_ms: int = LINK_TIMEOUT_MS,
        peer_name: str = "amtomat",
        on_state: "Callable[[int, str], object] | None" = None,
    ) -> None:
        self.role = role
        self.catalog = catalog
        self._write = write
        self._random = random
        self._key = key
        self.addr = addr
        self.identity = identity if identity is not None else []
        self.max_frame = max_frame
        self.inbox_cap = min(inbox_cap, MAX_WINDOW)
        self.heartbeat_ms = heartbeat_ms
        self.link_timeout_ms = link_timeout_ms
        self.peer_name = peer_name
        self.on_state = on_state
        self.state = IDLE
        self.reason = "no session yet"  # why the state is what it is
        self.last_error = ""  # latest refused handshake, for diagnostics
        self.peer: "dict[str, object]" = {}  # welcome fields, on the initiator
        self.hello_peer = ""  # responder: the peer name of the hello the session answers
        self.peer_max_frame = max_frame  # what the peer accepts, from its hello or welcome
        self._offered_frame = max_frame  # max_frame of the handshake in progress
        self.stats: "dict[str, int]" = {name: 0 for name in STAT_NAMES}
        self._reader = cobs.FrameReader(max_frame)
        self._frame = Frame()
        self._on_frame = self._handle_frame  # bound once: no allocation per frame
        self._tx = bytearray(max_frame)
        self._wire = bytearray(cobs.max_encoded_len(max_frame) + 1)
        self._wire_view = memoryview(self._wire)
        self.sender = Sender()
        self.receiver = Receiver()
        self._inbox: "list[Message]" = []
        self._now = 0
        self._last_rx = 0
        self._last_tx = 0
        # authentication of the current session, and of one being set up
        self._mac: "Hmac | None" = None
        self._replay = ReplayWindow()
        self._tx_counter = 0
        self._pending_mac: "Hmac | None" = None
        self._pending_replay = ReplayWindow()
        self._pending_counter = 0
        # handshake state
        self._nonce = b""  # initiator: our hello nonce; responder: our welcome nonce
        self._hello_nonce = b""  # responder: the hello the current welcome answers
        self._hello_digest = b""
        self._welcome = b""  # responder: welcome payload, resent for a repeated hello
        self._hello_wire = b""  # initiator: the hello frame, resent as is until answered
        self._hello_at = 0
        self._hello_wait = HELLO_RETRY_MS
        # exactly-once requests
        self.requests = RequestLedger()  # kept across sessions
        self._next_cid = (int.from_bytes(random(4), "little") & 0x3FFFFFFF) or 1

    # ----- state ---------------------------------------------------------------------

    def _set_state(self, state: int, reason: str) -> None:
        """The one place that changes state; ESTABLISHED again means a new session."""
        self.state = state
        self.reason = reason
        if state == ESTABLISHED:
            self.stats["handshakes"] += 1
        elif state == DOWN:
            self.stats["link_downs"] += 1
        if self.on_state is not None:
            self.on_state(state, reason)

    @property
    def established(self) -> bool:
        """Messages can be sent and received."""
        return self.state == ESTABLISHED

    @property
    def authenticated(self) -> bool:
        """The current session authenticates every frame."""
        return self._mac is not None

    # ----- application API -----------------------------------------------------------

    def connect(self, now: int) -> None:
        """Initiator: start (or restart) a handshake with a fresh nonce."""
        if self.role != INITIATOR:
            raise SessionError("only the initiator connects", self.role)
        self._now = now
        self._nonce = self._random(NONCE_LEN)
        payload = cbor.dumps(
            [
                HELLO,
                PROTO_MIN,
                PROTO_MAX,
                self._nonce,
                self.max_frame,
                self.inbox_cap,
                self.peer_name,
            ]
        )
        self._drop_session()
        # Every retry sends these exact bytes, so the hello_digest of any welcome matches.
        n = build(self._tx, 0, self.addr, 0, 0, self.inbox_cap, 0, payload, None)
        self._hello_digest = hashlib.sha256(self._tx[:n]).digest()[:DIGEST_LEN]
        self._hello_wire = cobs.encode(self._tx[:n])
        self._hello_wait = HELLO_RETRY_MS
        self._set_state(CONNECTING, "hello sent")
        self._send_hello(now)

    def feed(self, data: "bytes | bytearray | memoryview", now: int) -> None:
        """Bytes in: every complete frame in data is handled now."""
        self._now = now
        self.stats["bytes_in"] += len(data)
        self._reader.feed(data, self._on_frame)

    def receive(self) -> "Message | None":
        """The next received message [id, fields...] in order, or None."""
        if not self._inbox:
            return None
        was_full = len(self._inbox) >= self.inbox_cap
        msg = self._inbox.pop(0)
        if was_full:
            self.receiver.ack_due = True  # tell the sender the window reopened
        return msg

    def send(self, msg: "Message") -> None:
        """Queue an event or notice [id, fields...] for reliable, ordered delivery.

        MessageError if it does not fit the catalog or a frame either side accepts."""
        self.catalog.check(msg)
        payload = cbor.dumps(msg)
        limit = self.payload_limit()
        if len(payload) > limit:
            raise MessageError(
                "%s of %d bytes exceeds the %d-byte payload limit"
                % (self.catalog.name_of(msg[0]), len(payload), limit),
                len(payload),
            )
        self._enqueue(payload)

    def payload_limit(self) -> int:
        """Longest payload a frame may carry to this peer (worst case: authenticated)."""
        return min(self.max_frame, self.peer_max_frame) - _AUTH_OVERHEAD

    def request(self, msg: "Message") -> int:
        """Queue a request [id, fields...] without its cid; returns the cid it was given."""
        cid = self._next_cid
        self._next_cid = cid + 1 if cid < 0x3FFFFFFF else 1
        full = [msg[0], cid] + msg[1:]
        self.send(full)
        return cid

    def resend_request(self, msg: "Message", cid: int) -> None:
        """Queue a request again under its original cid (after a reconnect): the peer
        answers with its cached reply if it already acted on it."""
        self.send([msg[0], cid] + msg[1:])

    def reply(
        self, cid: int, status: int, reason: "str | None" = None, data: object = None
    ) -> None:
        """Answer a received request; the answer is remembered for duplicates of it."""
        payload = cbor.dumps([REPLY_ID, cid, status, reason, data])
        if len(payload) > self.payload_limit():
            self.stats["oversize_replies"] += 1
            reason = "reply of %d bytes exceeds the frame limit" % len(payload)
            payload = cbor.dumps([REPLY_ID, cid, INTERNAL, reason, None])
        self.requests.answer(cid, payload)
        self._enqueue_reply(payload)

    def poll(self, now: int) -> None:
        """Run timers: hello retries, link-down, retransmits, new frames, acks, heartbeats."""
        self._now = now
        state = self.state
        if state == CONNECTING and self.role == INITIATOR:
            if ticks_diff(now, self._hello_at) >= self._hello_wait:
                self._hello_wait = min(self._hello_wait * 2, HELLO_RETRY_MAX_MS)
                self._send_hello(now)
            return
        if state != ESTABLISHED:
            return
        if ticks_diff(now, self._last_rx) >= self.link_timeout_ms:
            self._link_down("no valid frame for %d ms" % ticks_diff(now, self._last_rx))
            return
        sender = self.sender
        expired = sender.expired(now)
        if expired and sender.oldest_tries >= MAX_TRIES:
            self._link_down("no acknowledgement after %d sends" % sender.oldest_tries)
            return
        if expired or sender.sendable:  # due() builds a list: only call it when needed
            for entry in sender.due(now, expired):
                self._transmit(F_SEQ, entry[0], entry[1], self._mac)
        if self.receiver.ack_due:
            self._transmit(0, 0, None, self._mac)
        elif ticks_diff(now, self._last_tx) >= self.heartbeat_ms:
            self._transmit(0, 0, cbor.dumps([HEARTBEAT, now & 0x3FFFFFFF]), self._mac)
        if self._tx_counter >= _COUNTER_LIMIT:
            self._link_down("frame counter exhausted; a new handshake is needed")

    def counters(self) -> "dict[str, int]":
        """Every counter by name, with round-trip figures and reader drops."""
        out = dict(self.stats)
        out["retransmits"] = self.sender.retransmits
        out["duplicates"] = self.receiver.duplicates
        out["oversize"] = self._reader.oversize
        out["malformed"] += self._reader.invalid
        out["srtt_ms"] = self.sender.timer.srtt_ms
        out["rto_ms"] = self.sender.timer.rto_ms
        out["in_flight"] = self.sender.in_flight
        out["queued"] = self.sender.queued
        return out

    # ----- sending -------------------------------------------------------------------

    def _enqueue(self, payload: bytes) -> None:
        if self.state != ESTABLISHED:
            raise SessionError(
                "session is %s: %s" % (STATE_NAMES[self.state], self.reason), self.state
            )
        self.sender.enqueue(payload)

    def _enqueue_reply(self, payload: bytes) -> None:
        """Queue a reply; outside a session it stays in the cache for a repeated request."""
        if self.state == ESTABLISHED:
            self.sender.enqueue(payload, True)
        else:
            self.stats["replies_held"] += 1

    def _window(self) -> int:
        return max(0, self.inbox_cap - len(self._inbox))

    def _transmit(self, flags: int, seq: int, payload: "bytes | None", mac: "Hmac | None") -> int:
        """Build, encode and write one frame with the current ack and window; returns
        the length of the decoded frame, which stays in self._tx until the next one."""
        if self.role == RESPONDER:
            flags |= F_DIR
        counter = 0
        if mac is not None:
            self._tx_counter += 1
            counter = self._tx_counter
        n = build(
            self._tx,
            flags,
            self.addr,
            seq,
            self.receiver.next_seq,
            self._window(),
            counter,
            payload,
            mac,
        )
        m = cobs.encode_into(self._wire, self._tx, n)
        if mac is self._mac:  # a frame of the current session: it carries our ack
            self.receiver.ack_due = False
            self._last_tx = self._now
        self.stats["frames_out"] += 1
        self.stats["bytes_out"] += m
        self._write(self._wire_view[:m])
        return n

    def _send_hello(self, now: int) -> None:
        self._hello_at = now
        self.stats["hello_attempts"] += 1
        self.stats["frames_out"] += 1
        self.stats["bytes_out"] += len(self._hello_wire)
        self._write(memoryview(self._hello_wire))

    # ----- receiving -----------------------------------------------------------------

    def _handle_frame(self, view: memoryview) -> None:
        frame = self._frame
        stats = self.stats
        try:
            frame.load(view)
        except ProtocolError:
            stats["malformed"] += 1
            return
        if frame.from_responder == (self.role == RESPONDER):
            stats["echoes"] += 1
            return
        if frame.addr != self.addr:
            stats["other_addr"] += 1
            return
        # The check comes before the payload is parsed, so forged or corrupted input is
        # never decoded; the one exception is a welcome, whose nonce the key needs.
        msg: "Message | None" = None
        if frame.authenticated:
            if self.role == INITIATOR and self.state == CONNECTING and not frame.sequenced:
                msg = _parse(frame.payload)
                if msg is not None and msg[0] == WELCOME:
                    if not self._verify_welcome(frame, msg):
                        return
                elif not self._verify(frame):
                    return
            elif not self._verify(frame):
                return
            else:
                msg = _parse(frame.payload)
        elif not frame.crc_ok():
            stats["crc_errors"] += 1
            return
        else:
            msg = _parse(frame.payload)
            if not self._unauthenticated_allowed(msg):
                stats["downgrades"] += 1
                return
        stats["frames_in"] += 1
        if msg is not None and not frame.sequenced:
            self._handle_session_message(msg, view)
        # Only a frame of the current session moves its link state: an unauthenticated
        # hello must not acknowledge anything in an authenticated session.
        if self.state != ESTABLISHED or (self._mac is not None and not frame.authenticated):
            if frame.sequenced:
                stats["no_session"] += 1
            return
        self._last_rx = self._now
        self.sender.on_ack(frame.ack, frame.win, self._now)
        if not frame.sequenced:
            return
        room = len(self._inbox) < self.inbox_cap
        if not self.receiver.accept(frame.seq, room or msg is None):
            if frame.seq == self.receiver.next_seq:
                stats["rx_full"] += 1
            return
        if msg is None:
            stats["bad_payload"] += 1  # consumed and acknowledged, so the peer moves on
            return
        self._deliver(msg)

    def _verify(self, frame: Frame) -> bool:
        """Check tag and counter against the current or the pending session key."""
        stats = self.stats
        for pending in (False, True):
            if pending and self.role != RESPONDER:
                break
            mac = self._pending_mac if pending else self._mac
            replay = self._pending_replay if pending else self._replay
            if mac is None or not frame.tag_ok(mac):
                continue
            if not replay.check(frame.counter):
                stats["replays"] += 1
                return False
            replay.commit(frame.counter)
            if pending:
                self._promote_pending()
            return True
        stats["tag_errors"] += 1
        return False

    def _verify_welcome(self, frame: Frame, msg: "Message") -> bool:
        if self._key is None:
            self.last_error = "board is provisioned but no key is configured for it"
            self.stats["tag_errors"] += 1
            return False
        nonce = msg[2] if len(msg) > 2 else b""
        if not isinstance(nonce, bytes) or len(nonce) != NONCE_LEN:
            self.stats["bad_payload"] += 1
            return False
        mac = Hmac(derive_session_key(self._key, self._nonce, nonce))
        if not frame.tag_ok(mac):
            self.last_error = "welcome failed authentication: wrong key for this board?"
            self.stats["tag_errors"] += 1
            return False
        self._pending_mac = mac
        self._pending_replay = ReplayWindow()
        self._pending_replay.commit(frame.counter)
        return True

    def _unauthenticated_allowed(self, msg: "Message | None") -> bool:
        """Without a key anything goes; with one only a hello (responder) or a refuse."""
        if self._key is None:
            return True
        if msg is None:
            return False
        mid: int = msg[0]
        if self.role == RESPONDER:
            return mid == HELLO
        if mid == WELCOME:
            self.last_error = "downgrade refused: board answered without authentication"
            return False
        return mid == REFUSE

    def _handle_session_message(self, msg: "Message", view: memoryview) -> None:
        mid = msg[0]
        if mid == HEARTBEAT:
            return
        try:
            self.catalog.check(msg)
        except ProtocolError:
            self.stats["bad_payload"] += 1
            return
        if mid == HELLO and self.role == RESPONDER:
            self._on_hello(msg, view)
        elif mid == WELCOME and self.role == INITIATOR and self.state == CONNECTING:
            self._on_welcome(msg)
        elif mid == REFUSE and self.role == INITIATOR and self.state == CONNECTING:
            self.last_error = "refused: %s" % msg[2]

    def _on_hello(self, msg: "Message", view: memoryview) -> None:
        nonce = msg[3]
        if nonce == self._hello_nonce and self._welcome:
            self._send_welcome()  # the initiator missed our welcome
            return
        lo = max(PROTO_MIN, msg[1])
        hi = min(PROTO_MAX, msg[2])
        if lo > hi:
            reason = "board speaks protocol %d..%d, host offered %d..%d" % (
                PROTO_MIN,
                PROTO_MAX,
                msg[1],
                msg[2],
            )
            self._transmit(0, 0, cbor.dumps([REFUSE, UNSUPPORTED_VERSION, reason]), None)
            self.stats["refused"] += 1
            return
        if not isinstance(nonce, bytes) or len(nonce) != NONCE_LEN:
            self.stats["bad_payload"] += 1
            return
        self._hello_nonce = nonce
        self.hello_peer = msg[6]
        self._offered_frame = max(MIN_PEER_FRAME, msg[4])
        self._nonce = self._random(NONCE_LEN)
        digest = hashlib.sha256(view).digest()[:DIGEST_LEN]
        self._welcome = cbor.dumps(
            [
                WELCOME,
                hi,
                self._nonce,
                digest,
                self._key is not None,
                self.max_frame,
                self.inbox_cap,
            ]
            + self.identity
        )
        if self._key is None:
            self._start_session(None, None)
            self._send_welcome()
            return
        self._pending_mac = Hmac(derive_session_key(self._key, nonce, self._nonce))
        self._pending_replay = ReplayWindow()
        self._pending_counter = 0
        self._send_welcome()
        if self.state != ESTABLISHED:
            self._set_state(CONNECTING, "welcome sent, waiting for the host to prove its key")

    def _send_welcome(self) -> None:
        if self._pending_mac is None:
            self._transmit(0, 0, self._welcome, self._mac)
            return
        # a welcome of a pending session uses that session's counter, not the current one
        current_counter = self._tx_counter
        self._tx_counter = self._pending_counter
        self._transmit(0, 0, self._welcome, self._pending_mac)
        self._pending_counter = self._tx_counter
        self._tx_counter = current_counter

    def _on_welcome(self, msg: "Message") -> None:
        if msg[3] != self._hello_digest:
            self.last_error = "welcome answers another hello"
            self.stats["bad_payload"] += 1
            return
        if not PROTO_MIN <= msg[1] <= PROTO_MAX:
            self.last_error = "board chose protocol %s, host speaks %d..%d" % (
                msg[1],
                PROTO_MIN,
                PROTO_MAX,
            )
            return
        if bool(msg[4]) != (self._pending_mac is not None):
            self.last_error = "welcome's provisioned flag does not match its authentication"
            self.stats["downgrades"] += 1
            return
        self.peer = self.catalog.to_dict(msg)
        self._offered_frame = max(MIN_PEER_FRAME, msg[5])
        replay = self._pending_replay
        self._start_session(self._pending_mac, replay)
        self._pending_counter = 0
        # key confirmation: the responder switches once it verifies a frame of ours
        self._transmit(0, 0, cbor.dumps([HEARTBEAT, self._now & 0x3FFFFFFF]), self._mac)

    def _promote_pending(self) -> None:
        """Responder: the initiator proved the pending key; it becomes the session."""
        counter = self._pending_counter
        replay = self._pending_replay
        self._start_session(self._pending_mac, replay)
        self._tx_counter = counter

    def _start_session(self, mac: "Hmac | None", replay: "ReplayWindow | None") -> None:
        self._mac = mac
        self.peer_max_frame = min(self.max_frame, self._offered_frame)
        self._replay = replay if replay is not None else ReplayWindow()
        self._tx_counter = 0
        self._pending_mac = None
        self._pending_replay = ReplayWindow()
        self.sender.reset()
        self.receiver.reset()
        self._last_rx = self._now
        self._last_tx = self._now
        self.last_error = ""
        self._set_state(ESTABLISHED, "authenticated" if mac is not None else "unauthenticated")

    def _drop_session(self) -> None:
        self._mac = None
        self._pending_mac = None
        self.sender.reset()
        self.receiver.reset()

    def _link_down(self, reason: str) -> None:
        self._mac = None
        self.sender.reset()
        self.receiver.reset()
        if self._pending_mac is None:
            self._welcome = b""
            self._hello_nonce = b""
        # else: a handshake waiting for its key confirmation stays valid
        self._set_state(DOWN, reason)

    def _deliver(self, msg: "Message") -> None:
        mid = msg[0]
        if kind_of(mid) != REQUEST:
            try:
                self.catalog.check(msg)
            except ProtocolError:
                self.stats["bad_payload"] += 1
                return
            self._inbox.append(msg)
            return
        cid = msg[1] if len(msg) > 1 else None
        if not isinstance(cid, int) or isinstance(cid, bool) or cid < 0:
            self.stats["bad_payload"] += 1
            return
        admitted = self.requests.admit(cid)
        if admitted != NEW:
            self.stats["duplicate_requests"] += 1
            if admitted == ANSWERED:
                self._enqueue_reply(self.requests.cached(cid))
            return
        try:
            self.catalog.check(msg)
        except ProtocolError as exc:
            status = UNKNOWN_MESSAGE if self.catalog.name_of(mid) == "unknown" else BAD_REQUEST
            self.reply(cid, status, str(exc))
            return
        self._inbox.append(msg)


def _parse(payload: memoryview) -> "Message | None":
    """The payload as [id, fields...], or None if empty or not such an array."""
    if not payload:
        return None
    try:
        msg = cbor.loads(payload)
    except ProtocolError:
        return None
    if isinstance(msg, list) and msg and isinstance(msg[0], int) and not isinstance(msg[0], bool):
        return msg
    return None
