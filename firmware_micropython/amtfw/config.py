"""The board config file (JSON, written by the flashing tool) as a logical I/O map.

``parse(raw)`` validates the whole file and returns a ``BoardConfig`` whose ``outputs``
and ``inputs`` list every signal as ``(pin, invert, role, unit, channel)``. The logic
works on indices into those lists with active-high levels (1 = energised, door open,
item present); the hardware layer maps indices to pins and applies ``invert``.
Every error is a ``ConfigError`` naming the key and the bad value.
"""

import hashlib
import json

from amtfw.errors import ConfigError
from protocol.compat import const

CONFIG_VERSION = const(1)
CONFIG_PATH = "/amtomat.json"
KEY_PATH = "/amtomat.key"
KEY_LEN = const(32)

PULSE_CAP_MS = const(1000)  # hard cap on a solenoid pulse, whatever config or host say
STRIKE_CAP_MS = const(30000)
MAX_CHANNELS = const(64)
MAX_PIN = const(48)

# Output roles
OUT_SOLENOID = const(0)
OUT_LED = const(1)
OUT_FLAP = const(2)  # return or drop-off slot solenoid
OUT_STRIKE = const(3)

# Input roles
IN_DOOR = const(0)  # compartment, entrance or service door contact (1 = open)
IN_ITEM = const(1)
IN_FLAP = const(2)
IN_DEPOSIT = const(3)
IN_GRANT = const(4)
IN_EXIT = const(5)
IN_TAMPER = const(6)

# Units, as named in events and replies
U_CHANNEL = const(0)
U_RETURN = const(1)
U_DROPOFF = const(2)
U_ENTRANCE = const(3)
U_TAMPER = const(4)
U_SERVICE = const(5)
U_BOARD = const(6)
UNIT_NAMES = ("channel", "return", "dropoff", "entrance", "tamper", "service", "board")

DEFAULTS = {
    "debounce_ms": 50,
    "pulse_max_ms": 300,
    "pulse_gap_ms": 500,
    "max_energised": 1,
    "strike_max_ms": 5000,
    "pulse_queue": 8,
    "link_timeout_ms": 1500,
    "repl_window_ms": 0,  # opt-in: a host that talks at boot would stop the firmware
}
# key: (lowest, highest)
LIMITS = {
    "debounce_ms": (5, 1000),
    "pulse_max_ms": (20, PULSE_CAP_MS),
    "pulse_gap_ms": (0, 60000),
    "max_energised": (1, 8),
    "strike_max_ms": (100, STRIKE_CAP_MS),
    "pulse_queue": (1, 16),
    "link_timeout_ms": (500, 10000),
    "repl_window_ms": (0, 10000),
    "address": (0, 255),
}
_TOP_KEYS = (
    "version",
    "board_id",
    "address",
    "link",
    "expanders",
    "channels",
    "return_slot",
    "dropoff_slot",
    "entrance",
    "tamper",
    "service_door",
    "recovery_pin",
) + tuple(DEFAULTS)
# unit key: (unit, ((signal, role, is_output, required), ...))
_SLOT_SIGNALS = (
    ("solenoid", OUT_FLAP, True, True),
    ("flap", IN_FLAP, False, True),
    ("deposit", IN_DEPOSIT, False, True),
)
SPECIAL_UNITS = (
    ("return_slot", U_RETURN, _SLOT_SIGNALS),
    ("dropoff_slot", U_DROPOFF, _SLOT_SIGNALS),
    (
        "entrance",
        U_ENTRANCE,
        (
            ("strike", OUT_STRIKE, True, True),
            ("grant", IN_GRANT, False, True),
            ("door", IN_DOOR, False, True),
            ("exit", IN_EXIT, False, False),
        ),
    ),
    ("tamper", U_TAMPER, (("pin", IN_TAMPER, False, True),)),
    ("service_door", U_SERVICE, (("pin", IN_DOOR, False, True),)),
)
CHANNEL_SIGNALS = (
    ("solenoid", OUT_SOLENOID, True, True),
    ("door", IN_DOOR, False, True),
    ("item", IN_ITEM, False, False),
    ("led", OUT_LED, True, False),
)
LINK_TYPES = ("usb", "rs485")
_RS485_KEYS = ("uart", "tx", "rx", "de", "baud")


