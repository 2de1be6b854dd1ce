"""``amtomat udev-rules``: udev rules that name each board's serial port /dev/amtomat/<board_id>."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from controller.boardconfig import BOARD_ID_RE, BoardSpec, Terminal, load
from controller.errors import ConfigError

# udev matches ATTRS values as shell globs with "|" alternatives and ends them at a quote:
# a serial number of these characters only can neither break out of its value nor match
# another device.
SERIAL_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,126}")
GROUP_RE: Final = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
USB_ID_RE: Final = re.compile(r"([0-9A-Fa-f]{4}):([0-9A-Fa-f]{4})")
SYMLINK_DIR: Final = "amtomat"
DEFAULT_GROUP: Final = "dialout"
MODE: Final = "0660"
RULES_NAME: Final = "99-amtomat.rules"

HEADER: Final = """\
# udev rules of Amt-O-Mat terminal "{kiosk_id}": each board's USB serial port gets the
# stable name /dev/amtomat/<board_id>; write that as the board's `port` in the terminal file.
# Written by `amtomat udev-rules` from {source}.
# Rewrite it with that command (--update FILE keeps the boards already in FILE) rather than
# by hand: docs/installation.md.
#
# Install: sudo install -m 0644 {name} /etc/udev/rules.d/{name}
#          sudo udevadm control --reload && sudo udevadm trigger --subsystem-match=tty
# Check:   ls -l /dev/amtomat/
#
# A rule matches the tty whose USB device has this vendor and product id (2e8a:0005 is a
# Raspberry Pi Pico running MicroPython) and serial number. SYMLINK+= adds the name, GROUP
# and MODE let that group (the daemon's user is in it) read and write the port, and
# ID_MM_DEVICE_IGNORE keeps ModemManager from probing the board with AT commands.
"""

# Our own rule lines, as render() writes them; read back by read_rules().
_TOKEN_RE: Final = re.compile(r'\s*([A-Z_]+)(?:\{([A-Za-z0-9_]+)\})?(==|\+=|=)"([^"\\]*)"\s*(,|$)')


class UdevError(Exception):
    """Root of udev-rules errors; ``value`` is the offending value."""

    def __init__(self, message: str, value: object = None) -> None:
        super().__init__(message)
        self.value = value


class BadValueError(UdevError):
    """A serial number, USB id, group or --board value udev rules cannot carry."""


class BoardAssignmentError(UdevError):
    """Which board is which serial number is unknown, ambiguous or contradictory."""


class RulesFileError(UdevError):
    """The rules file to update cannot be read, is not ours, or cannot be written."""


@dataclass(frozen=True, order=True)
class UsbId:
    """A USB vendor and product id, written ``2e8a:0005`` as udev and lsusb show them."""

    vendor: int
    product: int

    def __str__(self) -> str:
        return f"{self.vendor:04x}:{self.product:04x}"


PICO_USB_ID: Final = UsbId(0x2E8A, 0x0005)  # Raspberry Pi Pico running MicroPython


@dataclass(frozen=True)
class AttachedPort:
    """A serial port attached now: its device, USB id and serial number (None if not USB)."""

    device: str
    usb_id: UsbId | None
    serial: str | None
    description: str = ""

    def show(self) -> str:
        serial = "no serial number" if self.serial is None else f"serial {self.serial}"
        usb = "not USB" if self.usb_id is None else f"USB {self.usb_id}"
        what = f", {self.description}" if self.description else ""
        return f"{self.device} ({usb}, {serial}{what})"


@dataclass(frozen=True)
class BoardRequest:
    """One ``--board`` option: a board id with its serial number, or alone (``--attached``)."""

    board_id: str
    serial: str | None


@dataclass(frozen=True)
class Assignment:
    """A board's USB device; ``source`` says where the serial number came from."""

    board_id: str
    usb_id: UsbId
    serial: str
    source: str


