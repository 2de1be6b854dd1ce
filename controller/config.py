"""The daemon's configuration: the terminal TOML with its daemon sections, validated once.

``load``/``loads`` read the file with ``controller.boardconfig`` (terminal and boards), then
check the sections it keeps raw (``daemon``, ``compartments``, ``bridge``, ``gpio``,
``office_hours``, ``staff``, ``mqtt``) into frozen dataclasses. Every error is a
``ConfigError`` naming the dotted key, the bad value and the fix; a file without any daemon
section is valid. Relative paths are relative to the config file's folder. Durations stay
in the unit the TOML key names (``deposit_s`` is seconds); the controller converts.
Endpoints (``controller.endpoints``) and office hours (``controller.officehours``) are
parsed in their own modules; ``Endpoint``, ``parse_endpoint`` and ``OfficeHours`` are
importable from here too.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, cast

from controller import boardconfig
from controller.boardconfig import CHANNEL_RANGE, LIMITS, PI_GPIO_RANGE, Terminal
from controller.endpoints import Endpoint as Endpoint
from controller.endpoints import parse_endpoint as parse_endpoint
from controller.errors import ConfigError
from controller.mqttconfig import MqttSettings, parse_mqtt
from controller.officehours import OFFICE_HOURS_KEYS as OFFICE_HOURS_KEYS
from controller.officehours import OfficeHours as OfficeHours
from controller.officehours import parse_office_hours
from controller.tomlcheck import (
    _array_of_tables,
    _bool,
    _choice,
    _int,
    _int_or,
    _ints,
    _join,
    _path,
    _req_int,
    _runs,
    _section,
    _show,
    _table,
    _text,
    _text_or,
)

T = TypeVar("T")
LogLevel = Literal["debug", "info", "warning", "error"]
GpioFactory = Literal["none", "mock", "lgpio", "rpigpio", "native"]
EntranceMode = Literal["normal", "lockdown"]
Role = Literal["staff", "admin"]

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
GPIO_FACTORIES: Final = ("none", "mock", "lgpio", "rpigpio", "native")
ENTRANCE_MODES: Final = ("normal", "lockdown")
ROLES: Final = ("staff", "admin")
PI: Final = "pi"
"""``daemon.entrance.board`` for an entrance wired to the Pi's own GPIO ([gpio.entrance])."""

DAEMON_KEYS: Final = (
    "database",
    "keystore",
    "log_level",
    "tick_ms",
    "expiry_days",
    "pulse_ms",
    "sizes",
    "pickup",
    "loading",
    "staff_auth",
    "entrance",
    "interlocks",
)
DAEMON_RANGES: Final = {"tick_ms": (1, 100), "expiry_days": (1, 365), "pulse_ms": (50, 1000)}
PICKUP_RANGES: Final = {
    "deposit_s": (5, 600),
    "door_open_s": (1, 60),
    "take_s": (10, 3600),
    "attempts_per_reference": (1, 20),
    "attempts_per_terminal": (1, 1000),
    "window_s": (60, 86400),
    "lockout_s": (60, 86400),
    "code_digits": (6, 12),
}
LOADING_RANGES: Final = {"close_s": (10, 3600)}
STAFF_AUTH_RANGES: Final = {"attempts": (1, 20), "lockout_s": (60, 86400), "session_s": (30, 28800)}
ENTRANCE_KEYS: Final = ("board", "strike_ms", "held_open_s", "mode")
ENTRANCE_RANGES: Final = {"held_open_s": (5, 3600)}
STRIKE_RANGE: Final = (100, LIMITS["strike_max_ms"][1])
INTERLOCK_KEYS: Final = (
    "service_door_blocks_compartments",
    "tamper_blocks_all",
    "lockdown_blocks_pickup",
)
COMPARTMENT_KEYS: Final = ("board", "channel", "size", "label")
BRIDGE_KEYS: Final = ("listen", "key_file", "require_key")
GPIO_KEYS: Final = ("factory", "status_led", "tamper", "tamper_active_high", "entrance")
GPIO_ENTRANCE_KEYS: Final = ("strike", "grant", "door", "exit")
STAFF_KEYS: Final = ("id", "name", "pin_hash", "role")

DEFAULT_SIZES: Final = ("S", "L")
DEFAULT_LISTEN: Final = "tcp://127.0.0.1:7010"
MAX_COMPARTMENTS: Final = 4096
MAX_LISTEN: Final = 16
MAX_STAFF: Final = 1000
LABEL_MAX_LEN: Final = 16
NAME_MAX_LEN: Final = 100

