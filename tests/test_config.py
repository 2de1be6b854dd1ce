"""The daemon's sections of the terminal TOML: defaults, bounds, cross-checks, fuzzing, docs."""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tomlwriter import drop_at, mutate, set_at, toml_dumps

from controller import config as cf
from controller import secrets
from controller.errors import ConfigError, ControllerError
from controller.mqttconfig import MQTT_KEYS

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "demo-terminal.toml"
DOC = REPO / "docs" / "configuration.md"
BERLIN = ZoneInfo("Europe/Berlin")
HASH = "scrypt$16384$8$1$zv874Mf5JNS0vxxs++7Aqg==$hRhIaP2tJoHR5oCYSVxP5UVXRqTwRRC9y0AM8jnFZOo="

Doc = dict[str, Any]


# -- documents -----------------------------------------------------------------------------


def _channels(n: int) -> list[Doc]:
    return [{"channel": c, "solenoid": 2 * c, "door": 2 * c + 1} for c in range(1, n + 1)]


def base() -> Doc:
    """Two boards: b1 (channels 1..3, the entrance, reset 17) and b2 (1..2, reset 26)."""
    return {
        "terminal": {"kiosk_id": "t-01", "site": "Test site"},
        "boards": [
            {
                "board_id": "b1",
                "reset_gpio": 17,
                "channels": _channels(3),
                "entrance": {"strike": 20, "grant": 21, "door": 22},
            },
            {"board_id": "b2", "reset_gpio": 26, "strike_max_ms": 3000, "channels": _channels(2)},
        ],
    }


def full() -> Doc:
    """base() with every daemon key set to a value other than its default."""
    d = base()
    d["daemon"] = {
        "database": "/var/lib/amtomat/db.sqlite",
        "keystore": "keys",
        "log_level": "debug",
        "tick_ms": 20,
        "expiry_days": 14,
        "pulse_ms": 250,
        "sizes": ["M", "XL"],
        "pickup": {
            "deposit_s": 90,
            "door_open_s": 5,
            "take_s": 60,
            "attempts_per_reference": 3,
            "attempts_per_terminal": 10,
            "window_s": 600,
            "lockout_s": 1200,
            "code_digits": 6,
        },
        "loading": {"close_s": 200},
        "staff_auth": {"attempts": 4, "lockout_s": 300, "session_s": 120},
        "entrance": {"board": "b1", "strike_ms": 4000, "held_open_s": 30, "mode": "lockdown"},
        "interlocks": {
            "service_door_blocks_compartments": False,
            "tamper_blocks_all": True,
            "lockdown_blocks_pickup": True,
        },
    }
    d["compartments"] = [
        {"board": "b1", "channel": 1, "size": "M", "label": "A01"},
        {"board": "b2", "channel": 2, "size": "XL", "label": "B02"},
    ]
    d["bridge"] = {
        "listen": ["tcp://127.0.0.1:7011", "unix:run/kiosk.sock"],
        "key_file": "pairing.key",
        "require_key": False,
    }
    d["gpio"] = {"factory": "mock", "status_led": 5, "tamper": 6, "tamper_active_high": False}
    d["office_hours"] = {
        "timezone": "Europe/Berlin",
        "mon": "08:00-12:00, 14:00-18:00",
        "sat": "closed",
        "sun": "00:00-24:00",
        "holidays": ["2026-12-25", dt.date(2026, 12, 26)],
    }
    d["staff"] = [
        {"id": "mueller", "name": "A. Müller", "pin_hash": HASH, "role": "admin"},
        {"id": "s-2", "pin_hash": HASH},
    ]
    d["mqtt"] = {"enabled": True, "host": "127.0.0.1", "tls": False}
    return d


def load_doc(doc: Doc, base_dir: Path = Path("/cfg")) -> cf.Config:
    return cf.loads(toml_dumps(doc), "t.toml", base_dir)


def error(doc: Doc) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_doc(doc)
    err = info.value
    assert (
        err.fix and err.problem and str(err).startswith(f"{err.key}: ") and err.source == "t.toml"
    )
    assert isinstance(err, ControllerError)
    return err


def with_(doc: Doc, *changes: Callable[[Doc], None]) -> Doc:
    for change in changes:
        change(doc)
    return doc


# -- the demo file and the defaults --------------------------------------------------------


def test_the_demo_file_loads_with_its_compartments_and_sections() -> None:
    c = cf.load(EXAMPLE)
    labels = [f"A{n:02d}" for n in range(1, 13)] + [f"B{n:02d}" for n in range(1, 9)]
    assert [x.label for x in c.compartments] == labels
    assert [(x.board, x.channel) for x in c.compartments] == [
        *(("wall-a", n) for n in range(1, 13)),
        *(("wall-b", n) for n in range(1, 9)),
    ]
    assert {x.size for x in c.compartments} == {"S", "L"} and c.daemon.sizes == ("S", "L")
    assert c.daemon.database == EXAMPLE.parent / "data" / "amtomat.db"
    assert c.bridge.key_file == EXAMPLE.parent / "data" / "keys" / "_kiosk.key"
    assert c.entrance.board == "wall-a" and c.gpio.factory == "none"
    assert [(s.id, s.role) for s in c.staff] == [("mueller", "staff"), ("admin", "admin")]
    assert c.source == EXAMPLE and c.terminal.kiosk_id == "demo-01" and not c.mqtt.enabled
    monday_9 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=BERLIN)
    assert c.office_hours.is_open(monday_9)
    assert not c.office_hours.is_open(monday_9.replace(hour=13))
    assert not c.office_hours.is_open(dt.datetime(2026, 12, 24, 9, 0, tzinfo=BERLIN))


def test_a_terminal_without_daemon_sections_gets_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(toml_dumps(base()))
    c = cf.load(path)
    assert c.daemon == cf.DaemonSettings(
        database=tmp_path / "data" / "amtomat.db",
        keystore=tmp_path / "data" / "keys",
        log_level="info",
        tick_ms=10,
        expiry_days=10,
        pulse_ms=300,
        sizes=("S", "L"),
    )
    p = c.pickup
    assert (p.deposit_s, p.door_open_s, p.take_s, p.code_digits) == (60, 8, 120, 8)
    assert (p.attempts_per_reference, p.attempts_per_terminal) == (5, 20)
    assert (p.window_s, p.lockout_s, c.loading.close_s) == (900, 900, 300)
    assert c.staff_auth == cf.StaffAuthSettings(attempts=5, lockout_s=900, session_s=600)
    assert c.entrance == cf.EntranceSettings("b1", 5000, 60, "normal")
    assert c.interlocks == cf.Interlocks(True, False, False)
    assert [(x.label, x.board, x.channel, x.size) for x in c.compartments] == [
        ("b1/1", "b1", 1, "S"),
        ("b1/2", "b1", 2, "S"),
        ("b1/3", "b1", 3, "S"),
        ("b2/1", "b2", 1, "S"),
        ("b2/2", "b2", 2, "S"),
    ]
    assert c.bridge == cf.BridgeSettings(
        (cf.Endpoint("tcp", "127.0.0.1", 7010),), tmp_path / "data" / "keys" / "_kiosk.key", True
    )
    assert c.gpio == cf.GpioSettings("none", None, None, True, None)
    assert c.office_hours.timezone == "Europe/Berlin" and c.office_hours.holidays == frozenset()
    assert not c.office_hours.is_open(dt.datetime(2026, 3, 2, 10, tzinfo=BERLIN))
    assert c.staff == () and c.mqtt.enabled is False and c.source == path


