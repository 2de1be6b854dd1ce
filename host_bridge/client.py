"""The asyncio client library for kiosk applications written in Python.

``KioskClient.connect(url, key)`` opens a session with the bridge (TCP, Unix socket,
serial line or pty) and keeps it: after a link loss it reconnects with a new handshake
and re-sends every unanswered request under its original command id, so the terminal
acts on each request once. Replies come back as ``controller.api.Result``; pushed
notices are read with ``notices()`` and ``wait_done(op)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

import serial

from controller.api import Result, Status
from host_bridge.catalog import KIOSK, NOTICE_NAMES, REQUEST_IDS
from host_bridge.connection import KEY_LEN, KIOSK_MAX_FRAME
from host_bridge.endpoints import Endpoint, parse_endpoint
from host_bridge.errors import (
    KioskAuthError,
    KioskConnectionError,
    KioskTimeout,
    KioskUsageError,
)
from host_bridge.fdlink import FdLink
from protocol import session as S
from protocol.messages import (
    REPLY_ID,
    type_ok,  # the catalog's own type rule
)

MAX_OUTSTANDING: Final = 16  # the bridge caches this many replies (docs/protocol.md 7)
TICK_S: Final = 0.01
RECONNECT_MIN_S: Final = 0.1
RECONNECT_MAX_S: Final = 2.0
NOTICE_QUEUE: Final = 1024  # per notices() reader; the oldest is dropped beyond it
DONE_KEPT: Final = 256  # done notices remembered for a later wait_done
SECRET_ARGS: Final = frozenset({"pin", "code", "code_hash"})
RECONNECTED: Final = "reconnected"  # client-local notice: re-read state and compartments

log = logging.getLogger("amtomat.kiosk_client")


@dataclass(frozen=True)
class Notice:
    """One pushed notice (see NOTICES in controller.api), or the client's own
    ``reconnected`` notice after a new session replaced a lost one."""

    name: str
    fields: dict[str, Any]


@dataclass
class _Pending:
    msg: list[Any]  # [id, cid, args...] as sent
    future: asyncio.Future[Result]


def _endpoint(url: str) -> Endpoint:
    """tcp://, unix:, serial:, pty: URLs; any other text is a serial or pty device path."""
    if not isinstance(url, str) or not url:
        raise KioskUsageError(
            f"url must be tcp://HOST:PORT, unix:PATH or a device path, got {url!r}", url
        )
    if url.split(":", 1)[0] in ("tcp", "unix", "serial", "pty"):
        endpoint = parse_endpoint(url, connect=True)
        return Endpoint("serial", path=endpoint.path) if endpoint.kind == "pty" else endpoint
    return Endpoint("serial", path=url)


def _status(code: int) -> Status:
    try:
        return Status(code)
    except ValueError:
        return Status.INTERNAL  # a status newer than this library; the reason says more


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, on_data: Callable[[bytes], None], on_lost: Callable[[str], None]) -> None:
        self._on_data = on_data
        self._on_lost = on_lost

    def data_received(self, data: bytes) -> None:
        self._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost(str(exc) if exc else "closed by the bridge")