# The hash rules of controller.secrets.parse_hash, repeated so that a file that loads holds
# only hashes a login can check (tests/test_config.py holds the two to agreement).
SCRYPT_N_RANGE: Final = (2**10, 2**20)
SCRYPT_R_RANGE: Final = (1, 32)
SCRYPT_P_RANGE: Final = (1, 16)
SCRYPT_MAX_N_TIMES_R: Final = 2**21
SCRYPT_MAX_WORK: Final = 2**22  # N*r*p
SALT_BYTES_RANGE: Final = (16, 64)
DIGEST_BYTES: Final = 32
PIN_HASH_MAX_LEN: Final = 400

SIZE_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,8}")
STAFF_ID_RE: Final = re.compile(r"[a-z0-9_-]{2,32}")
_COST_RE: Final = re.compile(r"[1-9][0-9]{0,7}")


# -- the parsed configuration --------------------------------------------------------------


@dataclass(frozen=True)
class DaemonSettings:
    """``[daemon]``: where data lives, logging, timing and the compartment sizes."""

    database: Path
    keystore: Path
    log_level: LogLevel = "info"
    tick_ms: int = 10
    expiry_days: int = 10
    pulse_ms: int = 300
    sizes: tuple[str, ...] = DEFAULT_SIZES


@dataclass(frozen=True)
class PickupSettings:
    """``[daemon.pickup]``: waits and attempt limits of a citizen's pickup."""

    deposit_s: int = 60
    door_open_s: int = 8
    take_s: int = 120
    attempts_per_reference: int = 5
    attempts_per_terminal: int = 20
    window_s: int = 900
    lockout_s: int = 900
    code_digits: int = 8


@dataclass(frozen=True)
class LoadingSettings:
    """``[daemon.loading]``: staff loading a compartment."""

    close_s: int = 300


@dataclass(frozen=True)
class StaffAuthSettings:
    """``[daemon.staff_auth]``: PIN attempts, lockout and session lapse of staff logins."""

    attempts: int = 5
    lockout_s: int = 900
    session_s: int = 600


@dataclass(frozen=True)
class EntranceSettings:
    """``[daemon.entrance]``: ``board`` is a board id, ``"pi"``, or None (no entrance)."""

    board: str | None = None
    strike_ms: int = 5000
    held_open_s: int = 60
    mode: EntranceMode = "normal"


@dataclass(frozen=True)
class Interlocks:
    """``[daemon.interlocks]``: which conditions block which opens."""

    service_door_blocks_compartments: bool = True
    tamper_blocks_all: bool = False
    lockdown_blocks_pickup: bool = False


@dataclass(frozen=True)
class CompartmentSpec:
    """One compartment: its label (its id everywhere), board channel and size."""

    label: str
    board: str
    channel: int
    size: str


@dataclass(frozen=True)
class BridgeSettings:
    """``[bridge]``: kiosk endpoints and the pairing key."""

    listen: tuple[Endpoint, ...]
    key_file: Path
    require_key: bool = True


@dataclass(frozen=True)
class GpioEntrance:
    """``[gpio.entrance]``: BCM pins of an entrance wired to the Pi."""

    strike: int
    grant: int
    door: int
    exit: int | None = None


@dataclass(frozen=True)
class GpioSettings:
    """``[gpio]``: the gpiozero pin factory and the Pi's own pins (BCM numbers)."""

    factory: GpioFactory = "none"
    status_led: int | None = None
    tamper: int | None = None
    tamper_active_high: bool = True
    entrance: GpioEntrance | None = None


@dataclass(frozen=True)
class StaffMember:
    """``[[staff]]``: a staff login; ``pin_hash`` never appears in repr or errors."""

    id: str
    name: str
    pin_hash: str = field(repr=False)
    role: Role = "staff"


@dataclass(frozen=True)
class Config:
    """The whole validated configuration of one terminal.

    ``terminal`` is left out of repr: its ``extra`` holds the raw sections, pin hashes too.
    """

    terminal: Terminal = field(repr=False)
    daemon: DaemonSettings
    pickup: PickupSettings
    loading: LoadingSettings
    staff_auth: StaffAuthSettings
    entrance: EntranceSettings
    interlocks: Interlocks
    compartments: tuple[CompartmentSpec, ...]
    bridge: BridgeSettings
    gpio: GpioSettings
    office_hours: OfficeHours
    staff: tuple[StaffMember, ...]
    mqtt: MqttSettings
    source: Path