class BoardConfig:
    """A validated config: settings, the I/O map and look-ups for the logic."""

    def __init__(self):
        self.board_id = ""
        self.address = 0
        self.link = {"type": "usb"}  # type: dict[str, object]
        self.expanders = []  # dicts: i2c, sda, scl, address, freq
        self.recovery_pin = None  # type: int | None
        self.channels = []  # channel numbers, in config order
        self.outputs = []  # (pin, invert, role, unit, channel)
        self.inputs = []  # (pin, invert, role, unit, channel)
        self.solenoid = {}  # channel -> output index
        self.led = {}  # channel -> output index
        self.door = {}  # channel -> input index
        self.item = {}  # channel -> input index
        self.flap_out = {}  # U_RETURN / U_DROPOFF -> output index
        self.strike = -1  # output index, -1 when there is no entrance
        self.units = []  # unit numbers configured besides channels
        # the settings of DEFAULTS, named so that checkers see them; parse() sets them
        self.debounce_ms = DEFAULTS["debounce_ms"]
        self.pulse_max_ms = DEFAULTS["pulse_max_ms"]
        self.pulse_gap_ms = DEFAULTS["pulse_gap_ms"]
        self.max_energised = DEFAULTS["max_energised"]
        self.strike_max_ms = DEFAULTS["strike_max_ms"]
        self.pulse_queue = DEFAULTS["pulse_queue"]
        self.link_timeout_ms = DEFAULTS["link_timeout_ms"]
        self.repl_window_ms = DEFAULTS["repl_window_ms"]

    def output_index(self, unit, channel):
        """The solenoid or flap output of a unit/channel, or -1."""
        if unit == U_CHANNEL:
            return self.solenoid.get(channel, -1)
        return self.flap_out.get(unit, -1)


def config_hash(raw):
    """Short hash of the config file bytes, as reported at the handshake."""
    return "".join("%02x" % b for b in hashlib.sha256(raw).digest()[:8])


