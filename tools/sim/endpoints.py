"""The two ways into one virtual board: a pty and a loopback TCP socket.

A :class:`BoardEndpoint` stands where a board's USB-CDC port would be. Clients open either
the pty (``endpoint.pty_path``, e.g. with ``serial.Serial(path)``) or the TCP socket
(``endpoint.url``, e.g. with ``serial.serial_for_url("socket://127.0.0.1:PORT")``); the
simulator calls :meth:`BoardEndpoint.poll` to collect what clients sent to the board and
:meth:`BoardEndpoint.write` to hand them what the board sent.

Everything is non-blocking and single-threaded: the simulator's loop waits on
:meth:`BoardEndpoint.fileno` (readable whenever :meth:`~BoardEndpoint.poll` has something
to do) together with its other endpoints, then polls. A write never blocks: bytes a
client cannot take right now are dropped and counted, like on a serial line nobody is
reading.

The pty slave is put in raw mode (no echo, no line editing, no CR/LF translation, no
XON/XOFF, no signal characters), so all byte values pass unchanged. The endpoint keeps
its own slave descriptor open, so the master never reports EIO when a client closes the
port; bytes written while no client has the port open wait in the tty buffer until it
fills, and pyserial discards them when it opens the port.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import selectors
import socket
from typing import Final, Literal

from host_bridge.fdlink import make_raw
from tools.closeable import Closeable

READ_CHUNK: Final = 65536
"""Bytes read from one source in one ``read``/``recv`` call."""
MAX_READ_PER_POLL: Final = 1 << 20
"""Bytes taken from one source in one :meth:`BoardEndpoint.poll`, so no client starves
the others (the rest is read at the next poll)."""
ACCEPT_BACKLOG: Final = 8

_Role = Literal["pty", "listen", "client"]


def _url_host(host: str) -> str:
    """The host part of a ``socket://`` URL that reaches a socket bound to ``host``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        return "127.0.0.1" if address.version == 4 else "[::1]"
    return f"[{host}]" if address.version == 6 else host


