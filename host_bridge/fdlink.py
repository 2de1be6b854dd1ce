"""A non-blocking file descriptor (pty side, serial port) on the asyncio loop.

Bytes that arrive go to ``on_data``; bytes written are buffered until the descriptor
takes them, up to a cap beyond which they are dropped and counted, like on a serial line
nobody reads. A read or write error ends the link once through ``on_lost(reason)``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import termios
from collections.abc import Callable
from typing import Final

from tools.closeable import Closeable

READ_CHUNK: Final = 65536
MAX_READ_PER_CALL: Final = 1 << 20  # so one busy descriptor cannot starve the loop
OUT_CAP: Final = 256 * 1024

log = logging.getLogger("amtomat.bridge")


def make_raw(fd: int) -> None:
    """Put a tty in raw 8-bit mode: every byte value passes unchanged in both directions.

    Like cfmakeraw(3): no echo, no canonical line editing, no CR/LF translation on input
    or output, no XON/XOFF flow control, no signal characters (0x03 is data), no parity,
    no stripping of the 8th bit; a read returns as soon as one byte is there.
    """
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(fd)
    iflag &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
        | termios.IXOFF
        | termios.IXANY
        | termios.INPCK
    )
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag &= ~(termios.CSIZE | termios.PARENB)
    cflag |= termios.CS8 | termios.CREAD | termios.CLOCAL
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])


def _read_returns_at_once(fd: int) -> None:
    """VMIN=1, VTIME=0: a read with no data fails with EAGAIN instead of returning b""
    (pyserial's timeout=0 sets VMIN=0), so an empty read means the line hung up."""
    attrs = termios.tcgetattr(fd)
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class FdLink(Closeable):
    """Reads and writes one non-blocking descriptor from the running loop; ``close()``
    stops watching it and calls ``release`` (which closes the descriptor's owner)."""

    def __init__(
        self,
        fd: int,
        on_data: Callable[[bytes], None],
        on_lost: Callable[[str], None],
        release: Callable[[], None],
        *,
        out_cap: int = OUT_CAP,
    ) -> None:
        self.fd = fd
        self._on_data = on_data
        self._on_lost = on_lost
        self._release = release
        self._out = bytearray()
        self._out_cap = out_cap
        self._loop = asyncio.get_running_loop()
        self._writing = False
        self.closed = False
        self.dropped = 0  # bytes dropped because the descriptor did not take them
        os.set_blocking(fd, False)
        if os.isatty(fd):
            _read_returns_at_once(fd)
        self._loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        got = bytearray()
        reason = ""
        while len(got) < MAX_READ_PER_CALL:
            try:
                chunk = os.read(self.fd, READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                reason = f"read failed: {exc.strerror or exc}"
                break
            if not chunk:
                reason = "end of file"
                break
            got += chunk
        if got:
            self._on_data(bytes(got))
        if reason and not self.closed:
            self._lost(reason)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send data now, or buffer what the descriptor cannot take yet; never blocks."""
        if self.closed or not data:
            return
        if not self._out:
            try:
                n = os.write(self.fd, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.ENXIO):  # pty peer gone: like a dead line
                    self.dropped += len(data)
                    return
                self._lost(f"write failed: {exc.strerror or exc}")
                return
            data = memoryview(data)[n:]
            if not data:
                return
        room = self._out_cap - len(self._out)
        self.dropped += max(0, len(data) - room)
        self._out += memoryview(data)[: max(0, room)]
        if self._out and not self._writing:
            self._writing = True
            self._loop.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        try:
            n = os.write(self.fd, self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.ENXIO):
                self.dropped += len(self._out)
                n = len(self._out)
            else:
                self._lost(f"write failed: {exc.strerror or exc}")
                return
        del self._out[:n]
        if not self._out:
            self._writing = False
            self._loop.remove_writer(self.fd)

    def _lost(self, reason: str) -> None:
        self.close()
        self._on_lost(reason)

    def close(self) -> None:
        """Stop watching the descriptor and release it (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self.fd)
        if self._writing:
            self._loop.remove_writer(self.fd)
        self._out.clear()
        try:
            self._release()
        except OSError as exc:  # closing a vanished device: nothing left to release
            log.debug("closing descriptor %d: %s", self.fd, exc)
