"""The fake board's USB port: a pty whose slave is what clients open.

The slave is raw (no echo, no CR/LF translation) from the start, because a client's first
bytes may arrive before pyserial sets its own mode. The board keeps its own slave fd open,
so the master never sees EOF or EIO when a client closes the port; it takes no flock, so a
client may lock the port (pyserial's ``exclusive=True``). Writes never block: bytes the
pty does not take wait in a bounded queue, and the oldest are dropped when it is full (a
USB CDC port with nobody reading loses data too).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import termios
import tty
from typing import Final

from tools.closeable import Closeable

log = logging.getLogger(__name__)

READ_CHUNK: Final = 4096
MAX_QUEUED: Final = 1024 * 1024  # bytes waiting for the pty before the oldest are dropped


class PtyPort(Closeable):
    """A pty pair; ``path`` is the slave's name, e.g. ``/dev/pts/7``."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        try:
            tty.setraw(self._slave, termios.TCSANOW)
            os.set_blocking(self.master, False)
            self.path = os.ttyname(self._slave)
        except OSError:
            os.close(self.master)
            os.close(self._slave)
            raise
        self._queue = bytearray()
        self.dropped = 0  # bytes lost because the queue was full
        self.closed = False

    def fileno(self) -> int:
        """The master fd, for select()."""
        return self.master

    def read(self) -> bytes:
        """Bytes a client wrote, b"" when there are none now."""
        try:
            return os.read(self.master, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open; cannot happen while we hold ours
                return b""
            raise

    def write(self, data: bytes) -> None:
        """Queue data for the client and send what the pty takes now."""
        if not data or self.closed:
            return
        self._queue += data
        excess = len(self._queue) - MAX_QUEUED
        if excess > 0:
            del self._queue[:excess]
            self.dropped += excess
            log.warning("pty %s: nobody reads; %d bytes dropped", self.path, excess)
        self.flush()

    @property
    def pending(self) -> int:
        """Bytes waiting for the pty to take them."""
        return len(self._queue)

    def flush(self) -> None:
        """Send queued bytes as far as the pty takes them, without blocking."""
        while self._queue and not self.closed:
            try:
                n = os.write(self.master, self._queue)
            except (BlockingIOError, InterruptedError):
                return
            del self._queue[:n]

    def discard_input(self) -> None:
        """Forget bytes a client wrote that the board has not read (it was off)."""
        while self.read():
            pass

    def close(self) -> None:
        """Close both ends; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
