"""Who the fake board says it is: serial number, MicroPython version, .mpy ABI, machine,
platform; the checks of those options, and the facts ``_fbboot.boot`` installs in the VM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from tools.fakeboard.errors import BadOption
from tools.fakeboard.repl import banner

DEFAULT_SERIAL: Final = "e66118604b1f2d2b"
PICO_MACHINE: Final = "Raspberry Pi Pico with RP2040"
PICO_CAPACITY: Final = 1_441_792
VM_MPY: Final = 0x306  # .mpy v6.3, no native arch: what the npm VM loads
_VERSION: Final = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_SERIAL: Final = re.compile(r"[0-9a-fA-F]{16}")


def check_serial(text: object) -> str:
    """A board serial number: 16 hex digits (BadOption naming the value otherwise)."""
    if not isinstance(text, str) or not _SERIAL.fullmatch(text):
        raise BadOption(f"serial number must be 16 hex digits, got {text!r}", text)
    return text.lower()


def check_version(text: object) -> str:
    """A MicroPython version like 1.19.1 (BadOption naming the value otherwise)."""
    if not isinstance(text, str) or not _VERSION.fullmatch(text):
        raise BadOption(f"MicroPython version must look like 1.19.1, got {text!r}", text)
    return text


def check_mpy(value: object) -> int:
    """A value of sys.implementation._mpy: an int 0..0xffff (BadOption otherwise)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
        raise BadOption(f"mpy must be an int 0..0xffff, got {value!r}", value)
    return value


def check_capacity(value: object) -> int:
    """A flash size in bytes, at least 0 (BadOption otherwise)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadOption(f"capacity must be a byte count >= 0, got {value!r}", value)
    return value


def check_line(name: str, text: object) -> str:
    """One non-empty line of text (BadOption naming the option and the value otherwise)."""
    if not isinstance(text, str) or not text or any(c in text for c in "\r\n"):
        raise BadOption(f"{name} must be one line of text, got {text!r}", text)
    return text


@dataclass(frozen=True)
class Identity:
    """What the board claims; None for micropython or mpy: what the VM itself is."""

    serial_number: str = DEFAULT_SERIAL
    micropython: str | None = None
    mpy: int | None = None
    machine_name: str = PICO_MACHINE
    platform: str = "rp2"

    def __post_init__(self) -> None:
        check_serial(self.serial_number)
        if self.micropython is not None:
            check_version(self.micropython)
        if self.mpy is not None:
            check_mpy(self.mpy)
        check_line("machine_name", self.machine_name)
        check_line("platform", self.platform)

    def release(
        self, vm_version: str, vm_banner: str
    ) -> tuple[tuple[int, int, int, str], str, str]:
        """(sys.implementation.version, release text, build date) given the VM's own
        version ("1.29.0") and banner line."""
        m = re.search(r" on (\S+);", vm_banner)
        date = str(m.group(1)) if m else "2025-01-01"
        release = self.micropython or vm_version or "1.29.0"
        v = _VERSION.match(release)
        numbers = (int(v.group(1)), int(v.group(2)), int(v.group(3))) if v else (1, 29, 0)
        return (*numbers, ""), release, date

    def boot_config(self, vm_version: str, vm_banner: str) -> dict[str, Any]:
        """The identity part of ``_fbboot.boot``'s argument, the REPL banner included."""
        version, release, date = self.release(vm_version, vm_banner)
        return {
            "version": version,
            "release": release,
            "date": date,
            "machine": self.machine_name,
            "mpy": VM_MPY if self.mpy is None else self.mpy,
            "build": "RPI_PICO",
            "platform": self.platform,
            "unique_id": bytes.fromhex(self.serial_number),
            "banner": banner(release, date, self.machine_name),
        }