def test_every_key_of_a_full_document_is_read() -> None:
    c = load_doc(full())
    assert c.daemon == cf.DaemonSettings(
        Path("/var/lib/amtomat/db.sqlite"), Path("/cfg/keys"), "debug", 20, 14, 250, ("M", "XL")
    )
    assert c.pickup == cf.PickupSettings(90, 5, 60, 3, 10, 600, 1200, 6)
    assert c.loading == cf.LoadingSettings(200)
    assert c.staff_auth == cf.StaffAuthSettings(4, 300, 120)
    assert c.entrance == cf.EntranceSettings("b1", 4000, 30, "lockdown")
    assert c.interlocks == cf.Interlocks(False, True, True)
    assert c.compartments == (
        cf.CompartmentSpec("A01", "b1", 1, "M"),
        cf.CompartmentSpec("B02", "b2", 2, "XL"),
    )
    assert c.bridge.listen == (
        cf.Endpoint("tcp", "127.0.0.1", 7011),
        cf.Endpoint("unix", path="/cfg/run/kiosk.sock"),
    )
    assert (c.bridge.key_file, c.bridge.require_key) == (Path("/cfg/pairing.key"), False)
    assert c.gpio == cf.GpioSettings("mock", 5, 6, False, None)
    oh = c.office_hours
    assert (
        oh.days[0] == ((480, 720), (840, 1080)) and oh.days[5] == () and oh.days[6] == ((0, 1440),)
    )
    assert oh.holidays == {dt.date(2026, 12, 25), dt.date(2026, 12, 26)}
    assert c.staff == (
        cf.StaffMember("mueller", "A. Müller", HASH, "admin"),
        cf.StaffMember("s-2", "s-2", HASH, "staff"),
    )
    assert c.mqtt.enabled is True and c.source == Path("t.toml")


def test_config_objects_are_frozen_and_never_show_a_pin_hash() -> None:
    c = load_doc(full())
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.pickup.deposit_s = 1  # type: ignore[misc]
    assert "scrypt" not in repr(c) and "scrypt" not in repr(c.staff[0])
    assert c.staff[0].pin_hash == HASH


# -- integer keys: both ends and one past ----------------------------------------------------

# (dotted path, lo, hi) straight from the schema; each checked on full()
BOUNDS: list[tuple[str, int, int]] = [
    ("daemon.tick_ms", 1, 100),
    ("daemon.expiry_days", 1, 365),
    ("daemon.pulse_ms", 50, 1000),
    ("daemon.pickup.deposit_s", 5, 600),
    ("daemon.pickup.door_open_s", 1, 60),
    ("daemon.pickup.take_s", 10, 3600),
    ("daemon.pickup.attempts_per_reference", 1, 20),
    ("daemon.pickup.attempts_per_terminal", 1, 1000),
    ("daemon.pickup.window_s", 60, 86400),
    ("daemon.pickup.lockout_s", 60, 86400),
    ("daemon.pickup.code_digits", 6, 12),
    ("daemon.loading.close_s", 10, 3600),
    ("daemon.staff_auth.attempts", 1, 20),
    ("daemon.staff_auth.lockout_s", 60, 86400),
    ("daemon.staff_auth.session_s", 30, 28800),
    ("daemon.entrance.strike_ms", 100, 5000),  # b1's strike_max_ms
    ("daemon.entrance.held_open_s", 5, 3600),
    ("gpio.status_led", 0, 27),
    ("gpio.tamper", 0, 27),
]


def _attr(c: cf.Config, path: str) -> Any:
    parts = path.split(".")
    if parts[0] == "daemon" and len(parts) == 3:
        return getattr(getattr(c, parts[1]), parts[2])
    if parts[0] in ("compartments", "staff"):
        return getattr(getattr(c, parts[0])[int(parts[1])], parts[2])
    return getattr(getattr(c, parts[0]), parts[-1])


def _dotted(path: str) -> str:
    return re.sub(r"\.(\d+)", r"[\1]", path)


@pytest.mark.parametrize(("path", "lo", "hi"), BOUNDS, ids=[b[0] for b in BOUNDS])
def test_integer_keys_accept_their_range_and_name_the_key_outside(
    path: str, lo: int, hi: int
) -> None:
    for value in (lo, hi):
        assert _attr(load_doc(with_(full(), set_at(path, value))), path) == value
    for value in (lo - 1, hi + 1):
        err = error(with_(full(), set_at(path, value)))
        assert err.key == _dotted(path) and err.value == value, str(err)
    err = error(with_(full(), set_at(path, str(lo))))
    assert err.key == _dotted(path) and "not a whole number" in str(err)
    assert error(with_(full(), set_at(path, True))).key == _dotted(path)


BOOLS = [
    "daemon.interlocks.service_door_blocks_compartments",
    "daemon.interlocks.tamper_blocks_all",
    "daemon.interlocks.lockdown_blocks_pickup",
    "bridge.require_key",
    "gpio.tamper_active_high",
    "mqtt.enabled",
]


@pytest.mark.parametrize("path", BOOLS)
def test_true_false_keys_take_only_booleans(path: str) -> None:
    for value in (True, False):
        c = load_doc(with_(full(), set_at(path, value)))
        node = _attr(c, path)
        assert node is value
    err = error(with_(full(), set_at(path, "yes")))
    assert err.key == path and "true or false" in str(err)


CHOICES = [
    ("daemon.log_level", ["debug", "info", "warning", "error"], "warn", "warning"),
    ("daemon.entrance.mode", ["normal", "lockdown"], "lock", "lockdown"),
    ("gpio.factory", ["none", "mock", "lgpio", "rpigpio", "native"], "lgpi0", "lgpio"),
    ("staff.0.role", ["staff", "admin"], "admn", "admin"),
    ("compartments.0.size", ["M", "XL"], "XXL", "XL"),
]


