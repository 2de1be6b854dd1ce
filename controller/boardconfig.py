"""The terminal TOML file: the terminal and its boards, validated once, and each board's JSON.

``load``/``loads`` read ``[terminal]`` and ``[[boards]]`` into frozen dataclasses and keep the
sections reserved for the daemon as raw values in ``Terminal.extra``. Every error is a
``ConfigError`` naming the dotted key, the bad value and the fix. ``board_json`` writes the
config file the board firmware reads, and ``load`` ends by running every board's JSON through
the firmware's own parser (``amtfw.config.parse``), so a file that loads here also loads on
the board. Defaults and ranges come from the firmware module itself.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import json
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, Final, Literal

from controller.errors import ConfigError, ControllerError
from controller.tomlcheck import (
    _array_of_tables,
    _int,
    _int_or,
    _join,
    _req_int,
    _show,
    _table,
    _text,
)

Pin = int | str
"""A board pin: a GPIO number, or ``"mcp<N>:<A|B><0-7>"`` on the board's expander N."""

RESERVED_SECTIONS: Final = (
    "compartments",
    "daemon",
    "bridge",
    "mqtt",
    "gpio",
    "office_hours",
    "staff",
)
TOP_KEYS: Final = ("terminal", "boards", *RESERVED_SECTIONS)
TERMINAL_KEYS: Final = ("kiosk_id", "site")
TIMING_KEYS: Final = (
    "debounce_ms",
    "pulse_max_ms",
    "pulse_gap_ms",
    "max_energised",
    "strike_max_ms",
    "pulse_queue",
    "link_timeout_ms",
    "repl_window_ms",
)
UNIT_KEYS: Final = ("return_slot", "dropoff_slot", "entrance", "tamper", "service_door")
BOARD_KEYS: Final = (
    "board_id",
    "address",
    "port",
    "reset_gpio",
    "link",
    "expanders",
    "channels",
    *UNIT_KEYS,
    "recovery_pin",
    *TIMING_KEYS,
)
LINK_KEYS: Final = ("type", "uart", "tx", "rx", "de", "baud")
EXPANDER_KEYS: Final = ("i2c", "sda", "scl", "address", "freq")

KIOSK_ID_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")
BOARD_ID_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")  # the firmware takes 1..32 chars
SITE_MAX_LEN: Final = 200
_MCP_RE: Final = re.compile(r"mcp(0|[1-9][0-9]?):([AB])([0-7])")
_PORT_URL_RE: Final = re.compile(r"socket://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})")
_TOML_AT_RE: Final = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")

# Ranges the firmware checks inline in amtfw.config (not in its LIMITS table); the tests
# check that host and firmware agree on both ends of each.
UART_RANGE: Final = (0, 2)
BAUD_RANGE: Final = (1200, 1_000_000)
I2C_RANGE: Final = (0, 1)
I2C_FREQ_RANGE: Final = (10_000, 1_000_000)
EXPANDER_ADDRESS_RANGE: Final = (0x20, 0x27)
CHANNEL_RANGE: Final = (1, 255)
MAX_EXPANDERS: Final = 8
PI_GPIO_RANGE: Final = (0, 27)  # BCM numbers of the Raspberry Pi header


# -- the firmware's own config module ------------------------------------------------------


def _firmware_dirs() -> list[Path]:
    """Folders that may hold the firmware package ``amtfw``, most likely first."""
    dirs = [Path(__file__).resolve().parent.parent / "firmware_micropython"]
    try:
        spec = importlib.util.find_spec("firmware_micropython")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations is not None:
        dirs += [Path(p) for p in spec.submodule_search_locations]
    return dirs


@functools.cache
def firmware_config() -> ModuleType:
    """The firmware's ``amtfw.config`` module, from a repo checkout or an (editable) install."""
    if importlib.util.find_spec("amtfw") is None:
        for folder in _firmware_dirs():
            if (folder / "amtfw" / "config.py").is_file():
                if str(folder) not in sys.path:
                    sys.path.append(str(folder))  # appended: never shadows anything else
                importlib.invalidate_caches()
                break
        else:
            raise ControllerError(
                "the board firmware (firmware_micropython/amtfw) is not installed next to "
                "controller/; reinstall amtomat from a complete checkout",
                None,
            )
    return importlib.import_module("amtfw.config")


