"""Installation material: docs/installation.md against the demo terminal, and udev rules."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tomlwriter import toml_dumps

from controller import config as daemon_config
from controller.boardconfig import BOARD_ID_RE, BoardSpec, Pin, Sensor, Terminal, load, loads
from tools.cli import main
from tools.udev import (
    PICO_USB_ID,
    Assignment,
    AttachedPort,
    BadValueError,
    BoardAssignmentError,
    BoardRequest,
    RulesFileError,
    UsbId,
    assign,
    attached_ports,
    check_serial,
    parse_board_option,
    read_rules,
    render,
    rule_line,
)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "installation.md"
DEMO = ROOT / "examples" / "demo-terminal.toml"
STATIC_RULES = ROOT / "deploy" / "99-amtomat.rules"
EXAMPLE_SERIALS = {"wall-a": "e66118604b1f2d2b", "wall-b": "e66124a0c3352a2f"}

# Physical pins of the 40-pin Raspberry Pi Pico (datasheet pinout), by GPIO number.
PICO_PIN = {
    **{gp: pin for gp, pin in zip(range(0, 2), (1, 2), strict=True)},
    **{gp: pin for gp, pin in zip(range(2, 6), (4, 5, 6, 7), strict=True)},
    **{gp: pin for gp, pin in zip(range(6, 10), (9, 10, 11, 12), strict=True)},
    **{gp: pin for gp, pin in zip(range(10, 14), (14, 15, 16, 17), strict=True)},
    **{gp: pin for gp, pin in zip(range(14, 16), (19, 20), strict=True)},
    **{gp: pin for gp, pin in zip(range(16, 18), (21, 22), strict=True)},
    **{gp: pin for gp, pin in zip(range(18, 22), (24, 25, 26, 27), strict=True)},
    22: 29,
    26: 31,
    27: 32,
    28: 34,
}
# MCP23017 (SP/SO/SS packages): GPB0..7 are pins 1..8, GPA0..7 pins 21..28.
MCP_PIN = {**{f"GPB{n}": 1 + n for n in range(8)}, **{f"GPA{n}": 21 + n for n in range(8)}}
# Raspberry Pi 40-pin header: BCM number -> physical pin.
PI_PIN = {
    2: 3, 3: 5, 4: 7, 14: 8, 15: 10, 17: 11, 18: 12, 27: 13, 22: 15, 23: 16, 24: 18, 10: 19,
    9: 21, 25: 22, 11: 23, 8: 24, 7: 26, 0: 27, 1: 28, 5: 29, 6: 31, 12: 32, 13: 33, 19: 35,
    16: 36, 26: 37, 20: 38, 21: 40,
}  # fmt: skip


# -- the markdown tables --------------------------------------------------------------------


@dataclasses.dataclass
class Table:
    heading: str
    header: list[str]
    rows: list[list[str]]


def _cells(line: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [p.strip().replace("`", "").replace("\\|", "|") for p in parts]


def _tables(text: str) -> list[Table]:
    tables: list[Table] = []
    heading = ""
    block: list[str] = []
    fenced = False
    for line in [*text.splitlines(), ""]:
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("|"):
            block.append(line)
            continue
        if block:
            tables.append(Table(heading, _cells(block[0]), [_cells(r) for r in block[2:]]))
            block = []
        if not fenced and line.startswith("#"):
            heading = line.lstrip("#").strip().replace("`", "")
    return tables


def _table(heading: str) -> Table:
    found = [t for t in _tables(DOC.read_text()) if t.heading == heading]
    assert len(found) == 1, f"docs/installation.md needs one table under {heading!r}"
    return found[0]


def _rows(table: Table) -> list[dict[str, str]]:
    return [dict(zip(table.header, row, strict=True)) for row in table.rows]


def _signals(board: BoardSpec) -> dict[Pin, str]:
    """Every pin of the board and its name as the doc's TOML column writes it."""
    out: dict[Pin, str] = {}

    def put(pin: Pin | None, name: str) -> None:
        if pin is not None:
            assert pin not in out, f"{board.board_id}: {pin} twice"
            out[pin] = name

    for ch in board.channels:
        for sig in ("solenoid", "door", "item", "led"):
            put(getattr(ch, sig), f"channel {ch.channel} {sig}")
    for key, unit in board.units().items():
        for f in dataclasses.fields(unit):
            if f.name != "invert":
                put(getattr(unit, f.name), key if isinstance(unit, Sensor) else f"{key} {f.name}")
    for i, e in enumerate(board.expanders):
        put(e.sda, f"expander {i} sda")
        put(e.scl, f"expander {i} scl")
    if board.link.type == "rs485":
        for name in ("tx", "rx", "de"):
            put(getattr(board.link, name), f"link {name}")
    put(board.recovery_pin, "recovery_pin")
    return out


