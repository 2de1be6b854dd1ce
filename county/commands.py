"""The command desk: county commands from the broker checked, carried out through the
controller's Api as a county operator, and answered (docs/mqtt/README.md, "Commands").

Sans-I/O: ``receive`` takes an ``InboundMessage`` and answers through ``send``. Every
command gets exactly one answer of ``ANSWERS`` (a long one a second, ``done`` or
``error``, when its operation ends) and exactly one ``county_command`` audit entry,
without its arguments. Command ids are kept 30 days in the store (``county_commands``),
so a repeat is answered ``duplicate`` across restarts and never runs twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from controller.api import COUNTY_PREFIX, Result, county_origin, shown
from controller.mqttconfig import MqttSettings
from controller.terminal import TerminalController
from county.command_checks import (
    REJECTED,
    CommandRefused,
    check_envelope,
    check_operator,
    check_response_topic,
    check_times,
    parse_payload,
    reject,
    reply_topic,
    valid_id,
    valid_operator,
)
from county.hostinfo import rfc3339
from county.inbound import InboundMessage, Reply
from county.topics import Topics

log = logging.getLogger(__name__)

ACCEPTED, DONE, DUPLICATE, ERROR = "accepted", "done", "duplicate", "error"
ANSWERS: Final = (ACCEPTED, DONE, REJECTED, "expired", DUPLICATE, ERROR)
# Commands carried out by the controller (the link's own come in ``local``).
CONTROLLER_COMMANDS: Final = (
    "service_open", "set_service", "assign", "revoke", "board_reset", "entrance_mode",
)  # fmt: skip
KEEP_S: Final = 30 * 86400  # command ids are remembered this long
PRUNE_EVERY_S: Final = 3600
SUBJECT_MAX: Final = 32
NAME_MAX: Final = 64
_TABLE: Final = """
CREATE TABLE IF NOT EXISTS county_commands (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, operator TEXT NOT NULL, utc REAL NOT NULL,
    answer TEXT NOT NULL, reason TEXT, result TEXT);