class KioskClient:
    """A kiosk's session with the bridge; create it with ``await KioskClient.connect()``."""

    def __init__(
        self,
        url: str,
        key: bytes | None,
        *,
        peer: str = "kiosk",
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if key is not None and (not isinstance(key, bytes) or len(key) != KEY_LEN):
            size = len(key) if isinstance(key, bytes) else type(key).__name__
            raise KioskUsageError(f"the pairing key must be {KEY_LEN} bytes, got {size}", size)
        self.url = url
        self._endpoint = _endpoint(url)
        self.identity: dict[str, Any] = {}
        self.sessions = 0  # sessions established so far; more than 1 means reconnects
        self.stats = {"late_replies": 0, "notices_dropped": 0, "transport_losses": 0}
        self.problem = ""  # the latest reason the link is not up, for messages
        self._session = S.Session(
            S.INITIATOR,
            KIOSK,
            self._send_bytes,
            random,
            key=key,
            max_frame=KIOSK_MAX_FRAME,
            inbox_cap=8,
            peer_name=peer,
            on_state=self._on_state,
        )
        self._cid = (int.from_bytes(random(4), "little") & 0x3FFFFFFF) or 1
        self._pending: dict[int, _Pending] = {}
        self._slots = asyncio.Semaphore(MAX_OUTSTANDING)
        self._up = asyncio.Event()
        self._readers: list[asyncio.Queue[Notice | None]] = []
        self._done: OrderedDict[int, Notice] = OrderedDict()
        self._done_waiters: dict[int, list[asyncio.Future[Notice]]] = {}
        self._write: Callable[[bytes], object] | None = None
        self._cut: Callable[[], None] = lambda: None
        self._generation = 0
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    # ----- connecting ----------------------------------------------------------------

    @classmethod
    async def connect(
        cls, url: str, key: bytes | None, *, peer: str = "kiosk", timeout_s: float = 10
    ) -> KioskClient:
        """A client with an established session; KioskAuthError when the pairing key is
        refused, KioskConnectionError when no session comes up within timeout_s."""
        client = cls(url, key, peer=peer)
        try:
            await client._first_session(timeout_s)
        except BaseException:
            await client.close()
            raise
        return client

    async def _first_session(self, timeout_s: float) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="kiosk client")
        deadline = time.monotonic() + timeout_s
        while not self._up.is_set():
            self._check_auth()
            if time.monotonic() >= deadline:
                why = self.problem or "no answer"
                raise KioskConnectionError(
                    f"no session with {self.url} within {timeout_s} s: {why}", self.url
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._up.wait(), 0.05)

    def _check_auth(self) -> None:
        """Raise KioskAuthError once welcomes keep failing on the pairing key."""
        stats = self._session.stats
        error = self._session.last_error
        if stats["tag_errors"] + stats["downgrades"] < 2 or not error:
            return
        if "no key is configured" in error:
            why = "the bridge requires a pairing key and none was given"
        elif "wrong key" in error:
            why = "the bridge's welcome does not verify with this pairing key: wrong pairing key"
        elif "downgrade" in error:
            why = "the bridge has no pairing key; refusing an unauthenticated session"
        else:
            return
        raise KioskAuthError(f"{self.url}: {why}", self.url)

    async def _run(self) -> None:
        wait = RECONNECT_MIN_S
        while not self._closed:
            if self._write is None:
                try:
                    await self._open()
                except Exception as exc:  # OSError, SerialException, ...: try again later
                    self.problem = f"cannot open {self.url}: {exc}"
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, RECONNECT_MAX_S)
                    continue
                wait = RECONNECT_MIN_S
                self._session.connect(self._now())
            if self._session.state in (S.IDLE, S.DOWN):
                self._session.connect(self._now())
            self._session.poll(self._now())
            await asyncio.sleep(TICK_S)

    async def _open(self) -> None:
        self._generation += 1
        gen = self._generation
        endpoint = self._endpoint

        def on_data(data: bytes) -> None:
            if gen == self._generation:
                self._on_data(data)

        def on_lost(reason: str) -> None:
            if gen == self._generation:
                self._on_lost(reason)

        loop = asyncio.get_running_loop()
        if endpoint.kind in ("tcp", "unix"):
            factory = lambda: _ClientProtocol(on_data, on_lost)  # noqa: E731
            if endpoint.kind == "tcp":
                transport, _ = await loop.create_connection(factory, endpoint.host, endpoint.port)
            else:
                transport, _ = await loop.create_unix_connection(factory, endpoint.path)
            assert isinstance(transport, asyncio.Transport)
            self._write, self._cut = transport.write, transport.abort
        else:
            port = serial.Serial(endpoint.path, baudrate=endpoint.baud, timeout=0, write_timeout=0)
            link = FdLink(port.fileno(), on_data, on_lost, port.close)
            self._write, self._cut = link.write, link.close

    def _on_lost(self, reason: str) -> None:
        self.stats["transport_losses"] += 1
        self.problem = f"link to {self.url} lost: {reason}"
        log.info("%s", self.problem)
        self._write = None
        self._cut = lambda: None
        self._up.clear()

    @staticmethod
    def _now() -> int:
        return (time.monotonic_ns() // 1_000_000) & 0x3FFFFFFF

    def _send_bytes(self, view: memoryview) -> None:
        if self._write is not None:
            self._write(bytes(view))

    def _on_state(self, state: int, reason: str) -> None:
        if state != S.ESTABLISHED:
            self._up.clear()
            if state == S.DOWN:
                self.problem = f"session lost: {reason}"
            return
        self.sessions += 1
        self.problem = ""
        self.identity = {
            k: v for k, v in self._session.peer.items() if k not in ("nonce", "hello_digest")
        }
        for cid, pending in self._pending.items():  # before any new request (protocol.md 7)
            self._session.resend_request([pending.msg[0], *pending.msg[2:]], cid)
        if self.sessions > 1:
            self._publish(Notice(RECONNECTED, {"sessions": self.sessions}))
        self._up.set()

    # ----- receiving -----------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        self._session.feed(data, self._now())
        msg = self._session.receive()
        while msg is not None:
            self._dispatch(msg)
            msg = self._session.receive()

    def _dispatch(self, msg: list[Any]) -> None:
        if msg[0] == REPLY_ID:
            pending = self._pending.get(msg[1])
            if pending is None or pending.future.done():
                self.stats["late_replies"] += 1
                return
            data = msg[4] if len(msg) > 4 else None
            reason = msg[3] if len(msg) > 3 else None
            pending.future.set_result(Result(_status(msg[2]), reason, data))
            return
        name = NOTICE_NAMES.get(msg[0])
        if name is None:
            return
        notice = Notice(name, KIOSK.to_dict(msg))
        if name == "done":
            op = notice.fields["op"]
            self._done[op] = notice
            while len(self._done) > DONE_KEPT:
                self._done.popitem(last=False)
            for future in self._done_waiters.pop(op, []):
                if not future.done():
                    future.set_result(notice)
        self._publish(notice)

    def _publish(self, notice: Notice | None) -> None:
        for queue in self._readers:
            if queue.full():
                queue.get_nowait()
                self.stats["notices_dropped"] += 1
            queue.put_nowait(notice)

    def notices(self) -> AsyncIterator[Notice]:
        """Every notice from now on, in order, until the client closes. Each call is an
        independent reader; a reader that falls NOTICE_QUEUE behind loses the oldest."""
        queue: asyncio.Queue[Notice | None] = asyncio.Queue(NOTICE_QUEUE)
        self._readers.append(queue)
        return self._read(queue)

    async def _read(self, queue: asyncio.Queue[Notice | None]) -> AsyncIterator[Notice]:
        try:
            while not self._closed or not queue.empty():
                notice = await queue.get()
                if notice is None:
                    return
                yield notice
        finally:
            with contextlib.suppress(ValueError):
                self._readers.remove(queue)

    async def wait_done(self, op: int, timeout_s: float) -> Notice:
        """The ``done`` notice of operation op (also one that already arrived);
        KioskTimeout naming op when it does not come within timeout_s."""
        if op in self._done:
            return self._done[op]
        self._check_open()
        future: asyncio.Future[Notice] = asyncio.get_running_loop().create_future()
        waiters = self._done_waiters.setdefault(op, [])
        waiters.append(future)
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise KioskTimeout(
                f"no done notice for operation {op} within {timeout_s} s", op
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                waiters.remove(future)
            if not waiters:
                self._done_waiters.pop(op, None)

    # ----- requests ------------------------------------------------------------------

    @staticmethod
    def _message(request: str, args: dict[str, Any]) -> list[Any]:
        """[id, cid placeholder, args...] checked against the catalog."""
        mid = REQUEST_IDS.get(request)
        if mid is None:
            known = ", ".join(REQUEST_IDS)
            raise KioskUsageError(f"unknown request {request!r}; known: {known}", request)
        fields = KIOSK.spec(mid)[3][1:]
        names = [f[0] for f in fields]
        unknown = sorted(set(args) - set(names))
        if unknown:
            raise KioskUsageError(
                f"{request} has no argument {unknown[0]!r}; it takes {names}", unknown[0]
            )
        values = [args.get(name) for name in names]
        for (name, ftype, _), value in zip(fields, values, strict=True):
            if not type_ok(ftype, value):
                shown = type(value).__name__ if name in SECRET_ARGS else repr(value)
                wanted = f"{ftype[:-1]} or null" if ftype.endswith("?") else ftype
                what = "is missing" if value is None else f"must be {wanted}, got {shown}"
                raise KioskUsageError(f"{request}: argument {name} {what}", name)
        while values and values[-1] is None:
            values.pop()
        msg = [mid, 0, *values]
        KIOSK.check(msg)  # the catalog's own word; the loop above already holds
        return msg

    async def call(self, request: str, timeout_s: float = 10, **args: Any) -> Result:
        """Send one request and return its Result; KioskTimeout when no reply comes within
        timeout_s (the request may still take effect), KioskUsageError for bad arguments."""
        msg = self._message(request, args)
        self._check_open()
        try:
            async with asyncio.timeout(timeout_s), self._slots:
                while not self._up.is_set():
                    await self._up.wait()
                    self._check_open()
                cid = self._cid
                self._cid = cid + 1 if cid < 0x3FFFFFFF else 1
                msg[1] = cid
                future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
                self._pending[cid] = _Pending(msg, future)  # registered before it is sent
                try:
                    self._session.send(msg)
                    self._session.poll(self._now())  # out now, not at the next tick
                    return await future
                finally:
                    self._pending.pop(cid, None)
        except TimeoutError:
            why = f" ({self.problem})" if self.problem else ""
            raise KioskTimeout(
                f"no reply to {request} within {timeout_s} s{why}", request
            ) from None

    async def state(self) -> Result:
        return await self.call("state")

    async def compartments(self) -> Result:
        return await self.call("compartments")

    async def staff_login(self, staff: str, pin: str) -> Result:
        return await self.call("staff_login", staff=staff, pin=pin)

    async def staff_logout(self) -> Result:
        return await self.call("staff_logout")

    async def load(
        self,
        reference: str,
        size: str | None = None,
        compartment: str | None = None,
        code_hash: str | None = None,
        return_required: bool | None = None,
        expires_days: int | None = None,
    ) -> Result:
        return await self.call(
            "load",
            reference=reference,
            size=size,
            compartment=compartment,
            code_hash=code_hash,
            return_required=return_required,
            expires_days=expires_days,
        )

    async def pickup(self, reference: str, code: str) -> Result:
        return await self.call("pickup", reference=reference, code=code)

    async def dropoff(self) -> Result:
        return await self.call("dropoff")

    async def retrieval_list(self) -> Result:
        return await self.call("retrieval_list")

    async def retrieve(self, compartment: str) -> Result:
        return await self.call("retrieve", compartment=compartment)

    async def service_open(self, compartment: str, reason: str) -> Result:
        return await self.call("service_open", compartment=compartment, reason=reason)

    async def entrance_mode(self, mode: str) -> Result:
        return await self.call("entrance_mode", mode=mode)

    async def set_service(self, compartment: str, in_service: bool, reason: str) -> Result:
        return await self.call(
            "set_service", compartment=compartment, in_service=in_service, reason=reason
        )

    # ----- end -----------------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Requests sent and not yet answered (re-sent after a reconnect)."""
        return len(self._pending)

    def counters(self) -> dict[str, int]:
        """The session's counters and the client's own."""
        out = self._session.counters()
        out.update(self.stats)
        return out

    def _check_open(self) -> None:
        if self._closed:
            raise KioskConnectionError(f"the client for {self.url} is closed", self.url)

    async def close(self) -> None:
        """End the session; waiting calls fail with KioskConnectionError (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._generation += 1
        self._cut()
        self._write = None
        closed = KioskConnectionError(f"the client for {self.url} is closed", self.url)
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(closed)
        for waiters in self._done_waiters.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(closed)
        self._publish(None)
        self._up.set()  # wake calls waiting for a session: they see the client closed

    async def __aenter__(self) -> KioskClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
