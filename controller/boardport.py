"""The asyncio I/O shell of the board links: opens a board port (a serial device through
pyserial, or ``socket://host:port``), pumps bytes both ways, polls the links, reconnects
with backoff and pulses the reset line of a board that keeps failing to connect."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
import re
import socket
import termios
import time
from collections.abc import Awaitable, Callable
from typing import Final, Protocol, TypeVar

import serial

from controller.boardlink import BoardLink, LinkState
from controller.errors import ControllerError

log = logging.getLogger(__name__)

BAUD: Final = 115200
READ_CHUNK: Final = 4096
MAX_WRITE_BUFFER: Final = 256 * 1024  # bytes a port may hold unwritten before more are dropped
CONNECT_TIMEOUT_S: Final = 5.0
_SOCKET_URL: Final = re.compile(r"socket://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")
_BUSY: Final = "busy: another program has the port open"
_REASONS: Final = {
    errno.ENOENT: "no such device",
    errno.ENODEV: "no such device",
    errno.ENXIO: "no such device",
    errno.EACCES: "permission denied (is the user in the dialout group?)",
    errno.EPERM: "permission denied (is the user in the dialout group?)",
    errno.EBUSY: _BUSY,
    errno.EAGAIN: _BUSY,  # the exclusive lock is held
    errno.EIO: "input/output error: the device went away",
    errno.ENOTTY: "not a serial device",
    errno.ECONNREFUSED: "connection refused: nothing listens there",
    errno.ECONNRESET: "connection reset by the other end",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
}
T = TypeVar("T")


class PortError(ControllerError):
    """A board port cannot be opened or failed; names the url and the reason."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"port {url}: {reason}", url)
        self.url = url
        self.reason = reason


class PortStream(Protocol):
    """An open port: ``read`` waits for bytes (b"" at the end), ``write`` never blocks."""

    async def read(self) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


def os_reason(exc: BaseException) -> str:
    """What an OS or pyserial error means for a port, in words."""
    cause: BaseException | None = exc
    while cause is not None:  # pyserial wraps the OSError or termios.error it caught
        code = getattr(cause, "errno", None)
        if code is None and cause.args and isinstance(cause.args[0], int):
            code = cause.args[0]
        if isinstance(code, int) and code in _REASONS:
            return _REASONS[code]
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror or exc})"
    return str(exc) or type(exc).__name__


def monotonic_ms() -> int:
    """A monotonic millisecond clock, for ``BoardManager(now=...)``."""
    return time.monotonic_ns() // 1_000_000