# -- reading -------------------------------------------------------------------------------


def load(path: str | Path) -> Config:
    """Read and validate a terminal TOML file with its daemon sections; errors: ConfigError."""
    terminal = boardconfig.load(path)
    return _checked(terminal, Path(path), Path(path).absolute().parent)


def loads(text: str, source: str = "<string>", base_dir: str | Path | None = None) -> Config:
    """Validate TOML text; relative paths are taken from ``base_dir`` (default: cwd)."""
    terminal = boardconfig.loads(text, source)
    return _checked(terminal, Path(source), Path(base_dir or ".").absolute())


def _checked(terminal: Terminal, source: Path, base: Path) -> Config:
    try:
        return _config(terminal, source, base)
    except ConfigError as exc:
        exc.source = str(source)
        raise


def _config(terminal: Terminal, source: Path, base: Path) -> Config:
    extra = terminal.extra
    d = _section(extra, "daemon", "", "[daemon]", DAEMON_KEYS)
    database = _path(d, "database", "daemon", base, "data/amtomat.db")
    keystore = _path(d, "keystore", "daemon", base, "data/keys")
    sizes = _sizes(d)
    daemon = DaemonSettings(
        database=database,
        keystore=keystore,
        log_level=cast(LogLevel, _choice(d, "log_level", "daemon", LOG_LEVELS, "info")),
        sizes=sizes,
        **_ints(d, "daemon", DaemonSettings, DAEMON_RANGES),
    )
    pickup = _numbers(d, "pickup", PickupSettings, PICKUP_RANGES)
    loading = _numbers(d, "loading", LoadingSettings, LOADING_RANGES)
    staff_auth = _numbers(d, "staff_auth", StaffAuthSettings, STAFF_AUTH_RANGES)
    it = _section(d, "interlocks", "daemon", "[daemon.interlocks]", INTERLOCK_KEYS)
    interlocks = Interlocks(
        **{
            f.name: _bool(it, f.name, "daemon.interlocks", f.default)
            for f in dataclasses.fields(Interlocks)
            if isinstance(f.default, bool)
        }
    )
    gpio = _gpio(_section(extra, "gpio", "", "[gpio]", GPIO_KEYS), terminal)
    entrance = _entrance(
        _section(d, "entrance", "daemon", "[daemon.entrance]", ENTRANCE_KEYS), terminal, gpio
    )
    return Config(
        terminal=terminal,
        daemon=daemon,
        pickup=pickup,
        loading=loading,
        staff_auth=staff_auth,
        entrance=entrance,
        interlocks=interlocks,
        compartments=_compartments(extra, terminal, sizes),
        bridge=_bridge(_section(extra, "bridge", "", "[bridge]", BRIDGE_KEYS), base, keystore),
        gpio=gpio,
        office_hours=parse_office_hours(
            _section(extra, "office_hours", "", "[office_hours]", OFFICE_HOURS_KEYS)
        ),
        staff=_staff(extra),
        mqtt=parse_mqtt(extra, base, terminal.kiosk_id),
        source=source,
    )


def _numbers(
    daemon: Mapping[str, Any], name: str, cls: type[T], ranges: Mapping[str, tuple[int, int]]
) -> T:
    """A ``[daemon.<name>]`` table of integers only, as ``cls``."""
    where = f"daemon.{name}"
    t = _section(daemon, name, "daemon", f"[{where}]", tuple(ranges))
    return cls(**_ints(t, where, cls, ranges))


def _sizes(d: Mapping[str, Any]) -> tuple[str, ...]:
    value = d.get("sizes", list(DEFAULT_SIZES))
    fix = 'write a list of 1 to 8 distinct names of 1 to 8 letters, digits, "_" or "-"'
    if not isinstance(value, list) or not 1 <= len(value) <= 8:
        raise ConfigError("daemon.sizes", value, f"{_show(value)} is not a list of sizes", fix)
    for name in value:
        if not isinstance(name, str) or not SIZE_RE.fullmatch(name):
            raise ConfigError("daemon.sizes", name, f"{_show(name)} is not a size name", fix)
        if value.count(name) > 1:
            raise ConfigError(
                "daemon.sizes", name, f"{_show(name)} is listed twice", "list it once"
            )
    return tuple(value)


# -- compartments --------------------------------------------------------------------------


