"""The terminal TOML: the example loads, errors name key and fix, and every board's JSON is
read by the firmware's own parser (amtfw.config.parse) with identical pins; both parsers are
fuzzed."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tomlwriter import drop_at, mutate, set_at, toml_dumps

from controller import boardconfig as bc
from controller.errors import ConfigError, ControllerError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "demo-terminal.toml"
DOC = REPO / "docs" / "configuration.md"
FW = bc.firmware_config()
FWConfigError: type[Exception] = FW.ConfigError

Doc = dict[str, Any]


# -- comparing a BoardSpec with what the firmware made of its JSON --------------------------


def expected_io(board: bc.BoardSpec) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    """The firmware's (pin, invert, role, unit, channel) output and input lists, as counters."""
    outputs: Counter[tuple[Any, ...]] = Counter()
    inputs: Counter[tuple[Any, ...]] = Counter()

    def add(unit_obj: Any, signals: Any, unit: int, channel: int | None) -> None:
        for name, role, is_output, _required in signals:
            pin = getattr(unit_obj, name)
            if pin is not None:
                entry = (pin, name in unit_obj.invert, role, unit, channel)
                (outputs if is_output else inputs)[entry] += 1

    for c in board.channels:
        add(c, FW.CHANNEL_SIGNALS, FW.U_CHANNEL, c.channel)
    for key, unit, signals in FW.SPECIAL_UNITS:
        if getattr(board, key) is not None:
            add(getattr(board, key), signals, unit, None)
    return outputs, inputs


def assert_same_board(board: bc.BoardSpec, cfg: Any) -> None:
    """The firmware's BoardConfig says exactly what the BoardSpec says."""
    assert cfg.board_id == board.board_id
    assert cfg.address == board.address
    for key in bc.TIMING_KEYS:
        assert getattr(cfg, key) == getattr(board, key), key
    link = {k: v for k, v in dataclasses.asdict(board.link).items() if v is not None}
    assert cfg.link == link
    assert cfg.expanders == [dataclasses.asdict(e) for e in board.expanders]
    assert cfg.recovery_pin == board.recovery_pin
    assert cfg.channels == [c.channel for c in board.channels]
    outputs, inputs = expected_io(board)
    assert Counter(cfg.outputs) == outputs
    assert Counter(cfg.inputs) == inputs
    assert sorted(cfg.item) == sorted(c.channel for c in board.channels if c.item is not None)
    assert sorted(cfg.led) == sorted(c.channel for c in board.channels if c.led is not None)
    units = [u for key, u, _ in FW.SPECIAL_UNITS if getattr(board, key) is not None]
    assert cfg.units == units


def fw_parse(board: bc.BoardSpec) -> Any:
    return FW.parse(bc.board_json(board))


# -- the example ---------------------------------------------------------------------------


def test_example_loads_with_the_documented_layout() -> None:
    t = bc.load(EXAMPLE)
    assert t.kiosk_id == "demo-01"
    assert [b.board_id for b in t.boards] == ["wall-a", "wall-b"]
    a, b = t.boards
    assert (a.address, len(a.channels), b.address, len(b.channels)) == (1, 12, 2, 8)
    assert a.return_slot and a.entrance and not a.dropoff_slot
    assert b.dropoff_slot and b.tamper and b.service_door and not b.entrance
    assert all(isinstance(c.solenoid, int) for c in a.channels)
    assert any(isinstance(c.solenoid, str) for c in b.channels)
    assert any(c.led is not None for c in b.channels)
    assert any(c.item is not None for c in b.channels)
    assert a.port is None and b.port is None
    assert set(t.extra) == set(bc.RESERVED_SECTIONS)
    assert t.board("wall-b") is b
    for board in t.boards:  # realistic Pico pins: GP0..GP22, GP26..GP28
        gpios = {board.recovery_pin} | {e.sda for e in board.expanders}
        for unit in (*board.channels, *board.units().values()):
            gpios |= {getattr(unit, f.name) for f in dataclasses.fields(unit)}
        gpios = {p for p in gpios if isinstance(p, int) and not isinstance(p, bool)}
        assert gpios <= set(range(29)) - {23, 24, 25}


def test_every_example_board_parses_in_the_firmware_with_identical_pins() -> None:
    for board in bc.load(EXAMPLE).boards:
        assert_same_board(board, fw_parse(board))


def test_board_json_is_compact_sorted_and_versioned() -> None:
    board = bc.load(EXAMPLE).boards[0]
    raw = bc.board_json(board)
    d = json.loads(raw)
    assert raw == json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
    assert d["version"] == 1
    assert set(d) <= set(FW._TOP_KEYS)
    assert "port" not in d and "reset_gpio" not in d
    assert bc.config_hash(board) == FW.config_hash(raw)