_FW: Final = firmware_config()
CONFIG_VERSION: Final[int] = int(_FW.CONFIG_VERSION)
MAX_PIN: Final[int] = int(_FW.MAX_PIN)
MAX_CHANNELS: Final[int] = int(_FW.MAX_CHANNELS)
DEFAULTS: Final[Mapping[str, int]] = MappingProxyType({k: int(v) for k, v in _FW.DEFAULTS.items()})
LIMITS: Final[Mapping[str, tuple[int, int]]] = MappingProxyType(
    {k: (int(lo), int(hi)) for k, (lo, hi) in _FW.LIMITS.items()}
)


def _probe_defaults() -> tuple[int, int, int, int]:
    """Address, baud, I2C bus and I2C frequency the firmware assumes when a key is absent."""
    probe = {
        "version": CONFIG_VERSION,
        "board_id": "probe",
        "link": {"type": "rs485", "uart": 0, "tx": 0, "rx": 1, "de": 2},
        "expanders": [{"sda": 4, "scl": 5, "address": EXPANDER_ADDRESS_RANGE[0]}],
    }
    cfg = _FW.parse(json.dumps(probe).encode())
    exp = cfg.expanders[0]
    return int(cfg.address), int(cfg.link["baud"]), int(exp["i2c"]), int(exp["freq"])


DEFAULT_ADDRESS, DEFAULT_BAUD, DEFAULT_I2C, DEFAULT_I2C_FREQ = _probe_defaults()


# -- the parsed terminal -------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """How the board talks to the Pi: ``usb`` (USB-CDC) or ``rs485`` (UART + driver enable)."""

    type: Literal["usb", "rs485"] = "usb"
    uart: int | None = None
    tx: int | None = None
    rx: int | None = None
    de: int | None = None
    baud: int | None = None


@dataclass(frozen=True)
class Expander:
    """An MCP23017 I2C GPIO expander; its pins are ``mcp<index>:<A|B><0-7>``."""

    i2c: int
    sda: int
    scl: int
    address: int
    freq: int


@dataclass(frozen=True)
class Channel:
    """One compartment: solenoid output, door input, optional item sensor and LED."""

    channel: int
    solenoid: Pin
    door: Pin
    item: Pin | None = None
    led: Pin | None = None
    invert: tuple[str, ...] = ()


@dataclass(frozen=True)
class Slot:
    """A return or drop-off slot: flap solenoid, flap sensor, deposit sensor."""

    solenoid: Pin
    flap: Pin
    deposit: Pin
    invert: tuple[str, ...] = ()


@dataclass(frozen=True)
class Entrance:
    """The container door: strike relay, card-reader grant, door contact, exit button."""

    strike: Pin
    grant: Pin
    door: Pin
    exit: Pin | None = None
    invert: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sensor:
    """A single input (tamper switch, service door contact)."""

    pin: Pin
    invert: tuple[str, ...] = ()


Unit = Slot | Entrance | Sensor
_UNIT_TYPES: Final[dict[str, type[Slot] | type[Entrance] | type[Sensor]]] = {
    "return_slot": Slot,
    "dropoff_slot": Slot,
    "entrance": Entrance,
    "tamper": Sensor,
    "service_door": Sensor,
}
_OPTIONAL_SIGNALS: Final = frozenset({"item", "led", "exit"})


@dataclass(frozen=True)
class BoardSpec:
    """One board: every field of its JSON config plus the host-only ``port`` and ``reset_gpio``."""

    board_id: str
    address: int
    link: Link
    expanders: tuple[Expander, ...]
    channels: tuple[Channel, ...]
    return_slot: Slot | None
    dropoff_slot: Slot | None
    entrance: Entrance | None
    tamper: Sensor | None
    service_door: Sensor | None
    recovery_pin: int | None
    debounce_ms: int
    pulse_max_ms: int
    pulse_gap_ms: int
    max_energised: int
    strike_max_ms: int
    pulse_queue: int
    link_timeout_ms: int
    repl_window_ms: int
    port: str | None = None
    reset_gpio: int | None = None

    def units(self) -> dict[str, Unit]:
        """The special units this board has, by key (``entrance``, ``tamper``, ...)."""
        out: dict[str, Unit] = {}
        for key in UNIT_KEYS:
            unit = getattr(self, key)
            if unit is not None:
                out[key] = unit
        return out