"""
_NO_LOCAL: Final[Mapping[str, Callable[[Mapping[str, Any]], Result]]] = MappingProxyType({})

LocalCommand = Callable[[Mapping[str, Any]], Result]


@dataclass
class _Verdict:
    """What the desk found out about one command so far, and its answer."""

    topic: str
    name: str | None = None
    cmd_id: str | None = None
    operator: str | None = None
    answer: str = ERROR
    reason: str | None = "internal error (logged)"
    result: dict[str, Any] | None = None
    op: int | None = None  # a long operation whose end is answered later
    ended: dict[str, Any] | None = None  # its done notice, when it came during the call
    remember: bool = False  # passed every check: its id goes into county_commands


@dataclass(frozen=True)
class _FollowUp:
    """Where the second answer of a long command goes."""

    topic: str
    correlation: bytes | None
    cmd_id: str | None
    name: str | None


class CommandDesk:
    """Takes command messages from the broker, checks them, carries them out through the
    controller's Api, and answers each one; every command lands in the audit log."""

    def __init__(
        self,
        ctl: TerminalController,
        topics: Topics,
        settings: MqttSettings,
        send: Callable[[Reply], None],
        local: Mapping[str, LocalCommand] = _NO_LOCAL,
    ) -> None:
        self.ctl = ctl
        self.topics = topics
        self.settings = settings
        self.send = send
        self.local = dict(local)
        self._pending: dict[int, _FollowUp] = {}  # op -> where its end is answered
        self._early: dict[int, dict[str, Any]] | None = None  # done notices during a call
        self._pruned_at: float | None = None
        with ctl.store.tx():
            ctl.store.db.execute(_TABLE)
        ctl.subscribe(self._notice)

    # ----- one command -----------------------------------------------------------------

    def receive(self, msg: InboundMessage) -> None:
        """Check, carry out, audit and answer one command; never raises."""
        now = self.ctl.store.utc()
        self._prune(now)
        v = _Verdict(topic=reply_topic(self.topics, msg.response_topic) or "")
        if not v.topic:
            v.topic = self.topics.rejected_replies
        try:
            self._decide(msg, now, v)
        except CommandRefused as exc:
            v.answer, v.reason, v.result = exc.answer, exc.reason, exc.result
        except Exception:
            log.exception("county command on %s failed", shown(msg.topic, 120))
            v.answer, v.reason, v.result, v.op = ERROR, "internal error (logged)", None, None
        self._finish(msg, v)

    def _decide(self, msg: InboundMessage, now: float, v: _Verdict) -> None:
        """Fill in v's answer: the checks in order, then the command itself."""
        name = self.topics.command_name(msg.topic)
        v.name = name[:NAME_MAX] if name is not None else None
        if msg.retain:
            raise reject("retained commands are refused: publish commands without retain")
        doc = parse_payload(msg.payload, self.settings.max_command_bytes)
        v.cmd_id, v.operator = valid_id(doc.get("id")), valid_operator(doc.get("operator"))
        env = check_envelope(doc)
        check_operator(env.operator, self.settings.operators)
        check_response_topic(self.topics, msg.response_topic)
        check_times(env, now, self.settings.command_max_age_s)
        first = self._first_answer(env.id)
        if first is not None:
            raise CommandRefused(
                DUPLICATE,
                f"command id {shown(env.id)} was seen before: not carried out again",
                env.id,
                {"original": first},
            )
        v.remember = True
        early: dict[int, dict[str, Any]] = {}
        if name is not None and name in self.local:
            result = self.local[name](env.args)
        elif name in CONTROLLER_COMMANDS:
            self._early = early
            try:
                origin = county_origin(env.operator)
                request_id = f"{COUNTY_PREFIX}{env.id}"
                result = self.ctl.call(name, env.args, origin, request_id=request_id)
            finally:
                self._early = None
        else:
            raise reject(f"unknown command {shown(name)}", name)
        self._answer(result, v)
        if v.op is not None:
            follow = _FollowUp(v.topic, msg.correlation, v.cmd_id, v.name)
            if v.op in early:
                v.ended = early[v.op]
            else:
                self._pending[v.op] = follow

    def _answer(self, result: Result, v: _Verdict) -> None:
        """done / accepted from a Result, or rejected with the terminal's status."""
        data = dict(result.data or {})
        if not result.ok:
            v.answer, v.reason = REJECTED, result.reason or result.status.name.lower()
            v.result = {"status": int(result.status), "status_name": result.status.name.lower()}
            return
        op = data.get("op")
        if isinstance(op, int) and not isinstance(op, bool):
            v.answer, v.reason, v.result, v.op = ACCEPTED, None, {"op": op}, op
        else:
            v.answer, v.reason, v.result = DONE, None, data

    def _finish(self, msg: InboundMessage, v: _Verdict) -> None:
        """Audit once, remember the id, answer; then a long command's end if it came
        during the call."""
        payload = self._payload(v.cmd_id, v.name, v.answer, v.reason, v.result)
        store = self.ctl.store
        try:
            with store.tx():
                store.audit(
                    f"{COUNTY_PREFIX}{v.operator or '?'}",
                    "county_command",
                    (v.name or "?")[:SUBJECT_MAX],
                    id=v.cmd_id,
                    answer=v.answer,
                    reason=v.reason,
                )
                if v.remember and v.cmd_id is not None:
                    store.db.execute(
                        "INSERT OR IGNORE INTO county_commands"
                        "(id, name, operator, utc, answer, reason, result) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (v.cmd_id, v.name or "", v.operator or "", store.utc(), v.answer,
                         v.reason, json.dumps(v.result, default=str)),
                    )  # fmt: skip
        except Exception:
            log.exception("county command %s: audit failed", shown(v.cmd_id))
        self._send(Reply(v.topic, payload, msg.correlation))
        if v.op is not None and v.ended is not None:
            self._send_end(_FollowUp(v.topic, msg.correlation, v.cmd_id, v.name), v.ended)

    def _payload(
        self,
        cmd_id: str | None,
        name: str | None,
        answer: str,
        reason: str | None,
        result: dict[str, Any] | None,
        utc: float | None = None,
    ) -> dict[str, object]:
        return {
            "id": cmd_id,
            "command": name,
            "answer": answer,
            "reason": reason,
            "result": result,
            "utc": rfc3339(self.ctl.store.utc() if utc is None else utc),
        }

    def _send(self, reply: Reply) -> None:
        try:
            self.send(reply)
        except Exception:
            log.exception("county reply to %s not sent", shown(reply.topic, 120))

    # ----- long commands ---------------------------------------------------------------

    def _notice(self, name: str, fields: dict[str, Any]) -> None:
        """A controller notice: the end of a long command is its second answer."""
        if name != "done":
            return
        op = fields.get("op")
        if not isinstance(op, int):
            return
        follow = self._pending.pop(op, None)
        if follow is not None:
            self._send_end(follow, fields)
        elif self._early is not None:
            self._early[op] = dict(fields)

    def _send_end(self, follow: _FollowUp, fields: Mapping[str, Any]) -> None:
        """The second answer: done, or error with the operation's outcome and reason."""
        op, status = fields.get("op"), fields.get("status")
        answer = DONE if status == 0 else ERROR
        result = {"op": op, "outcome": fields.get("outcome"), "status": status}
        payload = self._payload(follow.cmd_id, follow.name, answer, fields.get("reason"), result)
        self._send(Reply(follow.topic, payload, follow.correlation))

    # ----- the id memory ---------------------------------------------------------------

    def _first_answer(self, cmd_id: str) -> dict[str, object] | None:
        """The first answer's payload of a command id seen before, or None."""
        row = self.ctl.store.db.execute(
            "SELECT name, utc, answer, reason, result FROM county_commands WHERE id=?",
            (cmd_id,),
        ).fetchone()
        if row is None:
            return None
        name, utc, answer, reason, result = row
        loaded = json.loads(result) if result else None
        return self._payload(cmd_id, name or None, answer, reason, loaded, float(utc))

    def _prune(self, now: float) -> None:
        """Forget command ids older than KEEP_S, at most once per PRUNE_EVERY_S."""
        if self._pruned_at is not None and 0 <= now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        try:
            with self.ctl.store.tx():
                self.ctl.store.db.execute(
                    "DELETE FROM county_commands WHERE utc < ?", (now - KEEP_S,)
                )
        except Exception:
            log.exception("pruning county_commands failed")