def test_defaults_are_the_firmwares() -> None:
    text = '[terminal]\nkiosk_id = "t-01"\nsite = "x"\n[[boards]]\nboard_id = "b"\n'
    board = bc.loads(text).boards[0]
    for key, value in FW.DEFAULTS.items():
        assert getattr(board, key) == value
    assert dict(bc.DEFAULTS) == FW.DEFAULTS
    cfg = FW.parse(json.dumps({"version": 1, "board_id": "b"}).encode())
    assert board.address == cfg.address
    assert board.link == bc.Link(type=cfg.link["type"])
    assert_same_board(board, fw_parse(board))


def test_signal_names_match_the_firmware_tables() -> None:
    names = [s[0] for s in FW.CHANNEL_SIGNALS]
    assert names == [f.name for f in dataclasses.fields(bc.Channel)][1:-1]
    for key, _unit, signals in FW.SPECIAL_UNITS:
        cls = bc._UNIT_TYPES[key]
        assert [s[0] for s in signals] == [f.name for f in dataclasses.fields(cls)][:-1]
        required = [s[0] for s in signals if s[3]]
        assert not set(required) & bc._OPTIONAL_SIGNALS
        assert set(s[0] for s in signals) - set(required) <= bc._OPTIONAL_SIGNALS
    assert set(FW._TOP_KEYS) == set(bc.BOARD_KEYS) - {"port", "reset_gpio"} | {"version"}


# -- a minimal valid terminal and the table of bad inputs ----------------------------------


def base() -> Doc:
    return {
        "terminal": {"kiosk_id": "t-01", "site": "Test site"},
        "boards": [
            {
                "board_id": "b1",
                "address": 1,
                "expanders": [{"sda": 20, "scl": 21, "address": 0x20}],
                "channels": [
                    {"channel": 1, "solenoid": 2, "door": 3},
                    {"channel": 2, "solenoid": "mcp0:A0", "door": "mcp0:B0"},
                ],
            },
            {
                "board_id": "b2",
                "address": 2,
                "channels": [{"channel": 1, "solenoid": 2, "door": 3}],
            },
        ],
    }


def _both(*fs: Callable[[Doc], None]) -> Callable[[Doc], None]:
    def apply(d: Doc) -> None:
        for f in fs:
            f(d)

    return apply