def _labels() -> dict[tuple[str, int], daemon_config.CompartmentSpec]:
    cfg = daemon_config.load(DEMO)
    return {(c.board, c.channel): c for c in cfg.compartments}


DEMO_TERMINAL = load(DEMO)
BOARD_IDS = [b.board_id for b in DEMO_TERMINAL.boards]


@pytest.mark.parametrize("board_id", BOARD_IDS)
def test_pico_pin_map_is_the_demo_boards(board_id: str) -> None:
    board = DEMO_TERMINAL.board(board_id)
    signals = _signals(board)
    labels = _labels()
    documented: dict[int, str] = {}
    for row in _rows(_table(f"Board {board_id}: Pico pins")):
        m = re.fullmatch(r"GP(\d+)", row["GPIO"])
        assert m, row
        gpio = int(m.group(1))
        assert row["Pico pin"] == str(PICO_PIN[gpio]), f"GP{gpio} is Pico pin {PICO_PIN[gpio]}"
        assert gpio not in documented, f"GP{gpio} twice"
        documented[gpio] = row["TOML"]
        ch = re.fullmatch(r"channel (\d+) \w+", row["TOML"])
        if ch:
            label = labels[(board_id, int(ch.group(1)))].label
            assert row["use"].startswith(label), f"{row} is compartment {label}"
    expected = {pin: name for pin, name in signals.items() if isinstance(pin, int)}
    used = {gpio: name for gpio, name in documented.items() if name != "-"}
    assert used == expected
    assert not (set(documented) - set(used)) & set(signals), "a pin marked free is in use"


@pytest.mark.parametrize("board_id", BOARD_IDS)
def test_expander_pin_maps_are_the_demo_boards(board_id: str) -> None:
    board = DEMO_TERMINAL.board(board_id)
    signals = _signals(board)
    for index, expander in enumerate(board.expanders):
        heading = f"Board {board_id}: expander mcp{index} (MCP23017 at 0x{expander.address:02x})"
        documented: dict[str, str] = {}
        for row in _rows(_table(heading)):
            port = row["port"]
            assert row["MCP23017 pin"] == str(MCP_PIN[port]), f"{port} is pin {MCP_PIN[port]}"
            documented[f"mcp{index}:{port[2]}{port[3]}"] = row["TOML"]
        expected = {
            pin: name
            for pin, name in signals.items()
            if isinstance(pin, str) and pin.startswith(f"mcp{index}:")
        }
        assert documented == expected


def test_every_board_and_expander_has_a_pin_map() -> None:
    headings = {t.heading for t in _tables(DOC.read_text()) if t.heading.startswith("Board ")}
    expected = set()
    for board in DEMO_TERMINAL.boards:
        expected.add(f"Board {board.board_id}: Pico pins")
        for i, e in enumerate(board.expanders):
            expected.add(f"Board {board.board_id}: expander mcp{i} (MCP23017 at 0x{e.address:02x})")
    assert headings == expected


