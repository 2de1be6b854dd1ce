"""Fleet benchmark: many terminals' county links on one Mosquitto, with a broker outage.

N simulated terminals run the real ``county`` Publisher, Outbox (SQLite, one file each) and
Connection (paho, one network thread each), spread over P worker processes with one asyncio
loop each. A consumer process takes every ``event`` (QoS 1, persistent session) and checks
each terminal's sequence numbers for loss, duplicates and order; a dashboard client in the
same process counts every message. Midway the broker stops for ``--outage`` seconds and
starts again on the same port. The broker runs docs/mqtt/mosquitto.conf and docs/mqtt/acl
with the listeners replaced by one plain TCP listener on 127.0.0.1 (no TLS).

Traffic per terminal: status and birth at every connect, then its retained topics (16
compartments, 16 doors, entrance, service door); an event (QoS 1, through the outbox)
every ``--event-interval`` s (uniformly jittered between half and 1.5 times that); a
retained compartment state change every 10 s and metrics (QoS 0) every 10 s, both jittered
the same way. Prints figures; exits 1 when an event was lost or a step failed.
Run: ``.venv/bin/python bench/fleet.py`` (part of ``make bench``); ``--quick``: 20 terminals,
15 s, 5 s outage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import multiprocessing
import os
import platform
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import paho.mqtt.client as mqtt  # noqa: E402
from jsonschema import Draft202012Validator  # noqa: E402
from mosquitto import Broker, BrokerError, mosquitto_binary  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402
from paho.mqtt.subscribeoptions import SubscribeOptions  # noqa: E402

from controller.mqttconfig import MqttSettings  # noqa: E402
from controller.store import Store  # noqa: E402
from county.connection import Connection  # noqa: E402
from county.hostinfo import rfc3339  # noqa: E402
from county.inbound import InboundMessage  # noqa: E402
from county.outbox import Outbox  # noqa: E402
from county.publisher import Publisher  # noqa: E402
from county.sessions import SessionCounter  # noqa: E402
from county.topics import SCHEMA_VERSION, Topics  # noqa: E402

HOST: Final = "127.0.0.1"
DOCS: Final = ROOT / "docs" / "mqtt"
COMPARTMENTS: Final = tuple(f"{c}{n}" for c in "AB" for n in range(1, 9))
STATES: Final = ("empty", "loading", "loaded", "opening", "open", "emptied")
STATE_EVERY_S: Final = 10.0
METRICS_EVERY_S: Final = 10.0
CONNECT_LIMIT_S: Final = 60.0  # generous: every wait is for a condition, never a duration
DRAIN_LIMIT_S: Final = 180.0
QUIET_LIMIT_S: Final = 15.0  # the consumer got nothing new for this long: it has it all
BACKOFF: Final = MqttSettings()  # the terminals run the defaults
EVENTS: Final = "amtomat/v1/+/event"
EVERYTHING: Final = "amtomat/v1/#"
# (type, actor, subject or None for a compartment, detail); the mix of a busy terminal
EVENT_KINDS: Final = (
    ("pickup_completed", "kiosk", None, {"reference": "2026-BA-00417", "op": 912}),
    ("compartment_state", "system", None, {"old": "opening", "new": "open", "op": 912}),
    ("door_closed", "system", None, {"after_s": 14.2}),
    ("entrance_granted", "system", "entrance", {"via": "card"}),
    ("code_failed", "kiosk", "kiosk", {"attempt": 1, "reason": "wrong code"}),
    ("load_completed", "staff-0042", None, {"reference": "2026-BA-00418", "size": "M"}),
)
# listener options of the shipped config: dropped, one plain listener replaces them
_LISTENER_KEYS: Final = frozenset({
    "listener", "protocol", "cafile", "capath", "certfile", "keyfile", "tls_version",
    "require_certificate", "use_identity_as_username", "use_subject_as_username", "ciphers",
})  # fmt: skip


class BenchFailed(Exception):
    """A step the benchmark needs did not work; the message says which."""


# ----- payloads (checked against docs/mqtt/*.schema.json before the run) -----------------


# fmt: off
def event_fields(kiosk: str, audit_seq: int, uptime_s: float, rng: random.Random) -> dict[str, Any]:
    kind, actor, subject, detail = rng.choice(EVENT_KINDS)
    return {
        "kiosk_id": kiosk, "boot": 1, "utc": rfc3339(time.time()), "uptime_s": round(uptime_s, 3),
        "clock_synced": True, "type": kind, "actor": actor,
        "subject": subject or rng.choice(COMPARTMENTS), "audit_seq": audit_seq, "detail": detail,
    }


def compartment_fields(label: str, state: str) -> dict[str, Any]:
    door = "open" if state == "open" else "closed"
    return {"compartment": label, "state": state, "door": door, "size": "M",
            "utc": rfc3339(time.time())}


def door_fields(door: str) -> dict[str, Any]:
    return {"door": door, "state": "closed", "utc": rfc3339(time.time())}


def birth_fields(kiosk: str, session: int) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION, "kiosk_id": kiosk, "site": "Buergeramt (fleet bench)",
        "session": max(1, session), "boot": 1, "utc": rfc3339(time.time()),
        "software": {"amtomat": "bench", "python": platform.python_version()},
        "boards": [{"board": b, "address": i + 1, "channels": 8, "state": "ready",
                    "firmware": "1.4.0"} for i, b in enumerate(("wall-a", "wall-b"))],
        "compartments": [{"compartment": c, "size": "M", "board": f"wall-{c[0].lower()}",
                          "channel": int(c[1:]) - 1} for c in COMPARTMENTS],
        "capabilities": ["commands", "mqtt5", "outbox"],
        "commands": ["config_summary", "ping", "rebirth"],
    }


def metrics_fields(kiosk: str, uptime_s: float, session: int, depth: int) -> dict[str, Any]:
    counters = {"frames_in": 120394, "frames_out": 118211, "crc_errors": 2, "retransmits": 5}
    return {
        "kiosk_id": kiosk, "utc": rfc3339(time.time()), "uptime_s": round(uptime_s, 3),
        "session": max(1, session),
        "boards": {b: {"state": "ready", "counters": counters} for b in ("wall-a", "wall-b")},
        "outbox": {"depth": depth, "oldest_utc": None}, "temperature_c": {"cpu": 51.2},
        "disk": {"path": "/var/lib/amtomat", "free_bytes": 24117248000,
                 "total_bytes": 31268536320},
        "memory": {"rss_bytes": 48394240, "available_bytes": 1643118592},
    }
# fmt: on


def check_payloads() -> None:
    """BenchFailed unless every kind of payload the bench sends fits its schema."""
    rng = random.Random(0)
    samples = {
        "event": {**event_fields("bench-0000", 1, 1.0, rng), "seq": 1, "historical": False},
        "compartment": compartment_fields("A1", "loaded"),
        "birth": birth_fields("bench-0000", 1),
        "metrics": metrics_fields("bench-0000", 1.0, 1, 0),
    }
    for name, doc in samples.items():
        schema = json.loads((DOCS / f"{name}.schema.json").read_text(encoding="utf-8"))
        for error in Draft202012Validator(schema).iter_errors(doc):
            raise BenchFailed(f"the bench's {name} payload breaks {name}.schema.json: {error}")


# ----- one simulated terminal (in a worker process) --------------------------------------


@dataclass
class Backlog:
    """What waited in a terminal's outbox when its connection came up."""

    connected: float  # time.monotonic()
    watermark: int  # rows up to this seq were written before the connect
    rows: int
    drained: float | None = None