RS485 = {"type": "rs485", "uart": 1, "tx": 4, "rx": 5, "de": 6}
CH0 = "boards.0.channels.0"
BAD: list[tuple[str, Callable[[Doc], None], str, str]] = [
    # (case, mutation, key, text in str())
    ("unknown top key", set_at("extras", {"x": 1}), "extras", "use one of: terminal, boards"),
    ("unknown board key", set_at("boards.0.colour", "red"), "boards[0].colour", "board_id"),
    ("unknown channel key", set_at(f"{CH0}.lamp", 4), "boards[0].channels[0].lamp", "led"),
    ("unknown terminal key", set_at("terminal.name", "x"), "terminal.name", "kiosk_id, site"),
    ("odd unknown key", set_at("boards.0.a b", 1), 'boards[0]."a b"', "unknown key"),
    ("duplicate pin", set_at("boards.0.channels.1.door", 2), "boards[0].channels[1].door", "2 is"),
    (
        "duplicate mcp pin",
        set_at("boards.0.channels.1.led", "mcp0:B0"),
        "boards[0].channels[1].led",
        "mcp0:B0",
    ),
    (
        "duplicate channel",
        set_at("boards.0.channels.1.channel", 1),
        "boards[0].channels[1].channel",
        "",
    ),
    ("bad pin spec", set_at(f"{CH0}.door", "mcp0:C1"), "boards[0].channels[0].door", "mcp<N>"),
    ("lower-case pin", set_at(f"{CH0}.door", "mcp0:a1"), "boards[0].channels[0].door", "not a pin"),
    ("leading zero", set_at(f"{CH0}.door", "mcp00:A1"), "boards[0].channels[0].door", ""),
    ("no such expander", set_at(f"{CH0}.door", "mcp1:A1"), "boards[0].channels[0].door", "mcp0"),
    ("quoted gpio", set_at(f"{CH0}.door", "7"), "boards[0].channels[0].door", "without quotes"),
    ("gpio range", set_at(f"{CH0}.door", 49), "boards[0].channels[0].door", "0..48"),
    ("negative gpio", set_at(f"{CH0}.door", -1), "boards[0].channels[0].door", ""),
    ("float pin", set_at(f"{CH0}.door", 3.0), "boards[0].channels[0].door", "3.0"),
    ("debounce low", set_at("boards.0.debounce_ms", 2), "boards[0].debounce_ms", "5 to 1000"),
    ("debounce high", set_at("boards.0.debounce_ms", 1001), "boards[0].debounce_ms", "5 to 1000"),
    ("pulse 5000", set_at("boards.0.pulse_max_ms", 5000), "boards[0].pulse_max_ms", "20 to 1000"),
    ("queue 0", set_at("boards.1.pulse_queue", 0), "boards[1].pulse_queue", "1 to 16"),
    ("missing door", drop_at(f"{CH0}.door"), "boards[0].channels[0].door", "missing"),
    ("missing channel", drop_at(f"{CH0}.channel"), "boards[0].channels[0].channel", "missing"),
    ("kiosk_id case", set_at("terminal.kiosk_id", "Demo_01"), "terminal.kiosk_id", "Demo_01"),
    ("kiosk_id short", set_at("terminal.kiosk_id", "a"), "terminal.kiosk_id", "2 to 63"),
    ("kiosk_id dash", set_at("terminal.kiosk_id", "-ab"), "terminal.kiosk_id", ""),
    ("kiosk_id newline", set_at("terminal.kiosk_id", "ab\n"), "terminal.kiosk_id", ""),
    ("kiosk_id type", set_at("terminal.kiosk_id", 7), "terminal.kiosk_id", "not text"),
    ("missing kiosk_id", drop_at("terminal.kiosk_id"), "terminal.kiosk_id", "missing"),
    ("site empty", set_at("terminal.site", " "), "terminal.site", ""),
    ("site type", set_at("terminal.site", ["x"]), "terminal.site", "not text"),
    ("no terminal", drop_at("terminal"), "terminal", "missing"),
    ("terminal array", set_at("terminal", [1]), "terminal", "not a table"),
    ("duplicate board id", set_at("boards.1.board_id", "b1"), "boards[1].board_id", "boards[0]"),
    ("bad board id", set_at("boards.1.board_id", "Wall A"), "boards[1].board_id", ""),
    ("long board id", set_at("boards.1.board_id", "b" * 33), "boards[1].board_id", ""),
    ("no boards", set_at("boards", []), "boards", "empty"),
    ("missing boards", drop_at("boards"), "boards", "missing"),
    ("boards table", set_at("boards", {"board_id": "x"}), "boards", "[[boards]]"),
    ("address text", set_at("boards.0.address", "1"), "boards[0].address", "without quotes"),
    ("address 256", set_at("boards.0.address", 256), "boards[0].address", "0 to 255"),
    ("debounce float", set_at("boards.0.debounce_ms", 50.0), "boards[0].debounce_ms", "50.0"),
    ("channel bool", set_at(f"{CH0}.channel", True), "boards[0].channels[0].channel", "true"),
    ("channel 0", set_at(f"{CH0}.channel", 0), "boards[0].channels[0].channel", "1 to 255"),
    ("channels table", set_at("boards.0.channels", {"x": 1}), "boards[0].channels", ""),
    ("channel not table", set_at("boards.0.channels.1", 5), "boards[0].channels[1]", "table"),
    ("65 channels", set_at("boards.1.channels", [{}] * 65), "boards[1].channels", "at most 64"),
    ("invert text", set_at(f"{CH0}.invert", "door"), "boards[0].channels[0].invert", "list"),
    ("invert unknown", set_at(f"{CH0}.invert", ["lid"]), "boards[0].channels[0].invert", "lid"),
    ("invert unwired", set_at(f"{CH0}.invert", ["item"]), "boards[0].channels[0].invert", ""),
    (
        "invert twice",
        set_at(f"{CH0}.invert", ["door", "door"]),
        "boards[0].channels[0].invert",
        "twice",
    ),
    ("link type", set_at("boards.0.link", {"type": "can"}), "boards[0].link.type", "rs485"),
    ("link no type", set_at("boards.0.link", {"baud": 9600}), "boards[0].link.type", "missing"),
    (
        "usb with baud",
        set_at("boards.0.link", {"type": "usb", "baud": 9600}),
        "boards[0].link.baud",
        "rs485",
    ),
    (
        "rs485 without de",
        set_at("boards.0.link", {k: v for k, v in RS485.items() if k != "de"}),
        "boards[0].link.de",
        "missing",
    ),
    (
        "rs485 pin collides",
        set_at("boards.0.link", {**RS485, "tx": 2}),
        "boards[0].channels[0].solenoid",
        "boards[0].link.tx",
    ),
    ("uart 3", set_at("boards.0.link", {**RS485, "uart": 3}), "boards[0].link.uart", "0 to 2"),
    ("baud", set_at("boards.0.link", {**RS485, "baud": 300}), "boards[0].link.baud", ""),
    ("recovery on sda", set_at("boards.0.recovery_pin", 20), "boards[0].recovery_pin", "sda"),
    ("recovery mcp", set_at("boards.0.recovery_pin", "mcp0:A1"), "boards[0].recovery_pin", ""),
    (
        "expander address twice",
        set_at("boards.0.expanders.1", {"sda": 20, "scl": 21, "address": 0x20}),
        "boards[0].expanders[1].address",
        "0x20",
    ),
    (
        "bus with two pin pairs",
        set_at("boards.0.expanders.1", {"sda": 16, "scl": 17, "address": 0x21}),
        "boards[0].expanders[1].sda",
        "same I2C bus",
    ),
    (
        "expander address",
        set_at("boards.0.expanders.0.address", 0x40),
        "boards[0].expanders[0].address",
        "",
    ),
    ("expander sda=scl", set_at("boards.0.expanders.0.scl", 20), "boards[0].expanders[0].scl", ""),
    ("9 expanders", set_at("boards.1.expanders", [{}] * 9), "boards[1].expanders", "at most 8"),
    ("expander freq", set_at("boards.0.expanders.0.freq", 5), "boards[0].expanders[0].freq", ""),
    (
        "two entrances",
        _both(
            set_at("boards.0.entrance", {"strike": 10, "grant": 11, "door": 12}),
            set_at("boards.1.entrance", {"strike": 10, "grant": 11, "door": 12}),
        ),
        "boards[1].entrance",
        "boards[0]",
    ),
    (
        "two return slots",
        _both(
            set_at("boards.0.return_slot", {"solenoid": 10, "flap": 11, "deposit": 12}),
            set_at("boards.1.return_slot", {"solenoid": 10, "flap": 11, "deposit": 12}),
        ),
        "boards[1].return_slot",
        "",
    ),
    (
        "two drop-off slots",
        _both(
            set_at("boards.0.dropoff_slot", {"solenoid": 10, "flap": 11, "deposit": 12}),
            set_at("boards.1.dropoff_slot", {"solenoid": 10, "flap": 11, "deposit": 12}),
        ),
        "boards[1].dropoff_slot",
        "",
    ),
    (
        "slot missing flap",
        set_at("boards.0.return_slot", {"solenoid": 10, "deposit": 12}),
        "boards[0].return_slot.flap",
        "",
    ),
    (
        "tamper key",
        set_at("boards.0.tamper", {"pin": 10, "pull": "up"}),
        "boards[0].tamper.pull",
        "pin, invert",
    ),
    (
        "service door pin",
        set_at("boards.0.service_door", {"pin": 2}),
        "boards[0].service_door.pin",
        "already used",
    ),
    ("unit not table", set_at("boards.0.entrance", True), "boards[0].entrance", "table"),
    ("port number", set_at("boards.0.port", 3), "boards[0].port", ""),
    ("port COM3", set_at("boards.0.port", "COM3"), "boards[0].port", "socket://"),
    ("port url", set_at("boards.0.port", "socket://host:99999"), "boards[0].port", ""),
    (
        "usb boards share a port",
        _both(set_at("boards.0.port", "/dev/ttyACM0"), set_at("boards.1.port", "/dev/ttyACM0")),
        "boards[1].port",
        "boards[0]",
    ),
    (
        "rs485 boards share an address",
        _both(
            set_at("boards.0.port", "/dev/ttyAMA0"),
            set_at("boards.1.port", "/dev/ttyAMA0"),
            set_at("boards.0.link", RS485),
            set_at("boards.1.link", RS485),
            set_at("boards.1.address", 1),
        ),
        "boards[1].address",
        "boards[0]",
    ),
    (
        "rs485 bus with two baud rates",
        _both(
            set_at("boards.0.port", "/dev/ttyAMA0"),
            set_at("boards.1.port", "/dev/ttyAMA0"),
            set_at("boards.0.link", RS485),
            set_at("boards.1.link", {**RS485, "baud": 9600}),
        ),
        "boards[1].link.baud",
        "115200",
    ),
    (
        "reset line twice",
        _both(set_at("boards.0.reset_gpio", 17), set_at("boards.1.reset_gpio", 17)),
        "boards[1].reset_gpio",
        "boards[0].reset_gpio",
    ),
    ("reset gpio range", set_at("boards.0.reset_gpio", 28), "boards[0].reset_gpio", "0 to 27"),
]


