"""The county link in the real daemon process: `amtomat run` against `amtomat sim` and a
real Mosquitto with the fleet ACL. Events written while the broker is down survive a
SIGKILL of the daemon and drain after the restart; a killed daemon's last will carries
its own session; a clean stop says why.

Wall-clock waits on conditions with generous limits; no durations are asserted.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

from mosquitto import Broker, Client
from test_daemon_process import (  # noqa: F401  (sim is a fixture)
    DaemonProcess,
    _free_port,
    _ready,
    _terminal_file,
    _wait,
    sim,
)

from controller.keystore import read_key
from county.topics import Topics
from host_bridge.client import KioskClient
from tools.sim.control import ControlClient

ACL = Path(__file__).resolve().parent.parent / "docs" / "mqtt" / "acl"
T = Topics("demo-01")
PASSWORDS = {"demo-01": "terminal-pw-2", "it-mueller": "operator-pw-2"}


def _with_mqtt(path: Path, broker: Broker, tmp_path: Path) -> None:
    pw = tmp_path / "mqtt.password"
    pw.write_text(PASSWORDS["demo-01"])
    pw.chmod(0o600)
    text = path.read_text()
    section = (
        f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\ntls = false\n'
        f'password_file = "{pw}"\nreconnect_min_s = 1\nreconnect_max_s = 2\nkeepalive_s = 5\n'
    )
    assert "[mqtt]\nenabled = false" in text
    path.write_text(text.replace("[mqtt]\nenabled = false", section))


def _consumer(broker: Broker) -> Client:
    c = Client(
        broker,
        "county-archive",
        username="it-mueller",
        password=PASSWORDS["it-mueller"],
        clean_start=False,
        session_expiry_s=3600,
    )
    c.connect()
    c.subscribe(f"{T.base}/#", qos=1)
    return c


def _statuses(clients: list[Client]) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for c in clients for m in c.received(T.status) if m.payload]


def _outbox_depth(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM county_outbox").fetchone()[0])


async def _logins(url: str, key: bytes, n: int) -> None:
    client = await KioskClient.connect(url, key, peer="kiosk-county")
    try:
        await _ready(client)
        for _ in range(n):
            assert (await client.staff_login("mueller", "246810")).ok
            assert (await client.call("staff_logout")).ok
    finally:
        await client.close()


def test_outbox_survives_kill_and_drains(tmp_path: Path, sim: ControlClient) -> None:  # noqa: F811
    broker = Broker(tmp_path, users=PASSWORDS, acl=ACL.read_text())
    port = _free_port()
    config = _terminal_file(tmp_path, sim, port)
    _with_mqtt(config, broker, tmp_path)
    db = tmp_path / "data" / "amtomat.db"
    clients = [_consumer(broker)]
    daemon = DaemonProcess(config, port)
    try:
        _wait(lambda: any(s["state"] != "offline" for s in _statuses(clients)), 60, "online")
        first_session = _statuses(clients)[-1]["session"]
        key = read_key(tmp_path / "data" / "keys" / "_kiosk.key")
        assert key is not None
        broker.stop()
        asyncio.run(_logins(f"tcp://127.0.0.1:{port}", key, 10))
        assert _outbox_depth(db) >= 20  # staff_login and staff_logout events wait
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(20)
        broker.start()
        clients.append(_consumer(broker))  # the archive's session comes back
        daemon = DaemonProcess(config, port)
        _wait(lambda: _outbox_depth(db) == 0, 90, "the outbox to drain")
        _wait(lambda: len([1 for c in clients for _ in c.received(T.event)]) >= 20, 30, "events")
        events = [json.loads(m.payload) for c in clients for m in c.received(T.event)]
        by_seq = {e["seq"]: e for e in events}
        logins = [e for e in by_seq.values() if e["type"] == "staff_login"]
        assert len(logins) == 10 and all(e["historical"] for e in logins)
        seqs = sorted(by_seq)
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a gap in the sequence"
        assert len({e["boot"] for e in logins}) == 1  # written by the first daemon
        # the second daemon's session is newer; its will carries that same session
        _wait(lambda: _statuses(clients)[-1]["session"] > first_session, 30, "a new session")
        live = _statuses(clients)[-1]
        assert live["state"] != "offline"
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(20)
        _wait(lambda: _statuses(clients)[-1]["state"] == "offline", 30, "the last will")
        will = _statuses(clients)[-1]
        assert will["session"] == live["session"] and will["reason"] == "connection lost"
        # a clean stop says why
        daemon = DaemonProcess(config, port)
        _wait(lambda: _statuses(clients)[-1]["state"] != "offline", 60, "online again")
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(30) == 0
        _wait(lambda: _statuses(clients)[-1]["state"] == "offline", 30, "the offline status")
        assert _statuses(clients)[-1]["reason"] == "daemon stopping"
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(20)
        for c in clients:
            c.close()
        broker.stop()
