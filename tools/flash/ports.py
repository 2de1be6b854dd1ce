"""Serial ports with a board behind them: the USB listing, known boards, choosing the port
to flash, and who holds a busy port."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tools.flash.errors import NoBoard, SeveralBoards

UDEV_DIR: Final = "/dev/amtomat"

# USB ids checked against the sources: MicroPython's rp2 port defaults to 2E8A:0005 for every
# board that does not set its own (Pico, Pico W, Pico 2: ports/rp2/mpconfigport.h); F055 is
# MicroPython's own vendor id (pyboard and other ports); 303A is Espressif (native USB of
# ESP32-S2/S3/C3/C6). CP210x and CH340/CH9102 are USB-serial bridges on ESP32 boards: some
# MicroPython board is likely, not certain.
NATIVE: Final = "native"
BRIDGE: Final = "bridge"
KNOWN_BOARDS: Final[tuple[tuple[int, int | None, str, str], ...]] = (
    (
        0x2E8A,
        0x0005,
        "Raspberry Pi RP2040/RP2350 running MicroPython (Pico, Pico W, Pico 2)",
        NATIVE,
    ),
    (0xF055, None, "MicroPython board (MicroPython's own USB id)", NATIVE),
    (0x303A, None, "Espressif ESP32 with native USB", NATIVE),
    (0x10C4, 0xEA60, "CP210x USB-serial bridge (ESP32 boards)", BRIDGE),
    (0x1A86, 0x7523, "CH340 USB-serial bridge (ESP32 boards)", BRIDGE),
    (0x1A86, 0x55D4, "CH9102 USB-serial bridge (ESP32 boards)", BRIDGE),
)


@dataclass(frozen=True)
class AttachedPort:
    """One serial port as the USB listing shows it."""

    device: str
    vid: int | None = None
    pid: int | None = None
    serial_number: str | None = None
    manufacturer: str | None = None
    product: str | None = None
    description: str | None = None

    @property
    def usb_id(self) -> str:
        """``VID:PID`` in hex, or ``-`` for a port without USB ids."""
        if self.vid is None or self.pid is None:
            return "-"
        return f"{self.vid:04X}:{self.pid:04X}"

    @property
    def kind(self) -> str | None:
        """What the USB id says about the board; None when it is not a known one."""
        known = known_board(self.vid, self.pid)
        return known[0] if known else None

    @property
    def micropython(self) -> bool:
        """A known MicroPython board or a USB-serial bridge such boards use."""
        return known_board(self.vid, self.pid) is not None


def known_board(vid: int | None, pid: int | None) -> tuple[str, str] | None:
    """(description, NATIVE or BRIDGE) for a known USB id, else None."""
    if vid is None:
        return None
    for k_vid, k_pid, text, how in KNOWN_BOARDS:
        if vid == k_vid and (k_pid is None or pid == k_pid):
            return text, how
    return None


def _from_pyserial(info: Any) -> AttachedPort:
    return AttachedPort(
        device=str(info.device),
        vid=info.vid,
        pid=info.pid,
        serial_number=info.serial_number,
        manufacturer=info.manufacturer,
        product=info.product,
        description=info.description,
    )


def list_ports(comports: Callable[[], Iterable[Any]] | None = None) -> list[AttachedPort]:
    """The serial ports pyserial finds, USB ones first, sorted by device."""
    if comports is None:
        from serial.tools.list_ports import comports as pyserial_comports

        comports = pyserial_comports
    ports = [_from_pyserial(p) for p in comports()]
    return sorted(ports, key=lambda p: (p.vid is None, p.device))


def format_ports(ports: list[AttachedPort]) -> str:
    """A table for the terminal: device, USB id, serial number, what it is."""
    if not ports:
        return "no serial ports"
    rows = [("DEVICE", "USB ID", "SERIAL", "BOARD")]
    for p in ports:
        what = (
            p.kind
            or " ".join(x for x in (p.manufacturer, p.product) if x)
            or (p.description or "unknown")
        )
        rows.append((p.device, p.usb_id, p.serial_number or "-", what))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows
    )


def choose_port(explicit: str | None, configured: str | None, attached: list[AttachedPort]) -> str:
    """The port to flash: --port, else the board's port from the TOML, else the single
    attached MicroPython board. NoBoard or SeveralBoards name what is attached."""
    if explicit:
        return explicit
    if configured and not configured.startswith("socket://"):
        return configured
    boards = [p for p in attached if p.micropython]
    if len(boards) == 1:
        return boards[0].device
    if not boards:
        listing = ", ".join(_one_line(p) for p in attached) or "nothing"
        raise NoBoard(
            "no board attached: no serial port with the USB id of a MicroPython board "
            f"(attached: {listing}). Plug the board in with a data cable (not a charging "
            "cable); a board in BOOTSEL mode shows up as a USB drive: copy MicroPython's UF2 "
            "to it first. Or name the port with --port",
            [p.device for p in attached],
        )
    names = ", ".join(f"{p.device} ({p.serial_number or 'no serial'})" for p in boards)
    raise SeveralBoards(
        f"{len(boards)} MicroPython boards are attached: {names}; name the one to flash "
        "with --port, or set its port in the terminal TOML",
        [p.device for p in boards],
    )


def _one_line(port: AttachedPort) -> str:
    what = port.kind or port.product or port.description or "unknown"
    return f"{port.device} ({port.usb_id}, {what})"


def find_attached(device: str, attached: list[AttachedPort]) -> AttachedPort | None:
    """The listing entry of device, following symlinks (``/dev/amtomat/wall-a``)."""
    real = os.path.realpath(device)
    for p in attached:
        if p.device == device or os.path.realpath(p.device) == real:
            return p
    return None


def holders(device: str, proc: Path = Path("/proc")) -> list[tuple[int, str]]:
    """(pid, command line) of other processes with device open, as far as /proc shows."""
    try:
        target = os.path.realpath(device)
    except OSError:
        return []
    found: list[tuple[int, str]] = []
    me = os.getpid()
    try:
        entries = list(proc.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                    found.append((int(entry.name), cmd.decode("utf-8", "replace")[:120]))
                    break
            except OSError:
                continue
    return found


def udev_rule(serial_number: str, board_id: str) -> str:
    """The udev rule line that names the board's port ``/dev/amtomat/<board_id>``."""
    return f'SUBSYSTEM=="tty", ATTRS{{serial}}=="{serial_number}", SYMLINK+="amtomat/{board_id}"'