def test_the_bad_input_table_has_unique_cases() -> None:
    assert len({case for case, *_ in BAD}) == len(BAD)


@pytest.mark.parametrize(("mutate", "key", "text"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_names_the_key(mutate: Callable[[Doc], None], key: str, text: str) -> None:
    d = base()
    mutate(d)
    with pytest.raises(ConfigError) as info:
        bc.loads(toml_dumps(d))
    err = info.value
    assert err.key == key, str(err)
    assert text in str(err)
    assert str(err).startswith(f"{key}: ")
    assert err.fix and err.fix in str(err) and err.problem in str(err)
    assert isinstance(err, ControllerError)


def test_the_base_document_is_valid_and_the_mutations_are_what_fails() -> None:
    t = bc.loads(toml_dumps(base()))
    assert [b.board_id for b in t.boards] == ["b1", "b2"]
    ok = base()
    _both(set_at("boards.0.port", "/dev/ttyAMA0"), set_at("boards.1.port", "/dev/ttyAMA0"))(ok)
    _both(set_at("boards.0.link", RS485), set_at("boards.1.link", RS485))(ok)
    t = bc.loads(toml_dumps(ok))  # an RS-485 bus: one port, two addresses
    assert t.boards[1].link == bc.Link("rs485", 1, 4, 5, 6, bc.DEFAULT_BAUD)


def test_duplicate_pin_message_reads_key_value_owner_and_fix() -> None:
    d = base()
    d["boards"][1]["channels"] += [{"channel": 2, "solenoid": 4, "door": 5}]
    d["boards"][1]["channels"] += [{"channel": 3, "solenoid": 6, "door": 3}]
    with pytest.raises(ConfigError) as info:
        bc.loads(toml_dumps(d))
    assert str(info.value) == (
        "boards[1].channels[2].door: 3 is already used by boards[1].channels[0].door; "
        "give each signal its own pin"
    )
    assert info.value.value == 3 and info.value.source == "<string>"


def test_toml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('[terminal]\nkiosk_id = "t-01"\nsite = \n')
    with pytest.raises(ConfigError) as info:
        bc.load(path)
    err = info.value
    assert (err.line, err.column, err.source) == (3, 8, str(path))
    assert str(err).startswith(f"{path}, line 3, column 8: TOML syntax error")
    with pytest.raises(ConfigError, match="<string>, line 2"):
        bc.loads('[terminal]\nkiosk_id = "a" x\n')
    with pytest.raises(ConfigError, match=r"x\.toml, line 2"):
        bc.loads("[terminal]\n[terminal]\n", "x.toml")


def test_unreadable_files_and_values_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        bc.load(tmp_path / "missing.toml")
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[terminal]\nsite = "K\xf6ln"\n')
    with pytest.raises(ConfigError, match="line 2, column 10: the file is not UTF-8") as info:
        bc.load(path)
    assert info.value.value == b"\xf6"
    with pytest.raises(ConfigError, match="cannot be read"):
        bc.loads("a = " + "9" * 5000)
    with pytest.raises(ConfigError, match="cannot be read"):
        bc.loads("a = " + "[" * 5000 + "]" * 5000)


def test_reserved_sections_are_kept_raw_and_their_values_never_printed() -> None:
    d = base()
    d["mqtt"] = {"host": "broker", "password": "hunter2"}
    d["compartments"] = [{"board": "b1", "channel": 1, "size": "S"}]
    d["staff"] = {"anything": {"goes": [1, "x"]}}
    t = bc.loads(toml_dumps(d))
    assert t.extra == {"mqtt": d["mqtt"], "compartments": d["compartments"], "staff": d["staff"]}
    d["password"] = "hunter2"  # a misplaced secret: the key is named, never its value
    with pytest.raises(ConfigError) as info:
        bc.loads(toml_dumps(d))
    assert info.value.key == "password" and "hunter2" not in str(info.value)
    d = base()
    d["boards"][0]["secret"] = "hunter2"
    with pytest.raises(ConfigError) as info:
        bc.loads(toml_dumps(d))
    assert "hunter2" not in str(info.value) and info.value.value == "secret"


def test_long_values_are_shortened_in_messages() -> None:
    d = base()
    d["terminal"]["kiosk_id"] = "X" * 500
    with pytest.raises(ConfigError) as info:
        bc.loads(toml_dumps(d))
    assert len(str(info.value)) < 400 and info.value.value == "X" * 500


def test_check_firmware_turns_a_firmware_refusal_into_a_config_error() -> None:
    t = bc.loads(toml_dumps(base()))
    bad = dataclasses.replace(t.boards[1], pulse_max_ms=5000)  # bypasses the host checks
    with pytest.raises(ConfigError) as info:
        bc.check_firmware(dataclasses.replace(t, boards=(t.boards[0], bad)))
    assert info.value.key == "boards[1]" and "pulse_max_ms" in str(info.value)


# -- ranges: host and firmware agree at both ends ------------------------------------------

# (TOML path set on base(), JSON key path in board 1's JSON, lo, hi)
RANGES: list[tuple[str, tuple[str, ...], int, int]] = [
    *[(f"boards.1.{k}", (k,), lo, hi) for k, (lo, hi) in bc.LIMITS.items()],
    ("boards.1.channels.0.channel", ("channels", "0", "channel"), *bc.CHANNEL_RANGE),
    ("boards.1.channels.0.door", ("channels", "0", "door"), 0, bc.MAX_PIN),
    ("boards.1.recovery_pin", ("recovery_pin",), 0, bc.MAX_PIN),
    ("boards.1.link.uart", ("link", "uart"), *bc.UART_RANGE),
    ("boards.1.link.baud", ("link", "baud"), *bc.BAUD_RANGE),
    ("boards.1.link.de", ("link", "de"), 0, bc.MAX_PIN),
    ("boards.1.expanders.0.i2c", ("expanders", "0", "i2c"), *bc.I2C_RANGE),
    ("boards.1.expanders.0.freq", ("expanders", "0", "freq"), *bc.I2C_FREQ_RANGE),
    ("boards.1.expanders.0.address", ("expanders", "0", "address"), *bc.EXPANDER_ADDRESS_RANGE),
    ("boards.1.expanders.0.sda", ("expanders", "0", "sda"), 0, bc.MAX_PIN),
]


def _range_doc() -> Doc:
    d = base()
    b = d["boards"][1]
    b["link"] = {"type": "rs485", "uart": 0, "tx": 40, "rx": 41, "de": 42}
    b["expanders"] = [{"sda": 44, "scl": 45, "address": 0x20}]
    b["channels"][0]["solenoid"] = 46
    return d


@pytest.mark.parametrize(("path", "json_path", "lo", "hi"), RANGES, ids=[r[0] for r in RANGES])
def test_host_and_firmware_agree_on_each_range(
    path: str, json_path: tuple[str, ...], lo: int, hi: int
) -> None:
    board = bc.loads(toml_dumps(_range_doc())).boards[1]
    for value, ok in ((lo, True), (hi, True), (lo - 1, False), (hi + 1, False)):
        d = _range_doc()
        set_at(path, value)(d)
        try:
            bc.loads(toml_dumps(d))
            host_ok = True
        except ConfigError:
            host_ok = False
        raw = bc.board_dict(board)
        node: Any = raw
        for part in json_path[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[json_path[-1]] = value
        try:
            FW.parse(json.dumps(raw).encode())
            fw_ok = True
        except FWConfigError:
            fw_ok = False
        assert (host_ok, fw_ok) == (ok, ok), (path, value)


# -- property tests: mutations never crash, valid files round-trip -------------------------

KEY_VOCAB = sorted(
    {*bc.TOP_KEYS, *bc.TERMINAL_KEYS, *bc.BOARD_KEYS, *bc.LINK_KEYS, *bc.EXPANDER_KEYS}
    | {"channel", "solenoid", "door", "item", "led", "invert", "flap", "deposit", "strike"}
    | {"grant", "exit", "pin", "version"}
)
PIN_TEXT = ["mcp0:A0", "mcp0:B7", "mcp1:A3", "mcp7:B0", "mcp8:A0", "mcp00:A1", "mcp²:A0", "5"]
scalars = st.one_of(
    st.integers(-5, 300),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(PIN_TEXT + KEY_VOCAB + ["usb", "rs485", "/dev/ttyACM0", "socket://h:1"]),
    st.dates(min_value=datetime.date(1000, 1, 1)),
    st.times(),
)
keys = st.one_of(st.sampled_from(KEY_VOCAB), st.text(max_size=8))
toml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=8,
)


EXAMPLE_DOC = tomllib.loads(EXAMPLE.read_text())


@st.composite
def mutated_documents(draw: st.DrawFn) -> Doc:
    doc: Doc = copy.deepcopy(draw(st.sampled_from([EXAMPLE_DOC, base()])))
    mutate(draw, doc, keys, toml_values)
    return doc


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents())
def test_mutated_documents_raise_only_config_errors_and_round_trip(doc: Doc) -> None:
    text = toml_dumps(doc)
    assert tomllib.loads(text) is not None  # the writer itself is sound
    try:
        terminal = bc.loads(text)
    except ConfigError as exc:
        assert str(exc) and exc.fix
        return
    for board in terminal.boards:
        assert_same_board(board, fw_parse(board))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_text_raises_only_config_errors(data: st.DataObject) -> None:
    text = EXAMPLE.read_text()
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 20))
        text = text[:at] + data.draw(st.text(max_size=10)) + text[at + cut :]
    try:
        terminal = bc.loads(text)
    except ConfigError:
        return
    for board in terminal.boards:
        assert_same_board(board, fw_parse(board))