class SimTerminal:
    """A terminal's county link wired as county/link.py wires it, with synthetic traffic."""

    def __init__(self, kiosk: str, password: str | None, port: int, folder: Path) -> None:
        self.kiosk = kiosk
        self.rng = random.Random(kiosk)
        self.started = time.monotonic()
        db = folder / f"{kiosk}.db"
        self.store = Store(db)
        self.outbox = Outbox(self.store)
        self.topics = Topics(kiosk)
        self.publisher = Publisher(
            self.topics, self.outbox, utc=self.store.utc, status=lambda: ("online", None),
            on_connected=self._birth,
        )  # fmt: skip
        self.sessions = SessionCounter(db)
        settings = MqttSettings(
            enabled=True, host=HOST, port=port, tls=False, client_id=kiosk,
            username=kiosk if password is not None else None,
        )  # fmt: skip
        self.connection = Connection(
            settings, loop=asyncio.get_running_loop(), password=password,
            next_session=self.sessions.next, will=self.publisher.will,
            on_connected=self._connected, on_disconnected=self.publisher.disconnected,
            on_ack=self._acked, on_message=self._command,
            subscriptions=[(self.topics.commands, 1)],
        )  # fmt: skip
        self.publisher.link = self.connection
        self.states = dict.fromkeys(COMPARTMENTS, "empty")
        for label in COMPARTMENTS:  # the retained topics: they go out at every connect
            self.publisher.retain(
                self.topics.compartment(label), compartment_fields(label, "empty")
            )
            self.publisher.retain(self.topics.door(label), door_fields(label))
        self.publisher.retain(self.topics.door("service"), door_fields("service"))
        entrance = {"mode": "normal", "door": "closed", "utc": rfc3339(time.time())}
        self.publisher.retain(self.topics.entrance, entrance)
        self.put: list[int] = []
        self.backlogs: list[Backlog] = []
        self.counts: Counter[str] = Counter()
        self.audit_seq = 0

    def _birth(self) -> None:
        self.publisher.retain(self.topics.birth, birth_fields(self.kiosk, self.publisher.session))

    def _connected(self, session: int) -> None:
        depth = self.outbox.depth()
        backlog = Backlog(time.monotonic(), self.outbox.max_seq(), depth)
        if depth == 0:
            backlog.drained = backlog.connected
        self.backlogs.append(backlog)
        self.publisher.connected(session)

    def _acked(self, mid: int, reason_code: int) -> None:
        self.publisher.acked(mid, reason_code)
        waiting = [b for b in self.backlogs if b.drained is None]
        if waiting:
            oldest = self.outbox.pending(limit=1)
            for backlog in waiting:
                if not oldest or oldest[0].seq > backlog.watermark:
                    backlog.drained = time.monotonic()

    def _command(self, msg: InboundMessage) -> None:
        self.counts["commands"] += 1  # nobody sends any in this bench

    def event(self) -> None:
        """One audit-log entry: into the outbox in its own transaction, then out."""
        self.audit_seq += 1
        fields = event_fields(self.kiosk, self.audit_seq, time.monotonic() - self.started, self.rng)
        with self.store.tx():
            seq = self.outbox.put(self.topics.event, fields)
        self.put.append(seq)
        self.publisher.kick()

    def state_change(self) -> None:
        label = self.rng.choice(COMPARTMENTS)
        state = STATES[(STATES.index(self.states[label]) + 1) % len(STATES)]
        self.states[label] = state
        self.publisher.retain(self.topics.compartment(label), compartment_fields(label, state))
        self.counts["state_changes"] += 1

    def metrics(self) -> None:
        uptime = time.monotonic() - self.started
        fields = metrics_fields(self.kiosk, uptime, self.publisher.session, self.outbox.depth())
        self.publisher.send_live(self.topics.metrics, fields)
        self.counts["metrics"] += 1

    async def traffic(self, start: float, duration: float, event_s: float) -> None:
        """Events, state changes and metrics, each jittered, from ``start`` (loop time) for
        ``duration`` s; the plan depends on the kiosk_id only, so every run has the same."""
        loop = asyncio.get_running_loop()
        rng, until = self.rng, start + duration
        plan: list[tuple[float, float, Callable[[], None]]] = [
            (start + rng.uniform(0, every), every, action)
            for every, action in (
                (event_s, self.event),
                (STATE_EVERY_S, self.state_change),
                (METRICS_EVERY_S, self.metrics),
            )
        ]
        while True:
            plan.sort(key=lambda p: p[0])
            due, every, action = plan[0]
            if due >= until:
                return
            await asyncio.sleep(max(0.0, due - loop.time()))
            action()
            plan[0] = (due + every * rng.uniform(0.5, 1.5), every, action)

    def result(self) -> dict[str, Any]:
        """What the main process needs, as plain data (it crosses a pipe)."""
        return {
            "kiosk": self.kiosk,
            "put": self.put,
            "counts": dict(self.counts),
            "backlogs": [(b.connected, b.watermark, b.rows, b.drained) for b in self.backlogs],
            "link": self.connection.counters(),
            "refused": self.publisher.counters.refused,
        }

    async def stop(self) -> None:
        await self.publisher.stop("bench finished")
        self.sessions.close()
        self.store.close()