def test_pi_header_table_is_the_demo_gpio_section() -> None:
    cfg = daemon_config.load(DEMO)
    expected = {b.reset_gpio: f"{b.board_id} reset_gpio" for b in cfg.terminal.boards}
    expected[cfg.gpio.status_led] = "gpio.status_led"
    expected[cfg.gpio.tamper] = "gpio.tamper"
    documented: dict[int | None, str] = {}
    for row in _rows(_table("Raspberry Pi header (BCM numbers)")):
        bcm = int(row["BCM"].removeprefix("GPIO"))
        assert row["Pi pin"] == str(PI_PIN[bcm]), f"BCM {bcm} is header pin {PI_PIN[bcm]}"
        documented[bcm] = row["TOML"]
    assert documented == expected


def _show_pin(pin: Pin | None) -> str:
    return "" if pin is None else f"GP{pin}" if isinstance(pin, int) else pin


def test_wiring_table_is_the_demo_compartments() -> None:
    expected = set()
    for (board_id, channel), spec in _labels().items():
        ch = next(c for c in DEMO_TERMINAL.board(board_id).channels if c.channel == channel)
        cells = [_show_pin(getattr(ch, sig)) for sig in ("solenoid", "door", "item", "led")]
        if "item" in ch.invert:
            cells[2] += " (inverted)"
        expected.add((spec.label, spec.size, board_id, str(channel), *cells))
    rows = _table("Wiring table").rows
    assert len(rows) == len(expected)
    assert {tuple(r) for r in rows} == expected


def _valid_uart_pin(uart: int, pin: int, role: int) -> bool:
    """MicroPython rp2's rule (ports/rp2/machine_uart.c: IS_VALID_TX/RX)."""
    return pin & 3 == role and ((pin + 4) & 8) >> 3 == uart


def test_uart_pin_table_follows_the_rp2040() -> None:
    rows = {r[0]: r[1:] for r in _table("RS-485").rows}
    for uart in (0, 1):
        tx = [f"GP{p}" for p in PICO_PIN if _valid_uart_pin(uart, p, 0)]
        rx = [f"GP{p}" for p in PICO_PIN if _valid_uart_pin(uart, p, 1)]
        assert rows[str(uart)] == [", ".join(tx), ", ".join(rx)]


def _rs485_example() -> dict[str, Any]:
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    found = [b for b in blocks if b.startswith("# wall-b on RS-485")]
    assert len(found) == 1
    return tomllib.loads(found[0])


def _demo_on_rs485() -> str:
    doc = tomllib.loads(DEMO.read_text())
    example = _rs485_example()["boards"]
    wall_b = next(b for b in doc["boards"] if b["board_id"] == "wall-b")
    wall_b["link"] = example["link"]
    wall_b["dropoff_slot"] = example["dropoff_slot"]
    return toml_dumps(doc)


def test_rs485_example_of_the_doc_is_a_valid_wall_b() -> None:
    board = loads(_demo_on_rs485(), "rs485 example").board("wall-b")
    link = board.link
    assert link.type == "rs485" and link.uart is not None
    assert link.tx is not None and _valid_uart_pin(link.uart, link.tx, 0)
    assert link.rx is not None and _valid_uart_pin(link.uart, link.rx, 1)


# -- udev's own rule syntax (a port of systemd's udev-rules.c parse_line) -------------------


class UdevSyntaxError(ValueError):
    pass


_WS = " \t\n\r"
_OPS = ("==", "!=", "+=", "-=", "=", ":=")  # the order udev tries them