@st.composite
def valid_boards(draw: st.DrawFn, board_id: str, units: bool) -> Doc:
    """A random board that must load: distinct pins, in-range values."""
    gpio = draw(st.permutations(range(bc.MAX_PIN + 1)))
    b: Doc = {"board_id": board_id, "address": draw(st.integers(0, 255))}
    if draw(st.booleans()):
        b["link"] = {"type": "rs485", "uart": draw(st.integers(0, 2))}
        b["link"].update(tx=gpio.pop(), rx=gpio.pop(), de=gpio.pop())
        if draw(st.booleans()):
            b["link"]["baud"] = draw(st.integers(*bc.BAUD_RANGE))
    elif draw(st.booleans()):
        b["link"] = {"type": "usb"}
    n_exp = draw(st.integers(0, 3))
    if n_exp:
        sda, scl = gpio.pop(), gpio.pop()
        addrs = draw(st.permutations(range(0x20, 0x28)))
        b["expanders"] = [{"sda": sda, "scl": scl, "address": addrs[i]} for i in range(n_exp)]
        if draw(st.booleans()):
            b["expanders"][0]["freq"] = draw(st.integers(*bc.I2C_FREQ_RANGE))
    if draw(st.booleans()):
        b["recovery_pin"] = gpio.pop()
    mcp = [f"mcp{n}:{p}{i}" for n in range(n_exp) for p in "AB" for i in range(8)]
    pool: list[Any] = draw(st.permutations(gpio + mcp))

    def signals(names: list[str], optional: set[str]) -> Doc:
        t: Doc = {n: pool.pop() for n in names if n not in optional or draw(st.booleans())}
        if draw(st.booleans()):
            t["invert"] = draw(st.lists(st.sampled_from(sorted(t)), unique=True))
        return t

    numbers = draw(st.lists(st.integers(1, 255), unique=True, max_size=8))
    b["channels"] = [
        {"channel": n, **signals(["solenoid", "door", "item", "led"], {"item", "led"})}
        for n in numbers
    ]
    for key in bc.UNIT_KEYS:
        if (units or key in ("tamper", "service_door")) and draw(st.booleans()):
            names = [f.name for f in dataclasses.fields(bc._UNIT_TYPES[key])][:-1]
            b[key] = signals(names, {"exit"})
    for key in bc.TIMING_KEYS:
        if draw(st.booleans()):
            b[key] = draw(st.integers(*bc.LIMITS[key]))
    if draw(st.booleans()):
        b["reset_gpio"] = draw(st.integers(*bc.PI_GPIO_RANGE))
    return b