def parse_pin(value, where, n_expanders):
    """A pin spec: a GPIO number, or "mcp<N>:<A|B><0-7>" on expander N."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= MAX_PIN:
            return value
    elif isinstance(value, str) and value.startswith("mcp") and ":" in value:
        head, port = value[3:].split(":", 1)
        if (
            0 < len(head) <= 2
            and head[0] in "0123456789"
            and head[-1] in "0123456789"
            and int(head) < n_expanders
            and len(port) == 2
            and port[0] in "AB"
            and port[1] in "01234567"
        ):
            return "mcp%d:%s" % (int(head), port)  # one spelling per pin: "mcp00:A0" is mcp0
        raise ConfigError(
            "%s: %r is not a pin of a configured expander (mcp0..mcp%d, ports A0..B7)"
            % (where, value, n_expanders - 1),
            value,
        )
    raise ConfigError(
        '%s: %r is not a pin (a GPIO number 0..%d, or "mcp<N>:<A|B><0-7>")'
        % (where, value, MAX_PIN),
        value,
    )


def _int(d, key, where, lo, hi, default=None):
    value = d.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(
            "%s%s: %r must be a whole number from %d to %d" % (where, key, value, lo, hi), value
        )
    return value


def _check_keys(d, allowed, where):
    if not isinstance(d, dict):
        raise ConfigError("%s must be an object, got %r" % (where, d), d)
    for key in d:
        if key not in allowed:
            raise ConfigError(
                "%s: unknown key %r (allowed: %s)" % (where, key, ", ".join(allowed)), key
            )


class _Builder:
    def __init__(self, cfg, n_expanders):
        self.cfg = cfg
        self.n_expanders = n_expanders
        self.used = {}  # pin -> where

    def signal(self, d, name, role, is_output, required, unit, channel, where, invert):
        value = d.get(name)
        if value is None:
            if required:
                raise ConfigError("%s: %s pin is missing" % (where, name), name)
            return -1
        at = "%s.%s" % (where, name)
        pin = parse_pin(value, at, self.n_expanders)
        if pin in self.used:
            raise ConfigError(
                "%s: pin %r is already used by %s" % (at, value, self.used[pin]), value
            )
        self.used[pin] = at
        entry = (pin, name in invert, role, unit, channel)
        table = self.cfg.outputs if is_output else self.cfg.inputs
        table.append(entry)
        return len(table) - 1

    def unit(self, d, signals, unit, channel, where, extra=()):
        names = [s[0] for s in signals]
        _check_keys(d, tuple(names) + ("invert",) + tuple(extra), where)
        invert = d.get("invert", [])
        if not isinstance(invert, list):
            raise ConfigError("%s.invert must be a list of signal names" % where, invert)
        for s in invert:
            if s not in names:
                raise ConfigError(
                    "%s.invert: %r is not a signal here (%s)" % (where, s, ", ".join(names)), s
                )
        out = {}
        for name, role, is_output, required in signals:
            out[name] = self.signal(
                d, name, role, is_output, required, unit, channel, where, invert
            )
        return out


def parse(raw):
    """Validate config file bytes into a BoardConfig; ConfigError says what is wrong."""
    try:
        d = json.loads(raw)
    except (ValueError, UnicodeError, RuntimeError) as exc:  # RuntimeError: nested too deep
        raise ConfigError("config is not valid JSON: %s" % exc, None) from None
    _check_keys(d, _TOP_KEYS, "config")
    cfg = BoardConfig()
    version = d.get("version")
    if version != CONFIG_VERSION:
        raise ConfigError(
            "version: %r is not supported (this firmware reads version %d)"
            % (version, CONFIG_VERSION),
            version,
        )
    board_id = d.get("board_id")
    if not isinstance(board_id, str) or not 0 < len(board_id) <= 32:
        raise ConfigError("board_id: %r must be text of 1 to 32 characters" % board_id, board_id)
    cfg.board_id = board_id
    cfg.address = _int(d, "address", "", LIMITS["address"][0], LIMITS["address"][1], 0)
    for key in DEFAULTS:
        lo, hi = LIMITS[key]
        setattr(cfg, key, _int(d, key, "", lo, hi, DEFAULTS[key]))
    cfg.link = _parse_link(d.get("link", {"type": "usb"}))
    expanders = d.get("expanders", [])
    if not isinstance(expanders, list) or len(expanders) > 8:
        raise ConfigError("expanders must be a list of at most 8 objects", expanders)
    b = _Builder(cfg, len(expanders))
    for i in range(len(expanders)):
        cfg.expanders.append(_parse_expander(expanders[i], "expanders[%d]" % i, b))
    if "recovery_pin" in d and d["recovery_pin"] is not None:
        rp = d["recovery_pin"]
        if not isinstance(rp, int) or isinstance(rp, bool) or not 0 <= rp <= MAX_PIN:
            raise ConfigError("recovery_pin: %r must be a GPIO number" % rp, rp)
        if rp in b.used:
            raise ConfigError("recovery_pin: pin %d is already used by %s" % (rp, b.used[rp]), rp)
        b.used[rp] = "recovery_pin"
        cfg.recovery_pin = rp
    channels = d.get("channels", [])
    if not isinstance(channels, list) or len(channels) > MAX_CHANNELS:
        raise ConfigError("channels must be a list of at most %d objects" % MAX_CHANNELS, None)
    for i in range(len(channels)):
        c = channels[i]
        where = "channels[%d]" % i
        if not isinstance(c, dict):
            raise ConfigError("%s must be an object, got %r" % (where, c), c)
        ch = _int(c, "channel", where + ".", 1, 255)
        if ch in cfg.solenoid:
            raise ConfigError("%s.channel: %d is configured twice" % (where, ch), ch)
        sig = b.unit(c, CHANNEL_SIGNALS, U_CHANNEL, ch, where, ("channel",))
        cfg.channels.append(ch)
        cfg.solenoid[ch] = sig["solenoid"]
        cfg.door[ch] = sig["door"]
        if sig["item"] >= 0:
            cfg.item[ch] = sig["item"]
        if sig["led"] >= 0:
            cfg.led[ch] = sig["led"]
    for key, unit, signals in SPECIAL_UNITS:
        u = d.get(key)
        if u is None:
            continue
        sig = b.unit(u, signals, unit, None, key)
        cfg.units.append(unit)
        if unit in (U_RETURN, U_DROPOFF):
            cfg.flap_out[unit] = sig["solenoid"]
        elif unit == U_ENTRANCE:
            cfg.strike = sig["strike"]
    return cfg


def _parse_link(link):
    _check_keys(link, ("type",) + _RS485_KEYS, "link")
    kind = link.get("type")
    if kind not in LINK_TYPES:
        raise ConfigError("link.type: %r must be one of %s" % (kind, ", ".join(LINK_TYPES)), kind)
    out = {"type": kind}  # type: dict[str, object]
    if kind == "rs485":
        out["uart"] = _int(link, "uart", "link.", 0, 2)
        for key in ("tx", "rx", "de"):
            out[key] = _int(link, key, "link.", 0, MAX_PIN)
        out["baud"] = _int(link, "baud", "link.", 1200, 1000000, 115200)
    return out


def _parse_expander(e, where, builder):
    _check_keys(e, ("i2c", "sda", "scl", "address", "freq"), where)
    out = {
        "i2c": _int(e, "i2c", where + ".", 0, 1, 0),
        "sda": _int(e, "sda", where + ".", 0, MAX_PIN),
        "scl": _int(e, "scl", where + ".", 0, MAX_PIN),
        "address": _int(e, "address", where + ".", 0x20, 0x27),
        "freq": _int(e, "freq", where + ".", 10000, 1000000, 400000),
    }
    for key in ("sda", "scl"):
        pin = out[key]
        other = builder.used.get(pin)
        if other is not None and other != "i2c%d.%s" % (out["i2c"], key):
            raise ConfigError("%s.%s: pin %d is already used by %s" % (where, key, pin, other), pin)
        builder.used[pin] = "i2c%d.%s" % (out["i2c"], key)
    return out


def empty():
    """The config of a board whose file is missing or invalid: nothing to actuate."""
    return BoardConfig()