def udev_tokens(line: str) -> list[tuple[str, str | None, str, str]]:
    """(key, attr, op, value) as udev reads one rule line; UdevSyntaxError where udev fails."""
    tokens: list[tuple[str, str | None, str, str]] = []
    n = len(line)
    p = 0
    while True:
        while p < n and line[p] in _WS + ",":
            p += 1
        if p >= n:
            return tokens
        k = p
        while True:
            if k >= n:
                raise UdevSyntaxError(f"key without operator at {p}")
            if line[k] in _WS + "={" or (line[k] in "+-!:" and line[k + 1 : k + 2] == "="):
                break
            k += 1
        key, attr, t = line[p:k], None, k
        if line[t : t + 1] == "{":
            close = line.find("}", t + 1)
            if close < 0:
                raise UdevSyntaxError("missing }")
            attr, t = line[t + 1 : close], close + 1
        while t < n and line[t] in _WS:
            t += 1
        op = next((o for o in _OPS if line.startswith(o, t)), None)
        if op is None:
            raise UdevSyntaxError(f"no operator after {key!r}")
        t += len(op)
        while t < n and line[t] in _WS:
            t += 1
        if line[t : t + 1] == "e":
            raise UdevSyntaxError("e-strings are never written by amtomat")
        if line[t : t + 1] != '"':
            raise UdevSyntaxError(f"value of {key!r} is not quoted")
        i, value = t + 1, []
        while True:
            if i >= n:
                raise UdevSyntaxError(f"value of {key!r} is not closed")
            c = line[i]
            if c == '"':
                break
            if c == "\\" and line[i + 1 : i + 2] == '"':
                i += 1
                c = '"'
            value.append(c)
            i += 1
        tokens.append((key, attr, op, "".join(value)))
        p = i + 1


def udev_file(text: str) -> list[list[tuple[str, str | None, str, str]]]:
    """The rule lines of a rules file as udev reads them (comments and blank lines skipped)."""
    rules = []
    for line in text.splitlines():
        stripped = line.lstrip(_WS)
        if not stripped or stripped.startswith("#"):
            continue
        assert not stripped.endswith("\\"), "no continuation lines"
        rules.append(udev_tokens(stripped))
    return rules


def _intended(board_id: str, serial: str, usb: UsbId = PICO_USB_ID, group: str = "dialout") -> Any:
    return [
        ("SUBSYSTEM", None, "==", "tty"),
        ("ATTRS", "idVendor", "==", f"{usb.vendor:04x}"),
        ("ATTRS", "idProduct", "==", f"{usb.product:04x}"),
        ("ATTRS", "serial", "==", serial),
        ("SYMLINK", None, "+=", f"amtomat/{board_id}"),
        ("GROUP", None, "=", group),
        ("MODE", None, "=", "0660"),
        ("ENV", "ID_MM_DEVICE_IGNORE", "=", "1"),
    ]


def test_the_reference_parser_sees_what_udev_sees() -> None:
    assert udev_tokens('A=="x",B{y}+="z" C:="\\"q"') == [
        ("A", None, "==", "x"),
        ("B", "y", "+=", "z"),
        ("C", None, ":=", '"q'),
    ]
    for bad in ('A=="x', "A==x", "A", 'A{b=="x"', 'A~"x"'):
        with pytest.raises(UdevSyntaxError):
            udev_tokens(bad)


_UDEV_NASTY = list("abcXYZ019._-\"\\ *?[]|,{}=$%\n\t'#")


@given(st.one_of(st.text(), st.text(alphabet=st.sampled_from(_UDEV_NASTY))))
def test_any_accepted_serial_gives_a_rule_udev_reads_as_intended(serial: str) -> None:
    try:
        accepted = check_serial(serial)
    except BadValueError as exc:
        assert repr(serial) in str(exc) and exc.value == serial
        return
    line = rule_line(Assignment("wall-a", PICO_USB_ID, accepted, "test"))
    assert "\n" not in line
    assert udev_tokens(line) == _intended("wall-a", serial)
    assert not set(serial) & set('*?[|"\\ '), "a glob or quote would match other devices"


@given(st.from_regex(BOARD_ID_RE, fullmatch=True))
def test_every_board_id_is_one_plain_symlink(board_id: str) -> None:
    tokens = udev_tokens(rule_line(Assignment(board_id, PICO_USB_ID, "E661", "test")))
    symlink = dict(((k, a), v) for k, a, _op, v in tokens)[("SYMLINK", None)]
    assert symlink == f"amtomat/{board_id}"
    assert not set(symlink) & set(_WS + "%$"), "udev splits and substitutes SYMLINK values"