def _compartments(
    extra: Mapping[str, Any], terminal: Terminal, sizes: tuple[str, ...]
) -> tuple[CompartmentSpec, ...]:
    """``[[compartments]]``, or every board channel with label ``<board_id>/<ch>``."""
    if "compartments" not in extra:
        return tuple(
            CompartmentSpec(f"{b.board_id}/{c.channel}", b.board_id, c.channel, sizes[0])
            for b in terminal.boards
            for c in b.channels
        )
    raw = _array_of_tables(
        extra["compartments"], "compartments", "[[compartments]]", MAX_COMPARTMENTS
    )
    if not raw:
        raise ConfigError(
            "compartments",
            raw,
            "is empty",
            "add a [[compartments]] table per compartment, or leave compartments out to use "
            "every board channel",
        )
    out: list[CompartmentSpec] = []
    labels: dict[str, str] = {}
    used: dict[tuple[str, int], str] = {}
    ids = ", ".join(f'"{b.board_id}"' for b in terminal.boards)
    for i, entry in enumerate(raw):
        w = f"compartments[{i}]"
        t = _table(entry, w, "[[compartments]]", COMPARTMENT_KEYS)
        board_id = _text(t, "board", w)
        try:
            board = terminal.board(board_id)
        except KeyError:
            raise ConfigError(
                f"{w}.board", board_id, f"{_show(board_id)} is not a board", f"use one of: {ids}"
            ) from None
        channel = _req_int(t, "channel", w, CHANNEL_RANGE)
        numbers = [c.channel for c in board.channels]
        if channel not in numbers:
            have = _runs(numbers) or "none"
            raise ConfigError(
                f"{w}.channel",
                channel,
                f"board {_show(board_id)} has no channel {channel}",
                f"use one of its channels: {have}",
            )
        if (board_id, channel) in used:
            raise ConfigError(
                f"{w}.channel",
                channel,
                f"{board_id} channel {channel} is already {used[board_id, channel]}",
                "give each board channel at most one compartment",
            )
        used[board_id, channel] = w
        size = _choice(t, "size", w, sizes, sizes[0])
        label = _text(t, "label", w)
        if (
            not 1 <= len(label) <= LABEL_MAX_LEN
            or not label.isprintable()
            or label != label.strip()
        ):
            raise ConfigError(
                f"{w}.label",
                label,
                f"{_show(label)} is not a label",
                f"write 1 to {LABEL_MAX_LEN} printable characters without leading or trailing "
                'spaces, as on the door, e.g. "A01"',
            )
        if label in labels:
            raise ConfigError(
                f"{w}.label",
                label,
                f"{_show(label)} is already the label of {labels[label]}",
                "give each compartment its own label",
            )
        labels[label] = w
        out.append(CompartmentSpec(label, board_id, channel, size))
    return tuple(out)


# -- gpio and the entrance -----------------------------------------------------------------


def _gpio(t: Mapping[str, Any], terminal: Terminal) -> GpioSettings:
    """``[gpio]``; every BCM pin once across it and the boards' ``reset_gpio``."""
    owners = {
        b.reset_gpio: f"boards[{i}].reset_gpio"
        for i, b in enumerate(terminal.boards)
        if b.reset_gpio is not None
    }

    def pin(table: Mapping[str, Any], name: str, where: str, required: bool) -> int | None:
        value = _int(table, name, where, PI_GPIO_RANGE, required=required)
        if value is not None:
            key = _join(where, name)
            if value in owners:
                raise ConfigError(
                    key,
                    value,
                    f"BCM pin {value} is already used by {owners[value]}",
                    "give each signal on the Pi its own pin",
                )
            owners[value] = key
        return value

    factory = cast(GpioFactory, _choice(t, "factory", "gpio", GPIO_FACTORIES, "none"))
    status_led = pin(t, "status_led", "gpio", False)
    tamper = pin(t, "tamper", "gpio", False)
    entrance = None
    if "entrance" in t:
        et = _table(t["entrance"], "gpio.entrance", "[gpio.entrance]", GPIO_ENTRANCE_KEYS)
        strike, grant, door = (
            pin(et, n, "gpio.entrance", True) for n in ("strike", "grant", "door")
        )
        assert strike is not None and grant is not None and door is not None
        entrance = GpioEntrance(strike, grant, door, pin(et, "exit", "gpio.entrance", False))
    return GpioSettings(
        factory=factory,
        status_led=status_led,
        tamper=tamper,
        tamper_active_high=_bool(t, "tamper_active_high", "gpio", True),
        entrance=entrance,
    )


