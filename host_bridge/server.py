"""The bridge's asyncio listeners: TCP and Unix sockets (many kiosk connections), a serial
port and a pty (one connection each, living as long as the server).

Every connection is a BridgeConnection polled every ``poll_ms``; one that fails or falls
behind is closed alone, never touching the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
import socket
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import serial

from controller.api import Api
from host_bridge.catalog import identity_values
from host_bridge.connection import BridgeConnection, RecentResults, check_key
from host_bridge.endpoints import Endpoint, parse_endpoint
from host_bridge.errors import EndpointError
from host_bridge.fdlink import FdLink, make_raw

POLL_MS: Final = 10
MAX_WRITE_BUFFER: Final = 1 << 20  # a socket client this far behind is cut off
REOPEN_S: Final = 1.0  # a missing serial port is tried again this often

log = logging.getLogger("amtomat.bridge")


def monotonic_ms() -> int:
    """Milliseconds of the monotonic clock."""
    return time.monotonic_ns() // 1_000_000


class _Link:
    """One BridgeConnection, its poll task and how to cut its transport. A persistent
    link (serial, pty) survives an internal error; a socket link is closed by one."""

    def __init__(
        self,
        server: BridgeServer,
        name: str,
        write: Callable[[bytes], object],
        *,
        persistent: bool = False,
    ) -> None:
        self.server = server
        self.persistent = persistent
        self.conn = server.new_connection(name, write)
        self.cut: Callable[[], None] = lambda: None
        server.register(self)
        self.task = asyncio.get_running_loop().create_task(self._poll(), name=f"poll {name}")

    async def _poll(self) -> None:
        interval = self.server.poll_ms / 1000
        while not self.conn.closed:
            await asyncio.sleep(interval)
            self.step(None)

    def step(self, data: bytes | None) -> bool:
        """Feed data (or poll when None); on an unexpected error close this link alone."""
        try:
            if data is None:
                self.conn.poll(self.server.now())
            else:
                self.conn.feed(data, self.server.now())
            return True
        except Exception:
            if self.persistent:
                log.exception("%s: internal error; the line stays open", self.conn.origin.name)
                return True
            log.exception(
                "%s: closing the connection after an internal error", self.conn.origin.name
            )
            self.close()
            return False

    def close(self) -> None:
        self.server.forget(self)
        self.conn.close()
        self.task.cancel()
        self.cut()


class _StreamProtocol(asyncio.Protocol):
    """One TCP or Unix socket client."""

    def __init__(self, server: BridgeServer, label: str) -> None:
        self._server = server
        self._label = label
        self._link: _Link | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            name = f"{self._label}:{peer[0]}:{peer[1]}"
        else:
            name = f"{self._label}#{next(self._server.serial_numbers)}"
        self._link = _Link(self._server, name, transport.write)
        self._link.cut = transport.abort

    def data_received(self, data: bytes) -> None:
        link, transport = self._link, self._transport
        if link is None or transport is None or not link.step(data):
            return
        if transport.get_write_buffer_size() > self._server.max_write_buffer:
            log.warning("%s: client does not read; disconnecting", link.conn.origin.name)
            link.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._link is not None:
            self._link.close()


class _PtyPort:
    """A pty pair whose slave path is symlinked at the endpoint's path for the kiosk."""

    def __init__(self, server: BridgeServer, endpoint: Endpoint) -> None:
        self.path = endpoint.path
        if os.path.lexists(self.path) and not os.path.islink(self.path):
            raise EndpointError(
                f"endpoint {endpoint}: {self.path} exists and is not a symlink; "
                "remove it or choose another path",
                self.path,
            )
        master, self._slave = os.openpty()
        try:
            make_raw(self._slave)  # the bridge holds the slave open: no EIO between kiosks
            self.slave_path = os.ttyname(self._slave)
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(self.slave_path, tmp)
            os.replace(tmp, self.path)
        except OSError as exc:
            os.close(master)
            os.close(self._slave)
            raise EndpointError(
                f"endpoint {endpoint}: cannot link {self.path}: {exc}", self.path
            ) from exc
        self.link = _Link(server, f"bridge:pty:{self.path}", self._write, persistent=True)
        self.fd = FdLink(master, self._on_data, self._on_lost, lambda: os.close(master))
        self.link.cut = self.close

    def _write(self, data: bytes) -> None:
        self.fd.write(data)

    def _on_data(self, data: bytes) -> None:
        self.link.step(data)

    def _on_lost(self, reason: str) -> None:
        log.error("%s: pty lost: %s", self.link.conn.origin.name, reason)

    def close(self) -> None:
        self.fd.close()
        with contextlib.suppress(OSError):
            if os.readlink(self.path) == self.slave_path:
                os.unlink(self.path)
        if self._slave >= 0:
            os.close(self._slave)
            self._slave = -1