@given(st.text(max_size=40))
def test_board_option_is_id_and_optional_serial(text: str) -> None:
    try:
        req = parse_board_option(text)
    except BadValueError as exc:
        assert exc.value in (text, text.partition("=")[2])
        return
    board_id, sep, serial = text.partition("=")
    assert req == BoardRequest(board_id, serial if sep else None)
    assert BOARD_ID_RE.fullmatch(req.board_id)


def test_static_rules_file_is_the_demo_terminal_in_udev_syntax() -> None:
    text = STATIC_RULES.read_text()
    rules = udev_file(text)
    assert rules == [_intended(b, EXAMPLE_SERIALS[b]) for b in ("wall-a", "wall-b")]
    generated = render(
        DEMO_TERMINAL,
        {b: Assignment(b, PICO_USB_ID, s, "example") for b, s in EXAMPLE_SERIALS.items()},
        config_source="examples/demo-terminal.toml",
    )
    assert generated in text, "deploy/99-amtomat.rules is behind amtomat udev-rules"
    assert all(line.startswith("#") for line in text[: text.index(generated)].splitlines())


@given(
    st.lists(
        st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True), min_size=2, max_size=2, unique=True
    )
)
def test_rules_written_are_read_back(serials: list[str]) -> None:
    assignments = {
        b: Assignment(b, PICO_USB_ID, s, "x") for b, s in zip(BOARD_IDS, serials, strict=True)
    }
    back = read_rules(render(DEMO_TERMINAL, assignments, config_source="t.toml"), "f")
    assert {b: (a.usb_id, a.serial) for b, a in back.items()} == {
        b: (a.usb_id, a.serial) for b, a in assignments.items()
    }


def test_foreign_rules_are_refused_with_their_line() -> None:
    text = '# mine\nSUBSYSTEM=="tty", ATTRS{idVendor}=="0403", SYMLINK+="rs485"\n'
    with pytest.raises(RulesFileError, match=r"f, line 2: not a rule"):
        read_rules(text, "f")
    twice = rule_line(Assignment("wall-a", PICO_USB_ID, "A1", "x"))
    with pytest.raises(RulesFileError, match="second rule"):
        read_rules(f"{twice}\n{twice}\n", "f")


# -- which board is which serial number ------------------------------------------------------


def _pico(device: str, serial: str) -> AttachedPort:
    return AttachedPort(device, PICO_USB_ID, serial)


FTDI = AttachedPort("/dev/ttyUSB0", UsbId(0x0403, 0x6001), "A50285BI")


def _serials(result: dict[str, Assignment]) -> dict[str, str]:
    return {b: a.serial for b, a in result.items()}


def test_explicit_serials_are_checked_against_the_terminal() -> None:
    got, notes = assign(DEMO_TERMINAL, [BoardRequest("wall-a", "AA"), BoardRequest("wall-b", "BB")])
    assert _serials(got) == {"wall-a": "AA", "wall-b": "BB"} and notes == []
    with pytest.raises(BoardAssignmentError, match="no board 'wall-c'; its boards: wall-a, wall-b"):
        assign(DEMO_TERMINAL, [BoardRequest("wall-c", "AA")])
    with pytest.raises(BoardAssignmentError, match="AA is given to both wall-a and wall-b"):
        assign(DEMO_TERMINAL, [BoardRequest("wall-a", "AA"), BoardRequest("wall-b", "AA")])
    with pytest.raises(BoardAssignmentError, match="named twice"):
        assign(DEMO_TERMINAL, [BoardRequest("wall-a", "AA"), BoardRequest("wall-a", "BB")])
    with pytest.raises(BoardAssignmentError, match="add --attached"):
        assign(DEMO_TERMINAL, [BoardRequest("wall-a", None)])


