"""The host side of one board's link, sans-I/O: handshake and identity check, events exactly
once, requests exactly once, an input read after every connect, and the board's
diagnostics fetched after every connect and then every minute.

The I/O shell (``controller.boardport``) tells the link when its port opens and closes,
hands in the bytes read with ``feed(data, now)`` and calls ``poll(now)`` every few ms;
``now`` is a monotonic millisecond clock (a plain int). Frames leave through ``write``.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from controller.boardconfig import BoardSpec, config_hash
from controller.boarddiag import BoardDiagnostics, parse_diagnostics
from controller.boardtypes import REQUEST_NAMES as REQUEST_NAMES
from controller.boardtypes import BoardBusy as BoardBusy
from controller.boardtypes import BoardEvent as BoardEvent
from controller.boardtypes import BoardMismatch as BoardMismatch
from controller.boardtypes import BoardOffline as BoardOffline
from controller.boardtypes import InputReport as InputReport
from controller.boardtypes import Outcome as Outcome
from controller.boardtypes import ReportError as ReportError
from controller.boardtypes import RequestError as RequestError
from controller.boardtypes import RequestOutcome as RequestOutcome
from controller.boardtypes import parse_input_report as parse_input_report
from controller.boardtypes import request_message
from controller.errors import ControllerError
from protocol import session as S
from protocol.crypto import KEY_LEN
from protocol.errors import MessageError, SessionError
from protocol.messages import BOARD, REPLY_ID

log = logging.getLogger(__name__)

MAX_PENDING: Final = 16  # protocol rule 2: never more requests without a reply
EVENT_ID: Final = 0x60
EVENTS_ACK_ID: Final = 0x61
INPUTS_ID: Final = 0x14
DIAGNOSTICS_ID: Final = 0x15
TICKS_MASK: Final = 0x3FFFFFFF  # the session's clock wraps at 2**30
INPUTS_TIMEOUT_MS: Final = 5000
DIAGNOSTICS_SETTLE_MS: Final = 1000  # after a connect: inputs, re-sent requests go first
DIAGNOSTICS_EVERY_MS: Final = 60_000
BOOTS_REMEMBERED: Final = 4  # boot ids whose last event id is kept for de-duplication
FLASH_FIX: Final = "write the board's config again (amtomat flash)"


class LinkState(enum.Enum):
    """Where the link stands; only ``BoardLink._set_state`` changes it."""

    OFFLINE = "offline"  # the port is closed
    CONNECTING = "connecting"  # port open, no session: handshake running or link lost
    READY = "ready"  # session up, the board is the one the terminal config describes
    MISMATCH = "mismatch"  # session up, the board differs from the config: no actuation


@dataclass
class _Pending:
    cid: int
    name: str
    msg: list[Any]  # [id, args...] without the cid
    boot_id: int | None
    deadline: int
    timeout_ms: int
    done: Callable[[RequestOutcome], None]


@dataclass(frozen=True)
class _Change:
    """A session state change, queued in order with the messages around it."""

    state: int
    reason: str
    peer: dict[str, Any]


def _ignore_state(link: BoardLink) -> None:
    pass


def _ignore_inputs(link: BoardLink, report: InputReport) -> None:
    pass


class BoardLink:
    """One board as the controller sees it; see the module docstring for how it is driven.

    Promises: events reach ``on_event`` once each, in order, and are acknowledged after it
    returned (after it raised too: the error is logged and counted, later events go on);
    across a restart of the process the store drops repeats by (board_id, boot_id, eid).
    Every request's ``done`` is called exactly once; a request is re-sent (same cid) only
    to the same boot of the board. After every connect to a matching board the inputs are
    read and passed to ``on_inputs``. The board's ``diagnostics`` are read 1 s after every
    connect to a matching board and then every minute, only while no other request waits
    for a reply (they never hold one up); the last reply is kept in ``diagnostics``.
    ``failures`` counts handshakes in a row that got no session within connect_timeout_ms;
    a board that answers but does not match the config (MISMATCH) is not a failure, since
    resetting it would not help.
    """

    def __init__(
        self,
        spec: BoardSpec,
        key: bytes | None,
        write: Callable[[bytes], None],
        *,
        random: Callable[[int], bytes] = os.urandom,
        on_event: Callable[[BoardEvent], None],
        on_state: Callable[[BoardLink], None] = _ignore_state,
        on_inputs: Callable[[BoardLink, InputReport], None] = _ignore_inputs,
        connect_timeout_ms: int = 10000,
    ) -> None:
        if key is not None and (not isinstance(key, bytes) or len(key) != KEY_LEN):
            size = len(key) if isinstance(key, bytes) else type(key).__name__
            raise ControllerError(
                f"board {spec.board_id}: a key has {KEY_LEN} bytes, got {size}", size
            )
        if not isinstance(connect_timeout_ms, int) or connect_timeout_ms < 100:
            raise ControllerError(
                f"connect_timeout_ms must be at least 100, got {connect_timeout_ms!r}",
                connect_timeout_ms,
            )
        self.spec = spec
        self.board_id = spec.board_id
        self.connect_timeout_ms = connect_timeout_ms
        self.state = LinkState.OFFLINE
        self.identity: dict[str, Any] = {}
        self.boot_id: int | None = None
        self.last_error = "port not opened yet"
        self.failures = 0
        self.last_inputs: InputReport | None = None
        self.diagnostics: BoardDiagnostics | None = None
        self._write = write
        self._on_event = on_event
        self._on_state = on_state
        self._on_inputs = on_inputs
        self._has_key = key is not None
        self._expected_hash = config_hash(spec)
        self._session = S.Session(
            S.INITIATOR,
            BOARD,
            self._send_bytes,
            random,
            key=key,
            addr=spec.address,
            on_state=self._on_session_state,
        )
        self._port_open = False
        self._need_connect = False
        self._attempt_at = 0
        self._now = 0
        self._arrivals: list[list[Any] | _Change] = []
        self._pending: dict[int, _Pending] = {}
        self._last_eid: dict[int, int] = {}
        self._acked = 0
        self._inputs_due = False
        self._diagnostics_due: int | None = None  # host ms; None: the board cannot tell
        self._diagnostics_asked = False
        self._stats = dict.fromkeys(
            (
                "events",
                "duplicate_events",
                "event_gaps",
                "handler_errors",
                "requests",
                "replies",
                "late_replies",
                "resent_requests",
                "unknown_outcomes",
                "connects",
            ),
            0,
        )

    # ----- driven by the I/O shell ---------------------------------------------------

    def port_opened(self, now: int) -> None:
        """The port is open: a handshake starts at once."""
        self._now = now
        self._port_open = True
        self._need_connect = True
        self._set_state(LinkState.CONNECTING, "port opened")

    def port_closed(self, now: int, reason: str) -> None:
        """The port is gone; unanswered requests wait for a reconnect or their timeout."""
        self._now = now
        self._port_open = False
        self._need_connect = False
        self.last_error = f"port closed: {reason}"
        self._set_state(LinkState.OFFLINE, reason)

    def feed(self, data: bytes, now: int) -> None:
        """Bytes read from the port; events and replies are handled before it returns."""
        self._now = now
        if not self._port_open:
            return
        self._maybe_connect(now)
        self._session.feed(data, now & TICKS_MASK)
        self._after_io()

    def poll(self, now: int) -> None:
        """Run timers: request timeouts, handshake start and timeout, session timers."""
        self._now = now
        self._expire(now)
        if self._port_open:
            self._maybe_connect(now)
            if (
                self._session.state == S.CONNECTING
                and now - self._attempt_at >= self.connect_timeout_ms
            ):
                self._attempt_failed(now)
            self._session.poll(now & TICKS_MASK)
        self._after_io()

    def note_hard_reset(self, now: int) -> None:
        """The board's reset line was pulsed: failures start over with a fresh handshake."""
        self._now = now
        self.failures = 0
        if self._port_open:
            self._need_connect = True

    # ----- requests ------------------------------------------------------------------

    def request(
        self,
        name: str,
        args: list[Any],
        now: int,
        done: Callable[[RequestOutcome], None],
        timeout_ms: int = 5000,
    ) -> int:
        """Send a board request (args without the cid); returns its cid. ``done`` gets the
        outcome exactly once. RequestError, BoardOffline, BoardMismatch or BoardBusy."""
        msg = request_message(name, args)
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms < 1:
            raise RequestError(f"timeout_ms must be a positive integer, got {timeout_ms!r}")
        self.check_ready(name)
        return self._submit(name, msg, now, done, timeout_ms)

    def check_ready(self, name: str) -> None:
        """Raise what ``request`` would raise before sending anything (BoardMismatch,
        BoardOffline, BoardBusy), so a caller records only requests that can leave."""
        if self.state is LinkState.MISMATCH:
            raise BoardMismatch(
                f"board {self.board_id} does not match the terminal config, {name} refused: "
                f"{self.last_error}",
                self.board_id,
            )
        if self.state is not LinkState.READY:
            raise BoardOffline(
                f"board {self.board_id} is {self.state.value}, {name} not sent: "
                f"{self.last_error or 'no session yet'}",
                self.board_id,
            )
        if len(self._pending) >= MAX_PENDING:
            raise BoardBusy(
                f"board {self.board_id}: {MAX_PENDING} requests wait for a reply; "
                f"retry {name} once one is answered",
                len(self._pending),
            )

    def _submit(
        self,
        name: str,
        msg: list[Any],
        now: int,
        done: Callable[[RequestOutcome], None],
        timeout_ms: int,
    ) -> int:
        try:
            cid = self._session.request(msg)
        except MessageError as exc:
            raise RequestError(f"{name}: {exc}", exc.value) from None
        except SessionError as exc:
            if self._session.established:
                raise BoardBusy(f"board {self.board_id}: {exc}", exc.value) from None
            raise BoardOffline(f"board {self.board_id}: {exc}", self.board_id) from None
        self._pending[cid] = _Pending(
            cid, name, msg, self.boot_id, now + timeout_ms, timeout_ms, done
        )
        self._stats["requests"] += 1
        return cid

    def _expire(self, now: int) -> None:
        for p in list(self._pending.values()):
            if now >= p.deadline:
                del self._pending[p.cid]
                self._resolve_unknown(p, f"no reply within {p.timeout_ms} ms")

    def _resolve_unknown(self, p: _Pending, reason: str) -> None:
        self._stats["unknown_outcomes"] += 1
        log.warning(
            "board %s: %s (cid %d) outcome unknown: %s", self.board_id, p.name, p.cid, reason
        )
        self._resolve(p, RequestOutcome(p.cid, p.name, Outcome.UNKNOWN, None, reason, None))

    def _resolve(self, p: _Pending, outcome: RequestOutcome) -> None:
        try:
            p.done(outcome)
        except Exception:
            self._stats["handler_errors"] += 1
            log.exception(
                "board %s: done callback of %s (cid %d) failed", self.board_id, p.name, p.cid
            )

    # ----- counters ------------------------------------------------------------------

    def counters(self) -> dict[str, int | float]:
        """Session counters and this link's: events, duplicate_events, event_gaps,
        handler_errors, requests, replies, late_replies, resent_requests,
        unknown_outcomes, connects, failures, pending."""
        out: dict[str, int | float] = dict(self._session.counters())
        out.update(self._stats)
        out["failures"] = self.failures
        out["pending"] = len(self._pending)
        return out

    # ----- state ---------------------------------------------------------------------

    def _set_state(self, state: LinkState, reason: str) -> None:
        """The one place that changes ``state``; logs and tells ``on_state``."""
        if state is self.state:
            return
        old = self.state
        self.state = state
        level = logging.WARNING if state is LinkState.MISMATCH else logging.INFO
        log.log(level, "board %s: %s -> %s (%s)", self.board_id, old.value, state.value, reason)
        try:
            self._on_state(self)
        except Exception:
            self._stats["handler_errors"] += 1
            log.exception("board %s: on_state callback failed", self.board_id)

    def _maybe_connect(self, now: int) -> None:
        if self._need_connect or self._session.state in (S.IDLE, S.DOWN):
            self._need_connect = False
            self._attempt_at = now
            self._stats["connects"] += 1
            self._session.last_error = ""
            self._session.connect(now & TICKS_MASK)

    def _attempt_failed(self, now: int) -> None:
        self.failures += 1
        why = self._session.last_error or (f"no answer from a board at address {self.spec.address}")
        self.last_error = f"no session within {self.connect_timeout_ms} ms: {why}"
        log.warning("board %s: connect attempt %d failed: %s", self.board_id, self.failures, why)
        self._need_connect = True
        self._maybe_connect(now)

    def _on_session_state(self, state: int, reason: str) -> None:
        """Session callback: queue the change after the messages that came before it."""
        self._take_inbox()
        peer = dict(self._session.peer) if state == S.ESTABLISHED else {}
        self._arrivals.append(_Change(state, reason, peer))

    def _take_inbox(self) -> None:
        msg = self._session.receive()
        while msg is not None:
            self._arrivals.append(msg)
            msg = self._session.receive()

    def _after_io(self) -> None:
        self._take_inbox()
        while self._arrivals:
            item = self._arrivals.pop(0)
            if isinstance(item, _Change):
                self._session_changed(item)
            else:
                self._on_message(item)
        if self._port_open and self.state is LinkState.CONNECTING and self._session.last_error:
            self.last_error = self._session.last_error
        if self._session.established and self.state in (LinkState.READY, LinkState.MISMATCH):
            self._flush_ack()
            if self.state is LinkState.READY:
                self._flush_inputs()
                self._flush_diagnostics()

    def _session_changed(self, change: _Change) -> None:
        if change.state == S.DOWN and self._port_open:
            self.last_error = f"link lost: {change.reason}"
            self._set_state(LinkState.CONNECTING, change.reason)
        elif change.state == S.ESTABLISHED:
            self._established(change.peer)

    def _established(self, peer: dict[str, Any]) -> None:
        """A new session: check identity, re-send or give up unanswered requests."""
        self.identity = peer
        self._acked = 0
        problems = self._identity_problems(peer)
        boot = peer.get("boot_id")
        self.boot_id = boot if isinstance(boot, int) else None
        unknown: list[tuple[_Pending, str]] = []
        for p in list(self._pending.values()):
            if problems:
                unknown.append((p, "the board does not match the terminal config"))
            elif p.boot_id != self.boot_id:
                why = f"board rebooted (reset reason: {peer.get('reset_reason')}) before replying"
                unknown.append((p, why))
            else:
                self._session.resend_request(p.msg, p.cid)  # rule 1: before any new request
                self._stats["resent_requests"] += 1
        for p, _ in unknown:
            del self._pending[p.cid]
        if problems:
            self.last_error = "; ".join(problems)
            self._set_state(LinkState.MISMATCH, self.last_error)
        else:
            self.failures = 0
            self.last_error = ""
            self._inputs_due = True
            caps = peer.get("caps")
            can_tell = isinstance(caps, list) and "diagnostics" in caps
            self._diagnostics_due = self._now + DIAGNOSTICS_SETTLE_MS if can_tell else None
            fw = peer.get("fw_version")
            self._set_state(LinkState.READY, f"boot {self.boot_id}, firmware {fw}")
        for p, why in unknown:
            self._resolve_unknown(p, why)

    def _identity_problems(self, peer: dict[str, Any]) -> list[str]:
        """What differs between the welcome and the terminal config, naming both sides."""
        spec = self.spec
        out: list[str] = []
        board_id = peer.get("board_id")
        if board_id != spec.board_id:
            out.append(
                f"board id on the board {board_id!r} differs from the terminal config's "
                f"{spec.board_id!r}: check which board is on this port and address, or " + FLASH_FIX
            )
        config_error = peer.get("config_error")
        if config_error is not None:
            out.append(f"the board reports its config invalid ({config_error}): {FLASH_FIX}")
        elif peer.get("config_hash") != self._expected_hash:
            out.append(
                f"config hash on the board {peer.get('config_hash')} differs from the "
                f"terminal config's {self._expected_hash}: {FLASH_FIX}"
            )
        if peer.get("channels") != len(spec.channels):
            out.append(
                f"the board has {peer.get('channels')} channels, the terminal config "
                f"{len(spec.channels)}: {FLASH_FIX}"
            )
        if bool(peer.get("provisioned")) != self._has_key:
            out.append(
                "the board is provisioned but the terminal holds no key for it: add its key"
                if peer.get("provisioned")
                else "the board has no key but the terminal holds one: provision the board"
            )
        boot = peer.get("boot_id")
        if not isinstance(boot, int):
            out.append(
                f"the board reports no boot id (firmware {peer.get('fw_version')}): "
                "flash the current firmware"
            )
        return out

    # ----- messages ------------------------------------------------------------------

    def _on_message(self, msg: list[Any]) -> None:
        if msg[0] == REPLY_ID:
            self._on_reply(msg)
        elif msg[0] == EVENT_ID:
            self._on_board_event(msg)
        else:
            log.debug("board %s: ignored message 0x%02x", self.board_id, msg[0])

    def _on_reply(self, msg: list[Any]) -> None:
        cid = msg[1]
        p = self._pending.pop(cid, None)
        if p is None:
            self._stats["late_replies"] += 1
            log.info("board %s: reply to cid %d after its outcome was given up", self.board_id, cid)
            return
        self._stats["replies"] += 1
        reason = msg[3] if len(msg) > 3 else None
        data = msg[4] if len(msg) > 4 else None
        self._resolve(p, RequestOutcome(cid, p.name, Outcome.REPLY, msg[2], reason, data))

    def _on_board_event(self, msg: list[Any]) -> None:
        boot = self.boot_id if self.boot_id is not None else 0
        eid = msg[1]
        last = self._last_eid.get(boot)
        if last is not None and eid <= last:
            self._stats["duplicate_events"] += 1
            return
        if last is not None and eid != last + 1:
            self._stats["event_gaps"] += 1
            log.warning("board %s: event %d follows %d: a gap", self.board_id, eid, last)
        event = BoardEvent(self.board_id, boot, eid, msg[2], msg[3], msg[4], msg[5], msg[6])
        try:
            self._on_event(event)
        except Exception:
            # acknowledged anyway: holding it back would stall every later event
            self._stats["handler_errors"] += 1
            log.exception("board %s: on_event failed for %s", self.board_id, event)
        self._last_eid.pop(boot, None)
        self._last_eid[boot] = eid
        while len(self._last_eid) > BOOTS_REMEMBERED:
            del self._last_eid[next(iter(self._last_eid))]
        self._stats["events"] += 1

    def _flush_ack(self) -> None:
        if self.boot_id is None:
            return
        last = self._last_eid.get(self.boot_id, 0)
        if last > self._acked:
            try:
                self._session.send([EVENTS_ACK_ID, last])
            except SessionError:
                return  # send queue full: the next poll tries again
            self._acked = last

    def _flush_inputs(self) -> None:
        if not self._inputs_due or len(self._pending) >= MAX_PENDING:
            return
        try:
            self._submit("inputs", [INPUTS_ID], self._now, self._inputs_done, INPUTS_TIMEOUT_MS)
        except ControllerError:
            return  # queue full: the next poll tries again
        self._inputs_due = False

    def _inputs_done(self, outcome: RequestOutcome) -> None:
        if not outcome.ok:
            log.warning("board %s: reading the inputs failed: %s", self.board_id, outcome.reason)
            return
        try:
            report = parse_input_report(outcome.data)
        except ReportError as exc:
            log.warning("board %s: %s", self.board_id, exc)
            return
        self.last_inputs = report
        try:
            self._on_inputs(self, report)
        except Exception:
            self._stats["handler_errors"] += 1
            log.exception("board %s: on_inputs callback failed", self.board_id)

    def _flush_diagnostics(self) -> None:
        due = self._diagnostics_due
        if due is None or self._now < due or self._diagnostics_asked or self._pending:
            return
        try:
            self._submit(
                "diagnostics", [DIAGNOSTICS_ID], self._now, self._diagnostics_done,
                INPUTS_TIMEOUT_MS,
            )  # fmt: skip
        except ControllerError:
            return  # send queue full: the next poll tries again
        self._diagnostics_asked = True
        self._diagnostics_due = self._now + DIAGNOSTICS_EVERY_MS

    def _diagnostics_done(self, outcome: RequestOutcome) -> None:
        self._diagnostics_asked = False
        if not outcome.ok:
            log.info("board %s: reading the diagnostics failed: %s", self.board_id, outcome.reason)
            return
        try:
            self.diagnostics = parse_diagnostics(outcome.data, self._now)
        except ReportError as exc:
            log.warning("board %s: %s", self.board_id, exc)

    def _send_bytes(self, view: memoryview) -> None:
        self._write(bytes(view))  # the session reuses its buffer
