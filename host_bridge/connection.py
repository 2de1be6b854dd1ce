"""One kiosk connection, sans-I/O: a responder session with the kiosk catalog between the
wire and the controller's Api.

Bytes go in with ``feed(data, now)``, timers run in ``poll(now)``, frames leave through
``write``. Every request becomes ``api.call(name, args, origin, request_id)`` and its
Result the reply; every notice becomes an event while a session is established (and is
dropped, counted, while none is: the kiosk re-reads ``state`` after reconnecting). A
staff login lasts one session: a new handshake or ``close()`` logs the staff out.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final

from controller.api import Api, Origin, Result, Status
from host_bridge.catalog import KIOSK, NOTICE_IDS, identity_values
from host_bridge.errors import BridgeConfigError
from protocol import session as S
from protocol.errors import MessageError, ProtocolError, SessionError
from protocol.messages import REQUEST, kind_of

KEY_LEN: Final = 32
KIOSK_MAX_FRAME: Final = 8192  # room for a compartments reply of a large wall
INBOX: Final = 8
NOTICE_BACKLOG: Final = 512  # events waiting for window room before new ones are dropped
RECENT_RESULTS: Final = 1024
CLOCK_MASK: Final = (1 << 30) - 1  # the session's clock wraps here

log = logging.getLogger("amtomat.bridge")

BRIDGE_STATS: Final = (
    "requests",
    "replayed_results",
    "internal_errors",
    "unexpected_messages",
    "notices_sent",
    "notices_dropped",
    "notices_invalid",
    "staff_logouts",
)


class RecentResults:
    """The Results of the last ``cap`` request ids. Shared by a server's connections, it
    answers a request re-sent after a reconnect without calling the controller again."""

    def __init__(self, cap: int = RECENT_RESULTS) -> None:
        self.cap = cap
        self._results: OrderedDict[str, Result] = OrderedDict()

    def get(self, request_id: str) -> Result | None:
        """The Result given to request_id before, or None."""
        return self._results.get(request_id)

    def put(self, request_id: str, result: Result) -> None:
        """Remember the Result of request_id, forgetting the oldest beyond the cap."""
        self._results[request_id] = result
        self._results.move_to_end(request_id)
        while len(self._results) > self.cap:
            self._results.popitem(last=False)

    def __len__(self) -> int:
        return len(self._results)


def check_key(key: object) -> bytes | None:
    """The pairing key if it is None or 32 bytes; BridgeConfigError naming its length."""
    if key is None:
        return None
    if not isinstance(key, bytes):
        raise BridgeConfigError(
            f"the pairing key must be {KEY_LEN} bytes, got a {type(key).__name__}",
            type(key).__name__,
        )
    if len(key) != KEY_LEN:
        raise BridgeConfigError(
            f"the pairing key must be {KEY_LEN} bytes, got {len(key)}", len(key)
        )  # the length, never the key
    return key


class BridgeConnection:
    """The bridge side of one kiosk connection; see the module docstring."""

    def __init__(
        self,
        api: Api,
        key: bytes | None,
        write: Callable[[bytes], object],
        *,
        random: Callable[[int], bytes] = os.urandom,
        identity: Mapping[str, Any],
        now_ms: Callable[[], int],
        name: str = "bridge",
        recent: RecentResults | None = None,
    ) -> None:
        self._api = api
        self._write = write
        self._now_ms = now_ms
        self.origin = Origin(name)
        self.recent = recent if recent is not None else RecentResults()
        self.stats: dict[str, int] = dict.fromkeys(BRIDGE_STATS, 0)
        self.peer = ""  # the hello's peer name of the current session
        self.sessions = 0  # sessions established so far
        self.closed = False
        self._busy = False  # inside feed/poll: the end of it transmits
        self._deferred: list[tuple[str, dict[str, Any]]] | None = None
        self._logout_due = False
        self._session = S.Session(
            S.RESPONDER,
            KIOSK,
            self._send_bytes,
            random,
            key=check_key(key),
            identity=identity_values(identity),
            max_frame=KIOSK_MAX_FRAME,
            inbox_cap=INBOX,
            on_state=self._on_state,
        )
        self._session.sender.queue_cap = NOTICE_BACKLOG  # a burst of notices must fit
        self._unsubscribe = api.subscribe(self._on_notice)

    # ----- wire ----------------------------------------------------------------------

    @property
    def session(self) -> S.Session:
        """The protocol session, for state and diagnostics."""
        return self._session

    @property
    def established(self) -> bool:
        """A kiosk session is up: requests are answered and notices pushed."""
        return self._session.established

    def _send_bytes(self, view: memoryview) -> None:
        self._write(bytes(view))

    def feed(self, data: bytes | bytearray | memoryview, now: int) -> None:
        """Bytes from the kiosk: handle every complete frame, answer requests, transmit."""
        if self.closed:
            return
        now &= CLOCK_MASK
        self._busy = True
        try:
            self._session.feed(data, now)
            self._work(now)
        finally:
            self._busy = False

    def poll(self, now: int) -> None:
        """Run timers (retransmits, heartbeats, link-down) and transmit what is due."""
        if self.closed:
            return
        now &= CLOCK_MASK
        self._busy = True
        try:
            self._session.poll(now)
            self._work(now)
        finally:
            self._busy = False

    def _work(self, now: int) -> None:
        if self._logout_due:
            self._logout_due = False
            self._logout("new session")
        msg = self._session.receive()
        while msg is not None:
            self._handle(msg)
            msg = self._session.receive()
        self._session.poll(now)

    def _on_state(self, state: int, reason: str) -> None:
        # Runs inside the session: only record; the controller is called from _work.
        if state == S.ESTABLISHED:
            self.sessions += 1
            self.peer = self._session.hello_peer
            self._logout_due = self.sessions > 1
            log.info("%s: kiosk %r connected (%s)", self.origin.name, self.peer, reason)
        elif state == S.DOWN:
            log.info("%s: kiosk %r link down: %s", self.origin.name, self.peer, reason)

    # ----- requests ------------------------------------------------------------------

    def _handle(self, msg: list[Any]) -> None:
        if kind_of(msg[0]) != REQUEST:
            self.stats["unexpected_messages"] += 1
            return
        name = KIOSK.name_of(msg[0])
        args: dict[str, Any] = KIOSK.to_dict(msg)
        cid: int = args.pop("cid")
        request_id = f"{self.peer}/{cid}"
        self.stats["requests"] += 1
        result = self.recent.get(request_id)
        deferred: list[tuple[str, dict[str, Any]]] = []
        if result is not None:
            self.stats["replayed_results"] += 1
        else:
            result = self._call(name, args, request_id, deferred)
            self.recent.put(request_id, result)
        self._reply(cid, name, result)
        for notice in deferred:  # notices of this request follow its reply
            self._push(*notice)

    def _call(
        self,
        name: str,
        args: dict[str, Any],
        request_id: str,
        deferred: list[tuple[str, dict[str, Any]]],
    ) -> Result:
        self._deferred = deferred
        try:
            result = self._api.call(name, args, self.origin, request_id)
            if not isinstance(result, Result):
                raise TypeError(f"Api.call returned {type(result).__name__}, not a Result")
            return result
        except Exception:
            self.stats["internal_errors"] += 1
            # the arguments may hold a PIN or a code: never logged
            log.exception("%s: request %s (%s) failed", self.origin.name, name, request_id)
            return Result(Status.INTERNAL, f"internal error while handling {name}; see the log")
        finally:
            self._deferred = None

    def _reply(self, cid: int, name: str, result: Result) -> None:
        try:
            self._session.reply(cid, int(result.status), result.reason, result.data)
        except ProtocolError as exc:
            self.stats["internal_errors"] += 1
            log.error("%s: the reply to %s cannot be encoded: %s", self.origin.name, name, exc)
            reason = f"the reply to {name} cannot be encoded; see the log"
            self._session.reply(cid, int(Status.INTERNAL), reason, None)

    # ----- notices -------------------------------------------------------------------

    def _on_notice(self, name: str, fields: dict[str, Any]) -> None:
        if self._deferred is not None:
            self._deferred.append((name, dict(fields)))
            return
        if self._push(name, fields) and not self._busy and not self.closed:
            self._session.poll(self._now_ms() & CLOCK_MASK)  # out now, not at the next tick

    def _push(self, name: str, fields: Mapping[str, Any]) -> bool:
        """Queue one notice as an event; False (counted) when it cannot go out."""
        if self.closed or not self._session.established:
            self.stats["notices_dropped"] += 1
            return False
        mid = NOTICE_IDS.get(name)
        if mid is None:
            self.stats["notices_invalid"] += 1
            log.warning("%s: notice %r is not in the kiosk catalog", self.origin.name, name)
            return False
        msg = [mid] + [fields.get(f[0]) for f in KIOSK.spec(mid)[3]]
        try:
            self._session.send(msg)
        except MessageError as exc:
            self.stats["notices_invalid"] += 1
            log.warning("%s: notice %s does not fit the catalog: %s", self.origin.name, name, exc)
            return False
        except SessionError:
            self.stats["notices_dropped"] += 1  # the kiosk is not keeping up
            return False
        self.stats["notices_sent"] += 1
        return True

    # ----- end -----------------------------------------------------------------------

    def _logout(self, why: str) -> None:
        if self.origin.staff is None:
            return
        self.stats["staff_logouts"] += 1
        log.info("%s: staff logged out: %s", self.origin.name, why)
        try:
            self._api.call("staff_logout", {}, self.origin, None)
        except Exception:
            log.exception("%s: staff_logout failed", self.origin.name)
        self.origin.staff = None
        self.origin.staff_until_ms = 0

    def counters(self) -> dict[str, int]:
        """The session's counters and the bridge's own (requests, notices, ...)."""
        out = self._session.counters()
        out.update(self.stats)
        return out

    def close(self) -> None:
        """Stop receiving notices and log out this connection's staff (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self._unsubscribe()
        self._logout("connection closed")