@pytest.mark.parametrize(("path", "good", "bad", "near"), CHOICES, ids=[c[0] for c in CHOICES])
def test_choice_keys_take_their_words_and_suggest_the_closest(
    path: str, good: list[str], bad: str, near: str
) -> None:
    for value in good:
        assert _attr(load_doc(with_(full(), set_at(path, value))), path) == value
    err = error(with_(full(), set_at(path, bad)))
    assert err.key == _dotted(path) and err.value == bad
    assert f"did you mean {near}?" in err.fix
    assert all(f'"{word}"' in str(err) for word in good)
    assert error(with_(full(), set_at(path, 3))).key == _dotted(path)


# -- unknown keys --------------------------------------------------------------------------

UNKNOWN = [
    ("daemon.tick", "tick_ms"),
    ("daemon.pickup.deposit", "deposit_s"),
    ("daemon.loading.close", "close_s"),
    ("daemon.staff_auth.sesion_s", "session_s"),
    ("daemon.entrance.strike", "strike_ms"),
    ("daemon.interlocks.tamper_blocks", "tamper_blocks_all"),
    ("compartments.1.lable", "label"),
    ("bridge.listn", "listen"),
    ("gpio.status_lde", "status_led"),
    ("gpio.entrance.strik", "strike"),
    ("office_hours.monday", "mon"),
    ("office_hours.holiday", "holidays"),
    ("staff.0.pinhash", "pin_hash"),
    ("mqtt.enable", "enabled"),
    ("daemons", "daemon"),
]


@pytest.mark.parametrize(("path", "near"), UNKNOWN, ids=[u[0] for u in UNKNOWN])
def test_unknown_keys_are_errors_that_list_the_allowed_and_suggest_one(
    path: str, near: str
) -> None:
    doc = full()
    if path.startswith("gpio.entrance"):
        doc = with_(_pi_entrance(doc))
    err = error(with_(doc, set_at(path, 1)))
    assert err.key == _dotted(path) and err.problem == "unknown key"
    assert near in err.fix.split("use one of: ")[1] and err.fix.endswith(f"did you mean {near}?")


def test_an_unknown_key_far_from_every_allowed_one_gets_no_suggestion() -> None:
    err = error(with_(full(), set_at("daemon.pickup.zzzz", 1)))
    assert "did you mean" not in err.fix and "deposit_s, door_open_s" in err.fix


@pytest.mark.parametrize(
    "section", ["daemon", "daemon.pickup", "daemon.entrance", "bridge", "gpio", "mqtt"]
)
def test_a_section_that_is_not_a_table_is_an_error(section: str) -> None:
    err = error(with_(full(), set_at(section, 5)))
    assert err.key == section and "not a table" in err.problem


# -- sizes and compartments ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "problem"),
    [
        ([], "not a list of sizes"),
        (["A", "B", "C", "D", "E", "F", "G", "H", "I"], "not a list of sizes"),
        ("S", "not a list of sizes"),
        (["S", "S"], "listed twice"),
        (["NINECHARS"], "not a size name"),
        (["S M"], "not a size name"),
        ([""], "not a size name"),
        ([1], "not a size name"),
    ],
)
def test_sizes_are_one_to_eight_short_distinct_names(sizes: object, problem: str) -> None:
    d = with_(base(), set_at("daemon.sizes", sizes))
    err = error(d)
    assert err.key == "daemon.sizes" and problem in err.problem


def test_without_compartment_tables_every_channel_takes_the_first_size() -> None:
    c = load_doc(with_(base(), set_at("daemon.sizes", ["M", "L"])))
    assert {x.size for x in c.compartments} == {"M"} and len(c.compartments) == 5


def test_channels_without_a_compartment_table_are_unused() -> None:
    d = with_(base(), set_at("compartments", [{"board": "b2", "channel": 2, "label": "X"}]))
    assert load_doc(d).compartments == (cf.CompartmentSpec("X", "b2", 2, "S"),)


COMPARTMENT_ERRORS = [
    ("board", "b9", "compartments[1].board", '"b1", "b2"'),
    ("board", 1, "compartments[1].board", "not text"),
    ("channel", 4, "compartments[1].channel", "its channels: 1-3"),
    ("channel", 0, "compartments[1].channel", "out of range"),
    ("channel", 1, "compartments[1].channel", "already compartments[0]"),
    ("label", "A01", "compartments[1].label", "already the label of compartments[0]"),
    ("label", "", "compartments[1].label", "not a label"),
    ("label", "x" * 17, "compartments[1].label", "1 to 16 printable"),
    ("label", " A1", "compartments[1].label", "not a label"),
    ("label", "A\n1", "compartments[1].label", "not a label"),
    ("size", "S", "compartments[1].size", '"M", "XL"'),
]


@pytest.mark.parametrize(("name", "value", "key", "text"), COMPARTMENT_ERRORS)
def test_compartment_errors_name_the_entry_and_what_exists(
    name: str, value: object, key: str, text: str
) -> None:
    d = full()
    d["compartments"][1] = {"board": "b1", "channel": 2, "size": "M", "label": "A02"}
    d["compartments"][1][name] = value
    err = error(d)
    assert err.key == key and text in str(err), str(err)


def test_the_same_channel_on_another_board_is_another_compartment() -> None:
    d = with_(full(), set_at("compartments.1", {"board": "b2", "channel": 1, "label": "B01"}))
    assert [x.board for x in load_doc(d).compartments] == ["b1", "b2"]


@pytest.mark.parametrize("missing", ["board", "channel", "label"])
def test_compartment_board_channel_and_label_are_required(missing: str) -> None:
    err = error(with_(full(), drop_at(f"compartments.0.{missing}")))
    assert err.key == f"compartments[0].{missing}" and "missing" in err.problem


def test_compartments_must_be_a_non_empty_array_of_tables() -> None:
    assert "is empty" in error(with_(full(), set_at("compartments", []))).problem
    assert error(with_(full(), set_at("compartments", {"board": "b1"}))).key == "compartments"
    assert error(with_(full(), set_at("compartments.0", "A01"))).key == "compartments[0]"


def test_a_board_without_channels_says_so() -> None:
    d = with_(full(), set_at("boards.1.channels", []))
    err = error(with_(d, set_at("compartments.1.channel", 1)))
    assert "its channels: none" in err.fix


# -- the entrance and the Pi's GPIO ----------------------------------------------------------


def _pi_entrance(d: Doc) -> Doc:
    del d["boards"][0]["entrance"]
    d["daemon"]["entrance"]["board"] = "pi"
    d["gpio"]["entrance"] = {"strike": 12, "grant": 13, "door": 16, "exit": 19}
    return d