@st.composite
def valid_documents(draw: st.DrawFn) -> Doc:
    boards = [draw(valid_boards("w-1", True))]
    if draw(st.booleans()):
        second = draw(valid_boards("w-2", False))
        if second.get("reset_gpio") == boards[0].get("reset_gpio"):
            second.pop("reset_gpio", None)
        boards.append(second)
    return {"terminal": {"kiosk_id": "k-1", "site": "s"}, "boards": boards}


def _reversed(node: Any) -> Any:
    """The same document with every table's keys in reverse order."""
    if isinstance(node, dict):
        return {k: _reversed(node[k]) for k in reversed(node)}
    if isinstance(node, list):
        return [_reversed(v) for v in node]
    return node


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_documents())
def test_valid_documents_load_and_round_trip_through_the_firmware(doc: Doc) -> None:
    terminal = bc.loads(toml_dumps(doc))
    for raw, board in zip(doc["boards"], terminal.boards, strict=True):
        cfg = fw_parse(board)
        assert_same_board(board, cfg)
        for c_raw, c in zip(raw["channels"], board.channels, strict=True):
            assert c.solenoid == c_raw["solenoid"] and c.door == c_raw["door"]
            assert set(c.invert) == set(c_raw.get("invert", []))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_documents())
def test_board_json_is_deterministic(doc: Doc) -> None:
    first = bc.loads(toml_dumps(doc))
    again = bc.loads(toml_dumps(doc))
    shuffled = bc.loads(toml_dumps(_reversed(doc)))
    for a, b, c in zip(first.boards, again.boards, shuffled.boards, strict=True):
        raw = bc.board_json(a)
        assert raw == bc.board_json(a) == bc.board_json(b) == bc.board_json(c)
        assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
        assert a == c