def test_a_bare_board_takes_the_one_unassigned_attached_pico() -> None:
    attached = [FTDI, _pico("/dev/ttyACM0", "OLD")]
    got, _ = assign(DEMO_TERMINAL, [BoardRequest("wall-a", None)], attached=attached)
    assert _serials(got) == {"wall-a": "OLD"} and got["wall-a"].source == "attached /dev/ttyACM0"
    # wall-a stays plugged in and is in the rules file: wall-b is the new one.
    attached.append(_pico("/dev/ttyACM1", "NEW"))
    got, _ = assign(DEMO_TERMINAL, [BoardRequest("wall-b", None)], attached=attached, known=got)
    assert _serials(got) == {"wall-a": "OLD", "wall-b": "NEW"}


def test_two_new_picos_or_none_are_refused() -> None:
    two = [_pico("/dev/ttyACM0", "S1"), _pico("/dev/ttyACM1", "S2")]
    with pytest.raises(BoardAssignmentError, match="2 attached boards could be wall-b") as info:
        assign(DEMO_TERMINAL, [BoardRequest("wall-b", None)], attached=two)
    assert info.value.value == ["S1", "S2"] and "/dev/ttyACM1" in str(info.value)
    with pytest.raises(BoardAssignmentError, match="no board with USB id 2e8a:0005") as info:
        assign(DEMO_TERMINAL, [BoardRequest("wall-b", None)], attached=[FTDI])
    assert "/dev/ttyUSB0" in str(info.value), "the message lists what is attached"
    with pytest.raises(BoardAssignmentError, match="one board id without a serial"):
        assign(
            DEMO_TERMINAL,
            [BoardRequest("wall-a", None), BoardRequest("wall-b", None)],
            attached=two,
        )


def test_another_usb_id_selects_other_boards() -> None:
    esp = AttachedPort("/dev/ttyUSB1", UsbId(0x10C4, 0xEA60), "0001")
    got, _ = assign(
        DEMO_TERMINAL,
        [BoardRequest("wall-a", None)],
        attached=[esp, _pico("/dev/ttyACM0", "S1")],
        usb_id=UsbId(0x10C4, 0xEA60),
    )
    assert got["wall-a"].usb_id == UsbId(0x10C4, 0xEA60) and got["wall-a"].serial == "0001"


def _terminal_with_port(port: Path) -> Terminal:
    text = DEMO.read_text().replace('board_id = "wall-a"', f'board_id = "wall-a"\nport = "{port}"')
    return loads(text, "ported")


def test_a_board_whose_port_is_attached_keeps_its_serial(tmp_path: Path) -> None:
    device = tmp_path / "ttyACM3"
    device.touch()
    by_id = tmp_path / "usb-MicroPython_Board_in_FS_mode_S1-if00"
    by_id.symlink_to(device)
    terminal = _terminal_with_port(by_id)
    attached = [_pico(str(device), "S1"), _pico(str(tmp_path / "ttyACM4"), "S2")]
    got, _ = assign(terminal, [BoardRequest("wall-b", None)], attached=attached)
    assert _serials(got) == {"wall-a": "S1", "wall-b": "S2"}
    assert got["wall-a"].source == f"its port {by_id}"
    with pytest.raises(BoardAssignmentError, match="correct the port or the serial number"):
        assign(terminal, [BoardRequest("wall-a", "S9")], attached=attached)


def test_a_replaced_board_is_noted() -> None:
    known = {"wall-a": Assignment("wall-a", PICO_USB_ID, "OLD", "file, line 3")}
    got, notes = assign(
        DEMO_TERMINAL, [BoardRequest("wall-a", None)], attached=[_pico("/x", "NEW")], known=known
    )
    assert _serials(got) == {"wall-a": "NEW"}
    assert notes == ["board wall-a: serial number NEW (attached /x) replaces OLD of the rules file"]


def test_rs485_boards_get_no_usb_rule() -> None:
    terminal = loads(_demo_on_rs485(), "rs485")
    with pytest.raises(BoardAssignmentError, match="'wall-b' is on RS-485"):
        assign(terminal, [BoardRequest("wall-b", "S1")])
    text = render(terminal, {}, config_source="t")
    assert "# wall-b: on RS-485" in text and udev_file(text) == []