class _SerialPort:
    """A serial line to a kiosk PC; reopened every REOPEN_S while it is missing."""

    def __init__(self, server: BridgeServer, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.fd: FdLink | None = None
        self.link = _Link(server, f"bridge:serial:{endpoint.path}", self._write, persistent=True)
        self.link.cut = self.close
        self._closed = False
        self._last_problem = ""
        self.opener = asyncio.get_running_loop().create_task(self._keep_open())

    async def _keep_open(self) -> None:
        while not self._closed:
            if self.fd is None or self.fd.closed:
                self._open()
            await asyncio.sleep(REOPEN_S)

    def _open(self) -> None:
        try:
            port = serial.Serial(
                self.endpoint.path, baudrate=self.endpoint.baud, timeout=0, write_timeout=0
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            if str(exc) != self._last_problem:
                self._last_problem = str(exc)
                log.warning("%s: cannot open: %s; retrying", self.link.conn.origin.name, exc)
            return
        self._last_problem = ""
        log.info("%s: open at %d baud", self.link.conn.origin.name, self.endpoint.baud)
        self.fd = FdLink(port.fileno(), self._on_data, self._on_lost, port.close)

    def _on_data(self, data: bytes) -> None:
        self.link.step(data)

    def _write(self, data: bytes) -> None:
        if self.fd is not None:
            self.fd.write(data)

    def _on_lost(self, reason: str) -> None:
        log.warning("%s: %s; reopening", self.link.conn.origin.name, reason)

    def close(self) -> None:
        self._closed = True
        self.opener.cancel()
        if self.fd is not None:
            self.fd.close()


class BridgeServer:
    """Listens on every endpoint and runs one BridgeConnection per kiosk connection.

    ``bound`` lists the endpoints as actually bound (a TCP port of 0 replaced by the
    port the system chose). Bad endpoints, key or identity raise at construction."""

    def __init__(
        self,
        api: Api,
        endpoints: Sequence[str],
        key: bytes | None,
        identity: Mapping[str, Any],
        *,
        now: Callable[[], int] = monotonic_ms,
        random: Callable[[int], bytes] = os.urandom,
        poll_ms: int = POLL_MS,
        max_write_buffer: int = MAX_WRITE_BUFFER,
    ) -> None:
        self.api = api
        self.endpoints = [parse_endpoint(e) for e in endpoints]
        self.key = check_key(key)
        identity_values(identity)
        self.identity = dict(identity)
        self.now = now
        self.random = random
        self.poll_ms = poll_ms
        self.max_write_buffer = max_write_buffer
        self.recent = RecentResults()
        self.bound: list[str] = []
        self.serial_numbers = itertools.count(1)
        self._links: list[_Link] = []
        self._servers: list[asyncio.Server] = []
        self._ports: list[_PtyPort | _SerialPort] = []
        self._unix_paths: list[tuple[str, int]] = []  # (path, inode) of sockets we made
        self._started = False

    def new_connection(self, name: str, write: Callable[[bytes], object]) -> BridgeConnection:
        """A BridgeConnection for a new transport (used by the listeners)."""
        return BridgeConnection(
            self.api,
            self.key,
            write,
            random=self.random,
            identity=self.identity,
            now_ms=self.now,
            name=name,
            recent=self.recent,
        )

    def forget(self, link: _Link) -> None:
        """Drop a closed link from the list of live connections."""
        with contextlib.suppress(ValueError):
            self._links.remove(link)

    @property
    def connections(self) -> list[BridgeConnection]:
        """The live connections, for diagnostics (names, counters)."""
        return [link.conn for link in self._links]

    async def start(self) -> None:
        """Open every endpoint; on a failure close what was opened and raise."""
        if self._started:
            raise EndpointError("the bridge server is already started", self.bound)
        self._started = True
        try:
            for endpoint in self.endpoints:
                await self._open(endpoint)
        except BaseException:
            await self.close()
            raise

    async def _open(self, endpoint: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        if endpoint.kind == "tcp":
            try:
                server = await loop.create_server(
                    lambda: _StreamProtocol(self, "bridge:tcp"), endpoint.host, endpoint.port
                )
            except OSError as exc:
                raise EndpointError(
                    f"endpoint {endpoint}: cannot listen: {exc}", str(endpoint)
                ) from exc
            self._servers.append(server)
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                self.bound.append(str(Endpoint("tcp", host=host, port=port)))
        elif endpoint.kind == "unix":
            self._clear_stale_socket(endpoint)
            try:
                server = await loop.create_unix_server(
                    lambda: _StreamProtocol(self, f"bridge:unix:{endpoint.path}"), endpoint.path
                )
            except OSError as exc:
                raise EndpointError(
                    f"endpoint {endpoint}: cannot listen: {exc}", str(endpoint)
                ) from exc
            self._servers.append(server)
            self._unix_paths.append((endpoint.path, os.stat(endpoint.path).st_ino))
            self.bound.append(str(endpoint))
        elif endpoint.kind == "pty":
            port = _PtyPort(self, endpoint)
            self._ports.append(port)
            self.bound.append(str(endpoint))
        else:
            serial_port = _SerialPort(self, endpoint)
            self._ports.append(serial_port)
            self.bound.append(str(endpoint))

    @staticmethod
    def _clear_stale_socket(endpoint: Endpoint) -> None:
        """Remove a socket file nobody listens on; refuse to touch anything else."""
        try:
            mode = os.lstat(endpoint.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise EndpointError(
                f"endpoint {endpoint}: {endpoint.path} exists and is not a socket; "
                "remove it or choose another path",
                endpoint.path,
            )
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(endpoint.path)
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise EndpointError(f"endpoint {endpoint}: {exc}", endpoint.path) from exc
            os.unlink(endpoint.path)  # stale: left by a process that is gone
            return
        finally:
            probe.close()
        raise EndpointError(
            f"endpoint {endpoint}: another process listens on {endpoint.path}", endpoint.path
        )

    def register(self, link: _Link) -> None:
        """Count a new socket connection as live."""
        self._links.append(link)

    async def close(self) -> None:
        """Stop listening, close every connection (logging out their staff), remove the
        pty symlinks and socket files this server made (idempotent)."""
        tasks = [link.task for link in self._links]
        tasks += [p.opener for p in self._ports if isinstance(p, _SerialPort)]
        for server in self._servers:
            server.close()
        for link in list(self._links):
            link.close()
        for port in self._ports:
            port.close()
        for path, inode in self._unix_paths:
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
        self._servers, self._ports, self._unix_paths, self._links = [], [], [], []
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.sleep(0)  # let aborted transports report connection_lost

    async def __aenter__(self) -> BridgeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