def check_serial(text: str) -> str:
    """``text`` if udev rules can carry it as a serial number; else BadValueError."""
    if SERIAL_RE.fullmatch(text):
        return text
    bad = "".join(sorted({c for c in text if not SERIAL_RE.fullmatch(c)}))
    if not text:
        problem = "is empty"
    elif bad:
        problem = f"has characters udev rules cannot carry safely ({bad!r})"
    else:
        problem = f"is {len(text)} characters long (at most 126)"
    raise BadValueError(
        f"serial number {text!r} {problem}; a serial number is letters, digits, '.', '_' and "
        "'-' as `udevadm info -q property -n /dev/ttyACM0 | grep ID_SERIAL_SHORT` shows it",
        text,
    )


def parse_usb_id(text: str) -> UsbId:
    """``VID:PID`` in hex (``2e8a:0005``); else BadValueError."""
    m = USB_ID_RE.fullmatch(text)
    if m is None:
        raise BadValueError(
            f"USB id {text!r} is not VENDOR:PRODUCT in hex; write it as lsusb shows it, "
            f"e.g. {PICO_USB_ID}",
            text,
        )
    return UsbId(int(m.group(1), 16), int(m.group(2), 16))


def parse_board_option(text: str) -> BoardRequest:
    """``ID=SERIAL`` or ``ID``; the id must look like a board id. Else BadValueError."""
    board_id, sep, serial = text.partition("=")
    if not BOARD_ID_RE.fullmatch(board_id):
        raise BadValueError(
            f"{board_id!r} is not a board id; write ID=SERIAL (or ID with --attached), "
            "ID being a board_id of the terminal file",
            text,
        )
    return BoardRequest(board_id, check_serial(serial) if sep else None)


def check_group(text: str) -> str:
    """``text`` if it is a plain Unix group name; else BadValueError."""
    if GROUP_RE.fullmatch(text):
        return text
    raise BadValueError(
        f"group {text!r} is not a group name; use dialout (the daemon's user is in it) or amtomat",
        text,
    )


def attached_ports() -> list[AttachedPort]:
    """The serial ports attached now, from pyserial's port listing (sysfs on Linux)."""
    from serial.tools.list_ports import comports

    out: list[AttachedPort] = []
    for info in comports():
        usb = None if info.vid is None or info.pid is None else UsbId(info.vid, info.pid)
        out.append(AttachedPort(info.device, usb, info.serial_number, info.description or ""))
    return sorted(out, key=lambda p: p.device)


def _boards(terminal: Terminal) -> dict[str, BoardSpec]:
    return {b.board_id: b for b in terminal.boards}


def _board(boards: Mapping[str, BoardSpec], board_id: str, where: str) -> BoardSpec:
    board = boards.get(board_id)
    if board is None:
        known = ", ".join(boards) or "none"
        raise BoardAssignmentError(
            f"{where}: the terminal file has no board {board_id!r}; its boards: {known}",
            board_id,
        )
    if board.link.type != "usb":
        raise BoardAssignmentError(
            f"{where}: board {board_id!r} is on RS-485: its port is the bus adapter it shares "
            "with other boards, not a USB device of its own; name the adapter with a rule of "
            "your own (docs/installation.md, RS-485)",
            board_id,
        )
    return board


def _resolve(path: str) -> str | None:
    try:
        return os.path.realpath(path, strict=True)
    except OSError:
        return None