# -- fuzzing the firmware's own parser -----------------------------------------------------

FW_KEYS = sorted(set(KEY_VOCAB) | set(FW._TOP_KEYS))
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 300),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from([*PIN_TEXT, "usb", "rs485", "door", "item", "pin", "mcp9:Z9", "mcp:A0"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FW_KEYS) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=12,
)
EXAMPLE_JSON = [bc.board_dict(b) for b in bc.load(EXAMPLE).boards]


@st.composite
def firmware_documents(draw: st.DrawFn) -> Any:
    """Random JSON values: wholly random, random top-level keys, or a mutated real config."""
    kind = draw(st.sampled_from(["random", "keys", "mutated"]))
    if kind == "random":
        return draw(json_values)
    if kind == "keys":
        d = draw(st.dictionaries(st.sampled_from(FW_KEYS), json_values, max_size=6))
        d.update(version=1, board_id="b")
        return d
    doc: Doc = copy.deepcopy(draw(st.sampled_from(EXAMPLE_JSON)))
    mutate(draw, doc, st.sampled_from(FW_KEYS), json_values, most=3)
    return doc


def _firmware_must_only_refuse(raw: bytes) -> None:
    try:
        FW.parse(raw)
    except FWConfigError as exc:
        assert str(exc)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(firmware_documents())