@dataclass(frozen=True)
class Terminal:
    """A terminal: its id, site, boards, and the raw sections reserved for the daemon."""

    kiosk_id: str
    site: str
    boards: tuple[BoardSpec, ...]
    extra: dict[str, Any] = field(default_factory=dict, hash=False, repr=False)

    def board(self, board_id: str) -> BoardSpec:
        """The board with this id; KeyError if there is none."""
        for b in self.boards:
            if b.board_id == board_id:
                return b
        raise KeyError(board_id)


# -- reading -------------------------------------------------------------------------------


def load(path: str | Path) -> Terminal:
    """Read and validate a terminal TOML file; every problem is a ConfigError."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            "",
            source,
            f"cannot read the file ({exc.strerror or exc})",
            "check the path given with --config",
            source=source,
        ) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            "",
            data[exc.start : exc.end],
            "the file is not UTF-8 text",
            "save it as UTF-8",
            source=source,
            line=line,
            column=column,
        ) from exc
    return loads(text, source)


def loads(text: str, source: str = "<string>") -> Terminal:
    """Validate terminal TOML text; ``source`` names the file (``ConfigError.source``)."""
    doc = _parse_toml(text, source)
    try:
        terminal = _terminal(doc)
        check_firmware(terminal)
    except ConfigError as exc:
        exc.source = source
        raise
    return terminal


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        at = _TOML_AT_RE.search(msg)
        line = column = None
        if at is not None:
            line, column = int(at.group(1)), int(at.group(2))
            msg = msg[: at.start()]
        elif msg.endswith("(at end of document)"):
            line = text.count("\n") + 1
            msg = msg[: -len("(at end of document)")].rstrip()
        raise ConfigError(
            "",
            None,
            f"TOML syntax error: {msg}",
            "correct the TOML syntax at that place",
            source=source,
            line=line,
            column=column,
        ) from exc
    except (ValueError, RecursionError) as exc:  # a huge integer, arrays nested too deep
        raise ConfigError(
            "",
            None,
            f"TOML value cannot be read ({type(exc).__name__})",
            "use integers of at most 19 digits and nest arrays and tables only a few levels",
            source=source,
        ) from exc


def _terminal(doc: dict[str, Any]) -> Terminal:
    _table(doc, "", "top-level", TOP_KEYS)
    if "terminal" not in doc:
        raise ConfigError(
            "terminal", None, "is missing", "add a [terminal] table with kiosk_id and site"
        )
    t = _table(doc["terminal"], "terminal", "[terminal]", TERMINAL_KEYS)
    kiosk_id = _text(t, "kiosk_id", "terminal")
    if not KIOSK_ID_RE.fullmatch(kiosk_id):
        raise ConfigError(
            "terminal.kiosk_id",
            kiosk_id,
            f"{_show(kiosk_id)} is not a kiosk id",
            "use 2 to 63 characters: lower-case letters, digits and '-', starting with a "
            'letter or digit (it becomes the MQTT topic amtomat/v1/<kiosk_id>/), e.g. "myk-01"',
        )
    site = _text(t, "site", "terminal")
    if not site.strip() or len(site) > SITE_MAX_LEN or not site.isprintable():
        raise ConfigError(
            "terminal.site",
            site,
            f"{_show(site)} is not a site name",
            f"write the site's name in one line of 1 to {SITE_MAX_LEN} printable characters",
        )
    if "boards" not in doc:
        raise ConfigError(
            "boards", None, "is missing", "add a [[boards]] table for each board of the terminal"
        )
    raw_boards = _array_of_tables(doc["boards"], "boards", "[[boards]]", 64)
    if not raw_boards:
        raise ConfigError("boards", raw_boards, "is empty", "add a [[boards]] table per board")
    boards = tuple(_board(b, f"boards[{i}]") for i, b in enumerate(raw_boards))
    _check_terminal(boards)
    extra: dict[str, Any] = {name: doc[name] for name in RESERVED_SECTIONS if name in doc}
    return Terminal(kiosk_id=kiosk_id, site=site, boards=boards, extra=extra)


class _Pins:
    """The pins of one board, each with the dotted key that uses it."""

    def __init__(self, n_expanders: int) -> None:
        self.n_expanders = n_expanders
        self.owner: dict[Pin, str] = {}

    def parse(self, value: object, key: str) -> Pin:
        """A pin spec, checked for form, range and expander; not yet claimed."""
        n = self.n_expanders
        fix = (
            f'write a GPIO number 0..{MAX_PIN} or "mcp<N>:<A|B><0-7>" for pin <A|B><0-7> of '
            f"expander N (this board has {n} expander{'' if n == 1 else 's'})"
        )
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(key, value, f"{_show(value)} is not a pin", fix)
        if isinstance(value, int):
            if not 0 <= value <= MAX_PIN:
                raise ConfigError(key, value, f"{value} is not a GPIO number", fix)
            return value
        if value.strip().isascii() and value.strip().isdigit():
            raise ConfigError(
                key, value, f"{_show(value)} is not a pin", "write GPIO numbers without quotes"
            )
        m = _MCP_RE.fullmatch(value)
        if m is None:
            raise ConfigError(key, value, f"{_show(value)} is not a pin", fix)
        if int(m.group(1)) >= n:
            have = f"mcp0..mcp{n - 1}" if n else "none"
            raise ConfigError(
                key,
                value,
                f"{_show(value)} is on expander mcp{m.group(1)}, which is not configured",
                f"add a [[boards.expanders]] table for it or use a configured one ({have})",
            )
        return value

    def claim(self, pin: Pin, key: str, value: object) -> None:
        """Record that ``key`` uses ``pin``; ConfigError if another key already does."""
        other = self.owner.get(pin)
        if other is not None:
            raise ConfigError(
                key,
                value,
                f"{_show(value)} is already used by {other}",
                "give each signal its own pin",
            )
        self.owner[pin] = key

    def take(self, value: object, key: str) -> Pin:
        pin = self.parse(value, key)
        self.claim(pin, key, value)
        return pin


def _gpio(t: Mapping[str, Any], name: str, where: str, pins: _Pins, required: bool) -> int | None:
    """A plain GPIO number of the board (no expander pin), claimed in ``pins``."""
    value = _int(t, name, where, (0, MAX_PIN), required=required)
    if value is not None:
        pins.claim(value, _join(where, name), value)
    return value


def _board(raw: object, where: str) -> BoardSpec:
    t = _table(raw, where, "[[boards]]", BOARD_KEYS)
    board_id = _text(t, "board_id", where)
    if not BOARD_ID_RE.fullmatch(board_id):
        raise ConfigError(
            f"{where}.board_id",
            board_id,
            f"{_show(board_id)} is not a board id",
            "use 1 to 32 characters: lower-case letters, digits and '-', starting with a "
            'letter or digit, e.g. "wall-a"',
        )
    address = _int_or(t, "address", where, LIMITS["address"], DEFAULT_ADDRESS)
    port = _port(t, where)
    reset_gpio = _int(t, "reset_gpio", where, PI_GPIO_RANGE)
    timings: dict[str, Any] = {
        name: _int_or(t, name, where, LIMITS[name], DEFAULTS[name]) for name in TIMING_KEYS
    }
    raw_exp = _array_of_tables(
        t.get("expanders", []), f"{where}.expanders", "[[boards.expanders]]", MAX_EXPANDERS
    )
    pins = _Pins(len(raw_exp))
    link = _link(t, where, pins)
    expanders = _expanders(raw_exp, f"{where}.expanders", pins)
    recovery_pin = _gpio(t, "recovery_pin", where, pins, required=False)
    raw_ch = _array_of_tables(
        t.get("channels", []), f"{where}.channels", "[[boards.channels]]", MAX_CHANNELS
    )
    channels: list[Channel] = []
    numbers: dict[int, str] = {}
    for i, c in enumerate(raw_ch):
        cw = f"{where}.channels[{i}]"
        ct = _table(c, cw, "[[boards.channels]]", ("channel", *_signal_names(Channel), "invert"))
        number = _req_int(ct, "channel", cw, CHANNEL_RANGE)
        if number in numbers:
            raise ConfigError(
                f"{cw}.channel",
                number,
                f"{number} is already used by {numbers[number]}",
                "number each channel of a board once",
            )
        numbers[number] = cw
        fields = _signals(ct, cw, Channel, pins)
        channels.append(Channel(channel=number, **fields))
    units: dict[str, Any] = {}
    for key in UNIT_KEYS:
        if key in t:
            cls = _UNIT_TYPES[key]
            uw = f"{where}.{key}"
            ut = _table(t[key], uw, f"[boards.{key}]", (*_signal_names(cls), "invert"))
            units[key] = cls(**_signals(ut, uw, cls, pins))
        else:
            units[key] = None
    return BoardSpec(
        board_id=board_id,
        address=address,
        link=link,
        expanders=expanders,
        channels=tuple(channels),
        recovery_pin=recovery_pin,
        port=port,
        reset_gpio=reset_gpio,
        **units,
        **timings,
    )


def _signal_names(cls: type[Channel] | type[Slot] | type[Entrance] | type[Sensor]) -> list[str]:
    """The pin fields of a unit dataclass, in firmware order."""
    return [f.name for f in dataclasses.fields(cls) if f.name not in ("channel", "invert")]


def _signals(
    t: Mapping[str, Any],
    where: str,
    cls: type[Channel] | type[Slot] | type[Entrance] | type[Sensor],
    pins: _Pins,
) -> dict[str, Any]:
    """The pins and ``invert`` list of one channel or unit table, claimed in ``pins``."""
    names = _signal_names(cls)
    out: dict[str, Any] = {}
    for name in names:
        key = _join(where, name)
        if name not in t:
            if name in _OPTIONAL_SIGNALS:
                out[name] = None
                continue
            raise ConfigError(
                key,
                None,
                f"{name} pin is missing",
                f'add {name} = <GPIO number> or {name} = "mcp<N>:<A|B><0-7>"',
            )
        out[name] = pins.take(t[name], key)
    out["invert"] = _invert(t, where, names, [n for n in names if out[n] is not None])
    return out


def _invert(
    t: Mapping[str, Any], where: str, names: list[str], present: list[str]
) -> tuple[str, ...]:
    """The ``invert`` list as signal names in firmware order."""
    key = f"{where}.invert"
    value = t.get("invert", [])
    listing = ", ".join(names)
    if not isinstance(value, list):
        raise ConfigError(
            key,
            value,
            f"{_show(value)} is not a list of signal names",
            f'write a list such as invert = ["{names[-1]}"] naming signals of: {listing}',
        )
    seen: set[str] = set()
    for name in value:
        if not isinstance(name, str) or name not in names:
            raise ConfigError(
                key, name, f"{_show(name)} is not a signal here", f"use only: {listing}"
            )
        if name not in present:
            raise ConfigError(
                key,
                name,
                f"{_show(name)} has no pin here",
                f"remove it from invert or add {name} = <pin>",
            )
        if name in seen:
            raise ConfigError(key, name, f"{_show(name)} is listed twice", "list it once")
        seen.add(name)
    return tuple(n for n in names if n in seen)


def _port(t: Mapping[str, Any], where: str) -> str | None:
    key = f"{where}.port"
    if "port" not in t:
        return None
    value = t["port"]
    fix = (
        'write a device path such as "/dev/serial/by-id/usb-...", a pty path, or a '
        '"socket://host:port" URL, or leave port out for the simulator to fill'
    )
    if not isinstance(value, str):
        raise ConfigError(key, value, f"{_show(value)} is not a serial port", fix)
    if value.startswith("/"):
        if len(value) > 1 and value.isprintable() and not any(c.isspace() for c in value):
            return value
    else:
        m = _PORT_URL_RE.fullmatch(value)
        if m is not None and 1 <= int(m.group(2)) <= 65535:
            return value
    raise ConfigError(key, value, f"{_show(value)} is not a serial port", fix)


def _link(t: Mapping[str, Any], where: str, pins: _Pins) -> Link:
    lw = f"{where}.link"
    if "link" not in t:
        return Link()
    lt = _table(t["link"], lw, "[boards.link]", LINK_KEYS)
    kind = lt.get("type")
    if kind not in ("usb", "rs485"):
        raise ConfigError(
            f"{lw}.type",
            kind,
            "is missing" if kind is None else f"{_show(kind)} is not a link type",
            'write type = "usb" (USB-CDC) or type = "rs485" (UART with driver enable)',
        )
    if kind == "usb":
        for name in LINK_KEYS[1:]:
            if name in lt:
                raise ConfigError(
                    f"{lw}.{name}",
                    lt[name],
                    'is only for type = "rs485"',
                    'remove it, or set type = "rs485"',
                )
        return Link()
    uart = _req_int(lt, "uart", lw, UART_RANGE)
    tx = _gpio(lt, "tx", lw, pins, required=True)
    rx = _gpio(lt, "rx", lw, pins, required=True)
    de = _gpio(lt, "de", lw, pins, required=True)
    baud = _int_or(lt, "baud", lw, BAUD_RANGE, DEFAULT_BAUD)
    return Link(type="rs485", uart=uart, tx=tx, rx=rx, de=de, baud=baud)


def _expanders(raw: list[Any], where: str, pins: _Pins) -> tuple[Expander, ...]:
    out: list[Expander] = []
    buses: dict[int, tuple[int, int, str]] = {}  # bus -> (sda, scl, first key)
    addresses: dict[tuple[int, int], str] = {}
    for i, e in enumerate(raw):
        ew = f"{where}[{i}]"
        et = _table(e, ew, "[[boards.expanders]]", EXPANDER_KEYS)
        bus = _int_or(et, "i2c", ew, I2C_RANGE, DEFAULT_I2C)
        sda = _req_int(et, "sda", ew, (0, MAX_PIN))
        scl = _req_int(et, "scl", ew, (0, MAX_PIN))
        address = _req_int(et, "address", ew, EXPANDER_ADDRESS_RANGE)
        freq = _int_or(et, "freq", ew, I2C_FREQ_RANGE, DEFAULT_I2C_FREQ)
        if bus in buses:
            b_sda, b_scl, first = buses[bus]
            for name, pin, same in (("sda", sda, b_sda), ("scl", scl, b_scl)):
                if pin != same:
                    raise ConfigError(
                        f"{ew}.{name}",
                        pin,
                        f"{pin} differs from {first}.{name} = {same} on the same I2C bus {bus}",
                        "expanders on one bus share its sda and scl pins: use the same ones",
                    )
        else:
            buses[bus] = (sda, scl, ew)
            pins.claim(sda, f"{ew}.sda", sda)
            if scl == sda:
                raise ConfigError(
                    f"{ew}.scl", scl, f"{scl} is also sda", "use two different pins for sda and scl"
                )
            pins.claim(scl, f"{ew}.scl", scl)
        if (bus, address) in addresses:
            raise ConfigError(
                f"{ew}.address",
                address,
                f"{address:#04x} is already used by {addresses[bus, address]} on I2C bus {bus}",
                "set each expander's A0-A2 jumpers to its own address 0x20..0x27",
            )
        addresses[bus, address] = ew
        out.append(Expander(i2c=bus, sda=sda, scl=scl, address=address, freq=freq))
    return tuple(out)


def _check_terminal(boards: tuple[BoardSpec, ...]) -> None:
    """Checks across boards: ids, ports and addresses, reset lines, one of each unit."""
    ids: dict[str, int] = {}
    resets: dict[int, int] = {}
    units: dict[str, int] = {}
    for i, b in enumerate(boards):
        where = f"boards[{i}]"
        if b.board_id in ids:
            raise ConfigError(
                f"{where}.board_id",
                b.board_id,
                f"{_show(b.board_id)} is already used by boards[{ids[b.board_id]}]",
                "give each board its own id",
            )
        ids[b.board_id] = i
        if b.reset_gpio is not None:
            if b.reset_gpio in resets:
                raise ConfigError(
                    f"{where}.reset_gpio",
                    b.reset_gpio,
                    f"{b.reset_gpio} is already used by boards[{resets[b.reset_gpio]}].reset_gpio",
                    "give each board its own reset line",
                )
            resets[b.reset_gpio] = i
        for key in ("return_slot", "dropoff_slot", "entrance"):
            if getattr(b, key) is not None:
                if key in units:
                    raise ConfigError(
                        f"{where}.{key}",
                        None,
                        f"a terminal has one {key}, and boards[{units[key]}] has it already",
                        f"remove one of the two [boards.{key}] tables",
                    )
                units[key] = i
    _check_ports(boards)


def _check_ports(boards: tuple[BoardSpec, ...]) -> None:
    """Boards that share a port form one RS-485 bus: one baud rate, an address each."""
    first: dict[str, int] = {}
    addresses: dict[tuple[str, int], int] = {}
    for i, b in enumerate(boards):
        if b.port is None:
            continue
        where = f"boards[{i}]"
        j = first.setdefault(b.port, i)
        if j != i:
            usb = [k for k in (j, i) if boards[k].link.type != "rs485"]
            if usb:
                raise ConfigError(
                    f"{where}.port",
                    b.port,
                    f"{_show(b.port)} is also the port of boards[{j}], and "
                    f"boards[{usb[0]}] is on USB",
                    "give each USB board its own port; only the boards of one RS-485 bus "
                    "share a port",
                )
            if b.link.baud != boards[j].link.baud:
                raise ConfigError(
                    f"{where}.link.baud",
                    b.link.baud,
                    f"{b.link.baud} differs from boards[{j}].link.baud = "
                    f"{boards[j].link.baud} on the same port {_show(b.port)}",
                    "use one baud rate for all boards of an RS-485 bus",
                )
        other = addresses.setdefault((b.port, b.address), i)
        if other != i:
            raise ConfigError(
                f"{where}.address",
                b.address,
                f"{b.address} is already used by boards[{other}] on port {_show(b.port)}",
                "give each board on a bus its own address",
            )


# -- the board's JSON config and the firmware check ----------------------------------------


def _unit_json(unit: Channel | Unit) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(unit):
        value = getattr(unit, f.name)
        if f.name == "invert":
            if value:
                out["invert"] = list(value)
        elif value is not None:
            out[f.name] = value
    return out


def board_dict(board: BoardSpec) -> dict[str, Any]:
    """The board's JSON config as a dict: only keys the firmware knows, every value explicit."""
    d: dict[str, Any] = {
        "version": CONFIG_VERSION,
        "board_id": board.board_id,
        "address": board.address,
        "link": {k: v for k, v in dataclasses.asdict(board.link).items() if v is not None},
        "channels": [_unit_json(c) for c in board.channels],
    }
    if board.expanders:
        d["expanders"] = [dataclasses.asdict(e) for e in board.expanders]
    for key, unit in board.units().items():
        d[key] = _unit_json(unit)
    if board.recovery_pin is not None:
        d["recovery_pin"] = board.recovery_pin
    for key in TIMING_KEYS:
        d[key] = getattr(board, key)
    return d


def board_json(board: BoardSpec) -> bytes:
    """The board's config file: deterministic compact JSON with sorted keys, ``version`` 1."""
    text = json.dumps(board_dict(board), sort_keys=True, separators=(",", ":"))
    return text.encode("ascii")


def config_hash(board: BoardSpec) -> str:
    """The hash the board reports at the handshake once it runs ``board_json(board)``."""
    return str(_FW.config_hash(board_json(board)))


def check_firmware(terminal: Terminal) -> None:
    """ConfigError unless the firmware's own parser accepts every board's JSON."""
    for i, board in enumerate(terminal.boards):
        try:
            _FW.parse(board_json(board))
        except _FW.ConfigError as exc:
            raise ConfigError(
                f"boards[{i}]",
                exc.value,
                f"the board firmware refuses this board's config ({exc})",
                "change the value it names; please also report that this file passed the "
                "host check",
            ) from exc
