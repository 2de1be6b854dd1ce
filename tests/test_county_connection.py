"""county.connection, county.sessions and county.credentials against a real Mosquitto
(tests/mosquitto.py) on the wall clock: every wait is for a condition, with generous
limits; no duration is asserted."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import paho.mqtt.client as paho_client
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mosquitto import LIMIT_S, Broker, Client, free_port, make_ca, make_cert, retained

from controller.boardport import backoff_delay
from controller.mqttconfig import MqttSettings
from controller.store import Store
from county.connection import Connection, PublishError
from county.credentials import check_tls_files, read_password
from county.errors import LinkSetupError
from county.inbound import InboundMessage
from county.sessions import SessionCounter, SessionCounterError
from county.topics import Topics

REPO = Path(__file__).resolve().parent.parent
T = Topics("term-a")


async def until(cond: Callable[[], bool], what: str, limit_s: float = LIMIT_S) -> None:
    """Wait until ``cond()`` holds, polling on the event loop."""
    try:
        async with asyncio.timeout(limit_s):
            while not cond():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not within {limit_s} s: {what}") from None


def will_payload(session: int) -> bytes:
    return json.dumps({"state": "offline", "session": session, "reason": "connection lost"},
                      sort_keys=True).encode()  # fmt: skip


@dataclass
class Probe:
    """Records every callback of a Connection (all on the loop's thread)."""

    connected: list[int] = field(default_factory=list)
    disconnected: list[str] = field(default_factory=list)
    acks: list[tuple[int, int]] = field(default_factory=list)
    messages: list[InboundMessage] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)

    def _note(self) -> None:
        self.threads.add(threading.get_ident())

    def on_connected(self, session: int) -> None:
        self._note()
        self.connected.append(session)

    def on_disconnected(self, reason: str) -> None:
        self._note()
        self.disconnected.append(reason)

    def on_ack(self, mid: int, code: int) -> None:
        self._note()
        self.acks.append((mid, code))

    def on_message(self, message: InboundMessage) -> None:
        self._note()
        self.messages.append(message)


def mqtt_settings(broker: Broker | None, **kw: Any) -> MqttSettings:
    base = MqttSettings(
        enabled=True,
        host=broker.host if broker else "127.0.0.1",
        port=broker.port if broker else free_port(),
        tls=broker.tls if broker else False,
        ca_file=broker.ca.cert if broker and broker.ca else None,
        client_id="term-a",
        username="term-a",
        keepalive_s=10,
        reconnect_min_s=1,
        reconnect_max_s=4,
    )
    return replace(base, **kw)


def connection(
    s: MqttSettings,
    probe: Probe,
    *,
    password: str | None = None,
    next_session: Callable[[], int] | None = None,
    subscriptions: tuple[tuple[str, int], ...] = (),
    rng: random.Random | None = None,
) -> Connection:
    counter = iter(range(1, 10_000))
    return Connection(
        s,
        loop=asyncio.get_running_loop(),
        password=password,
        next_session=next_session or (lambda: next(counter)),
        will=lambda session: (T.status, will_payload(session)),
        on_connected=probe.on_connected,
        on_disconnected=probe.on_disconnected,
        on_ack=probe.on_ack,
        on_message=probe.on_message,
        subscriptions=subscriptions,
        rng=rng,
    )


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 120))


# ----- connect, publish, acknowledge ------------------------------------------------------