def assign(
    terminal: Terminal,
    requests: Sequence[BoardRequest],
    *,
    attached: Sequence[AttachedPort] | None = None,
    known: Mapping[str, Assignment] | None = None,
    usb_id: UsbId = PICO_USB_ID,
) -> tuple[dict[str, Assignment], list[str]]:
    """Each board's USB device, and notes for the installer.

    In order, later sources overriding ``known`` (the rules file being updated):
    ``--board ID=SERIAL``; with ``attached``, a board whose ``port`` in the terminal file
    resolves to an attached device; then a bare ``--board ID`` takes the one attached
    board of ``usb_id`` that no other board has. Two attached candidates, none, a board
    named twice or a serial number given to two boards raise BoardAssignmentError.
    """
    boards = _boards(terminal)
    notes: list[str] = []
    base = dict(known or {})
    for board_id in base:
        _board(boards, board_id, "rules file")
    fresh: dict[str, Assignment] = {}
    bare: list[str] = []
    for req in requests:
        where = f"--board {req.board_id}" + ("" if req.serial is None else f"={req.serial}")
        _board(boards, req.board_id, where)
        if req.board_id in fresh or req.board_id in bare:
            raise BoardAssignmentError(f"{where}: board {req.board_id!r} is named twice", req)
        if req.serial is None:
            bare.append(req.board_id)
        else:
            fresh[req.board_id] = Assignment(req.board_id, usb_id, req.serial, "--board")
    if bare and attached is None:
        raise BoardAssignmentError(
            f"--board {bare[0]} has no serial number: write --board {bare[0]}=SERIAL, or plug "
            "in that board alone and add --attached",
            bare[0],
        )
    if len(bare) > 1:
        raise BoardAssignmentError(
            f"--board {' --board '.join(bare)}: which attached board is which cannot be told; "
            "give one board id without a serial number at a time (plug in one new board, run, "
            "plug in the next) or write ID=SERIAL",
            bare,
        )
    if attached is not None:
        _assign_by_port(boards, attached, fresh, bare)
        if bare:
            fresh[bare[0]] = _only_new_board(bare[0], attached, {**base, **fresh}, usb_id)
    merged = {**base}
    for board_id, new in fresh.items():
        old = base.get(board_id)
        if old is not None and (old.serial, old.usb_id) != (new.serial, new.usb_id):
            notes.append(
                f"board {board_id}: serial number {new.serial} ({new.source}) replaces "
                f"{old.serial} of the rules file"
            )
        merged[board_id] = new
    _check_unique(merged)
    return {b: merged[b] for b in boards if b in merged}, notes


def _assign_by_port(
    boards: Mapping[str, BoardSpec],
    attached: Sequence[AttachedPort],
    fresh: dict[str, Assignment],
    bare: list[str],
) -> None:
    """Boards whose configured port is an attached USB device get that device's serial."""
    devices = {_resolve(p.device) or p.device: p for p in attached}
    for board in boards.values():
        if board.link.type != "usb" or board.port is None or not board.port.startswith("/"):
            continue
        target = _resolve(board.port)
        port = devices.get(target) if target is not None else None
        if port is None or port.usb_id is None or port.serial is None:
            continue
        found = Assignment(board.board_id, port.usb_id, port.serial, f"its port {board.port}")
        given = fresh.get(board.board_id)
        if given is not None and given.serial != found.serial:
            raise BoardAssignmentError(
                f"--board {board.board_id}={given.serial}: the board's port {board.port} in the "
                f"terminal file is the attached device {port.device} with serial number "
                f"{port.serial}; correct the port or the serial number",
                given.serial,
            )
        if board.board_id in bare:
            bare.remove(board.board_id)
        check_serial(port.serial)
        fresh[board.board_id] = found


def _only_new_board(
    board_id: str,
    attached: Sequence[AttachedPort],
    taken: Mapping[str, Assignment],
    usb_id: UsbId,
) -> Assignment:
    """The single attached board of ``usb_id`` whose serial no other board has."""
    others = {a.serial for b, a in taken.items() if b != board_id}
    candidates = [
        p
        for p in attached
        if p.usb_id == usb_id and p.serial is not None and p.serial not in others
    ]
    if not candidates:
        seen = "; ".join(p.show() for p in attached) or "no serial port at all"
        raise BoardAssignmentError(
            f"--board {board_id}: no board with USB id {usb_id} is attached that another board "
            f"does not already have (attached: {seen}); plug in the board for {board_id} "
            "(a data cable, not a charging cable), or give --usb-id for another kind of board",
            board_id,
        )
    if len(candidates) > 1:
        seen = "; ".join(p.show() for p in candidates)
        raise BoardAssignmentError(
            f"--board {board_id}: {len(candidates)} attached boards could be {board_id} ({seen}); "
            f"unplug all but the one for {board_id}, or write --board {board_id}=SERIAL",
            [p.serial for p in candidates],
        )
    port = candidates[0]
    assert port.serial is not None and port.usb_id is not None
    return Assignment(board_id, port.usb_id, check_serial(port.serial), f"attached {port.device}")


def _check_unique(assignments: Mapping[str, Assignment]) -> None:
    owners: dict[tuple[UsbId, str], str] = {}
    for board_id, a in assignments.items():
        key = (a.usb_id, a.serial)
        if key in owners:
            raise BoardAssignmentError(
                f"serial number {a.serial} is given to both {owners[key]} and {board_id}; "
                "each board has its own, see `ls -l /dev/serial/by-id/`",
                a.serial,
            )
        owners[key] = board_id