def test_an_entrance_wired_to_the_pi() -> None:
    c = load_doc(_pi_entrance(full()))
    assert c.entrance.board == "pi" and c.gpio.entrance == cf.GpioEntrance(12, 13, 16, 19)
    d = _pi_entrance(full())
    del d["daemon"]["entrance"]["board"], d["gpio"]["entrance"]["exit"]
    d["daemon"]["entrance"]["strike_ms"] = 30000  # no board limit on the Pi
    c = load_doc(d)
    assert c.entrance.board == "pi" and c.gpio.entrance == cf.GpioEntrance(12, 13, 16, None)
    assert c.entrance.strike_ms == 30000


ENTRANCE_ERRORS: list[tuple[str, Callable[[Doc], Any], str, str]] = [
    ("board without the unit", set_at("daemon.entrance.board", "b2"), "daemon.entrance.board",
     'board "b2" has no [boards.entrance] unit'),
    ("no such board", set_at("daemon.entrance.board", "b7"), "daemon.entrance.board", '"b1", "pi"'),
    ("pi without gpio.entrance", set_at("daemon.entrance.board", "pi"), "daemon.entrance.board",
     "[gpio.entrance]"),
    ("gpio.entrance beside a board's",
     set_at("gpio.entrance", {"strike": 1, "grant": 2, "door": 3}),
     "gpio.entrance", 'daemon.entrance.board = "pi"'),
    ("strike over the board's limit", set_at("daemon.entrance.strike_ms", 5001),
     "daemon.entrance.strike_ms", "boards[0].strike_max_ms = 5000"),
    ("strike over every limit", set_at("daemon.entrance.strike_ms", 30001),
     "daemon.entrance.strike_ms", "out of range"),
    ("board id not text", set_at("daemon.entrance.board", 1), "daemon.entrance.board", "not text"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "key", "text"), [e[1:] for e in ENTRANCE_ERRORS], ids=[e[0] for e in ENTRANCE_ERRORS]
)
def test_entrance_errors(mutate: Callable[[Doc], None], key: str, text: str) -> None:
    err = error(with_(full(), mutate))
    assert err.key == key and text in str(err), str(err)


def test_the_entrance_board_limits_the_default_strike() -> None:
    d = with_(base(), set_at("boards.0.strike_max_ms", 2000))
    assert load_doc(d).entrance.strike_ms == 2000
    err = error(with_(d, set_at("daemon.entrance.strike_ms", 2500)))
    assert "use at most 2000, or raise boards[0].strike_max_ms" in err.fix


def test_no_entrance_anywhere() -> None:
    d = with_(base(), drop_at("boards.0.entrance"))
    assert load_doc(d).entrance == cf.EntranceSettings(None)
    err = error(with_(d, set_at("daemon.entrance.mode", "lockdown")))
    assert err.key == "daemon.entrance" and "has no entrance" in err.problem


def test_a_pi_entrance_needs_a_pin_factory_and_no_board_called_pi() -> None:
    err = error(with_(_pi_entrance(full()), set_at("gpio.factory", "none")))
    assert err.key == "gpio.factory" and "lgpio" in err.fix
    err = error(with_(_pi_entrance(full()), set_at("boards.1.board_id", "pi")))
    assert err.key == "boards[1].board_id" and "reserved" in err.problem


@pytest.mark.parametrize("missing", ["strike", "grant", "door"])
def test_gpio_entrance_pins_are_required(missing: str) -> None:
    err = error(with_(_pi_entrance(full()), drop_at(f"gpio.entrance.{missing}")))
    assert err.key == f"gpio.entrance.{missing}" and "missing" in err.problem


PIN_CLASHES = [
    (set_at("gpio.status_led", 17), "gpio.status_led", "boards[0].reset_gpio"),
    (set_at("gpio.tamper", 26), "gpio.tamper", "boards[1].reset_gpio"),
    (set_at("gpio.tamper", 5), "gpio.tamper", "gpio.status_led"),
    (set_at("gpio.entrance.door", 6), "gpio.entrance.door", "gpio.tamper"),
    (set_at("gpio.entrance.exit", 12), "gpio.entrance.exit", "gpio.entrance.strike"),
    (set_at("gpio.entrance.grant", 17), "gpio.entrance.grant", "boards[0].reset_gpio"),
]


@pytest.mark.parametrize(("mutate", "key", "owner"), PIN_CLASHES, ids=[p[1] for p in PIN_CLASHES])
def test_a_bcm_pin_is_used_once_across_gpio_and_reset_lines(
    mutate: Callable[[Doc], None], key: str, owner: str
) -> None:
    err = error(with_(_pi_entrance(full()), mutate))
    assert err.key == key and f"already used by {owner}" in err.problem, str(err)


# -- endpoints -----------------------------------------------------------------------------

SOCK = "/run/amtomat/kiosk.sock"
TTY = "/dev/ttyUSB0"
# (text, parsed, url)
GOOD_ENDPOINTS = [
    ("tcp://127.0.0.1:7010", cf.Endpoint("tcp", "127.0.0.1", 7010), "tcp://127.0.0.1:7010"),
    ("tcp://[::1]:1", cf.Endpoint("tcp", "::1", 1), "tcp://[::1]:1"),
    ("tcp://localhost:65535", cf.Endpoint("tcp", "localhost", 65535), "tcp://localhost:65535"),
    ("tcp://192.168.7.2:07010", cf.Endpoint("tcp", "192.168.7.2", 7010), "tcp://192.168.7.2:7010"),
    ("tcp://[fd00:0::2]:7010", cf.Endpoint("tcp", "fd00::2", 7010), "tcp://[fd00::2]:7010"),
    (f"unix:{SOCK}", cf.Endpoint("unix", path=SOCK), f"unix:{SOCK}"),
    (f"serial:{TTY}", cf.Endpoint("serial", path=TTY, baud=115200), f"serial:{TTY}?baud=115200"),
    (
        f"serial:{TTY}?baud=9600",
        cf.Endpoint("serial", path=TTY, baud=9600),
        f"serial:{TTY}?baud=9600",
    ),
    ("pty:/run/kiosk", cf.Endpoint("pty", path="/run/kiosk"), "pty:/run/kiosk"),
]


@pytest.mark.parametrize(
    ("text", "endpoint", "url"), GOOD_ENDPOINTS, ids=[g[0] for g in GOOD_ENDPOINTS]
)
def test_endpoints_parse_and_give_back_their_text(
    text: str, endpoint: cf.Endpoint, url: str
) -> None:
    parsed = cf.parse_endpoint(text)
    assert parsed == endpoint and parsed.url == url
    assert cf.parse_endpoint(url) == parsed