class SerialStream:
    """A tty, pty or USB CDC device, read and written without blocking the event loop."""

    def __init__(self, url: str, port: serial.Serial) -> None:
        self.url = url
        self.dropped = 0  # bytes dropped because the device did not take them
        self._port = port
        self._fd: int = port.fileno()
        os.set_blocking(self._fd, False)
        # pyserial leaves VMIN at 0, where an empty read means "no data"; with VMIN 1 a
        # non-blocking read says EAGAIN then, and b"" only when the device hung up
        attrs = termios.tcgetattr(self._fd)
        attrs[6][termios.VMIN] = 1
        attrs[6][termios.VTIME] = 0
        termios.tcsetattr(self._fd, termios.TCSANOW, attrs)
        self._loop = asyncio.get_running_loop()
        self._out = bytearray()
        self._error: PortError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    async def read(self) -> bytes:
        """The next bytes from the device; b"" at its end; PortError when it fails."""
        while True:
            if self._error is not None:
                raise self._error
            if self._closed:
                return b""
            try:
                return os.read(self._fd, READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                raise PortError(self.url, os_reason(exc)) from exc
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._waiter = waiter
            self._loop.add_reader(self._fd, self._wake)
            try:
                await waiter
            finally:
                self._waiter = None
                if not self._closed:
                    self._loop.remove_reader(self._fd)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def write(self, data: bytes) -> None:
        """Queue bytes in order; a failure surfaces at the next ``read``."""
        if self._closed or self._error is not None:
            return
        if self._out:
            if len(self._out) + len(data) > MAX_WRITE_BUFFER:
                self.dropped += len(data)
            else:
                self._out += data
            return
        try:
            n = os.write(self._fd, data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._fail(exc)
            return
        if n < len(data):
            self._out += data[n:]
            self._loop.add_writer(self._fd, self._flush)

    def _flush(self) -> None:
        try:
            n = os.write(self._fd, self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(exc)
            return
        del self._out[:n]
        if not self._out:
            self._loop.remove_writer(self._fd)

    def _fail(self, exc: OSError) -> None:
        self._error = PortError(self.url, f"write failed: {os_reason(exc)}")
        self._out.clear()
        self._loop.remove_writer(self._fd)
        self._wake()

    def close(self) -> None:
        """Release the device (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._wake()
        with contextlib.suppress(Exception):
            self._port.close()


class SocketStream:
    """A TCP connection to a board (``socket://``), e.g. the simulator's."""

    def __init__(self, url: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.url = url
        self.dropped = 0
        self._reader = reader
        self._writer = writer

    async def read(self) -> bytes:
        """The next bytes; b"" when the other end closed; PortError when it failed."""
        try:
            return await self._reader.read(READ_CHUNK)
        except OSError as exc:
            raise PortError(self.url, os_reason(exc)) from exc

    def write(self, data: bytes) -> None:
        """Queue bytes in order; dropped while the connection is closing or backed up."""
        if self._writer.is_closing():
            return
        if self._writer.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.dropped += len(data)
            return
        self._writer.write(data)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._writer.close()


async def open_port(url: str) -> PortStream:
    """Open a device path (115200 8N1, exclusive) or ``socket://host:port``; PortError
    naming the url and the reason (no such device, busy, permission denied, refused)."""
    if not isinstance(url, str) or not url:
        raise PortError(repr(url), "a port is a device path or a socket://host:port URL")
    if url.startswith("socket://"):
        m = _SOCKET_URL.fullmatch(url)
        if m is None or not 1 <= int(m.group(2)) <= 65535:
            raise PortError(url, "not a socket://host:port URL (port 1..65535)")
        host, port = m.group(1).strip("[]"), int(m.group(2))
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
            )
        except TimeoutError:
            raise PortError(url, f"no connection within {CONNECT_TIMEOUT_S:g} s") from None
        except OSError as exc:
            raise PortError(url, os_reason(exc)) from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return SocketStream(url, reader, writer)
    if "://" in url:
        raise PortError(url, "unsupported URL: use a device path or socket://host:port")
    try:
        device = serial.Serial(
            url,
            baudrate=BAUD,
            bytesize=serial.EIGHTBITS,
            parity=serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE,
            timeout=0,
            write_timeout=0,
            exclusive=True,
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        raise PortError(url, os_reason(exc)) from exc
    try:
        return SerialStream(url, device)
    except (termios.error, OSError) as exc:
        device.close()
        raise PortError(url, os_reason(exc)) from exc


def backoff_delay(attempt: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds before retry number ``attempt`` (0 first): min_s doubled per attempt up to
    max_s, with equal jitter (between half and all of it), never below min_s."""
    base = min(max_s, min_s * 2.0 ** min(attempt, 32))
    delay: float = max(min_s, base * (0.5 + rng.random() / 2))
    return delay


class BoardManager:
    """The boards on one port: opens it, hands every byte read to every link (each session
    drops frames of other addresses), writes links' frames in call order, polls the links
    every poll_ms, reopens with backoff after a failure, and pulses a board's reset line
    (``hard_reset(board_id)``) once its link failed ``reset_after`` connects in a row.

    Links are created with ``write=manager.write``. ``run`` returns after ``close``.
    """

    def __init__(
        self,
        url: str,
        links: list[BoardLink],
        *,
        now: Callable[[], int],
        hard_reset: Callable[[str], None] | None = None,
        poll_ms: int = 10,
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 30.0,
        reset_after: int = 5,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not links:
            raise ControllerError(f"port {url}: no boards to manage", links)
        addresses = [link.spec.address for link in links]
        for a in addresses:
            if addresses.count(a) > 1:
                raise ControllerError(f"port {url}: two boards use address {a}", a)
        if not 1 <= poll_ms <= 1000:
            raise ControllerError(f"poll_ms must be 1..1000, got {poll_ms!r}", poll_ms)
        if not 0 < backoff_min_s <= backoff_max_s:
            raise ControllerError(
                f"backoff needs 0 < backoff_min_s <= backoff_max_s, got {backoff_min_s!r} "
                f"and {backoff_max_s!r}",
                (backoff_min_s, backoff_max_s),
            )
        if reset_after < 1:
            raise ControllerError(f"reset_after must be at least 1, got {reset_after!r}")
        self.url = url
        self.links = list(links)
        self.poll_ms = poll_ms
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.reset_after = reset_after
        self.reconnects = 0  # opens after the first
        self.hard_resets = 0
        self.port_errors = 0  # failed opens and lost ports
        self.dropped_bytes = 0  # written while no port was open
        self._now = now
        self._hard_reset = hard_reset
        self._rng = rng if rng is not None else random.Random()
        self._sleep = sleep
        self._stream: PortStream | None = None
        self._closed = False
        self._closing: asyncio.Event | None = None
        self._opened = False
        self._healthy = False

    def counters(self) -> dict[str, int]:
        """reconnects, hard_resets, port_errors, dropped_bytes."""
        return {
            "reconnects": self.reconnects,
            "hard_resets": self.hard_resets,
            "port_errors": self.port_errors,
            "dropped_bytes": self.dropped_bytes,
        }

    def write(self, data: bytes) -> None:
        """Bytes from a link to the port, in call order; dropped while no port is open."""
        stream = self._stream
        if stream is None:
            self.dropped_bytes += len(data)
        else:
            stream.write(data)

    def close(self) -> None:
        """Stop: ``run`` closes the port, tells the links and returns."""
        self._closed = True
        if self._closing is not None:
            self._closing.set()

    async def run(self) -> None:
        """Open, serve and reopen the port until ``close``; never raises for port faults."""
        self._closing = asyncio.Event()
        if self._closed:
            return
        attempt = 0
        while not self._closed:
            log.info("port %s: opening", self.url)
            try:
                finished, stream = await self._polling(open_port(self.url))
            except PortError as exc:
                self.port_errors += 1
                log.warning("%s", exc)
            else:
                if not finished or stream is None:
                    break
                if self._opened:
                    self.reconnects += 1
                self._opened = True
                if await self._serve(stream):
                    attempt = 0
            if self._closed:
                break
            delay = backoff_delay(attempt, self.backoff_min_s, self.backoff_max_s, self._rng)
            attempt += 1
            log.warning("port %s: next attempt in %.2f s", self.url, delay)
            await self._polling(self._sleep(delay))
        log.info("port %s: manager stopped", self.url)

    async def _serve(self, stream: PortStream) -> bool:
        """Pump one open port until it fails or the manager closes; True if a link got
        READY meanwhile (the backoff starts over)."""
        log.info("port %s: open", self.url)
        self._stream = stream
        self._healthy = False
        now = self._now()
        for link in self.links:
            link.port_opened(now)
        reason = "manager closed"
        try:
            await self._polling(self._read_loop(stream))
        except PortError as exc:
            self.port_errors += 1
            reason = exc.reason
            log.warning("%s", exc)
        except Exception as exc:
            reason = f"internal error: {exc!r}"
            log.exception("port %s: a board link failed", self.url)
        finally:
            self._stream = None
            stream.close()
            now = self._now()
            for link in self.links:
                link.port_closed(now, reason)
        return self._healthy

    async def _read_loop(self, stream: PortStream) -> None:
        while True:
            data = await stream.read()
            if not data:
                raise PortError(self.url, "end of stream: the other end closed the port")
            now = self._now()
            for link in self.links:
                link.feed(data, now)

    async def _polling(self, aw: Awaitable[T]) -> tuple[bool, T | None]:
        """Await aw while polling the links every poll_ms; (False, None) if the manager
        closed first (aw is cancelled; a port it opened is closed)."""
        assert self._closing is not None
        task = asyncio.ensure_future(aw)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            while True:
                self._poll_links()
                await asyncio.wait(
                    {task, closing},
                    timeout=self.poll_ms / 1000,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if task.done():
                    return True, task.result()
                if closing.done():
                    return False, None
        finally:
            closing.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    result = await task
                    if isinstance(result, SerialStream | SocketStream):
                        result.close()

    def _poll_links(self) -> None:
        now = self._now()
        for link in self.links:
            link.poll(now)
            if link.state is LinkState.READY:
                self._healthy = True
            if link.failures >= self.reset_after:
                self._reset_board(link, now)

    def _reset_board(self, link: BoardLink, now: int) -> None:
        why = link.last_error
        if self._hard_reset is None:
            log.warning(
                "board %s: %d connects failed (%s); no reset line configured",
                link.board_id,
                link.failures,
                why,
            )
        else:
            log.warning(
                "board %s: %d connects failed (%s); pulsing its reset line",
                link.board_id,
                link.failures,
                why,
            )
            self.hard_resets += 1
            try:
                self._hard_reset(link.board_id)
            except Exception:
                log.exception("board %s: hard reset failed", link.board_id)
        link.note_hard_reset(now)