def rule_line(a: Assignment, group: str = DEFAULT_GROUP) -> str:
    """The udev rule that names ``a``'s tty /dev/amtomat/<board_id>."""
    pairs = (
        'SUBSYSTEM=="tty"',
        f'ATTRS{{idVendor}}=="{a.usb_id.vendor:04x}"',
        f'ATTRS{{idProduct}}=="{a.usb_id.product:04x}"',
        f'ATTRS{{serial}}=="{check_serial(a.serial)}"',
        f'SYMLINK+="{SYMLINK_DIR}/{a.board_id}"',
        f'GROUP="{check_group(group)}"',
        f'MODE="{MODE}"',
        'ENV{ID_MM_DEVICE_IGNORE}="1"',
    )
    return ", ".join(pairs)


def render(
    terminal: Terminal,
    assignments: Mapping[str, Assignment],
    *,
    config_source: str,
    group: str = DEFAULT_GROUP,
) -> str:
    """The whole rules file: a commented header, then one rule per board (in file order)."""
    source = config_source if config_source.isprintable() else repr(config_source)
    lines = HEADER.format(kiosk_id=terminal.kiosk_id, source=source, name=RULES_NAME).splitlines()
    for board in terminal.boards:
        lines.append("")
        a = assignments.get(board.board_id)
        if board.link.type != "usb":
            lines.append(
                f"# {board.board_id}: on RS-485, reached through its bus adapter; no rule here"
            )
        elif a is None:
            lines.append(
                f"# {board.board_id}: no serial number yet; plug it in alone and run amtomat "
                f"udev-rules --config TOML --attached --board {board.board_id} --update FILE"
            )
        else:
            lines.append(f"# {board.board_id}")
            lines.append(rule_line(a, group))
    return "\n".join(lines) + "\n"


def _split_rule(line: str) -> list[tuple[str, str | None, str, str]] | None:
    """(key, attr, operator, value) of a rule line as render() writes it; None otherwise."""
    out: list[tuple[str, str | None, str, str]] = []
    pos = 0
    while pos < len(line):
        m = _TOKEN_RE.match(line, pos)
        if m is None or m.end() == pos:
            return None
        out.append((m.group(1), m.group(2), m.group(3), m.group(4)))
        pos = m.end()
    return out


def read_rules(text: str, source: str) -> dict[str, Assignment]:
    """The boards of a rules file this tool wrote; any other rule is a RulesFileError."""
    found: dict[str, Assignment] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = _split_rule(line)
        fields = {(k, a, op): v for k, a, op, v in tokens or []}
        symlink = fields.get(("SYMLINK", None, "+="), "")
        board_id = symlink.removeprefix(f"{SYMLINK_DIR}/")
        vendor = fields.get(("ATTRS", "idVendor", "=="), "")
        product = fields.get(("ATTRS", "idProduct", "=="), "")
        serial = fields.get(("ATTRS", "serial", "=="), "")
        if (
            tokens is None
            or fields.get(("SUBSYSTEM", None, "==")) != "tty"
            or not symlink.startswith(f"{SYMLINK_DIR}/")
            or not BOARD_ID_RE.fullmatch(board_id)
            or not USB_ID_RE.fullmatch(f"{vendor}:{product}")
            or not SERIAL_RE.fullmatch(serial)
        ):
            raise RulesFileError(
                f"{source}, line {number}: not a rule amtomat udev-rules writes ({line[:80]!r}); "
                "keep other rules in a file of their own, or give another --update file",
                line,
            )
        if board_id in found:
            raise RulesFileError(
                f"{source}, line {number}: board {board_id!r} has a second rule; delete one",
                board_id,
            )
        found[board_id] = Assignment(
            board_id, parse_usb_id(f"{vendor}:{product}"), serial, f"{source}, line {number}"
        )
    return found


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesFileError(f"cannot read {path}: {exc}", str(path)) from exc


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (mode 0644) so that udev never sees half a file."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise RulesFileError(
            f"cannot write in {path.parent}: {exc.strerror or exc} (run it with sudo for "
            "/etc/udev/rules.d)",
            str(path),
        ) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise RulesFileError(f"cannot write {path}: {exc.strerror or exc}", str(path)) from exc