def test_relative_endpoint_paths_are_taken_from_the_base_folder() -> None:
    e = cf.parse_endpoint("pty:run/kiosk", Path("/etc/amtomat"))
    assert e.path == "/etc/amtomat/run/kiosk" and e.url == "pty:/etc/amtomat/run/kiosk"
    assert cf.parse_endpoint("pty:run/kiosk").path == "run/kiosk"


BAD_ENDPOINTS = [
    ("tcp://0.0.0.0:7010", "not a single address"),
    ("tcp://[::]:7010", "not a single address"),
    ("tcp://224.0.0.1:7010", "not a single address"),
    ("tcp://kiosk.example:7010", "not an IP address"),
    ("tcp://[127.0.0.1]:7010", "not an IP address"),
    ("tcp://::1:7010", "not an endpoint"),
    ("tcp://127.0.0.1:0", "out of range"),
    ("tcp://127.0.0.1:65536", "out of range"),
    ("tcp://127.0.0.1", "not an endpoint"),
    ("tcp://127.0.0.1:7010/", "not an endpoint"),
    ("http://127.0.0.1:7010", "not an endpoint"),
    ("127.0.0.1:7010", "not an endpoint"),
    ("unix:", "no valid path"),
    ("pty:", "no valid path"),
    ("unix:/run/a b.sock", "not an endpoint"),
    ("unix:/" + "x" * 107, "longer than 107 bytes"),
    ("serial:/dev/ttyUSB0?speed=9600", "unknown option"),
    ("serial:/dev/ttyUSB0?baud=", "unknown option"),
    ("serial:/dev/ttyUSB0?baud=1199", "out of range"),
    ("serial:/dev/ttyUSB0?baud=9600?baud=1", "unknown option"),
    ("pty:/tmp/a?b", "no valid path"),
    ("", "not an endpoint"),
]


@pytest.mark.parametrize(("text", "problem"), BAD_ENDPOINTS, ids=[b[0][:40] for b in BAD_ENDPOINTS])
def test_bad_endpoints_are_config_errors_on_the_given_key(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        cf.parse_endpoint(text, key="bridge.listen[0]")
    assert info.value.key == "bridge.listen[0]" and problem in info.value.problem
    assert info.value.fix and info.value.value is not None


# (text, free_port, host_names, what the error says)
SWITCHED_ENDPOINTS = [
    ("tcp://kiosk.example:7010", True, False, "not an IP address"),
    ("tcp://kiosk.example:0", False, True, "port 0 is out of range"),
    ("tcp://0.0.0.0:7010", True, True, "not a single address"),
    ("tcp://-kiosk:7010", False, True, "not an IP address or host name"),
    ("tcp://kiosk_1:7010", False, True, "not an IP address or host name"),
    ("tcp://10.0.0:7010", False, True, "not an IP address or host name"),
    ("tcp://a..b:7010", False, True, "not an IP address or host name"),
    ("tcp://[kiosk]:7010", False, True, "not an IP address or host name"),
    ("tcp://" + "a" * 64 + ".lan:7010", False, True, "not an IP address or host name"),
    ("tcp://" + "a." * 126 + "bc:7010", False, True, "not an IP address or host name"),
    ("tcp://127.0.0.1:65536", True, False, "use a port 0..65535"),
]


def test_free_port_allows_port_0_and_host_names_allow_names_and_nothing_else() -> None:
    assert cf.parse_endpoint("tcp://127.0.0.1:0", free_port=True).port == 0
    e = cf.parse_endpoint("tcp://Kiosk-7.example.:7010", host_names=True)
    assert (
        e == cf.Endpoint("tcp", "Kiosk-7.example.", 7010) and e.url == "tcp://Kiosk-7.example.:7010"
    )
    for text, free_port, host_names, says in SWITCHED_ENDPOINTS:
        with pytest.raises(ConfigError) as info:
            cf.parse_endpoint(text, free_port=free_port, host_names=host_names)
        assert says in f"{info.value.problem}; {info.value.fix}", (text, str(info.value))


@given(st.one_of(st.text(max_size=40), st.integers(), st.none()))
def test_parse_endpoint_raises_only_config_errors_and_round_trips(text: object) -> None:
    try:
        e = cf.parse_endpoint(text)
    except ConfigError:
        return
    assert cf.parse_endpoint(e.url) == e
    # the switches only widen what is accepted: they never change a parse
    assert cf.parse_endpoint(text, free_port=True, host_names=True) == e


@given(st.text(max_size=40), st.booleans(), st.booleans())
def test_parse_endpoint_with_switches_raises_only_config_errors_and_round_trips(
    text: str, free_port: bool, host_names: bool
) -> None:
    try:
        e = cf.parse_endpoint(text, free_port=free_port, host_names=host_names)
    except ConfigError:
        return
    assert cf.parse_endpoint(e.url, free_port=free_port, host_names=host_names) == e


endpoints = st.one_of(
    st.builds(
        lambda ip, port: f"tcp://{ip}:{port}",
        st.ip_addresses(v=4).filter(lambda a: not (a.is_unspecified or a.is_multicast)),
        st.integers(1, 65535),
    ),
    st.builds(
        lambda ip, port: f"tcp://[{ip}]:{port}",
        st.ip_addresses(v=6).filter(lambda a: not (a.is_unspecified or a.is_multicast)),
        st.integers(1, 65535),
    ),
    st.builds(
        lambda kind, path: f"{kind}:/{path}",
        st.sampled_from(["unix", "pty", "serial"]),
        st.from_regex(r"[a-z0-9_./-]{1,40}", fullmatch=True),
    ),
    st.builds(
        lambda path, baud: f"serial:/dev/{path}?baud={baud}",
        st.from_regex(r"[a-zA-Z0-9_-]{1,20}", fullmatch=True),
        st.integers(1200, 4_000_000),
    ),
)


@given(endpoints)
def test_valid_endpoints_always_parse_and_round_trip(text: str) -> None:
    e = cf.parse_endpoint(text)
    assert cf.parse_endpoint(e.url) == e and e.kind == text.split(":")[0]


def test_bridge_listen_checks_each_entry_and_duplicates() -> None:
    err = error(with_(full(), set_at("bridge.listen", ["tcp://127.0.0.1:1", "tcp://0.0.0.0:1"])))
    assert err.key == "bridge.listen[1]"
    same = ["tcp://127.0.0.1:1", "unix:/run/k.sock", "unix:/run/./k.sock"]
    err = error(with_(full(), set_at("bridge.listen", same)))
    assert err.key == "bridge.listen[2]" and "already bridge.listen[1]" in err.problem
    for value in ([], "tcp://127.0.0.1:1", ["tcp://127.0.0.1:1"] * 17):
        assert error(with_(full(), set_at("bridge.listen", value))).key == "bridge.listen"


# -- paths ---------------------------------------------------------------------------------


def test_relative_paths_are_taken_from_the_config_files_folder(tmp_path: Path) -> None:
    d = with_(full(), set_at("daemon.database", "state/amtomat.db"))
    path = tmp_path / "etc" / "site.toml"
    path.parent.mkdir()
    path.write_text(toml_dumps(d))
    c = cf.load(path)
    assert c.daemon.database == tmp_path / "etc" / "state" / "amtomat.db"
    assert c.daemon.keystore == tmp_path / "etc" / "keys"
    assert c.bridge.key_file == tmp_path / "etc" / "pairing.key"
    assert c.bridge.listen[1].path == str(tmp_path / "etc" / "run" / "kiosk.sock")
    assert cf.loads(toml_dumps(d), base_dir=tmp_path).daemon.keystore == tmp_path / "keys"


@pytest.mark.parametrize("key", ["daemon.database", "daemon.keystore", "bridge.key_file"])
@pytest.mark.parametrize("value", ["", " data", "da\tta", 5, "x" * 4097])
def test_bad_paths_name_the_key(key: str, value: object) -> None:
    err = error(with_(full(), set_at(key, value)))
    assert err.key == key


def test_errors_of_the_daemon_sections_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(toml_dumps(with_(full(), set_at("daemon.tick_ms", 0))))
    with pytest.raises(ConfigError) as info:
        cf.load(path)
    assert info.value.source == str(path) and info.value.key == "daemon.tick_ms"
    with pytest.raises(ConfigError, match="cannot read"):
        cf.load(tmp_path / "missing.toml")


# -- office hours --------------------------------------------------------------------------


def hours(**days: object) -> cf.OfficeHours:
    return load_doc(with_(base(), set_at("office_hours", days))).office_hours


def test_day_periods_parse_sorted_with_24_00_as_the_end_of_day() -> None:
    oh = hours(
        mon="14:00-18:00,08:00-12:00",
        tue=" 00:00 - 24:00 ",
        wed="closed",
        fri="12:00-13:00, 08:00-12:00",
    )
    assert oh.days[0] == ((480, 720), (840, 1080))
    assert oh.days[1] == ((0, 1440),) and oh.days[2] == () and oh.days[3] == ()
    assert oh.days[4] == ((480, 720), (720, 780))  # touching periods are fine


DAY_ERRORS = [
    ("08:00-12:00, 11:00-13:00", "08:00-12:00 overlaps 11:00-13:00"),
    ("08:00-12:00, 08:00-12:00", "overlaps"),
    ("00:00-24:00, 10:00-11:00", "overlaps"),
    ("12:00-08:00", "does not end after it starts"),
    ("08:00-08:00", "does not end after it starts"),
    ("22:00-02:00", "does not end after it starts"),
    ("24:00-24:00", "does not end after it starts"),
    ("8:00-12:00", "not a time"),
    ("08:00-24:30", "not a time"),
    ("25:00-26:00", "not a time"),
    ("08:60-09:00", "not a time"),
    ("08:00", "not a period"),
    ("08:00-12:00,", "not a period"),
    ("", "not a period"),
    ("\uff10\uff18:00-12:00", "not a time"),  # full-width digits
]


@pytest.mark.parametrize(("text", "problem"), DAY_ERRORS, ids=[d[0] for d in DAY_ERRORS])
def test_bad_day_periods_name_the_day(text: str, problem: str) -> None:
    err = error(with_(base(), set_at("office_hours.thu", text)))
    assert err.key == "office_hours.thu" and problem in err.problem, str(err)
    assert err.value == text


def test_a_day_must_be_text() -> None:
    err = error(with_(base(), set_at("office_hours.mon", dt.time(8))))
    assert err.key == "office_hours.mon" and "double quotes" in err.fix


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "../etc/passwd", "", "Europe", "europe/berlin", 1]
)
def test_the_timezone_is_a_known_iana_name(zone: object) -> None:
    err = error(with_(base(), set_at("office_hours.timezone", zone)))
    assert err.key == "office_hours.timezone"