def test_publish_is_acknowledged_on_the_loop_thread(tmp_path: Path) -> None:
    with Broker(tmp_path, anonymous=True) as broker, Client(broker).connected() as watcher:
        watcher.subscribe(f"{T.base}/#")

        async def main() -> None:
            probe = Probe()
            conn = connection(mqtt_settings(broker), probe)
            assert conn.publish(T.event, b"early") is None  # not connected: nothing taken
            conn.start()
            await until(lambda: conn.connected, "connected")
            assert probe.connected == [1]
            mid = conn.publish(T.event, b'{"seq": 1}', correlation=b"corr-1")
            assert mid is not None
            await until(lambda: any(m == mid for m, _ in probe.acks), "PUBACK")
            assert (mid, 0) in probe.acks
            got = watcher.wait_for(lambda m: m.topic == T.event)
            assert got.payload == b'{"seq": 1}' and got.correlation == b"corr-1"
            assert got.qos == 1 and not got.retain
            with pytest.raises(PublishError, match=r"amtomat/v1/\+/event"):
                conn.publish("amtomat/v1/+/event", b"x")
            with pytest.raises(PublishError, match="QoS 3"):
                conn.publish(T.event, b"x", qos=3)
            with pytest.raises(PublishError, match="''"):
                conn.publish("", b"x")
            m0 = conn.publish(T.metrics, b"m", qos=0)  # QoS 0: "acked" once written
            await until(lambda: (m0, 0) in probe.acks, "QoS 0 written")
            assert watcher.wait_for(lambda m: m.topic == T.metrics).qos == 0
            counts = conn.counters()
            assert counts["connects"] == 1 and counts["published"] == 2
            assert counts["acked"] == 2 and counts["connect_failures"] == 0
            await conn.stop()
            assert not conn.connected and probe.disconnected == ["stopped"]
            assert conn.publish(T.event, b"late") is None
            assert probe.threads == {threading.get_ident()}  # every callback on the loop

        run(main)
        assert [m.payload for m in watcher.received(T.event)] == [b'{"seq": 1}']


# ----- the session counter ---------------------------------------------------------------


def test_session_counter_counts_and_persists(tmp_path: Path) -> None:
    db = tmp_path / "amtomat.db"
    Store(db).close()  # the daemon's database, meta table made by the Store
    counter = SessionCounter(db)
    assert counter.current() == 0
    assert [counter.next() for _ in range(3)] == [1, 2, 3]
    # on disk before next() returned: a separate connection sees it
    with sqlite3.connect(db) as other:
        row = other.execute("SELECT value FROM meta WHERE key='mqtt_session'").fetchone()
    assert row == ("3",)
    counter.close()
    again = SessionCounter(db)
    assert again.current() == 3 and again.next() == 4
    again.close()


def test_session_counter_is_atomic_across_connections(tmp_path: Path) -> None:
    db = tmp_path / "amtomat.db"
    store = Store(db)
    counters = [SessionCounter(db) for _ in range(3)]
    seen: list[int] = []
    lock = threading.Lock()

    def work(c: SessionCounter) -> None:
        for _ in range(50):
            n = c.next()
            with lock:
                seen.append(n)

    threads = [threading.Thread(target=work, args=(c,)) for c in counters for _ in range(2)]
    for t in threads:
        t.start()
    with store.tx():  # the daemon writes meanwhile, through its own connection
        store.set_meta("other", "x")
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 301))
    assert counters[0].current() == 300 and store.meta("mqtt_session") == "300"
    for c in counters:
        c.close()
    store.close()


def test_session_counter_names_a_damaged_value(tmp_path: Path) -> None:
    db = tmp_path / "amtomat.db"
    with sqlite3.connect(db) as raw:
        raw.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        raw.execute("INSERT INTO meta VALUES ('mqtt_session', 'banana')")
    counter = SessionCounter(db)
    with pytest.raises(SessionCounterError, match=r"'banana'") as err:
        counter.next()
    assert err.value.value == "banana" and str(db) in str(err.value)
    counter.close()
    with pytest.raises(SessionCounterError, match="cannot open"):
        SessionCounter(tmp_path / "no-such-dir" / "x.db")


def test_session_grows_per_connect_and_survives_a_new_counter(tmp_path: Path) -> None:
    db = tmp_path / "amtomat.db"
    Store(db).close()
    with Broker(tmp_path, anonymous=True) as broker:

        async def once() -> int:
            counter = SessionCounter(db)
            probe = Probe()
            conn = connection(mqtt_settings(broker), probe, next_session=counter.next)
            conn.start()
            await until(lambda: bool(probe.connected), "connected")
            await conn.stop()
            counter.close()
            return probe.connected[0]

        async def main() -> None:
            assert [await once(), await once(), await once()] == [1, 2, 3]

        run(main)
    check = SessionCounter(db)
    assert check.current() == 3
    check.close()


# ----- the last will and a clean stop -----------------------------------------------------