def test_firmware_parser_only_raises_config_error_on_json(doc: Any) -> None:
    _firmware_must_only_refuse(json.dumps(doc).encode())


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200))
def test_firmware_parser_only_raises_config_error_on_bytes(raw: bytes) -> None:
    _firmware_must_only_refuse(raw)


def _with_pin(value: Any) -> bytes:
    d = {"version": 1, "board_id": "b", "channels": [{"channel": 1, "solenoid": 2, "door": value}]}
    return json.dumps(d).encode()


def _with_invert(value: Any) -> bytes:
    ch = {"channel": 1, "solenoid": 2, "door": 3, "invert": value}
    return json.dumps({"version": 1, "board_id": "b", "channels": [ch]}).encode()


# Inputs that crashed amtfw.config.parse with something other than its ConfigError.
FIRMWARE_CRASHES = {
    "invert is a number": _with_invert(5),
    "invert is null": _with_invert(None),
    "unit invert is a number": json.dumps(
        {"version": 1, "board_id": "b", "tamper": {"pin": 3, "invert": 1}}
    ).encode(),
    "expander index is a non-ASCII digit": _with_pin("mcp\u00b2:A0"),
    "expander index has 5000 digits": _with_pin("mcp" + "9" * 5000 + ":A0"),
    "JSON nested 100000 deep": b"[" * 100000,
}


@pytest.mark.parametrize("raw", FIRMWARE_CRASHES.values(), ids=list(FIRMWARE_CRASHES))
def test_firmware_parser_regressions(raw: bytes) -> None:
    with pytest.raises(FWConfigError):
        FW.parse(raw)


# -- importing the firmware from anywhere --------------------------------------------------


@pytest.mark.parametrize("mode", ["installed", "repo-root"])
def test_firmware_import_works_installed_and_from_the_repo_root(mode: str, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        + (f"sys.path.insert(0, {str(REPO)!r})\n" if mode == "repo-root" else "")
        + "from controller import boardconfig as bc\n"
        + f"t = bc.load({str(EXAMPLE)!r})\n"
        + "print(bc.firmware_config().__file__, len(t.boards))\n"
    )
    argv = [sys.executable, *(["-S"] if mode == "repo-root" else []), "-c", code]
    out = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(REPO / "firmware_micropython" / "amtfw" / "config.py"), "2"]


# -- the documentation ---------------------------------------------------------------------


def test_configuration_doc_names_every_key_and_default() -> None:
    doc = DOC.read_text()
    names = {*KEY_VOCAB} - {"version"}
    for name in sorted(names):
        assert f"`{name}`" in doc, name
    lines = doc.splitlines()
    for key, value in bc.DEFAULTS.items():
        assert any(f"`{key}`" in ln and f"| {value} |" in ln for ln in lines), key
    for text in ("amtomat sim --config", "amtomat run --config", "amtomat flash"):
        assert text in doc
    assert "examples/demo-terminal.toml" in doc