def test_holidays_are_iso_dates_once_each() -> None:
    oh = hours(holidays=["2026-12-25", dt.date(2026, 1, 1)])
    assert oh.holidays == {dt.date(2026, 12, 25), dt.date(2026, 1, 1)}
    for bad, problem in [
        (["2026-13-01"], "not a date"),
        (["20261225"], "not a date"),
        (["2026-W52-5"], "not a date"),
        ([dt.datetime(2026, 12, 25, 8, 0)], "not a date"),
        (["2026-12-25", dt.date(2026, 12, 25)], "listed twice"),
        ("2026-12-25", "not a list of dates"),
    ]:
        err = error(with_(base(), set_at("office_hours.holidays", bad)))
        assert err.key == "office_hours.holidays" and problem in err.problem, bad


def test_is_open_follows_local_time_across_daylight_saving() -> None:
    oh = hours(mon="08:00-12:00, 14:00-18:00", sun="00:00-24:00", holidays=["2026-12-28"])
    utc = dt.UTC
    assert oh.is_open(dt.datetime(2026, 3, 2, 7, 0, tzinfo=utc))  # 08:00 CET, Monday
    assert not oh.is_open(dt.datetime(2026, 3, 2, 6, 59, 59, tzinfo=utc))
    assert oh.is_open(dt.datetime(2026, 3, 2, 10, 59, 59, tzinfo=utc))
    assert not oh.is_open(dt.datetime(2026, 3, 2, 11, 0, tzinfo=utc))  # 12:00: end is exclusive
    assert oh.is_open(dt.datetime(2026, 6, 1, 6, 0, tzinfo=utc))  # 08:00 CEST
    assert not oh.is_open(dt.datetime(2026, 6, 1, 16, 0, tzinfo=utc))  # 18:00 CEST
    assert oh.is_open(dt.datetime(2026, 3, 1, 22, 59, tzinfo=utc))  # Sunday 23:59 CET
    assert not oh.is_open(dt.datetime(2026, 3, 2, 23, 0, tzinfo=utc))  # Tuesday 00:00
    assert not oh.is_open(dt.datetime(2026, 12, 28, 9, 0, tzinfo=utc))  # a holiday Monday
    with pytest.raises(ControllerError):
        oh.is_open(dt.datetime(2026, 3, 2, 9, 0))


