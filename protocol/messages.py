"""The message catalog: every message's id, kind, direction, fields and meaning.

A payload is the CBOR array ``[id, field1, field2, ...]`` in the order listed here.
Trailing optional fields (type ending in ``?``) may be left out; extra trailing values
are ignored, so a newer peer can add fields. The same tables drive validation, the
``decode`` tool and docs/protocol.md.
"""

from protocol.compat import const
from protocol.errors import MessageError

TYPE_CHECKING = False  # mypy treats this name as true; MicroPython has no typing module
if TYPE_CHECKING:
    from typing import Any

    Message = list[Any]  # [id, field values...] as decoded from CBOR

# Kinds, by id range, so a receiver can classify an id it does not know.
SESSION = "session"  # 0x01-0x0F, unsequenced, handled by the session itself
REQUEST = "request"  # 0x10-0x3F, sequenced, field 0 is the command id `cid`, answered by a reply
REPLY = "reply"  # 0x40-0x5F, sequenced, answers a request with the same cid
EVENT = "event"  # 0x60-0x7F, sequenced, no answer
REQUEST_FIRST = const(0x10)
REPLY_FIRST = const(0x40)
EVENT_FIRST = const(0x60)

HELLO = const(0x01)
WELCOME = const(0x02)
HEARTBEAT = const(0x03)
REFUSE = const(0x04)
REPLY_ID = const(0x40)

# Directions: i2r = initiator (host, kiosk) to responder (board, bridge); r2i the reverse.
I2R = "i2r"
R2I = "r2i"
BOTH = "both"


def kind_of(msg_id: int) -> str:
    """The kind of a message id from its range, known to the catalog or not."""
    if msg_id < REQUEST_FIRST:
        return SESSION
    if msg_id < REPLY_FIRST:
        return REQUEST
    if msg_id < EVENT_FIRST:
        return REPLY
    return EVENT


# (code, name, meaning): the status of a reply and the reason of a refuse.
STATUS = (
    (0, "ok", "done"),
    (1, "bad_request", "a field is missing, of the wrong type or malformed"),
    (2, "unknown_message", "the receiver does not know this message id"),
    (3, "busy", "the receiver cannot take the request now; retry later"),
    (4, "safe_state", "the board is in its safe state and refuses to actuate"),
    (5, "not_configured", "the channel or unit is not in the board's configuration"),
    (6, "out_of_range", "a value is outside its allowed range"),
    (7, "interlock", "refused by a configured interlock"),
    (8, "unsupported_version", "no protocol version in common"),
    (9, "auth_required", "the peer is provisioned and refuses unauthenticated frames"),
    (10, "internal", "unexpected error inside the peer"),
)
OK = const(0)
BAD_REQUEST = const(1)
UNKNOWN_MESSAGE = const(2)
BUSY = const(3)
SAFE_STATE = const(4)
NOT_CONFIGURED = const(5)
OUT_OF_RANGE = const(6)
INTERLOCK = const(7)
UNSUPPORTED_VERSION = const(8)
AUTH_REQUIRED = const(9)
INTERNAL = const(10)

# Fields every catalog's session messages share; welcome's identity fields follow them.
HELLO_FIELDS = (
    ("proto_min", "uint", "lowest protocol version the initiator speaks"),
    ("proto_max", "uint", "highest protocol version the initiator speaks"),
    ("nonce", "bytes", "16 random bytes chosen by the initiator for this session"),
    ("max_frame", "uint", "longest decoded frame the initiator accepts, in bytes"),
    ("window", "uint", "frames the initiator can buffer"),
    ("peer", "text", "initiator software name and version, for logs"),
)
WELCOME_FIELDS = (
    ("proto", "uint", "protocol version chosen for this session"),
    ("nonce", "bytes", "16 random bytes chosen by the responder for this session"),
    ("hello_digest", "bytes", "first 16 bytes of SHA-256 over the hello frame as received"),
    ("provisioned", "bool", "the responder holds a key: every later frame is authenticated"),
    ("max_frame", "uint", "longest decoded frame the responder accepts, in bytes"),
    ("window", "uint", "frames the responder can buffer"),
)
HEARTBEAT_FIELDS = (
    ("t_ms", "uint", "sender's millisecond clock (wraps at 2**30), for diagnostics"),
)
REFUSE_FIELDS = (
    ("status", "uint", "status code saying why"),
    ("reason", "text", "human-readable reason naming both sides' values"),
)
REPLY_FIELDS = (
    ("cid", "uint", "command id of the request answered"),
    ("status", "uint", "status code, 0 = ok"),
    ("reason", "text?", "human-readable reason when status is not ok"),
    ("data", "any?", "result of the request (a map), if any"),
)

