"""The fleet's broker security as shipped: a real Mosquitto with docs/mqtt/acl (read from
the file, not copied) and, last, with docs/mqtt/mosquitto.conf itself (paths and ports
replaced). "Not delivered" is shown with a control message sent after the forbidden one:
once the control arrived, the forbidden one would have arrived before it."""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from mosquitto import Broker, Client, free_port, make_cert

from county.topics import Topics

DOCS = Path(__file__).resolve().parent.parent / "docs" / "mqtt"
USERS = {
    "term-a": "pw-term-a-7d1c",
    "term-b": "pw-term-b-93aa",
    "it-mueller": "pw-mueller-55e0",
    "sms-gateway": "pw-gateway-1f2b",
}
A, B = Topics("term-a"), Topics("term-b")


def login(
    broker: Broker,
    user: str,
    client_id: str | None = None,
    *,
    persistent: bool = False,
    tls: bool | None = None,
) -> Client:
    """A client of ``user`` with the right password (a persistent session: clean_start
    false and an hour's session expiry)."""
    expiry = 3600 if persistent else 0
    return Client(broker, client_id or user, username=user, password=USERS[user], tls=tls,
                  clean_start=not persistent, session_expiry_s=expiry)  # fmt: skip


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path, users=USERS, acl=(DOCS / "acl").read_text()) as b:
        yield b


def test_anonymous_and_wrong_password_are_refused(broker: Broker) -> None:
    assert Client(broker, "anon").connect() == "Not authorized"
    assert login(broker, "term-a").connect() == "Success"
    wrong = Client(broker, "term-a-2", username="term-a", password="not-the-password")
    assert wrong.connect() == "Not authorized"
    unknown = Client(broker, "intruder", username="intruder", password="whatever")
    assert unknown.connect() == "Not authorized"


def test_terminal_cannot_command_another_terminal_but_operator_can(broker: Broker) -> None:
    with (
        login(broker, "term-b").connected() as b,
        login(broker, "term-a").connected() as a,
        login(broker, "it-mueller").connected() as op,
    ):
        b.subscribe(B.command("#"))
        assert a.publish(B.command("ping"), b"forged").getName() == "Not authorized"
        ack = op.publish(B.command("ping"), b"real", correlation=b"c-1",
                         response_topic=B.reply_prefix + "x")  # fmt: skip
        assert not ack.is_failure
        got = b.wait_for(lambda m: m.payload == b"real")
        assert got.correlation == b"c-1" and got.response_topic == B.reply_prefix + "x"
        assert [m.payload for m in b.received()] == [b"real"]


def test_terminal_cannot_write_its_own_commands_but_reads_them(broker: Broker) -> None:
    with (
        login(broker, "term-a").connected() as a,
        login(broker, "it-mueller").connected() as op,
    ):
        a.subscribe(A.command("#"))
        assert a.publish(A.command("ping"), b"self-made").getName() == "Not authorized"
        op.publish(A.command("ping"), b"from-operator")
        a.wait_for(lambda m: m.payload == b"from-operator")
        assert [m.payload for m in a.received()] == [b"from-operator"]


def test_terminal_cannot_read_another_terminals_commands(broker: Broker) -> None:
    with (
        login(broker, "term-a").connected() as a,
        login(broker, "term-b").connected() as b,
        login(broker, "it-mueller").connected() as op,
    ):
        a.subscribe(B.command("#"))  # granted by Mosquitto; the ACL filters each message
        a.subscribe("amtomat/v1/#")
        b.subscribe(B.command("#"))
        op.publish(B.command("ping"), b"for-b")
        op.publish(A.command("ping"), b"control-for-a")
        b.wait_for(lambda m: m.payload == b"for-b")
        a.wait_for(lambda m: m.payload == b"control-for-a")
        assert [m.payload for m in a.received()] == [b"control-for-a"]


def test_pickup_codes_reach_the_gateway_and_no_operator(broker: Broker) -> None:
    with (
        login(broker, "term-a").connected() as a,
        login(broker, "it-mueller").connected() as op,
        login(broker, "sms-gateway").connected() as gw,
    ):
        op.subscribe("amtomat/v1/#")
        op.subscribe(A.notifier)  # explicitly, too
        gw.subscribe("amtomat/v1/#")
        ack = a.publish(A.notifier, b'{"code": "secret"}')
        assert not ack.is_failure
        a.publish(A.status, b'{"state": "online"}', retain=True)  # the control
        gw.wait_for(lambda m: m.topic == A.notifier)
        op.wait_for(lambda m: m.topic == A.status)
        assert [m.topic for m in op.received()] == [A.status]
        assert [m.topic for m in gw.received()] == [A.notifier]  # only notifier/, not status


