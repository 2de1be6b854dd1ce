"""The board's REPL as a client sees it, between the pty and the VM's REPL.

- Input: raw-paste mode (``\\x05A\\x01`` at the raw REPL) is declined with ``R\\x00``
  without passing those bytes to the VM, which would hang in it; mpremote then writes
  its commands through the plain raw REPL.
- Output: the VM's banner line becomes the board's (its MicroPython version and machine),
  and a bare ``\\n`` becomes ``\\r\\n`` as a board's stdout prints it.
- Which REPL is active (raw or friendly) is read off the output, for the soft reset,
  which a raw REPL survives.
"""

from __future__ import annotations

import re
from typing import Final

RAW_PASTE: Final = b"\x05A\x01"
RAW_PASTE_DECLINED: Final = b"R\x00"
RAW_BANNER: Final = b"raw REPL; CTRL-B to exit\r\n"
RAW_PROMPT: Final = RAW_BANNER + b">"
FRIENDLY_BANNER_END: Final = b'Type "help()" for more information.\r\n'
SOFT_REBOOT: Final = b"MPY: soft reboot\r\n"
_BARE_LF: Final = re.compile(rb"(?<!\r)\n")


def banner(release: str, date: str, machine: str) -> bytes:
    """What the friendly REPL prints when it starts, prompt included."""
    return (
        f"MicroPython v{release} on {date}; {machine}\r\n".encode() + FRIENDLY_BANNER_END + b">>> "
    )


class ReplStream:
    """Translation both ways for one board; see the module docstring.

    vm_banner: the VM's own banner line; board_banner: the line that replaces it.
    """

    def __init__(self, vm_banner: bytes, board_banner: bytes) -> None:
        self._vm_banner = vm_banner
        self._board_banner = board_banner
        self.raw = False  # the raw REPL is active
        self._held = b""  # a possible start of RAW_PASTE, waiting for more bytes
        self._after_cr = False  # the last byte sent out was \r

    def restart(self, raw: bool) -> None:
        """A new REPL (after a reset): raw or friendly, nothing held."""
        self.raw = raw
        self._held = b""

    @property
    def held(self) -> bytes:
        """Bytes held back as a possible start of a raw-paste request."""
        return self._held

    def split_input(self, data: bytes) -> list[tuple[bool, bytes]]:
        """data as (for the VM, bytes) pieces in order; (False, R\\x00) answers a raw-paste
        request itself. A trailing possible start of a request is held for the next call."""
        buf = self._held + data
        self._held = b""
        pieces: list[tuple[bool, bytes]] = []
        start = 0
        i = buf.find(RAW_PASTE[:1]) if self.raw else -1
        while i >= 0:
            head = buf[i : i + len(RAW_PASTE)]
            if head == RAW_PASTE:
                if i > start:
                    pieces.append((True, buf[start:i]))
                pieces.append((False, RAW_PASTE_DECLINED))
                start = i + len(RAW_PASTE)
            elif RAW_PASTE.startswith(head):  # cut off at the end of buf
                if i > start:
                    pieces.append((True, buf[start:i]))
                self._held = head
                return pieces
            i = buf.find(RAW_PASTE[:1], max(start, i + 1))
        if start < len(buf):
            pieces.append((True, buf[start:]))
        return pieces

    def output(self, data: bytes) -> bytes:
        """What the VM printed, as the board prints it; notes raw/friendly switches."""
        if not data:
            return data
        if self._vm_banner:
            data = data.replace(self._vm_banner, self._board_banner)
        data = _BARE_LF.sub(b"\r\n", (b"\r" if self._after_cr else b".") + data)[1:]
        self._after_cr = data.endswith(b"\r")
        raw_at = data.rfind(RAW_BANNER)
        friendly_at = data.rfind(FRIENDLY_BANNER_END)
        if raw_at > friendly_at:
            self.raw = True
        elif friendly_at > raw_at:
            self.raw = False
        return data