# (id, name, direction, fields, meaning)
BOARD_MESSAGES = (
    (HELLO, "hello", I2R, HELLO_FIELDS, "start a session: offer versions and a nonce"),
    (
        WELCOME,
        "welcome",
        R2I,
        WELCOME_FIELDS
        + (
            ("board_id", "text", "board identity from its config, or its unique id"),
            ("fw_version", "text", "firmware version"),
            ("fw_hash", "text", "firmware build hash"),
            ("caps", "list", "capabilities, a list of text"),
            ("channels", "uint", "number of compartment channels configured"),
            ("config_hash", "text", "hash of the board's config file"),
            ("reset_reason", "text", "why the board last reset (power, watchdog, soft, ...)"),
            ("uptime_ms", "uint", "board uptime in milliseconds"),
            ("config_error", "text?", "why the config is missing or invalid; null when valid"),
            ("safe_reason", "text?", "why the board entered its safe state; null when not"),
            ("boot_id", "uint?", "random 30-bit number chosen at boot: event ids restart with it"),
        ),
        "accept a session: chosen version, nonce and board identity",
    ),
    (HEARTBEAT, "heartbeat", BOTH, HEARTBEAT_FIELDS, "keep the link alive when idle"),
    (REFUSE, "refuse", R2I, REFUSE_FIELDS, "refuse a hello (no common version)"),
    (
        0x10,
        "pulse",
        I2R,
        (
            ("cid", "uint", "command id"),
            ("channel", "uint", "compartment channel"),
            ("ms", "uint", "solenoid on-time; the board caps it at its configured maximum"),
        ),
        "energise one compartment's solenoid for a bounded time",
    ),
    (
        0x11,
        "led",
        I2R,
        (
            ("cid", "uint", "command id"),
            ("channel", "uint", "compartment channel"),
            ("mode", "uint", "0 off, 1 on, 2 blink"),
        ),
        "set a compartment's indicator LED",
    ),
    (
        0x12,
        "strike",
        I2R,
        (("cid", "uint", "command id"), ("ms", "uint", "strike release time")),
        "release the entrance door strike; ends early when the door opens",
    ),
    (
        0x13,
        "slot",
        I2R,
        (
            ("cid", "uint", "command id"),
            ("unit", "text", "return or dropoff"),
            ("ms", "uint", "flap solenoid on-time"),
        ),
        "open the return or drop-off slot flap",
    ),
    (0x14, "inputs", I2R, (("cid", "uint", "command id"),), "read every input now"),
    (0x15, "diagnostics", I2R, (("cid", "uint", "command id"),), "firmware, memory, counters"),
    (
        0x16,
        "maintenance",
        I2R,
        (("cid", "uint", "command id"), ("action", "text", "repl: hand the port to the REPL")),
        "maintenance action; only in an authenticated session on a provisioned board",
    ),
    (
        0x17,
        "reset",
        I2R,
        (("cid", "uint", "command id"),),
        "soft-reset the board after replying",
    ),
    (REPLY_ID, "reply", R2I, REPLY_FIELDS, "answer to a request"),
    (
        0x60,
        "event",
        R2I,
        (
            ("eid", "uint", "event id, increasing by one per event since boot"),
            ("kind", "text", "door_open, door_closed, item_present, pulse_done, ..."),
            ("unit", "text", "channel, return, dropoff, entrance, tamper, service, board"),
            ("channel", "uint?", "compartment channel for unit channel, else null"),
            ("value", "int?", "kind-specific value (e.g. events lost on overflow)"),
            ("t_ms", "uint", "board ms clock when it happened (wraps at 2**30, as heartbeat)"),
        ),
        "something happened at the board; kept until acknowledged",
    ),
    (
        0x61,
        "events_ack",
        I2R,
        (("upto", "uint", "highest event id the host has stored"),),
        "the board may forget events up to and including upto",
    ),
)