@given(st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2500, 1, 1), timezones=st.just(dt.UTC)))
def test_is_open_is_always_or_never_for_whole_or_empty_weeks(moment: dt.datetime) -> None:
    assert cf.OfficeHours(days=(((0, 1440),),) * 7).is_open(moment)
    assert not cf.OfficeHours().is_open(moment)


# -- staff ---------------------------------------------------------------------------------

STAFF_ERRORS = [
    ("id", "M", "not a staff id"),
    ("id", "Müller", "not a staff id"),
    ("id", "x" * 33, "not a staff id"),
    ("id", "s-2", "already the id of staff[1]"),
    ("name", "", "not a name"),
    ("name", "   ", "not a name"),
    ("name", "a\nb", "not a name"),
    ("name", 7, "not text"),
]


@pytest.mark.parametrize(("name", "value", "problem"), STAFF_ERRORS)
def test_staff_errors_name_the_entry(name: str, value: object, problem: str) -> None:
    d = full()
    d["staff"].append({"id": "third", "pin_hash": HASH})
    d["staff"][2][name] = value
    err = error(d)
    assert err.key == f"staff[2].{name}" and problem in err.problem


def _hash(n: str = "16384", r: str = "8", p: str = "1", salt: str = "", digest: str = "") -> str:
    salt = salt or "zv874Mf5JNS0vxxs++7Aqg=="
    digest = digest or "hRhIaP2tJoHR5oCYSVxP5UVXRqTwRRC9y0AM8jnFZOo="
    return f"scrypt${n}${r}${p}${salt}${digest}"


BAD_HASHES = [
    ("not text", 12345678),
    ("plain PIN", "123456"),
    ("other scheme", HASH.replace("scrypt", "bcrypt")),
    ("five parts", HASH.rsplit("$", 1)[0]),
    ("seven parts", HASH + "$x"),
    ("N not a power of two", _hash(n="16383")),
    ("N too small", _hash(n="512")),
    ("N too large", _hash(n=str(2**21))),
    ("N not a number", _hash(n="1e4")),
    ("r zero", _hash(r="0")),
    ("p too large", _hash(p="17")),
    ("salt not base64", _hash(salt="zv87*Mf5JNS0vxxs++7Aqg==")),
    ("salt too short", _hash(salt="AAAA")),
    ("hash too short", _hash(digest="AAAAAAAAAAA=")),
    ("hash not base64", _hash(digest="A")),
    ("hash of 31 bytes", _hash(digest="A" * 40 + "AA==")),
    ("salt without padding", _hash(salt="zv874Mf5JNS0vxxs++7Aqg")),
    ("salt of 65 bytes", _hash(salt="A" * 84 + "AAA=")),
    ("N with a leading zero", _hash(n="016384")),
    ("too much memory", _hash(n=str(2**20), r="4")),
    ("too much work", _hash(n=str(2**16), r="32", p="3")),
    ("too long", _hash(salt="A" * 400)),
    ("empty", ""),
]


@pytest.mark.parametrize("value", [b[1] for b in BAD_HASHES], ids=[b[0] for b in BAD_HASHES])
def test_a_bad_pin_hash_is_named_but_never_shown(value: object) -> None:
    err = error(with_(full(), set_at("staff.0.pin_hash", value)))
    assert err.key == "staff[0].pin_hash" and err.value is None
    assert err.problem.startswith("the value") and "hash-secret" in err.fix
    shown = str(value)
    for part in {shown, *shown.split("$")} - {"scrypt", "16384"}:
        assert len(part) < 3 or part not in str(err), part


def test_pin_hash_shapes_that_are_accepted() -> None:
    for value in (
        _hash(n="1024", r="1", p="16"),
        _hash(n=str(2**20), r="2"),
        _hash(n=str(2**16), r="32"),
        _hash(salt="A" * 84 + "AA=="),  # 64 bytes
    ):
        assert load_doc(with_(full(), set_at("staff.0.pin_hash", value))).staff[0].pin_hash == value


hash_parts = st.one_of(
    st.sampled_from(["scrypt", "bcrypt", "16384", "8", "1", "1024", "32", "16", "17", "0"]),
    st.sampled_from(["016", "1048576", "2097152", "65536", "3", ""]),
    st.binary(min_size=0, max_size=70).map(lambda b: base64.b64encode(b).decode()),
    st.binary(min_size=0, max_size=70).map(lambda b: base64.b64encode(b).decode().rstrip("=")),
    st.text(alphabet="AB+/=$", max_size=8),
)


@st.composite
def pin_hashes(draw: st.DrawFn) -> str:
    """A valid hash with 0..3 of its parts replaced, one dropped or one added."""
    parts = HASH.split("$")
    for _ in range(draw(st.integers(0, 3))):
        parts[draw(st.integers(0, 5))] = draw(hash_parts)
    edit = draw(st.sampled_from(["none", "none", "drop", "add"]))
    if edit == "drop":
        del parts[draw(st.integers(0, 5))]
    elif edit == "add":
        parts.insert(draw(st.integers(0, 6)), draw(hash_parts))
    return "$".join(parts)


@settings(max_examples=300, deadline=None)
@given(pin_hashes())
def test_pin_hash_shapes_agree_with_the_login_check(value: str) -> None:
    """A hash the config accepts is one controller.secrets can check, and no other."""
    try:
        secrets.parse_hash(value)
        login_ok = True
    except secrets.SecretFormatError:
        login_ok = False
    try:
        load_doc(with_(full(), set_at("staff.0.pin_hash", value)))
        config_ok = True
    except ConfigError as exc:
        assert exc.key == "staff[0].pin_hash", str(exc)
        config_ok = False
    assert config_ok == login_ok


def test_a_fresh_hash_from_the_login_code_loads() -> None:
    value = secrets.hash_secret("246810", n=2**10)
    staff = load_doc(with_(full(), set_at("staff.0.pin_hash", value))).staff[0]
    assert secrets.verify_secret("246810", staff.pin_hash)


def test_staff_tables_are_never_shown_in_errors() -> None:
    for value in ({"id": "x", "pin_hash": HASH}, [HASH], HASH):
        err = error(with_(full(), set_at("staff", value)))
        assert "scrypt" not in str(err) and err.value is None, str(err)
    err = error(with_(full(), drop_at("staff.0.pin_hash")))
    assert err.key == "staff[0].pin_hash" and "missing" in err.problem


# -- fuzzing: random documents and random values never raise anything but ConfigError -----