DYING_TERMINAL = """
import asyncio, json, sys
from pathlib import Path
from controller.mqttconfig import MqttSettings
from county.connection import Connection
from county.sessions import SessionCounter

async def main() -> None:
    port, db = int(sys.argv[1]), Path(sys.argv[2])
    counter = SessionCounter(db)
    settings = MqttSettings(enabled=True, host="127.0.0.1", port=port, tls=False,
                            client_id="term-a", username="term-a")
    will = lambda s: ("amtomat/v1/term-a/status",
                      json.dumps({"state": "offline", "session": s}).encode())
    conn = Connection(settings, loop=asyncio.get_running_loop(), password=None,
                      next_session=counter.next, will=will,
                      on_connected=lambda s: print("connected", s, flush=True),
                      on_disconnected=lambda r: None, on_ack=lambda m, c: None,
                      on_message=lambda m: None)
    conn.start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_will_carries_the_sessions_number_when_the_terminal_dies(tmp_path: Path) -> None:
    db = tmp_path / "amtomat.db"
    Store(db).close()
    earlier = SessionCounter(db)
    for _ in range(4):
        earlier.next()  # sessions 1..4 were earlier connections
    earlier.close()
    with Broker(tmp_path, anonymous=True) as broker, Client(broker).connected() as watcher:
        watcher.subscribe(T.status)
        proc = subprocess.Popen(
            [sys.executable, "-c", DYING_TERMINAL, str(broker.port), str(db)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], LIMIT_S)
            assert ready, "the terminal process did not connect"
            line = proc.stdout.readline()
            assert line.split() == ["connected", "5"], line
            assert watcher.received(T.status) == []  # alive: no will yet
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(LIMIT_S)
        got = watcher.wait_for(lambda m: m.topic == T.status)
        assert json.loads(got.payload) == {"state": "offline", "session": 5}
        kept = retained(broker, T.status)
        assert kept is not None and json.loads(kept.payload)["session"] == 5


def test_clean_stop_leaves_the_final_status_and_no_will(tmp_path: Path) -> None:
    final = json.dumps({"state": "offline", "session": 1, "reason": "daemon stopping"}).encode()
    with Broker(tmp_path, anonymous=True) as broker, Client(broker).connected() as watcher:
        watcher.subscribe(T.status)

        async def main() -> None:
            probe = Probe()
            conn = connection(mqtt_settings(broker), probe)
            conn.start()
            await until(lambda: conn.connected, "connected")
            assert conn.publish(T.status, b'{"state": "online"}', retain=True) is not None
            await conn.stop(final=(T.status, final))
            assert not conn.connected and probe.disconnected == ["stopped"]
            assert len(probe.acks) == 2  # online and the final status, both acknowledged

        run(main)
        watcher.wait_for(lambda m: m.payload == final)
        watcher.subscribe(T.status + "/control")
        watcher.publish(T.status + "/control", b"c")
        watcher.wait_for(lambda m: m.topic.endswith("/control"))
        payloads = [m.payload for m in watcher.received(T.status)]
        assert payloads == [b'{"state": "online"}', final]  # no will
        kept = retained(broker, T.status)
        assert kept is not None and kept.payload == final


# ----- reconnects and backoff ------------------------------------------------------------


def test_reconnects_and_resubscribes_after_a_broker_restart(tmp_path: Path) -> None:
    with Broker(tmp_path, anonymous=True) as broker:

        async def command_arrives(probe: Probe, body: bytes) -> None:
            with Client(broker, "it-mueller").connected() as op:
                for _ in range(int(LIMIT_S / 0.2)):  # until the subscription is in place
                    op.publish(T.command("ping"), body, correlation=b"c-" + body,
                               response_topic=T.reply_prefix + "op")  # fmt: skip
                    try:
                        await until(lambda: any(m.payload == body for m in probe.messages),
                                    "command", 0.2)  # fmt: skip
                        return
                    except AssertionError:
                        continue
            raise AssertionError(f"command {body!r} never arrived")

        async def main() -> None:
            probe = Probe()
            conn = connection(mqtt_settings(broker), probe, subscriptions=((T.commands, 1),))
            conn.start()
            await until(lambda: conn.connected, "connected")
            await command_arrives(probe, b"one")
            got = next(m for m in probe.messages if m.payload == b"one")
            assert got == InboundMessage(topic=T.command("ping"), payload=b"one", retain=False,
                                         qos=1, response_topic=T.reply_prefix + "op",
                                         correlation=b"c-one")  # fmt: skip
            broker.stop()
            await until(lambda: not conn.connected, "connection lost")
            assert probe.disconnected and probe.disconnected[0].startswith("connection lost")
            await asyncio.sleep(0.5)  # let it fail to reconnect at least once
            broker.start()
            await until(lambda: len(probe.connected) == 2, "reconnected", 60)
            assert probe.connected[0] == 1 and probe.connected[1] > 1
            await command_arrives(probe, b"two")  # subscribed again: the broker kept nothing
            counts = conn.counters()
            assert counts["connects"] == 2 and counts["disconnects"] == 1
            assert counts["received"] >= 2
            s = conn.settings
            assert all(s.reconnect_min_s <= d <= s.reconnect_max_s for d in conn.delays)
            await conn.stop()

        run(main)


class PahoClock:
    """A fake clock for paho's reconnect waits (its only sleep): sleeping advances it at
    once, so a wait's length is read off the clock, not measured."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        time.sleep(0.001)  # let other threads run