def _entrance(t: Mapping[str, Any], terminal: Terminal, gpio: GpioSettings) -> EntranceSettings:
    """``[daemon.entrance]``: the entrance's board (default: the one that has it) and timing."""
    where = "daemon.entrance"
    with_unit = [b.board_id for b in terminal.boards if b.entrance is not None]
    choices = ", ".join([*(f'"{b}"' for b in with_unit), f'"{PI}" (with [gpio.entrance])'])
    board: str | None
    if "board" in t:
        board = _text(t, "board", where)
        if board != PI:
            try:
                spec = terminal.board(board)
            except KeyError:
                raise ConfigError(
                    f"{where}.board", board, f"{_show(board)} is not a board", f"use {choices}"
                ) from None
            if spec.entrance is None:
                raise ConfigError(
                    f"{where}.board",
                    board,
                    f"board {_show(board)} has no [boards.entrance] unit",
                    f"use {choices}, or add a [boards.entrance] table to that board",
                )
        elif gpio.entrance is None:
            raise ConfigError(
                f"{where}.board",
                board,
                f'"{PI}" needs a [gpio.entrance] table',
                "add [gpio.entrance] with the BCM pins strike, grant, door (and exit)",
            )
    else:
        board = with_unit[0] if with_unit else (PI if gpio.entrance is not None else None)
    if gpio.entrance is not None and board != PI:
        raise ConfigError(
            "gpio.entrance",
            None,
            f'is only used with daemon.entrance.board = "{PI}"',
            f'remove [gpio.entrance], or set daemon.entrance.board = "{PI}"',
        )
    if board is None:
        if t:
            raise ConfigError(
                where,
                None,
                "the terminal has no entrance",
                "remove [daemon.entrance], or add [boards.entrance] to a board or "
                "[gpio.entrance] for one wired to the Pi",
            )
        return EntranceSettings()
    if board == PI:
        for i, b in enumerate(terminal.boards):
            if b.board_id == PI:
                raise ConfigError(
                    f"boards[{i}].board_id",
                    PI,
                    f'"{PI}" is reserved: daemon.entrance.board = "{PI}" means the Pi itself',
                    "give the board another id",
                )
        if gpio.factory == "none":
            raise ConfigError(
                "gpio.factory",
                gpio.factory,
                '"none" cannot drive the entrance wired to the Pi',
                'set factory = "lgpio" (or "rpigpio", "native"; "mock" for tests)',
            )
        strike_max, owner = STRIKE_RANGE[1], ""
    else:
        i = next(i for i, b in enumerate(terminal.boards) if b.board_id == board)
        strike_max, owner = terminal.boards[i].strike_max_ms, f"boards[{i}].strike_max_ms"
    strike_ms = _int_or(t, "strike_ms", where, STRIKE_RANGE, min(5000, strike_max))
    if strike_ms > strike_max:
        raise ConfigError(
            f"{where}.strike_ms",
            strike_ms,
            f"{strike_ms} is more than {owner} = {strike_max}",
            f"use at most {strike_max}, or raise {owner}",
        )
    return EntranceSettings(
        board=board,
        strike_ms=strike_ms,
        mode=cast(EntranceMode, _choice(t, "mode", where, ENTRANCE_MODES, "normal")),
        **_ints(t, where, EntranceSettings, ENTRANCE_RANGES),
    )


# -- the kiosk bridge ----------------------------------------------------------------------


def _bridge(t: Mapping[str, Any], base: Path, keystore: Path) -> BridgeSettings:
    value = t.get("listen", [DEFAULT_LISTEN])
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_LISTEN:
        raise ConfigError(
            "bridge.listen",
            value,
            f"{_show(value)} is not a list of 1 to {MAX_LISTEN} endpoints",
            f'write a list such as listen = ["{DEFAULT_LISTEN}"]',
        )
    listen: list[Endpoint] = []
    for i, text in enumerate(value):
        endpoint = parse_endpoint(text, base, f"bridge.listen[{i}]")
        for j, other in enumerate(listen):
            if other.url == endpoint.url:
                raise ConfigError(
                    f"bridge.listen[{i}]",
                    text,
                    f"{_show(text)} is already bridge.listen[{j}]",
                    "list each endpoint once",
                )
        listen.append(endpoint)
    if "key_file" in t:
        key_file = _path(t, "key_file", "bridge", base, "")
    else:
        key_file = keystore / "_kiosk.key"
    return BridgeSettings(tuple(listen), key_file, _bool(t, "require_key", "bridge", True))