VOCAB = sorted(
    {*cf.DAEMON_KEYS, *cf.PICKUP_RANGES, *cf.LOADING_RANGES, *cf.STAFF_AUTH_RANGES}
    | {*cf.ENTRANCE_KEYS, *cf.INTERLOCK_KEYS, *cf.COMPARTMENT_KEYS, *cf.BRIDGE_KEYS}
    | {*cf.GPIO_KEYS, *cf.GPIO_ENTRANCE_KEYS, *cf.OFFICE_HOURS_KEYS, *cf.STAFF_KEYS}
    | {"compartments", "bridge", "gpio", "office_hours", "staff", "mqtt", *MQTT_KEYS}
)
WORDS = [
    *cf.LOG_LEVELS,
    *cf.GPIO_FACTORIES,
    *cf.ENTRANCE_MODES,
    *cf.ROLES,
    "pi",
    "b1",
    "b2",
    "S",
    "M",
    "XL",
    "A01",
    "closed",
    "08:00-12:00",
    "00:00-24:00",
    "12:00-08:00",
    "2026-12-25",
    "Europe/Berlin",
    "tcp://127.0.0.1:7010",
    "tcp://0.0.0.0:1",
    "unix:x.sock",
    "serial:/dev/ttyS0?baud=9600",
    "pty:p",
    HASH,
    _hash(n="3"),
    "data/x.db",
]
scalars = st.one_of(
    st.integers(-5, 70000),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(WORDS + VOCAB),
    st.dates(min_value=dt.date(1000, 1, 1)),
    st.times(),
    st.datetimes(min_value=dt.datetime(1000, 1, 1)),
)
keys = st.one_of(st.sampled_from(VOCAB), st.text(max_size=8))
toml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=8,
)


def _daemon_part(doc: Doc) -> Doc:
    """The daemon's sections of ``doc`` (mutations of the boards are boardconfig's tests)."""
    return {k: v for k, v in doc.items() if k not in ("terminal", "boards")}


EXAMPLE_DOC = tomllib.loads(EXAMPLE.read_text())


@st.composite
def mutated_documents(draw: st.DrawFn) -> Doc:
    doc: Doc = copy.deepcopy(draw(st.sampled_from([full(), _pi_entrance(full()), EXAMPLE_DOC])))
    part = _daemon_part(doc)
    mutate(draw, part, keys, toml_values)
    return {"terminal": doc["terminal"], "boards": doc["boards"], **part}


SECRETS = [h.split("$")[-1] for h in [HASH, *(s["pin_hash"] for s in EXAMPLE_DOC["staff"])]]


def _check_error(exc: ConfigError) -> None:
    """Every error says what and how to fix, and no error shows a pin hash."""
    assert str(exc) and exc.fix and exc.problem
    assert not any(secret in str(exc) for secret in SECRETS)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents())
def test_mutated_documents_raise_only_config_errors(doc: Doc) -> None:
    try:
        c = load_doc(doc)
    except ConfigError as exc:
        _check_error(exc)
        return
    labels = [x.label for x in c.compartments]
    assert len(set(labels)) == len(labels)
    assert all(x.size in c.daemon.sizes for x in c.compartments)


def _paths(node: Any, at: str = "") -> list[str]:
    """Every dotted path in ``node``: tables, arrays and leaves."""
    out: list[str] = []
    for k, v in node.items() if isinstance(node, dict) else enumerate(node):
        path = f"{at}.{k}" if at else str(k)
        out += [path, *(_paths(v, path) if isinstance(v, dict | list) else [])]
    return out


LEAVES = _paths(_daemon_part(_pi_entrance(full())))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(LEAVES), toml_values)
def test_any_value_at_any_key_raises_only_config_errors(path: str, value: object) -> None:
    try:
        load_doc(with_(_pi_entrance(full()), set_at(path, value)))
    except ConfigError as exc:
        _check_error(exc)


SECTIONS = ["daemon", "compartments", "bridge", "gpio", "office_hours", "staff", "mqtt"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(SECTIONS), toml_values, max_size=7))
def test_random_daemon_sections_raise_only_config_errors(sections: Doc) -> None:
    try:
        load_doc({**base(), **sections})
    except ConfigError as exc:
        _check_error(exc)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_demo_text_raises_only_config_errors(data: st.DataObject) -> None:
    text = EXAMPLE.read_text()
    start = text.index("[daemon]")
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(start, len(text)))
        cut = data.draw(st.integers(0, 20))
        text = text[:at] + data.draw(st.text(max_size=10)) + text[at + cut :]
    try:
        cf.loads(text, "demo.toml", REPO / "examples")
    except ConfigError as exc:
        assert str(exc) and exc.fix


# -- the documentation ---------------------------------------------------------------------

DOC_DEFAULTS: dict[str, str] = {
    "database": '"data/amtomat.db"',
    "keystore": '"data/keys"',
    "log_level": '"info"',
    "tick_ms": "10",
    "expiry_days": "10",
    "pulse_ms": "300",
    "sizes": '["S", "L"]',
    "deposit_s": "60",
    "door_open_s": "8",
    "take_s": "120",
    "attempts_per_reference": "5",
    "attempts_per_terminal": "20",
    "window_s": "900",
    "code_digits": "8",
    "close_s": "300",
    "attempts": "5",
    "session_s": "600",
    "strike_ms": "5000",
    "held_open_s": "60",
    "mode": '"normal"',
    "service_door_blocks_compartments": "true",
    "tamper_blocks_all": "false",
    "lockdown_blocks_pickup": "false",
    "listen": '["tcp://127.0.0.1:7010"]',
    "require_key": "true",
    "factory": '"none"',
    "tamper_active_high": "true",
    "timezone": '"Europe/Berlin"',
    "enabled": "false",
}


def test_the_doc_gives_every_daemon_key_with_its_default() -> None:
    lines = DOC.read_text().splitlines()
    for key, default in DOC_DEFAULTS.items():
        assert any(f"| `{key}` |" in ln and f"`{default}`" in ln for ln in lines), key
    names = set(VOCAB) - {"pickup", "loading", "staff_auth", "entrance", "interlocks"}
    text = "\n".join(lines)
    for name in names:
        assert f"`{name}`" in text, name
    for header in ("[daemon]", "[daemon.pickup]", "[[compartments]]", "[bridge]", "[gpio]"):
        assert f"`{header}`" in text, header
    for header in ("[gpio.entrance]", "[office_hours]", "[[staff]]", "[mqtt]"):
        assert f"`{header}`" in text, header


def test_the_doc_example_loads_with_the_demo_boards() -> None:
    text = DOC.read_text()
    block = text.split("## Example: the daemon's sections")[1].split("```toml\n")[1].split("```")[0]
    boards = EXAMPLE.read_text().split("\n[daemon]\n")[0]
    c = cf.loads(boards + "\n" + block)
    assert c.compartments and c.staff and c.office_hours.days[0] and c.bridge.listen