def _type(parse: Any) -> Any:
    """An argparse ``type=`` that turns BadValueError into argparse's usage error (exit 2)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except BadValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


DESCRIPTION = (
    "Print udev rules that give each board's USB serial port the stable name "
    "/dev/amtomat/<board_id>, matched by its USB serial number. Serial numbers come from "
    "--board ID=SERIAL, or with --attached from the boards plugged in now: a board whose "
    "port in the terminal file is an attached device, and for one bare --board ID the only "
    "attached board no other board has. Exit status: 0 rules written, 1 an error (message "
    "on stderr), 2 a bad argument."
)


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``udev-rules``."""
    p = sub.add_parser(
        "udev-rules",
        parents=[common],
        help="udev rules: stable board names /dev/amtomat/<board_id>",
        description=DESCRIPTION,
    )
    p.add_argument("--config", required=True, metavar="TOML", help="the terminal file")
    p.add_argument(
        "--board",
        action="append",
        default=[],
        type=_type(parse_board_option),
        metavar="ID[=SERIAL]",
        help="a board and its USB serial number; ID alone (with --attached) takes the one "
        "attached board that no other board has",
    )
    p.add_argument(
        "--attached",
        action="store_true",
        help="read serial numbers of the boards attached now (pyserial's port listing)",
    )
    p.add_argument(
        "--usb-id",
        type=_type(parse_usb_id),
        default=PICO_USB_ID,
        metavar="VID:PID",
        help=f"USB id of the boards (default {PICO_USB_ID}, a Pico running MicroPython)",
    )
    p.add_argument(
        "--group",
        type=_type(check_group),
        default=DEFAULT_GROUP,
        help=f"group that may use the ports (default {DEFAULT_GROUP})",
    )
    p.add_argument(
        "--update",
        type=Path,
        metavar="FILE",
        help="keep the boards of this rules file, add the new ones, and rewrite it in place "
        "instead of printing the rules",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return run(args)


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Generate (and with --update write) the rules; 0, or 1 with the reason on stderr."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        _generate(args, out, err)
    except (ConfigError, UdevError) as exc:
        print(f"amtomat udev-rules: {exc}", file=err)
        return 1
    return 0


def _generate(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    terminal = load(args.config)
    known: dict[str, Assignment] = {}
    if args.update is not None:
        known = read_rules(_read_file(args.update), str(args.update))
    attached = attached_ports() if args.attached else None
    assignments, notes = assign(
        terminal, args.board, attached=attached, known=known, usb_id=args.usb_id
    )
    if not assignments:
        hint = ""
        if attached is not None:
            hint = " (attached: " + ("; ".join(p.show() for p in attached) or "none") + ")"
        raise BoardAssignmentError(
            "no board has a serial number yet: give --board ID=SERIAL, or plug in one board "
            f"and give --attached --board ID{hint}",
            None,
        )
    text = render(terminal, assignments, config_source=args.config, group=args.group)
    for note in notes:
        print(f"amtomat udev-rules: {note}", file=err)
    if args.update is None:
        out.write(text)
        return
    write_atomically(args.update, text)
    _report(args.update, terminal, assignments, out)


def _report(
    path: Path, terminal: Terminal, assignments: Mapping[str, Assignment], out: TextIO
) -> None:
    print(f"wrote {path}:", file=out)
    for line in _summary(terminal, assignments):
        print(f"  {line}", file=out)
    print(
        "next: sudo udevadm control --reload && sudo udevadm trigger --subsystem-match=tty",
        file=out,
    )


def _summary(terminal: Terminal, assignments: Mapping[str, Assignment]) -> Iterable[str]:
    for board in terminal.boards:
        a = assignments.get(board.board_id)
        if a is not None:
            name = f"/dev/{SYMLINK_DIR}/{board.board_id}"
            yield f"{name}: USB {a.usb_id} serial {a.serial} ({a.source})"
        elif board.link.type == "usb":
            yield f"{board.board_id}: no serial number yet"