@dataclass(frozen=True)
class WorkerSpec:
    """One worker process's share of the fleet."""

    port: int
    kiosks: tuple[tuple[str, str | None], ...]  # (kiosk_id, password)
    folder: str
    event_s: float


async def _until(check: Callable[[], bool], limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _worker(spec: WorkerSpec, pipe: Pipe) -> None:
    terminals = [SimTerminal(k, pw, spec.port, Path(spec.folder)) for k, pw in spec.kiosks]
    for t in terminals:
        t.connection.start()
    await _until(lambda: all(t.backlogs for t in terminals), CONNECT_LIMIT_S)
    pipe.send(("ready", sum(1 for t in terminals if t.backlogs)))
    command = await asyncio.to_thread(pipe.recv)
    if command[0] == "go":
        start = asyncio.get_running_loop().time()
        traffic = (t.traffic(start, float(command[1]), spec.event_s) for t in terminals)
        await asyncio.gather(*traffic)
        drained = await _until(lambda: all(t.outbox.depth() == 0 for t in terminals), DRAIN_LIMIT_S)
        pipe.send(("drained", drained, [t.result() for t in terminals]))
        await asyncio.to_thread(pipe.recv)  # "stop"
    await asyncio.gather(*(t.stop() for t in terminals))
    pipe.send(("stopped",))


def worker_main(spec: WorkerSpec, pipe: Pipe) -> None:
    """A worker process: its terminals on one asyncio loop."""
    logging.basicConfig(level=logging.ERROR)  # 200 "connection lost" warnings say nothing
    asyncio.run(_worker(spec, pipe))


# ----- the county side (consumer process) ------------------------------------------------


class Tally:
    """What the county's clients received; written on paho's threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seqs: dict[str, list[int]] = {}  # kiosk -> seq in arrival order
        self.deliveries = 0
        self.historical = 0
        self.redelivered = 0  # the broker's DUP flag
        self.malformed = 0
        self.seen: Counter[str] = Counter()  # dashboard: messages per topic kind
        self.sessions_resumed = 0

    def event(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            doc = json.loads(msg.payload)
            kiosk, seq, historical = str(doc["kiosk_id"]), int(doc["seq"]), doc["historical"]
        except (ValueError, KeyError, TypeError):
            with self.lock:
                self.malformed += 1
            return
        with self.lock:
            self.seqs.setdefault(kiosk, []).append(seq)
            self.deliveries += 1
            self.historical += historical is True
            self.redelivered += bool(msg.dup)

    def dashboard(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        kind = msg.topic.split("/", 3)[-1].split("/", 1)[0]
        if kind == "status" and b'"offline"' in msg.payload:
            kind = "status offline"  # a will (the broker publishes them when it stops, too)
        with self.lock:
            self.seen[kind] += 1


def _client(client_id: str, login: tuple[str, str] | None) -> mqtt.Client:
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    if login is not None:
        c.username_pw_set(*login)
    c.reconnect_delay_set(1, 2)
    return c


def consumer_main(port: int, login: tuple[str, str] | None, pipe: Pipe) -> None:
    """The county: an event consumer (persistent session, QoS 1) and a dashboard (clean
    session, QoS 0, everything, no retained messages at subscribe)."""
    tally = Tally()
    subscribed = {"events": threading.Event(), "dashboard": threading.Event()}

    def on_event_connect(c: mqtt.Client, u: Any, flags: Any, reason: Any, props: Any) -> None:
        if flags.session_present:
            tally.sessions_resumed += 1  # the broker kept the subscription and the queue
        else:
            c.subscribe(EVENTS, qos=1)

    def on_dash_connect(c: mqtt.Client, u: Any, flags: Any, reason: Any, props: Any) -> None:
        c.subscribe(
            EVERYTHING,
            options=SubscribeOptions(qos=0, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND),
        )

    def on_subscribe(c: mqtt.Client, u: Any, mid: int, reasons: Any, props: Any) -> None:
        subscribed[str(u)].set()

    events, dashboard = _client("county-events", login), _client("county-dashboard", login)
    events.user_data_set("events")
    dashboard.user_data_set("dashboard")
    events.on_connect, dashboard.on_connect = on_event_connect, on_dash_connect
    events.on_subscribe = dashboard.on_subscribe = on_subscribe
    events.on_message, dashboard.on_message = tally.event, tally.dashboard
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    # clean_start false from the very first connect: Mosquitto 2.0 keeps a session across
    # its own restart only for such a client, whatever the session expiry says.
    events.connect(HOST, port, keepalive=30, clean_start=False, properties=props)
    dashboard.connect(HOST, port, keepalive=30, clean_start=True)
    events.loop_start()
    dashboard.loop_start()
    if all(e.wait(CONNECT_LIMIT_S) for e in subscribed.values()):
        pipe.send(("ready",))
    else:
        pipe.send(("failed", "the county clients did not subscribe within the limit"))
    while pipe.recv() != "final":
        with tally.lock:
            pipe.send((sum(len(set(s)) for s in tally.seqs.values()), tally.deliveries))
    with tally.lock:
        pipe.send(
            {
                "seqs": tally.seqs,
                "deliveries": tally.deliveries,
                "historical": tally.historical,
                "redelivered": tally.redelivered,
                "malformed": tally.malformed,
                "seen": dict(tally.seen),
                "resumed": tally.sessions_resumed,
            }
        )
    for c in (events, dashboard):
        c.disconnect()
        c.loop_stop()


# ----- processes, as /proc sees them ---------------------------------------------------


CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (every thread of it) in clock ticks; 0 once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = text[text.rindex(")") + 2 :].split()  # fields 3.. of proc(5); comm may hold spaces
    return int(fields[11]) + int(fields[12])


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a process in MiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def broker_pid(conf: Path) -> int:
    """The pid of the mosquitto running with this config file."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(conf).encode() in argv and any(a.endswith(b"mosquitto") for a in argv[:1]):
                return int(entry.name)
    raise BenchFailed(f"no mosquitto process runs with {conf}")


# ----- the broker ------------------------------------------------------------------------


def county_account(acl: str) -> str:
    """The first account docs/mqtt/acl lets read every terminal's events (an operator)."""
    user = None
    for line in acl.splitlines():
        words = line.split()
        if words[:1] == ["user"] and len(words) == 2:
            user = words[1]
        elif words == ["topic", "read", EVENTS] and user is not None:
            return user
    raise BenchFailed(f"docs/mqtt/acl lets no account read {EVENTS}")


def fleet_config(broker: Broker, persistence: bool, anonymous: bool) -> str:
    """docs/mqtt/mosquitto.conf with its TLS listeners replaced by one plain listener on
    the broker's loopback port, and the bench's files, persistence and log."""
    import pwd

    replaced = _LISTENER_KEYS | {
        "user",
        "allow_anonymous",
        "password_file",
        "acl_file",
        "persistence",
        "persistence_location",
        "log_dest",
    }
    lines = [f"user {pwd.getpwuid(os.getuid()).pw_name}"]  # as root: not the "mosquitto" user
    for line in (DOCS / "mosquitto.conf").read_text().splitlines():
        words = line.split()
        if words and not words[0].startswith("#") and words[0] in replaced:
            continue
        lines.append(line)
    lines += [
        f"allow_anonymous {str(anonymous).lower()}",
        f"persistence {str(persistence).lower()}",
        f"persistence_location {broker.data_dir}/",
        f"log_dest file {broker.log_path}",
    ]
    if broker.password_file is not None and broker.acl_file is not None:
        lines += [f"password_file {broker.password_file}", f"acl_file {broker.acl_file}"]
    lines.append(f"listener {broker.port} {broker.host}")
    return "\n".join(lines) + "\n"


# ----- the run ---------------------------------------------------------------------------


def receive(pipe: Pipe, limit_s: float, who: str) -> Any:
    """The next message from a child process; BenchFailed when none comes."""
    try:
        if pipe.poll(limit_s):
            return pipe.recv()
    except (EOFError, OSError):
        raise BenchFailed(f"{who} exited unexpectedly") from None
    raise BenchFailed(f"no answer from {who} within {limit_s:.0f} s")


@dataclass
class Measured:
    """Everything the run saw, for the report."""

    window_s: float = 0.0
    outage: tuple[float, float] | None = None  # (broker stopped, accepting again), monotonic
    go: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # name -> % of one core
    rss: dict[str, float] = field(default_factory=dict)  # name -> MiB
    drained: bool = True
    terminals: list[dict[str, Any]] = field(default_factory=list)
    county: dict[str, Any] = field(default_factory=dict)


class Fleet:
    """The broker, the county process and the workers of one run."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        kiosks = [f"bench-{i:04d}" for i in range(args.terminals)]
        acl = (DOCS / "acl").read_text()
        self.account: tuple[str, str] | None = None
        users: dict[str, str] | None = None
        if not args.anonymous:
            self.account = (county_account(acl), secrets.token_urlsafe(16))
            users = {k: secrets.token_urlsafe(16) for k in kiosks}
            users[self.account[0]] = self.account[1]
        try:
            self.broker = Broker(
                tmp,
                users=users,
                acl=None if args.anonymous else acl,
                anonymous=args.anonymous,
                persistence=args.outage > 0,
                config=lambda b: fleet_config(b, args.outage > 0, args.anonymous),
            )
        except BrokerError as exc:
            raise BenchFailed(f"the broker did not start: {exc}") from None
        try:
            self._processes(kiosks, users, tmp)
        except BaseException:
            self.broker.stop()
            raise

    def _processes(self, kiosks: list[str], users: dict[str, str] | None, tmp: Path) -> None:
        args = self.args
        ctx = multiprocessing.get_context("spawn")
        self.county, county_end = ctx.Pipe()
        self.county_proc = ctx.Process(
            target=consumer_main, name="county", args=(self.broker.port, self.account, county_end)
        )
        self.workers: list[tuple[Any, Pipe, int]] = []  # (process, pipe, terminals)
        shares = [kiosks[i :: args.processes] for i in range(args.processes)]
        for i, share in enumerate(s for s in shares if s):
            folder = tmp / f"worker-{i}"
            folder.mkdir()
            spec = WorkerSpec(
                self.broker.port,
                tuple((k, users[k] if users else None) for k in share),
                str(folder),
                args.event_interval,
            )
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=worker_main, name=f"worker-{i}", args=(spec, theirs))
            self.workers.append((proc, mine, len(share)))

    def run(self) -> Measured:
        args, m = self.args, Measured()
        self.county_proc.start()
        answer = receive(self.county, CONNECT_LIMIT_S + 30, "the county process")
        if answer[0] != "ready":
            raise BenchFailed(str(answer[1]))
        for proc, _, _ in self.workers:
            proc.start()
        for i, (_, pipe, count) in enumerate(self.workers):
            ready = receive(pipe, CONNECT_LIMIT_S + 60, f"worker {i}")
            if ready[1] != count:
                raise BenchFailed(f"worker {i}: {ready[1]} of {count} terminals connected")
        pids = {"broker": broker_pid(self.broker.conf_path), "county": self.county_proc.pid or 0}
        pids |= {f"worker {i}": p.pid or 0 for i, (p, _, _) in enumerate(self.workers)}
        start = {name: cpu_ticks(pid) for name, pid in pids.items()}
        broker_ticks = 0
        for _, pipe, _ in self.workers:
            pipe.send(("go", args.duration))
        m.go = time.monotonic()
        if args.outage > 0:
            time.sleep(max(0.0, m.go + args.duration / 2 - time.monotonic()))
            broker_ticks = cpu_ticks(pids["broker"]) - start["broker"]
            m.rss["broker"] = peak_rss_mib(pids["broker"])
            down = time.monotonic()
            self.broker.stop()
            time.sleep(max(0.0, down + args.outage - time.monotonic()))
            self.broker.start()
            m.outage = (down, time.monotonic())
            pids["broker"], start["broker"] = broker_pid(self.broker.conf_path), 0
        for i, (_, pipe, _) in enumerate(self.workers):
            _, drained, results = receive(pipe, args.duration + DRAIN_LIMIT_S + 60, f"worker {i}")
            m.drained &= drained
            m.terminals += results
        m.window_s = time.monotonic() - m.go
        for name, pid in pids.items():
            used = cpu_ticks(pid) - start[name] + (broker_ticks if name == "broker" else 0)
            m.cpu[name] = 100.0 * used / CLK_TCK / m.window_s
            m.rss[name] = max(m.rss.get(name, 0.0), peak_rss_mib(pid))
        m.county = self._collect(sum(len(t["put"]) for t in m.terminals))
        for i, (_, pipe, _) in enumerate(self.workers):
            pipe.send(("stop",))
            receive(pipe, 60, f"worker {i}")
        return m

    def _collect(self, expected: int) -> dict[str, Any]:
        """The county's tally, once it has every event or has heard nothing new for a while."""
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < QUIET_LIMIT_S:
            self.county.send("count")
            unique, deliveries = receive(self.county, 30, "the county process")
            if unique >= expected:
                break
            if deliveries != last:
                last, quiet_since = deliveries, time.monotonic()
            time.sleep(0.2)
        self.county.send("final")
        tally: dict[str, Any] = receive(self.county, 30, "the county process")
        return tally

    def close(self) -> None:
        """Ask every child to finish (after a failure it may still wait), then end it."""
        for pipe, message in [
            (self.county, "final"),
            *((p, ("stop",)) for _, p, _ in self.workers),
        ]:
            with contextlib.suppress(OSError):
                pipe.send(message)
        for proc in [self.county_proc, *(p for p, _, _ in self.workers)]:
            if proc.pid is not None:
                proc.join(10)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
        self.broker.stop()


# ----- the report ------------------------------------------------------------------------


@dataclass
class Verdict:
    """Per-terminal sequence checks summed over the fleet."""

    put: int = 0
    lost: int = 0
    duplicates: int = 0
    disorder: int = 0  # a first delivery below a seq already delivered
    unknown: int = 0  # a seq the terminal never put
    problems: list[str] = field(default_factory=list)


def judge(m: Measured) -> Verdict:
    v = Verdict()
    seqs: dict[str, list[int]] = m.county.get("seqs", {})
    for t in m.terminals:
        put = set(t["put"])
        v.put += len(put)
        seen: set[int] = set()
        top = 0
        for seq in seqs.get(t["kiosk"], []):
            if seq in seen:
                v.duplicates += 1
            elif seq < top:
                v.disorder += 1
            seen.add(seq)
            top = max(top, seq)
        missing = put - seen
        v.lost += len(missing)
        v.unknown += len(seen - put)
        if missing:
            v.problems.append(f"{t['kiosk']}: lost seq {sorted(missing)[:10]}")
        if t["refused"]:
            v.problems.append(f"{t['kiosk']}: the broker refused {t['refused']} messages")
    if v.unknown:
        v.problems.append(f"{v.unknown} delivered seqs were never put by their terminal")
    if not m.drained:
        v.problems.append(f"not every outbox drained within {DRAIN_LIMIT_S:.0f} s")
    if m.county.get("malformed"):
        v.problems.append(f"{m.county['malformed']} events were not JSON with kiosk_id and seq")
    return v


def outage_figures(m: Measured) -> list[str]:
    assert m.outage is not None
    down, up = m.outage
    back, drained, rows, missing = [], [], 0, 0
    for t in m.terminals:
        after = [b for b in t["backlogs"] if b[0] > down]
        if not after:
            missing += 1
            continue
        connected, _, waiting, done = after[0]
        back.append(connected - up)
        rows += waiting
        drained.append(None if done is None else done - up)
    lines = [f"broker down {up - down:.1f} s, {m.outage[0] - m.go:.1f} s after the start"]
    if missing:
        lines.append(f"{missing} terminals did not reconnect")
    if back:
        back.sort()
        lines.append(
            f"reconnected after the restart: median {back[len(back) // 2]:.1f} s, "
            f"last {back[-1]:.1f} s (jittered backoff, reconnect_min_s {BACKOFF.reconnect_min_s},"
            f" reconnect_max_s {BACKOFF.reconnect_max_s})"
        )
    done = [d for d in drained if d is not None]
    if done and len(done) == len(drained):
        lines.append(
            f"outboxes drained: {rows} rows waiting at reconnect, every one "
            f"acknowledged {max(done):.1f} s after the restart"
        )
    elif drained:
        lines.append(f"{len(drained) - len(done)} terminals did not drain their backlog")
    return lines


def report(args: argparse.Namespace, m: Measured, v: Verdict) -> None:
    c, w = m.county, m.window_s
    published = sum(t["link"]["published"] for t in m.terminals)
    seen: dict[str, int] = c.get("seen", {})
    dashboard = sum(seen.values())
    counts: Counter[str] = Counter()
    for t in m.terminals:
        counts.update(t["counts"])
    workers = sum(k.startswith("worker") for k in m.cpu)
    # fmt: off
    rows = [
        ("terminals", f"{len(m.terminals)} in {workers} worker processes"),
        ("run", f"{w:.1f} s (traffic {args.duration:g} s, then until every outbox was empty)"),
        ("events put", f"{v.put} ({v.put / w:.1f}/s); also {counts['state_changes']} retained "
                       f"state changes, {counts['metrics']} metrics (QoS 0, dropped while down)"),
        ("events delivered", f"{c.get('deliveries', 0)} deliveries of {v.put - v.lost} events "
                             f"({c.get('deliveries', 0) / w:.1f}/s); historical "
                             f"{c.get('historical', 0)}, DUP flag {c.get('redelivered', 0)}"),
        ("lost", str(v.lost)),
        ("duplicates", f"{v.duplicates} (before de-duplication by (kiosk_id, seq))"),
        ("order violations", str(v.disorder)),
        ("all messages", f"{published} published by the terminals ({published / w:.1f}/s); "
                         f"{dashboard} delivered to the dashboard ({dashboard / w:.1f}/s): "
                         + ", ".join(f"{k} {n}" for k, n in sorted(seen.items()))),
    ]
    # fmt: on
    if m.outage is not None:
        rows += [("outage", line) for line in outage_figures(m)]
        rows.append(("county session", f"resumed after the restart: {bool(c.get('resumed'))}"))
    rows.append(("CPU % of one core", ", ".join(f"{k} {p:.1f}" for k, p in m.cpu.items())))
    rows.append(("peak RSS MiB", ", ".join(f"{k} {p:.1f}" for k, p in m.rss.items())))
    for label, text in rows:
        print(f"{label:<18} {text}")
    for problem in v.problems[:20]:
        print(f"PROBLEM: {problem}")


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    version = subprocess.run([mosquitto_binary(), "-h"], capture_output=True, text=True)
    found = re.search(r"mosquitto version (\S+)", version.stdout + version.stderr)
    paho = importlib.metadata.version("paho-mqtt")
    return (
        f"{os.cpu_count()} cores ({model}), load {os.getloadavg()[0]:.2f}, Python "
        f"{platform.python_version()}, paho-mqtt {paho}, "
        f"mosquitto {found.group(1) if found else '?'}"
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    # fmt: off
    p.add_argument("--terminals", type=int, default=200)
    p.add_argument("--processes", type=int, default=4, help="worker processes")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of traffic")
    p.add_argument("--event-interval", type=float, default=2.0, help="seconds between events")
    p.add_argument("--outage", type=float, default=10.0,
                   help="seconds the broker is down midway (0: none, persistence off)")
    p.add_argument("--anonymous", action="store_true",
                   help="no password file and ACL (default: both, as docs/mqtt has them)")
    p.add_argument("--quick", action="store_true", help="20 terminals, 15 s, 5 s outage")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (broker log)")
    # fmt: on
    args = p.parse_args(argv)
    if args.quick:
        args.terminals, args.duration, args.outage = 20, 15.0, min(args.outage, 5.0)
    for name in ("terminals", "processes"):
        if getattr(args, name) < 1:
            p.error(f"--{name} {getattr(args, name)}: use 1 or more")
    if args.duration <= 0 or args.event_interval <= 0 or args.outage < 0:
        p.error("--duration and --event-interval must be above 0, --outage 0 or more")
    if args.outage >= args.duration / 2:
        p.error(
            f"--outage {args.outage:g}: the broker stops at half of --duration "
            f"({args.duration / 2:g} s) and must be back before the traffic ends"
        )
    args.processes = min(args.processes, args.terminals)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    print(f"fleet bench: {' '.join(sys.argv[1:]) or '(defaults)'}")
    print(f"machine            {machine()}")
    tmp = Path(tempfile.mkdtemp(prefix="amtomat-fleet-"))
    fleet: Fleet | None = None
    try:
        check_payloads()
        fleet = Fleet(args, tmp)
        m = fleet.run()
        verdict = judge(m)
        report(args, m, verdict)
    except BenchFailed as exc:
        print(f"FAILED: {exc}")
        return 1
    finally:
        if fleet is not None:
            fleet.close()
        if args.keep:
            print(f"scratch folder kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if verdict.lost or verdict.problems else 0


if __name__ == "__main__":
    sys.exit(main())