# -- staff ---------------------------------------------------------------------------------


def _staff(extra: Mapping[str, Any]) -> tuple[StaffMember, ...]:
    """``[[staff]]``. No error shows a table's contents: they hold pin hashes."""
    raw = extra.get("staff", [])
    if not isinstance(raw, list) or len(raw) > MAX_STAFF:
        raise ConfigError(
            "staff",
            None,
            f"is not an array of at most {MAX_STAFF} tables",
            "write each staff member as its own [[staff]] table",
        )
    out: list[StaffMember] = []
    ids: dict[str, str] = {}
    for i, entry in enumerate(raw):
        w = f"staff[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(w, None, "is not a table", "write it as a [[staff]] table")
        t = _table(entry, w, "[[staff]]", STAFF_KEYS)
        staff_id = _text(t, "id", w)
        if not STAFF_ID_RE.fullmatch(staff_id):
            raise ConfigError(
                f"{w}.id",
                staff_id,
                f"{_show(staff_id)} is not a staff id",
                'use 2 to 32 of a-z, 0-9, "-" and "_", e.g. "mueller"',
            )
        if staff_id in ids:
            raise ConfigError(
                f"{w}.id",
                staff_id,
                f"{_show(staff_id)} is already the id of {ids[staff_id]}",
                "give each staff member their own id",
            )
        ids[staff_id] = w
        name = _text_or(t, "name", w, staff_id)
        if not 1 <= len(name) <= NAME_MAX_LEN or not name.isprintable() or not name.strip():
            raise ConfigError(
                f"{w}.name",
                name,
                f"{_show(name)} is not a name",
                f"write the name in one line of 1 to {NAME_MAX_LEN} printable characters",
            )
        role = cast(Role, _choice(t, "role", w, ROLES, "staff"))
        out.append(StaffMember(staff_id, name, _pin_hash(t, f"{w}.pin_hash"), role))
    return tuple(out)


def _pin_hash(t: Mapping[str, Any], key: str) -> str:
    """The ``scrypt$N$r$p$salt$hash`` shape; errors never show the value (``value`` None)."""
    fix = "paste the whole line printed by `amtomat hash-secret` (scrypt$N$r$p$salt$hash)"
    if "pin_hash" not in t:
        raise ConfigError(key, None, "is missing", f'add pin_hash = "..."; {fix}')
    value = t["pin_hash"]

    def bad(problem: str) -> ConfigError:
        return ConfigError(key, None, f"the value {problem}", fix)

    if not isinstance(value, str):
        raise bad("is not text")
    parts = value.split("$")
    if len(value) > PIN_HASH_MAX_LEN or len(parts) != 6 or parts[0] != "scrypt":
        raise bad("is not of the form scrypt$N$r$p$salt$hash")
    if not all(_COST_RE.fullmatch(p) for p in parts[1:4]):
        raise bad("has an N, r or p that is not a whole number without leading zeros")
    n, r, p = (int(x) for x in parts[1:4])
    if n & (n - 1) or not SCRYPT_N_RANGE[0] <= n <= SCRYPT_N_RANGE[1]:
        raise bad("has an N that is not a power of two from 2^10 to 2^20")
    if not (
        SCRYPT_R_RANGE[0] <= r <= SCRYPT_R_RANGE[1] and SCRYPT_P_RANGE[0] <= p <= SCRYPT_P_RANGE[1]
    ):
        raise bad(
            f"has r outside {SCRYPT_R_RANGE[0]}..{SCRYPT_R_RANGE[1]} "
            f"or p outside {SCRYPT_P_RANGE[0]}..{SCRYPT_P_RANGE[1]}"
        )
    if n * r > SCRYPT_MAX_N_TIMES_R or n * r * p > SCRYPT_MAX_WORK:
        raise bad("asks for more than N*r = 2^21 or N*r*p = 2^22 (scrypt memory and work)")
    salt, digest = _b64(parts[4]), _b64(parts[5])
    if salt is None or not SALT_BYTES_RANGE[0] <= len(salt) <= SALT_BYTES_RANGE[1]:
        raise bad("has a salt that is not padded base64 of 16 to 64 bytes")
    if digest is None or len(digest) != DIGEST_BYTES:
        raise bad(f"has a hash that is not padded base64 of {DIGEST_BYTES} bytes")
    return value


def _b64(text: str) -> bytes | None:
    """Canonical standard base64 with ``=`` padding, or None."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw).decode("ascii") == text else None