class BoardEndpoint(Closeable):
    """One virtual board's pty pair and TCP listener, polled from a single thread.

    ``name`` labels the endpoint in messages; ``host``/``port`` are where the TCP socket
    listens (port 0 picks a free port; ``.port`` and ``.url`` tell which).
    """

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name: Final = name
        self._closed = False
        self._selector = selectors.DefaultSelector()
        self._clients: dict[int, socket.socket] = {}
        self._stats = {
            "bytes_in": 0,
            "bytes_out": 0,
            "dropped_out": 0,
            "clients": 0,
            "connects": 0,
            "disconnects": 0,
        }
        self._master = -1
        self._slave = -1
        self._listener: socket.socket | None = None
        try:
            self._master, self._slave = os.openpty()
            make_raw(self._slave)
            os.set_blocking(self._master, False)
            self.pty_path: Final = os.ttyname(self._slave)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._listener = socket.create_server(
                (host, port), family=family, backlog=ACCEPT_BACKLOG
            )
            self._listener.setblocking(False)
            self.host: Final = host
            self.port: Final[int] = self._listener.getsockname()[1]
            self.url: Final = f"socket://{_url_host(host)}:{self.port}"
            self._selector.register(self._master, selectors.EVENT_READ, "pty")
            self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        except BaseException:
            self.close()
            raise

    # -- waiting --------------------------------------------------------------------

    def fileno(self) -> int:
        """A descriptor that is readable whenever :meth:`poll` has work to do.

        This is the endpoint's own epoll/kqueue descriptor, so a simulator can wait on
        several endpoints (and anything else with a ``fileno``) in one selector.
        """
        fileno = getattr(self._selector, "fileno", None)
        if fileno is None:  # pragma: no cover - select/poll selectors have no descriptor
            raise OSError(
                errno.ENOTSUP,
                f"{type(self._selector).__name__} has no descriptor; use selectables()",
            )
        result: int = fileno()
        return result

    def selectables(self) -> tuple[int, ...]:
        """The descriptors this endpoint reads from right now (pty master, listener,
        clients); an alternative to :meth:`fileno`. The set changes as clients come and
        go, so ask again after every :meth:`poll`."""
        if self._closed:
            return ()
        return tuple(key.fd for key in self._selector.get_map().values())

    # -- data -----------------------------------------------------------------------

    def poll(self, timeout: float = 0) -> bytes:
        """Accept new TCP clients and return everything any client sent since last time.

        Bytes from the pty and from several TCP clients are concatenated in the order the
        sources were found ready. Waits at most ``timeout`` seconds for something to
        happen (0: do not wait).
        """
        self._check_open()
        received = bytearray()
        for key, _ in self._selector.select(timeout):
            role: _Role = key.data
            if role == "listen":
                self._accept()
            elif role == "pty":
                self._read_pty(received)
            else:
                self._read_client(key.fd, received)
        self._stats["bytes_in"] += len(received)
        return bytes(received)

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # ECONNABORTED and friends: the client gave up before we accepted it.
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                raise
            conn.setblocking(False)
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._clients[conn.fileno()] = conn
            self._selector.register(conn, selectors.EVENT_READ, "client")
            self._stats["connects"] += 1
            self._stats["clients"] = len(self._clients)

    def _read_pty(self, received: bytearray) -> None:
        start = len(received)
        while len(received) - start < MAX_READ_PER_POLL:
            try:
                chunk = os.read(self._master, READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # pragma: no cover - we hold the slave open
                if exc.errno == errno.EIO:
                    return
                raise
            if not chunk:  # pragma: no cover - as above
                return
            received += chunk

    def _read_client(self, fd: int, received: bytearray) -> None:
        conn = self._clients.get(fd)
        if conn is None:  # pragma: no cover - removed earlier in this poll
            return
        start = len(received)
        while len(received) - start < MAX_READ_PER_POLL:
            try:
                chunk = conn.recv(READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._drop_client(fd)
                return
            if not chunk:
                self._drop_client(fd)
                return
            received += chunk

    def write(self, data: bytes) -> None:
        """Send ``data`` to the pty and to every TCP client, never blocking.

        A destination that cannot take all of it right now gets what fits; the rest is
        dropped and counted in ``stats["dropped_out"]`` (once per destination). A client
        that has gone away is removed.
        """
        self._check_open()
        if not data:
            return
        view = memoryview(data)
        self._stats["bytes_out"] += len(view)
        self._stats["dropped_out"] += len(view) - self._write_pty(view)
        for fd, conn in list(self._clients.items()):
            try:
                sent = conn.send(view)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._drop_client(fd)
                continue
            self._stats["dropped_out"] += len(view) - sent

    def _write_pty(self, view: memoryview) -> int:
        try:
            return os.write(self._master, view)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:  # pragma: no cover - we hold the slave open
            if exc.errno == errno.EIO:
                return 0
            raise

    def _drop_client(self, fd: int) -> None:
        conn = self._clients.pop(fd, None)
        if conn is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn)
        conn.close()
        self._stats["disconnects"] += 1
        self._stats["clients"] = len(self._clients)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: bytes_in (from clients), bytes_out (given to :meth:`write`),
        dropped_out (bytes a destination could not take, summed over destinations),
        clients (TCP clients connected now), connects and disconnects (TCP, so far)."""
        return dict(self._stats)

    # -- lifetime -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"board endpoint {self.name!r} is closed")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Disconnect every client and release the pty and the socket (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for fd in list(self._clients):
            self._drop_client(fd)
        if self._listener is not None:
            self._listener.close()
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1
        self._selector.close()

    def __repr__(self) -> str:
        if self._closed:
            return f"<BoardEndpoint {self.name!r} closed>"
        return (
            f"<BoardEndpoint {self.name!r} pty={self.pty_path} url={self.url} "
            f"clients={len(self._clients)}>"
        )
