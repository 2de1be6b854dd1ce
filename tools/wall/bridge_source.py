"""The wall's feed from a running daemon's kiosk bridge (docs/kiosk-bridge.md).

It connects with the Python client library and the pairing key, reads ``state`` and
``compartments``, then follows the ``compartment``, ``alarm`` and ``terminal`` notices.
It reads both again after every reconnect, after a ``terminal`` notice (a board came or
went) and every ``refresh_s`` (the entrance door, the slots and each board's link have
no notice of their own). Only read-only requests are sent: the wall never changes the
terminal.

A notice that arrives while a read is under way is as new as that read's reply or newer,
so the reply never overrides what such a notice said (see ``_Recent``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Final

from controller.api import Result
from host_bridge.client import RECONNECTED, KioskClient
from host_bridge.endpoints import parse_endpoint
from host_bridge.errors import (
    EndpointError,
    KioskAuthError,
    KioskConnectionError,
    KioskError,
    KioskTimeout,
)
from tools.wall.errors import WallAuthError, WallSetupError

Emit = Callable[[str, dict[str, Any]], None]

PEER: Final = "amtomat-wall"
REFRESH_S: Final = 2.0
CONNECT_TIMEOUT_S: Final = 2.0
REQUEST_TIMEOUT_S: Final = 5.0
RETRY_MIN_S: Final = 0.5
RETRY_MAX_S: Final = 5.0
FOLLOWED: Final = ("compartment", "alarm", "terminal", "entrance", "slot")


def check_url(url: str) -> str:
    """url if the client can connect to it; WallSetupError naming it otherwise."""
    if url.split(":", 1)[0] in ("tcp", "unix", "serial", "pty"):
        try:
            parse_endpoint(url, connect=True)
        except EndpointError as exc:
            raise WallSetupError(str(exc), url) from None
    return url


class _Recent:
    """What notices said while a read was under way; ``patch_*`` make a reply give way
    to them. A notice sent after the reply is newer; one sent before it is the last of
    its kind before the reply and says the same as the reply."""

    def __init__(self) -> None:
        self.reading = False
        self.compartments: set[str] = set()
        self.alarms: dict[tuple[str, str], dict[str, Any] | None] = {}
        self.terminal = False

    def start(self) -> None:
        self.reading = True
        self.compartments.clear()
        self.alarms.clear()
        self.terminal = False

    def stop(self) -> None:
        self.reading = False

    def note(self, name: str, fields: dict[str, Any]) -> None:
        if not self.reading:
            return
        if name == "compartment":
            self.compartments.add(str(fields.get("compartment")))
        elif name == "alarm":
            key = (str(fields.get("alarm")), str(fields.get("subject")))
            self.alarms[key] = fields if fields.get("active") is True else None
        elif name == "terminal":
            self.terminal = True

    def patch_state(self, data: dict[str, Any]) -> dict[str, Any]:
        data = dict(data)
        door = data.pop("entrance_door", None)
        mode = data.pop("entrance", None)
        if door is not None or mode is not None:
            data["entrance"] = {"door": door} if self.terminal else {"mode": mode, "door": door}
        if self.terminal:
            data.pop("boards_ready", None)
            data.pop("boards", None)
        alarms = data.get("alarms")
        if self.alarms and isinstance(alarms, list):
            kept = [
                a
                for a in alarms
                if not isinstance(a, dict)
                or (str(a.get("alarm")), str(a.get("subject"))) not in self.alarms
            ]
            kept += [dict(f) for f in self.alarms.values() if f is not None]
            data["alarms"] = kept
        return data

    def patch_compartments(self, data: dict[str, Any]) -> dict[str, Any]:
        rows = data.get("compartments")
        if not self.compartments or not isinstance(rows, list):
            return data
        patched = []
        for row in rows:
            if isinstance(row, dict) and str(row.get("compartment")) in self.compartments:
                row = {k: v for k, v in row.items() if k not in ("state", "door", "led")}
            patched.append(row)
        return {**data, "compartments": patched}


class BridgeSource:
    """See the module docstring. ``run(emit)`` runs until cancelled; it raises
    WallAuthError when the bridge refuses the pairing key (retrying cannot help)."""

    def __init__(
        self,
        url: str,
        key: bytes | None,
        *,
        refresh_s: float = REFRESH_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.url = check_url(url)
        self._key = key
        self.refresh_s = refresh_s
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s

    @property
    def description(self) -> str:
        """Where the data comes from, for the frame's source line."""
        return f"bridge {self.url}"

    async def run(self, emit: Emit) -> None:
        """Connect, follow, and connect again whenever the daemon is gone."""
        delay = RETRY_MIN_S
        emit("link", {"state": "connecting"})
        while True:  # after a failure the link stays down while retrying
            try:
                client = await KioskClient.connect(
                    self.url, self._key, peer=PEER, timeout_s=self.connect_timeout_s
                )
            except KioskAuthError as exc:
                raise WallAuthError(
                    f"{exc}; use the terminal's pairing key (bridge.key_file of its TOML, "
                    "or --key-file)",
                    self.url,
                ) from None
            except KioskConnectionError as exc:
                emit("link", {"state": "down", "problem": _why(str(exc))})
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            except KioskError as exc:  # a malformed URL or key: retrying cannot help
                raise WallSetupError(str(exc), self.url) from None
            delay = RETRY_MIN_S
            try:
                await self._follow(client, emit)
            finally:
                await client.close()

    async def _follow(self, client: KioskClient, emit: Emit) -> None:
        recent = _Recent()
        reread = asyncio.Event()
        notices = asyncio.create_task(self._notices(client, emit, recent, reread))
        up = False
        try:
            while True:
                if client.problem:
                    emit("link", {"state": "down", "problem": client.problem})
                    up = False
                try:
                    complete = await self._read(client, emit, recent)
                except KioskTimeout as exc:
                    emit("link", {"state": "down", "problem": client.problem or str(exc)})
                    up = False
                    continue
                if complete and not up:
                    emit("link", {"state": "up"})
                up = complete
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reread.wait(), self.refresh_s)
                reread.clear()
        finally:
            notices.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await notices

    async def _notices(
        self, client: KioskClient, emit: Emit, recent: _Recent, reread: asyncio.Event
    ) -> None:
        async for notice in client.notices():
            if notice.name == RECONNECTED:
                reread.set()
                continue
            if notice.name not in FOLLOWED:
                continue  # progress and done of operations: not part of the picture
            recent.note(notice.name, notice.fields)
            emit(notice.name, dict(notice.fields))
            if notice.name == "terminal":
                reread.set()

    async def _read(self, client: KioskClient, emit: Emit, recent: _Recent) -> bool:
        """state and compartments, giving way to notices that arrived meanwhile; False
        when the daemon refused one of them (the link problem says why)."""
        recent.start()
        complete = True
        try:
            state = await client.call("state", timeout_s=self.request_timeout_s)
            listing = await client.call("compartments", timeout_s=self.request_timeout_s)
            for name, result, patch in (
                ("state", state, recent.patch_state),
                ("compartments", listing, recent.patch_compartments),
            ):
                if result.ok and isinstance(result.data, dict):
                    emit(name, patch(result.data))
                else:
                    emit("link", {"state": "down", "problem": _refused(name, result)})
                    complete = False
        finally:
            recent.stop()
        return complete


def _why(message: str) -> str:
    """The reason in "no session with URL within N s: REASON" (the URL is shown anyway)."""
    head, sep, reason = message.partition(" s: ")
    return reason if sep and head.startswith("no session with ") else message


def _refused(request: str, result: Result) -> str:
    return f"the daemon answered {request} with {result.status.name}: {result.reason}"