def test_reconnect_waits_are_jittered_backoff_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = PahoClock()
    monkeypatch.setattr(paho_client, "time_func", clock.monotonic)
    monkeypatch.setattr(paho_client, "time", SimpleNamespace(sleep=clock.sleep))
    s = mqtt_settings(None, reconnect_min_s=1, reconnect_max_s=8)  # nothing listens there

    async def waits(seed: int) -> tuple[list[float], list[float]]:
        """(the waits paho made between attempts, the delays the connection chose)"""
        starts: list[float] = []

        def next_session() -> int:
            starts.append(clock.now)
            return len(starts)

        probe = Probe()
        conn = connection(s, probe, next_session=next_session, rng=random.Random(seed))
        conn.start()
        await until(lambda: len(starts) >= 6, "six attempts")
        await conn.stop()
        assert probe.connected == [] and not conn.connected
        assert conn.counters()["connect_failures"] >= 5 and conn.counters()["connects"] == 0
        return [b - a for a, b in itertools.pairwise(starts)][:5], conn.delays[:5]

    async def main() -> None:
        seen = []
        for seed in range(3):  # one at a time: they share the fake clock
            gaps, delays = await waits(seed)
            rng = random.Random(seed)
            assert delays == [backoff_delay(i, 1, 8, rng) for i in range(5)]
            # paho waited exactly the chosen delay, the first one (paho's first-connect
            # path waits twice) included
            assert gaps == pytest.approx(delays, abs=1e-9)
            assert all(1 <= d <= 8 for d in delays)
            assert delays == sorted(delays) and delays[4] > delays[0]
            seen.append(tuple(delays))
        assert len(set(seen)) == 3  # three seeds, three different sequences

    run(main)


def test_a_failing_session_counter_delays_the_connect_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    calls: list[int] = []

    def next_session() -> int:
        calls.append(len(calls))
        if len(calls) == 1:
            raise SessionCounterError("cannot count the MQTT session in /x.db: disk I/O error")
        return 41 + len(calls)

    with Broker(tmp_path, anonymous=True) as broker:

        async def main() -> None:
            probe = Probe()
            conn = connection(mqtt_settings(broker), probe, next_session=next_session)
            conn.start()
            await until(lambda: conn.connected, "connected after the counter recovered")
            assert probe.connected == [43]  # the failed attempt had no session
            assert conn.counters()["connect_failures"] == 1 and len(conn.delays) == 1
            await conn.stop()

        run(main)
    [warning] = [r.getMessage() for r in caplog.records if r.name == "county.connection"]
    assert "cannot prepare the connection (SessionCounterError" in warning
    assert "disk I/O error" in warning