def type_ok(ftype: str, value: object) -> bool:
    """Whether value fits a catalog field type (\"uint\", \"text?\", ...)."""
    if value is None:
        return ftype[-1] == "?"
    base = ftype[:-1] if ftype[-1] == "?" else ftype
    if base == "any":
        return True
    if base == "uint" or base == "int":
        return (
            isinstance(value, int) and not isinstance(value, bool) and (base == "int" or value >= 0)
        )
    if base == "bytes":
        return isinstance(value, bytes)
    if base == "text":
        return isinstance(value, str)
    if base == "bool":
        return isinstance(value, bool)
    if base == "list":
        return isinstance(value, list)
    if base == "map":
        return isinstance(value, dict)
    return False


class Catalog:
    """Look-up and validation over one message table."""

    def __init__(self, name: str, messages: tuple) -> None:  # type: ignore[type-arg]
        self.name = name
        self.messages = messages
        self._by_id = {}
        self._by_name = {}
        for m in messages:
            self._by_id[m[0]] = m
            self._by_name[m[1]] = m

    def spec(self, msg_id: int) -> tuple:  # type: ignore[type-arg]
        """The table row of msg_id; MessageError if unknown."""
        m = self._by_id.get(msg_id)
        if m is None:
            raise MessageError("unknown message id 0x%02x" % msg_id, msg_id)
        return m  # type: ignore[no-any-return]

    def id_of(self, name: str) -> int:
        """The id of a message name; MessageError if unknown."""
        m = self._by_name.get(name)
        if m is None:
            raise MessageError("unknown message name %r" % name, name)
        return m[0]  # type: ignore[no-any-return]

    def name_of(self, msg_id: int) -> str:
        """The name of msg_id, or 'unknown'."""
        m = self._by_id.get(msg_id)
        return m[1] if m is not None else "unknown"

    def check(self, msg: object) -> None:
        """Raise MessageError unless msg is [id, fields...] valid for this catalog."""
        if (
            not isinstance(msg, list)
            or not msg
            or not isinstance(msg[0], int)
            or isinstance(msg[0], bool)
        ):
            raise MessageError("payload is not an array starting with a message id", msg)
        spec = self.spec(msg[0])
        fields = spec[3]
        n = len(msg) - 1
        for i in range(len(fields)):
            fname, ftype, _ = fields[i]
            if i >= n:
                if ftype[-1] != "?":
                    raise MessageError("%s: field %s is missing" % (spec[1], fname), fname)
                continue
            if not type_ok(ftype, msg[i + 1]):
                raise MessageError(
                    "%s: field %s must be %s, got %r" % (spec[1], fname, ftype, msg[i + 1]),
                    msg[i + 1],
                )

    def field(self, msg: list, name: str) -> object:  # type: ignore[type-arg]
        """The value of a named field of a valid message (None if an omitted optional)."""
        fields = self.spec(msg[0])[3]
        for i in range(len(fields)):
            if fields[i][0] == name:
                return msg[i + 1] if i + 1 < len(msg) else None
        raise MessageError("%s has no field %s" % (self.name_of(msg[0]), name), name)

    def to_dict(self, msg: list) -> dict:  # type: ignore[type-arg]
        """Field names to values for a valid message, omitted optionals as None."""
        fields = self.spec(msg[0])[3]
        out = {}
        for i in range(len(fields)):
            out[fields[i][0]] = msg[i + 1] if i + 1 < len(msg) else None
        return out


def status_name(code: int) -> str:
    """The name of a status code, or 'status_<code>' for one this side does not know."""
    for c, name, _ in STATUS:
        if c == code:
            return name
    return "status_%d" % code


BOARD = Catalog("board", BOARD_MESSAGES)
