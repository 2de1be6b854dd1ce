"""Describe captured frames as JSON-ready dicts, checking CRC or tag, for debugging on site.

``Inspector.describe(wire)`` takes one frame as it was on the wire (with or without its
0x00 delimiter) and returns a dict, or raises ProtocolError with a one-line reason.
Given the board key, it follows a captured handshake (hello, then welcome) and derives
the session key itself.
"""

import hashlib

from protocol import cbor, cobs
from protocol.crypto import NONCE_LEN, Hmac, derive_session_key
from protocol.errors import IntegrityError, MessageError, ProtocolError
from protocol.frame import Frame
from protocol.messages import BOARD, HELLO, WELCOME, kind_of, status_name

TYPE_CHECKING = False  # mypy treats this name as true; MicroPython has no typing module
if TYPE_CHECKING:
    from protocol.messages import Catalog


def _jsonable(value: object) -> object:
    """Bytes become lowercase hex; containers are converted recursively."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


class Inspector:
    """Decodes frames one after another; remembers a hello to follow its handshake."""

    def __init__(
        self,
        session_key: "bytes | None" = None,
        board_key: "bytes | None" = None,
        catalog: "Catalog" = BOARD,
        max_frame: int = 4096,
    ) -> None:
        self.session_key = session_key
        self.board_key = board_key
        self.catalog = catalog
        self.max_frame = max_frame
        self._hello_nonce = b""

    def describe(self, wire: bytes) -> "dict[str, object]":
        """One frame as a dict; ProtocolError (one-line reason) if it fails its check."""
        raw = wire.strip(b"\x00")  # a capture may include the delimiters on both sides
        if 0 in raw:
            raise ProtocolError("more than one frame: a 0x00 byte inside the frame", raw.index(0))
        buf = bytearray(self.max_frame)
        try:
            n = cobs.decode_into(buf, raw)
        except ProtocolError as exc:
            raise ProtocolError("not a COBS frame: %s" % exc, raw) from None
        view = memoryview(buf)[:n]
        frame = Frame()
        frame.load(view)
        msg = cbor.loads(frame.payload) if frame.payload else None
        check = self._check(frame, msg)
        flags = []
        if frame.authenticated:
            flags.append("auth")
        if frame.sequenced:
            flags.append("seq")
        out: "dict[str, object]" = {
            "version": frame.flags >> 4,
            "dir": "responder" if frame.from_responder else "initiator",
            "flags": flags,
            "addr": frame.addr,
            "seq": frame.seq,
            "ack": frame.ack,
            "win": frame.win,
            "counter": frame.counter if frame.authenticated else None,
            "check": check,
            "message": self._message(msg),
        }
        if isinstance(msg, list) and msg[0] == HELLO:
            self._hello_nonce = msg[3]
            out["hello_digest"] = hashlib.sha256(bytes(view)).digest()[:16].hex()
        return out

    def _check(self, frame: Frame, msg: object) -> str:
        if not frame.authenticated:
            if not frame.crc_ok():
                raise IntegrityError("CRC mismatch", bytes(frame.view[frame.body_end :]))
            return "crc ok"
        key = self.session_key
        if (
            self.board_key is not None
            and isinstance(msg, list)
            and msg[0] == WELCOME
            and len(msg) > 2
            and isinstance(msg[2], bytes)
            and len(msg[2]) == NONCE_LEN
            and self._hello_nonce
        ):
            key = derive_session_key(self.board_key, self._hello_nonce, msg[2])
            self.session_key = key
        if key is None:
            return "tag not verified (no key given)"
        if not frame.tag_ok(Hmac(key)):
            raise IntegrityError(
                "authentication tag does not verify", bytes(frame.view[frame.body_end :])
            )
        return "tag ok"

    def _message(self, msg: object) -> object:
        if msg is None:
            return None
        if not isinstance(msg, list) or not msg or type(msg[0]) is not int:
            raise MessageError("payload is not an array starting with a message id", msg)
        self.catalog.check(msg)
        mid = msg[0]
        out = {
            "id": mid,
            "name": self.catalog.name_of(mid),
            "kind": kind_of(mid),
            "fields": _jsonable(self.catalog.to_dict(msg)),
        }
        if out["name"] == "reply" and isinstance(msg[2], int):
            out["status"] = status_name(msg[2])
        return out


def catalog_markdown(messages: tuple, statuses: "list | tuple", directions: dict) -> str:  # type: ignore[type-arg]
    """Markdown tables of a message catalog: an overview, one field table per message, and
    the status codes ((code, name, meaning) rows); ``directions`` names i2r, r2i, both."""
    lines = ["| id | name | direction | kind | meaning |", "|---|---|---|---|---|"]
    for mid, name, direction, _, meaning in messages:
        lines.append(
            "| 0x%02x | `%s` | %s | %s | %s |"
            % (mid, name, directions[direction], kind_of(mid), meaning)
        )
    for mid, name, direction, fields, _ in messages:
        lines += [
            "",
            "#### 0x%02x `%s` (%s, %s)" % (mid, name, directions[direction], kind_of(mid)),
        ]
        lines += ["", "| # | field | type | meaning |", "|---|---|---|---|"]
        for i in range(len(fields)):
            fname, ftype, fmeaning = fields[i]
            lines.append("| %d | `%s` | `%s` | %s |" % (i + 1, fname, ftype, fmeaning))
    lines += ["", "### Status codes", "", "| code | name | meaning |", "|---|---|---|"]
    for code, name, meaning in statuses:
        lines.append("| %d | `%s` | %s |" % (code, name, meaning))
    return "\n".join(lines) + "\n"