def test_wrong_password_never_connects_keeps_backing_off_and_logs_no_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    right, wrong = "right-pw-Kq81", "wrong-pw-Zx93"
    with Broker(tmp_path, users={"term-a": right}) as broker:

        async def main() -> None:
            probe = Probe()
            conn = connection(mqtt_settings(broker), probe, password=wrong)
            conn.start()
            await until(lambda: conn.counters()["connect_failures"] >= 3, "three refusals")
            await conn.stop()
            assert probe.connected == [] and conn.counters()["connects"] == 0
            assert len(conn.delays) >= 3 and conn.delays == sorted(conn.delays)

        run(main)
    refusals = [r for r in caplog.records if "refused the connection" in r.getMessage()]
    assert len(refusals) == 1  # logged once per change of reason, not per attempt
    assert "Not authorized" in refusals[0].getMessage()
    assert wrong not in caplog.text and right not in caplog.text
    assert wrong not in broker.log_text()


# ----- TLS --------------------------------------------------------------------------------


def test_tls_with_the_county_ca(tmp_path: Path) -> None:
    with Broker(tmp_path, tls=True, anonymous=True) as broker:

        async def main() -> None:
            probe = Probe()
            conn = connection(mqtt_settings(broker), probe)
            conn.start()
            await until(lambda: conn.connected, "connected over TLS")
            mid = conn.publish(T.event, b"over tls")
            await until(lambda: any(m == mid for m, _ in probe.acks), "PUBACK")
            await conn.stop()

        run(main)


def test_tls_refuses_a_broker_of_another_ca_or_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    other = make_ca(tmp_path / "other", "Some Other CA")
    with (
        Broker(tmp_path, tls=True, anonymous=True) as broker,
        Broker(
            tmp_path, tls=True, anonymous=True, server_hosts=("mqtt.county.example",)
        ) as misnamed,
    ):

        async def refused(s: MqttSettings) -> None:
            probe = Probe()
            conn = connection(s, probe)
            conn.start()
            await until(lambda: conn.counters()["connect_failures"] >= 2, "two failures")
            await conn.stop()
            assert probe.connected == [] and conn.counters()["connects"] == 0

        async def main() -> None:
            await refused(mqtt_settings(broker, ca_file=other.cert))
            await refused(mqtt_settings(misnamed))  # right CA, but not 127.0.0.1's certificate

        run(main)
    logged = [r.getMessage() for r in caplog.records if r.name == "county.connection"]
    assert len(logged) == 2  # once per broker, not once per attempt
    wrong_ca, wrong_name = logged
    assert f":{broker.port}: TLS: the broker's certificate was not accepted" in wrong_ca
    assert f":{misnamed.port}: TLS: the broker's certificate was not accepted" in wrong_name
    assert "mismatch" in wrong_name and "mismatch" not in wrong_ca


def test_client_certificate_login_uses_the_certificates_name(tmp_path: Path) -> None:
    acl = "pattern readwrite amtomat/v1/%u/#\nuser it-mueller\ntopic read amtomat/v1/#\n"
    with Broker(tmp_path, tls=True, client_certs=True, acl=acl) as broker:
        assert broker.ca is not None
        term = make_cert(broker.ca, "term-a")
        operator = make_cert(broker.ca, "it-mueller")
        with Client(broker, "watch", cert=operator).connected() as watcher:
            watcher.subscribe("amtomat/v1/#")
            # The MQTT user name is ignored: the certificate's common name is the account.
            s = mqtt_settings(broker, cert_file=term.cert, key_file=term.key, username="x")
            check_tls_files(s)

            async def main() -> None:
                probe = Probe()
                conn = connection(s, probe)
                conn.start()
                await until(lambda: conn.connected, "connected with a certificate")
                own = conn.publish(T.status, b"mine")
                foreign = conn.publish(Topics("term-b").status, b"not mine")
                await until(lambda: len(probe.acks) == 2, "two PUBACKs")
                assert dict(probe.acks) == {own: 0, foreign: 135}  # 135: not authorised
                await conn.stop()

            run(main)
            watcher.wait_for(lambda m: m.payload == b"mine")
            assert [m.payload for m in watcher.received()] == [b"mine"]


def test_unusable_tls_files_are_named_at_construction(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "pki")
    one, two = make_cert(ca, "one"), make_cert(ca, "two")
    s = mqtt_settings(None, tls=True, ca_file=ca.cert, cert_file=one.cert, key_file=two.key)

    async def main() -> None:
        with pytest.raises(LinkSetupError, match="key_file belongs to cert_file") as err:
            connection(s, Probe())
        assert str(two.key) in str(err.value)

    run(main)