# -- the command line ------------------------------------------------------------------------


def _cli(*argv: str) -> int:
    return main(["udev-rules", *argv])


def test_cli_prints_the_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("--config", str(DEMO), "--board", "wall-a=E661", "--group", "amtomat") == 0
    out = capsys.readouterr().out
    assert udev_file(out) == [_intended("wall-a", "E661", group="amtomat")]
    assert "# wall-b: no serial number yet" in out


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--board", 'wall-a=ab"c'], "'ab\"c'"),
        (["--board", "wall-a=a b"], "'a b'"),
        (["--board", "Wall A=abc"], "'Wall A'"),
        (["--usb-id", "2e8a"], "'2e8a'"),
        (["--group", "dial out"], "'dial out'"),
    ],
)
def test_cli_bad_arguments_exit_2(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _cli("--config", str(DEMO), *argv)
    assert info.value.code == 2
    assert named in capsys.readouterr().err


def test_cli_without_config_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _cli("--board", "wall-a=abc")
    assert info.value.code == 2 and "--config" in capsys.readouterr().err


def test_cli_errors_exit_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli("--config", str(DEMO), "--board", "wall-c=abc") == 1
    err = capsys.readouterr().err
    assert err.startswith("amtomat udev-rules: --board wall-c=abc: the terminal file has no board")
    bad = tmp_path / "bad.toml"
    bad.write_text(DEMO.read_text().replace("address = 1 ", "address = 999 "))
    assert _cli("--config", str(bad), "--board", "wall-a=abc") == 1
    assert "boards[0].address: 999" in capsys.readouterr().err
    assert _cli("--config", str(tmp_path / "missing.toml"), "--board", "wall-a=abc") == 1
    assert "cannot read the file" in capsys.readouterr().err


def test_cli_attached_finds_no_board_of_an_unused_usb_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A real port listing of this machine: nothing carries the (unassigned) USB id ffff:fffe.
    assert all(p.usb_id != UsbId(0xFFFF, 0xFFFE) for p in attached_ports())
    argv = ["--config", str(DEMO), "--attached", "--usb-id", "ffff:fffe", "--board", "wall-a"]
    assert _cli(*argv) == 1
    assert "no board with USB id ffff:fffe is attached" in capsys.readouterr().err


def test_cli_update_adds_boards_and_is_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "99-amtomat.rules"
    assert _cli("--config", str(DEMO), "--board", "wall-a=S1", "--update", str(rules)) == 0
    assert stat.S_IMODE(rules.stat().st_mode) == 0o644
    assert "/dev/amtomat/wall-a: USB 2e8a:0005 serial S1" in capsys.readouterr().out
    assert _cli("--config", str(DEMO), "--board", "wall-b=S2", "--update", str(rules)) == 0
    first = rules.read_bytes()
    assert udev_file(first.decode()) == [_intended("wall-a", "S1"), _intended("wall-b", "S2")]
    assert _cli("--config", str(DEMO), "--update", str(rules)) == 0
    assert rules.read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == [rules.name], "no temporary file left"


def test_cli_update_leaves_a_foreign_file_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "70-local.rules"
    mine = 'SUBSYSTEM=="tty", ATTRS{serial}=="X", SYMLINK+="kiosk"\n'
    rules.write_text(mine)
    assert _cli("--config", str(DEMO), "--board", "wall-a=S1", "--update", str(rules)) == 1
    assert "line 1: not a rule amtomat udev-rules writes" in capsys.readouterr().err
    assert rules.read_text() == mine


def test_cli_update_into_a_missing_folder_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "nowhere" / "99-amtomat.rules"
    assert _cli("--config", str(DEMO), "--board", "wall-a=S1", "--update", str(target)) == 1
    assert f"cannot write in {target.parent}" in capsys.readouterr().err
    assert not os.path.exists(target.parent)