def test_terminal_publishes_its_own_topics_only(broker: Broker) -> None:
    own = [A.status, A.birth, A.compartment("A1"), A.door("service"), A.entrance,
           A.alarm("board_offline", "b1"), A.event, A.stats, A.metrics,
           A.reply_prefix + "r1", A.rejected_replies]  # fmt: skip
    foreign = [B.status, B.event, "amtomat/v1/status", "elsewhere/topic"]
    with (
        login(broker, "term-a").connected() as a,
        login(broker, "it-mueller").connected() as op,
    ):
        op.subscribe("#")
        for topic in foreign:
            assert a.publish(topic, b"x").getName() == "Not authorized", topic
        for topic in own:
            ack = a.publish(topic, b"x")
            assert not ack.is_failure, topic
        op.wait_for(lambda m: m.topic == A.rejected_replies)
        assert [m.topic for m in op.received()] == own


def test_gateway_reads_nothing_else_and_writes_nothing(broker: Broker) -> None:
    with (
        login(broker, "sms-gateway").connected() as gw,
        login(broker, "it-mueller").connected() as op,
        login(broker, "term-a").connected() as a,
    ):
        a.subscribe(A.command("#"))
        assert gw.publish(A.command("ping"), b"x").getName() == "Not authorized"
        assert gw.publish(A.notifier, b"x").getName() == "Not authorized"
        gw.subscribe("#")
        a.publish(A.event, b"e")
        a.publish(A.notifier, b"n")  # the control
        gw.wait_for(lambda m: m.topic == A.notifier and m.payload == b"n")
        assert [m.topic for m in gw.received()] == [A.notifier]
        op.publish(A.command("ping"), b"control")
        a.wait_for(lambda m: m.payload == b"control")
        assert [m.payload for m in a.received()] == [b"control"]


# ----- the shipped mosquitto.conf ---------------------------------------------------------


def fleet_config(broker: Broker, cert_port: int) -> str:
    """docs/mqtt/mosquitto.conf with the test's paths and ports; nothing else changed."""
    assert broker.ca and broker.server and broker.password_file and broker.acl_file
    text = (DOCS / "mosquitto.conf").read_text()
    swaps = {
        "/etc/mosquitto/certs/ca.crt": broker.ca.cert,
        "/etc/mosquitto/certs/server.crt": broker.server.cert,
        "/etc/mosquitto/certs/server.key": broker.server.key,
        "/etc/mosquitto/passwd": broker.password_file,
        "/etc/mosquitto/acl": broker.acl_file,
        "/var/lib/mosquitto/": f"{broker.data_dir}/",
    }
    for old, new in swaps.items():
        assert old in text, old
        text = text.replace(old, str(new))
    text, n = re.subn(r"(?m)^listener 8883$", f"listener {broker.port} 127.0.0.1", text)
    assert n == 1
    text, n = re.subn(r"(?m)^listener 8884$", f"listener {cert_port} 127.0.0.1", text)
    assert n == 1
    text, n = re.subn(r"(?m)^log_dest syslog$", f"log_dest file {broker.log_path}", text)
    assert n == 1
    # As root Mosquitto would switch to the "mosquitto" user, who cannot read the tmp dir.
    return f"user {pwd.getpwuid(os.getuid()).pw_name}\n{text}"


def test_shipped_config_tls_logins_acl_and_persistence(tmp_path: Path) -> None:
    cert_port = free_port()
    with Broker(
        tmp_path,
        users=USERS,
        acl=(DOCS / "acl").read_text(),
        tls=True,
        config=lambda b: fleet_config(b, cert_port),
    ) as broker:
        assert broker.ca is not None
        # TLS and a password; no anonymous, no wrong password.
        assert login(broker, "term-a").connect() == "Success"
        assert Client(broker, "anon").connect() == "Not authorized"
        assert Client(broker, "x", username="term-a", password="nope").connect() == "Not authorized"
        # Plain MQTT on the TLS port gets nowhere.
        assert login(broker, "term-a", client_id="plain", tls=False).connect() != "Success"

        # The certificate listener: no certificate, no connection; the common name is
        # the account, so term-a's certificate writes term-a's status and nothing else.
        assert Client(broker, "nocert", port=cert_port).connect() != "Success"
        cert_a = make_cert(broker.ca, "term-a")
        with Client(broker, "term-a-cert", cert=cert_a, port=cert_port).connected() as a:
            assert not a.publish(A.status, b"online", retain=True).is_failure
            assert a.publish(B.status, b"x").getName() == "Not authorized"

        # A consumer with a persistent session gets what was published while it was
        # away, across a broker restart (persistence on).
        archive = login(broker, "it-mueller", "county-archive", persistent=True).connected()
        archive.subscribe(A.event, qos=1)
        archive.close()
        with login(broker, "term-a", client_id="term-a-2").connected() as a:
            assert not a.publish(A.event, b'{"seq": 1}').is_failure
        broker.stop()
        broker.start()
        back = login(broker, "it-mueller", "county-archive", persistent=True).connected()
        with back:
            back.wait_for(lambda m: m.topic == A.event and m.payload == b'{"seq": 1}')
        # Retained status survived the restart too.
        watcher = login(broker, "it-mueller", client_id="watcher").connected()
        with watcher:
            watcher.subscribe(A.status)
            got = watcher.wait_for(lambda m: m.topic == A.status)
            assert got.retain and got.payload == b"online"