# ----- credentials -----------------------------------------------------------------------


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_read_password(tmp_path: Path) -> None:
    assert read_password(write(tmp_path / "pw", "s3cret-pw\n")) == "s3cret-pw"
    assert read_password(write(tmp_path / "pw2", "no-newline")) == "no-newline"
    assert read_password(write(tmp_path / "pw3", "crlf\r\n")) == "crlf"


@pytest.mark.parametrize(
    ("text", "mode", "problem"),
    [
        ("open-pw-1\n", 0o644, "chmod 600"),
        ("group-pw-2\n", 0o640, "chmod 600"),
        ("", 0o600, "is empty"),
        ("\n", 0o600, "is empty"),
        ("two-1\ntwo-2\n", 0o600, "more than one line"),
        ("x" * 257, 0o600, "longer than 256"),
    ],
)
def test_read_password_refuses(tmp_path: Path, text: str, mode: int, problem: str) -> None:
    path = write(tmp_path / "pw", text, mode)
    with pytest.raises(LinkSetupError, match=problem) as err:
        read_password(path)
    assert str(path) in str(err.value) and err.value.value == str(path)
    for secret in text.split():
        assert secret not in str(err.value)


def test_read_password_missing_or_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(LinkSetupError, match="does not exist") as err:
        read_password(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value)
    (tmp_path / "dir").mkdir(mode=0o700)
    with pytest.raises(LinkSetupError, match="is not a file"):
        read_password(tmp_path / "dir")
    bad = tmp_path / "latin1"
    bad.write_bytes(b"caf\xe9\n")
    os.chmod(bad, 0o600)
    with pytest.raises(LinkSetupError, match="not UTF-8") as err:
        read_password(bad)
    assert "caf" not in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_read_password_unreadable(tmp_path: Path) -> None:
    path = write(tmp_path / "pw", "hidden-pw\n", 0o000)
    with pytest.raises(LinkSetupError, match="cannot read it") as err:
        read_password(path)
    assert str(path) in str(err.value) and "hidden-pw" not in str(err.value)


@settings(max_examples=60, deadline=None)
@given(
    st.text(
        st.characters(codec="utf-8", exclude_characters="\r\n"),
        min_size=1,
        max_size=256,
    ),
    st.sampled_from(["", "\n", "\r\n"]),
)
def test_read_password_round_trips_any_one_line(password: str, ending: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pw"
        path.write_bytes((password + ending).encode())
        os.chmod(path, 0o600)
        assert read_password(path) == password
        os.chmod(path, 0o604)
        with pytest.raises(LinkSetupError) as err:
            read_password(path)
        path.write_bytes(b"other\n")  # the message does not depend on the password
        with pytest.raises(LinkSetupError) as same:
            read_password(path)
        assert str(err.value) == str(same.value)


def test_check_tls_files(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "pki")
    cert = make_cert(ca, "term-a")
    good = mqtt_settings(None, tls=True, ca_file=ca.cert, cert_file=cert.cert,
                         key_file=cert.key)  # fmt: skip
    check_tls_files(good)
    check_tls_files(replace(good, tls=False, ca_file=tmp_path / "absent"))  # not used
    with pytest.raises(LinkSetupError, match=r"mqtt\.ca_file .*does not exist") as err:
        check_tls_files(replace(good, ca_file=tmp_path / "absent.crt"))
    assert err.value.value == str(tmp_path / "absent.crt")
    with pytest.raises(LinkSetupError, match=r"mqtt\.cert_file .*does not exist"):
        check_tls_files(replace(good, cert_file=tmp_path / "absent.crt"))
    with pytest.raises(LinkSetupError, match=r"mqtt\.key_file .*does not exist"):
        check_tls_files(replace(good, key_file=tmp_path / "absent.key"))
    os.chmod(cert.key, 0o644)
    with pytest.raises(LinkSetupError, match=rf"chmod 600 {cert.key}"):
        check_tls_files(good)
    os.chmod(cert.key, 0o600)
    os.chmod(cert.cert, 0o644)  # a certificate is public: fine
    check_tls_files(good)
