"""The county link of one terminal: what the controller does becomes MQTT topics, and
county commands reach the controller (docs/mqtt/README.md).

- Every audit-log entry becomes an ``event`` row in the outbox, written inside the
  audit entry's own transaction, so an event exists exactly when its change does.
- Hourly ``stats`` rows are written at each hour's end (and at start for an hour that
  ended while the daemon was down); periodic ``metrics`` go out live.
- Compartments, doors, the entrance and active alarms are retained topics; an alarm
  topic is cleared when the alarm ends, also one left over from before a restart.
- Commands go to the CommandDesk; its replies and locally issued pickup codes (for the
  SMS gateway) stay in memory until the broker acknowledged them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import platform
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from controller.api import Result, ok
from controller.boardlink import LinkState
from controller.mqttconfig import MqttSettings
from controller.store import AuditEntry
from county import hostinfo
from county.commands import CONTROLLER_COMMANDS, CommandDesk
from county.connection import Connection
from county.credentials import check_tls_files, read_password
from county.hostinfo import rfc3339
from county.inbound import InboundMessage, Reply
from county.outbox import Outbox
from county.privacy import public_detail, scrub_text
from county.publisher import Publisher
from county.sessions import SessionCounter
from county.stats import close_hour, period_of
from county.topics import SCHEMA_VERSION, Topics

if TYPE_CHECKING:
    from controller.terminal import TerminalController

log = logging.getLogger(__name__)

REFRESH_MS: Final = 1_000  # entrance, service door, status and the hour are checked this often
LINK_COMMANDS: Final = ("ping", "rebirth", "config_summary")
_RETAINED_TABLE: Final = """
CREATE TABLE IF NOT EXISTS county_retained (topic TEXT PRIMARY KEY);
"""


class CountyLink:
    """See the module docstring. ``start`` needs a running event loop."""

    def __init__(
        self,
        ctl: TerminalController,
        settings: MqttSettings,
        *,
        version: str,
        features: Sequence[str] = (),
        port_counters: Callable[[], Mapping[str, Mapping[str, int]]] = dict,
        clock_synced: Callable[[], bool] = hostinfo.clock_synced,
    ) -> None:
        self.ctl = ctl
        self.settings = settings
        self.version = version
        self.features = tuple(features)
        self.port_counters = port_counters
        self.clock_synced = clock_synced
        self.topics = Topics(ctl.config.terminal.kiosk_id)
        self.store = ctl.store
        self.store.db.executescript(_RETAINED_TABLE)
        self.outbox = Outbox(self.store)
        with self.store.tx():
            self.boot = int(self.store.meta("daemon_boots") or 0) + 1
            self.store.set_meta("daemon_boots", str(self.boot))
        self.publisher = Publisher(
            self.topics,
            self.outbox,
            utc=self.store.utc,
            status=self.status,
            on_connected=self._on_connected,
        )
        self.desk = CommandDesk(
            ctl,
            self.topics,
            settings,
            self._reply,
            local={
                "ping": self._ping,
                "rebirth": self._rebirth,
                "config_summary": self._config_summary,
            },
        )
        self.connection: Connection | None = None
        self.sessions: SessionCounter | None = None
        self._shown: dict[str, Any] = {}  # topic -> fields without utc, as last published
        self._unsubscribe: Callable[[], None] | None = None
        self._stopped = False
        self._period = ""

    # ----- life ------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the credentials, hook into the controller, connect (in the background);
        LinkSetupError names a missing or too open file."""
        s = self.settings
        password = read_password(s.password_file) if s.password_file is not None else None
        check_tls_files(s)
        self._hook()
        self.sessions = SessionCounter(Path(self.store.path))
        self.connection = Connection(
            s,
            loop=asyncio.get_running_loop(),
            password=password,
            next_session=self.sessions.next,
            will=self.publisher.will,
            on_connected=self.publisher.connected,
            on_disconnected=self.publisher.disconnected,
            on_ack=self.publisher.acked,
            on_message=self._on_message,
            subscriptions=[(self.topics.commands, 1)],
        )
        self.publisher.link = self.connection
        self.connection.start()
        log.info(
            "county link to %s:%d (%s) as %s",
            s.host,
            s.port,
            "TLS" if s.tls else "plain",
            s.username,
        )

    def _hook(self) -> None:
        """Listen to the controller and seed every retained topic."""
        self.store.audit_listeners.append(self._on_audit)
        self.ctl.code_listeners.append(self._on_code)
        self._unsubscribe = self.ctl.subscribe(self._on_notice)
        self._rebirth_topics()
        with self.store.tx():
            self._check_stats()
        timers = self.ctl.timers
        timers.after(REFRESH_MS, self._refresh, "county refresh")
        timers.after(self.settings.metrics_s * 1000, self._metrics, "county metrics")

    async def stop(self, reason: str = "daemon stopping") -> None:
        """Publish ``offline`` with reason, disconnect cleanly and let go of the controller."""
        self._stopped = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._on_audit in self.store.audit_listeners:
            self.store.audit_listeners.remove(self._on_audit)
        if self._on_code in self.ctl.code_listeners:
            self.ctl.code_listeners.remove(self._on_code)
        await self.publisher.stop(reason)
        if self.sessions is not None:
            self.sessions.close()

    # ----- status and retained state ---------------------------------------------------

    def status(self) -> tuple[str, str | None]:
        """(state, reason): maintenance, degraded or online."""
        ctl = self.ctl
        if ctl.service_door_open:
            return "maintenance", "the service door is open"
        down = [b for b, link in ctl.links.items() if link.state != LinkState.READY]
        if down:
            return "degraded", f"boards not ready: {', '.join(sorted(down))}"
        if ctl.alarms.active:
            return "degraded", f"{len(ctl.alarms.active)} alarms active"
        return "online", None

    def _on_connected(self) -> None:
        """After status, before the cached retained topics: a fresh birth, and clears for
        alarm topics published before a restart whose alarms have ended since."""
        self._publish_birth()
        active = {self.topics.alarm(n, s) for n, s in self.ctl.alarms.active}
        stale = [
            str(t)
            for (t,) in self.store.db.execute("SELECT topic FROM county_retained")
            if t not in active
        ]
        for topic in stale:
            self.publisher.clear_unknown(topic)
        if stale:
            with self.store.tx():
                self.store.db.executemany(
                    "DELETE FROM county_retained WHERE topic=?", [(t,) for t in stale]
                )

    def _retain(self, topic: str, fields: dict[str, Any] | None) -> None:
        """Publish a retained topic when its content (not its time stamp) changed."""
        if fields is not None and self._shown.get(topic) == fields:
            return
        self._shown[topic] = fields
        out = None if fields is None else {**fields, "utc": rfc3339(self.store.utc())}
        self.publisher.retain(topic, out)

    def _rebirth_topics(self) -> None:
        ctl = self.ctl
        self._publish_birth()
        for c in ctl.wall.by_label.values():
            self._compartment(c.label, c.state.value, c.door.value, c.led.value)
        self._refresh_doors()
        for (name, subject), detail in ctl.alarms.active.items():
            self._alarm(name, subject, True, detail)

    def _publish_birth(self) -> None:
        cfg, ctl = self.ctl.config, self.ctl
        boards = []
        for spec in cfg.terminal.boards:
            link = ctl.links.get(spec.board_id)
            fw = link.identity.get("fw_version") if link is not None else None
            boards.append(
                {
                    "board": spec.board_id,
                    "address": spec.address,
                    "channels": len(spec.channels),
                    "state": link.state.value if link is not None else "not attached",
                    "firmware": str(fw) if fw is not None else None,
                }
            )
        birth = {
            "schema": SCHEMA_VERSION,
            "kiosk_id": cfg.terminal.kiosk_id,
            "site": cfg.terminal.site,
            "session": max(1, self.publisher.session),
            "boot": self.boot,
            "software": {"amtomat": self.version, "python": platform.python_version()},
            "boards": boards,
            "compartments": [
                {"compartment": c.label, "size": c.size, "board": c.board, "channel": c.channel}
                for c in cfg.compartments
            ],
            "capabilities": sorted({*self.features, "mqtt5", "outbox", "commands"}),
            "commands": sorted((*LINK_COMMANDS, *CONTROLLER_COMMANDS)),
        }
        self._shown.pop(self.topics.birth, None)  # birth always goes out again
        self._retain(self.topics.birth, birth)

    def _compartment(self, label: str, state: str, door: str, led: str | None) -> None:
        c = self.ctl.wall.get(label)
        size = c.size if c is not None else ""
        fields = {"compartment": label, "state": state, "door": door, "size": size}
        if led is not None:
            fields["led"] = led
        self._retain(self.topics.compartment(label), fields)
        self._retain(self.topics.door(label), {"door": label, "state": door})

    def _refresh_doors(self) -> None:
        ctl = self.ctl
        entrance_door = ctl.entrance.door.value
        self._retain(self.topics.entrance, {"mode": ctl.entrance.mode.value, "door": entrance_door})
        if ctl.config.entrance.board is not None:
            self._retain(self.topics.door("entrance"), {"door": "entrance", "state": entrance_door})
        service = "open" if ctl.service_door_open else "closed"
        self._retain(self.topics.door("service"), {"door": "service", "state": service})

    def _alarm(self, name: str, subject: str, active: bool, detail: str | None) -> None:
        topic = self.topics.alarm(name, subject)
        with self.store.tx():
            if active:
                self.store.db.execute(
                    "INSERT OR IGNORE INTO county_retained(topic) VALUES (?)", (topic,)
                )
            else:
                self.store.db.execute("DELETE FROM county_retained WHERE topic=?", (topic,))
        if not active:
            self._retain(topic, None)
            return
        row = self.store.db.execute(
            "SELECT raised_utc FROM alarms WHERE name=? AND subject=?", (name, subject)
        ).fetchone()
        raised = float(row[0]) if row is not None else self.store.utc()
        fields = {
            "alarm": name,
            "subject": subject,
            "detail": scrub_text(detail) if detail else None,
            "raised_utc": rfc3339(raised),
        }
        self._shown[topic] = fields
        self.publisher.retain(topic, fields)

    # ----- controller listeners --------------------------------------------------------

    def _on_notice(self, name: str, fields: dict[str, Any]) -> None:
        if name == "compartment":
            led = fields.get("led")
            self._compartment(
                str(fields["compartment"]),
                str(fields["state"]),
                str(fields["door"]),
                str(led) if led is not None else None,
            )
        elif name == "alarm":
            detail = fields.get("detail")
            self._alarm(
                str(fields["alarm"]),
                str(fields["subject"]),
                bool(fields["active"]),
                str(detail) if detail is not None else None,
            )
        elif name == "terminal":
            self._refresh_doors()
            self._publish_birth()  # a board came or went: its state and firmware
        self.publisher.publish_status()

    def _on_audit(self, entry: AuditEntry) -> None:
        """Inside the audit entry's transaction: its event joins the outbox."""
        self.outbox.put(
            self.topics.event,
            {
                **self._envelope(entry.utc),
                "type": entry.action,
                "actor": scrub_text(entry.actor)[:64],
                "subject": scrub_text(entry.subject)[:64],
                "audit_seq": entry.seq,
                "detail": public_detail(entry.action, entry.detail),
            },
        )
        self.publisher.kick()

    def _on_code(self, issued: dict[str, Any]) -> None:
        """A locally issued pickup code: once to the SMS gateway's topic, never to disk."""
        self.publisher.send_once(
            self.topics.notifier,
            {
                "reference": str(issued["reference"]),
                "code": str(issued["code"]),
                "compartment": str(issued["compartment"]),
                "expires_utc": rfc3339(float(issued["expires_utc"])),
                "utc": rfc3339(self.store.utc()),
            },
        )

    def _envelope(self, utc: float) -> dict[str, Any]:
        return {
            "kiosk_id": self.topics.kiosk_id,
            "boot": self.boot,
            "utc": rfc3339(utc),
            "uptime_s": round((self.ctl.timers.now_ms - self.ctl.started_ms) / 1000, 3),
            "clock_synced": self.clock_synced(),
        }

    # ----- timers ----------------------------------------------------------------------

    def _refresh(self) -> None:
        try:
            if not self._stopped:
                self._refresh_doors()
                self.publisher.publish_status()
                if period_of(self.store.utc()) != self._period:
                    with self.store.tx():
                        self._check_stats()
        finally:
            self.ctl.timers.after(REFRESH_MS, self._refresh, "county refresh")

    def _check_stats(self) -> None:
        """Inside a transaction: the stats of an hour that has ended join the outbox."""
        self._period = period_of(self.store.utc())
        closed = close_hour(self.store, self.store.utc())
        if closed is not None:
            self.outbox.put(
                self.topics.stats,
                {**self._envelope(self.store.utc()), **closed.fields},
                key=f"stats:{closed.period}",
            )
            self.publisher.kick()

    def metrics(self) -> dict[str, Any]:
        """The ``metrics`` payload now."""
        ctl = self.ctl
        ports = self.port_counters()
        boards: dict[str, Any] = {}
        for spec in ctl.config.terminal.boards:
            link = ctl.links.get(spec.board_id)
            if link is None:
                continue
            counters: dict[str, float] = dict(link.counters())
            port = ports.get(spec.port or "", {})
            counters.update({f"port_{k}": v for k, v in port.items()})
            boards[spec.board_id] = {"state": link.state.value, "counters": counters}
        oldest = self.outbox.oldest_utc()
        return {
            "kiosk_id": self.topics.kiosk_id,
            "utc": rfc3339(self.store.utc()),
            "uptime_s": round((ctl.timers.now_ms - ctl.started_ms) / 1000, 3),
            "session": max(1, self.publisher.session),
            "boards": boards,
            "outbox": {
                "depth": self.outbox.depth(),
                "oldest_utc": rfc3339(oldest) if oldest is not None else None,
            },
            "temperature_c": {"cpu": hostinfo.cpu_temperature_c()},
            "disk": hostinfo.disk(Path(self.store.path).parent),
            "memory": hostinfo.memory(),
        }

    def _metrics(self) -> None:
        try:
            if not self._stopped:
                self.publisher.send_live(self.topics.metrics, self.metrics())
        finally:
            self.ctl.timers.after(self.settings.metrics_s * 1000, self._metrics, "county metrics")

    # ----- commands --------------------------------------------------------------------

    def _on_message(self, msg: InboundMessage) -> None:
        if not self._stopped:
            self.desk.receive(msg)

    def _reply(self, reply: Reply) -> None:
        self.publisher.send_once(reply.topic, dict(reply.payload), reply.correlation)

    def _ping(self, args: Mapping[str, Any]) -> Result:
        ctl = self.ctl
        return ok(
            utc=rfc3339(self.store.utc()),
            session=self.publisher.session,
            uptime_s=round((ctl.timers.now_ms - ctl.started_ms) / 1000, 3),
        )

    def _rebirth(self, args: Mapping[str, Any]) -> Result:
        self._shown.clear()
        self._rebirth_topics()
        self.publisher.publish_status()
        return ok(topics=len(self._shown))

    def _config_summary(self, args: Mapping[str, Any]) -> Result:
        cfg = self.ctl.config
        source = Path(cfg.source)
        try:
            digest: str | None = hashlib.sha256(source.read_bytes()).hexdigest()
        except OSError:
            digest = None
        return ok(
            kiosk_id=cfg.terminal.kiosk_id,
            site=cfg.terminal.site,
            config_sha256=digest,
            boards=[
                {"board": b.board_id, "address": b.address, "channels": len(b.channels)}
                for b in cfg.terminal.boards
            ],
            compartments=len(cfg.compartments),
            sizes=list(cfg.daemon.sizes),
            pickup={
                "attempts_per_reference": cfg.pickup.attempts_per_reference,
                "attempts_per_terminal": cfg.pickup.attempts_per_terminal,
                "lockout_s": cfg.pickup.lockout_s,
            },
            entrance=self.ctl.entrance.mode.value,
            staff=len(cfg.staff),
            mqtt={
                "host": self.settings.host,
                "port": self.settings.port,
                "tls": self.settings.tls,
                "metrics_s": self.settings.metrics_s,
            },
        )
