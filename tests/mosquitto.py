"""Test helper: a real Mosquitto broker of the test's own (free loopback port, config, log
and optional TLS material in the test's tmp dir) and a small paho client that collects
what it receives. Never touches a system broker."""

from __future__ import annotations

import datetime
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

LIMIT_S: Final = 20.0  # generous: a loaded CI machine is slow, a healthy one never waits it
_counter = iter(range(1, 1_000_000))


def mosquitto_binary() -> str:
    """The broker's path (PATH first, then Debian's /usr/sbin)."""
    found = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.access(found, os.X_OK):
        raise RuntimeError(f"mosquitto not found (looked in PATH and at {found})")
    return found


def mosquitto_passwd_binary() -> str:
    found = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not os.access(found, os.X_OK):
        raise RuntimeError(f"mosquitto_passwd not found (looked in PATH and at {found})")
    return found


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], bool], timeout: float = LIMIT_S, what: str = "") -> None:
    """Poll ``predicate`` until it holds; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or predicate}")
        time.sleep(0.02)


# ----- TLS material ---------------------------------------------------------------------


@dataclass(frozen=True)
class CertFiles:
    """A certificate and its key (PEM files, 0600)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class CA:
    """A test certificate authority."""

    cert: Path
    key: Path
    name: str
    _key: ec.EllipticCurvePrivateKey = field(repr=False)
    _cert: x509.Certificate = field(repr=False)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(tmp: Path, name: str = "Test County CA") -> CA:
    """A self-signed CA certificate and key in ``tmp``."""
    tmp.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    stem = name.lower().replace(" ", "-")
    cert_path, key_path = tmp / f"{stem}.crt", tmp / f"{stem}.key"
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    _write_private(key_path, _key_pem(key))
    return CA(cert_path, key_path, name, key, cert)


def make_cert(
    ca: CA, name: str, *, server_hosts: Sequence[str] = (), dir: Path | None = None
) -> CertFiles:
    """A certificate with common name ``name`` signed by ``ca``: a server certificate for
    ``server_hosts`` (names and IP addresses) when given, else a client certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca._cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca._key.public_key()), False
        )
    )
    if server_hosts:
        alt: list[x509.GeneralName] = []
        for host in server_hosts:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        usage = ExtendedKeyUsageOID.SERVER_AUTH
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    cert = builder.sign(ca._key, hashes.SHA256())
    where = dir or ca.cert.parent
    cert_path, key_path = where / f"{name}.crt", where / f"{name}.key"
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    _write_private(key_path, _key_pem(key))
    return CertFiles(cert_path, key_path)


# ----- the broker -----------------------------------------------------------------------


class BrokerError(RuntimeError):
    """The test broker did not start; the message holds its log."""


class Broker:
    """A Mosquitto 2.0 broker listening on 127.0.0.1 only, on a port of its own.

    ``users`` make a password file, ``acl`` (the text of an ACL file) an acl_file.
    ``tls=True`` makes a CA (``.ca``) and a server certificate for ``server_hosts`` and
    serves TLS; ``client_certs=True`` then requires a client certificate whose common
    name is the user name. ``config`` replaces the generated configuration: it gets the
    broker and returns the text (for testing a shipped config). Started at once; ``stop``
    and ``start`` again keep the port and (with ``persistence``) the retained messages.
    """

    def __init__(
        self,
        tmp_path: Path,
        *,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        tls: bool = False,
        client_certs: bool = False,
        anonymous: bool = False,
        persistence: bool = True,
        server_hosts: Sequence[str] = ("localhost", "127.0.0.1"),
        config: Callable[[Broker], str] | None = None,
    ) -> None:
        self.dir = tmp_path / f"broker-{next(_counter)}"
        self.dir.mkdir(parents=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.log_path = self.dir / "mosquitto.log"
        self.conf_path = self.dir / "mosquitto.conf"
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir()
        self.tls = tls
        self.client_certs = client_certs
        self.password_file: Path | None = None
        self.acl_file: Path | None = None
        self.ca: CA | None = None
        self.server: CertFiles | None = None
        if users:
            self.password_file = self.dir / "passwd"
            make_password_file(self.password_file, users)
        if acl is not None:
            self.acl_file = self.dir / "acl"
            self.acl_file.write_text(acl)
        if tls:
            self.ca = make_ca(self.dir / "pki")
            self.server = make_cert(self.ca, "broker", server_hosts=server_hosts)
        text = config(self) if config else self._config(anonymous, persistence)
        self.conf_path.write_text(text)
        self._proc: subprocess.Popen[bytes] | None = None
        self.start()

    def _config(self, anonymous: bool, persistence: bool) -> str:
        lines = [
            f"user {pwd.getpwuid(os.getuid()).pw_name}",  # as root, do not drop to "mosquitto"
            "per_listener_settings false",
            f"allow_anonymous {str(anonymous).lower()}",
            f"persistence {str(persistence).lower()}",
            f"persistence_location {self.data_dir}/",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file:
            lines.append(f"acl_file {self.acl_file}")
        lines.append(f"listener {self.port} {self.host}")
        if self.ca and self.server:
            lines += [
                f"cafile {self.ca.cert}",
                f"certfile {self.server.cert}",
                f"keyfile {self.server.key}",
                "tls_version tlsv1.2",
            ]
            if self.client_certs:
                lines += ["require_certificate true", "use_identity_as_username true"]
        return "\n".join(lines) + "\n"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start (again) on the same port; returns once it accepts TCP connections."""
        if self.running:
            return
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [mosquitto_binary(), "-c", str(self.conf_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + LIMIT_S
        while True:
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"mosquitto exited with {self._proc.returncode}:\n{self.log_text()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise BrokerError(
                        f"mosquitto does not accept connections on {self.port}:\n{self.log_text()}"
                    ) from None
                time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM and wait: a clean stop that writes the persistence file."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(LIMIT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: nothing written."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def __enter__(self) -> Broker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc_type is not None:
            print(f"----- mosquitto log ({self.log_path}) -----\n{self.log_text()}")


def make_password_file(path: Path, users: Mapping[str, str]) -> None:
    """A Mosquitto password file (``mosquitto_passwd -b``), mode 0600."""
    first = True
    for user, password in users.items():
        args = [mosquitto_passwd_binary(), *(["-c"] if first else []), "-b", str(path)]
        subprocess.run([*args, user, password], check=True, capture_output=True)
        first = False
    os.chmod(path, 0o600)


# ----- a test client --------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One message a test client received."""

    topic: str
    payload: bytes
    retain: bool
    qos: int
    response_topic: str | None
    correlation: bytes | None


class Client:
    """A paho MQTT 5 client on its own network thread (no automatic reconnect) that
    collects every message it receives; ``wait_for`` waits on a condition."""

    def __init__(
        self,
        broker: Broker,
        client_id: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        cert: CertFiles | None = None,
        ca: Path | None = None,
        clean_start: bool = True,
        session_expiry_s: int = 0,
        port: int | None = None,
        tls: bool | None = None,
    ) -> None:
        self.broker = broker
        self.port = port or broker.port
        self.client_id = client_id or f"test-{next(_counter)}"
        self.clean_start = clean_start
        self.session_expiry_s = session_expiry_s
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._connack: ReasonCode | None = None
        self._closed = False
        self._acks: dict[int, ReasonCode] = {}
        self._subacks: dict[int, list[ReasonCode]] = {}
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False,
        )
        if username is not None:
            c.username_pw_set(username, password)
        if broker.tls if tls is None else tls:
            ca_file = ca or (broker.ca.cert if broker.ca else None)
            c.tls_set(
                ca_certs=str(ca_file) if ca_file else None,
                certfile=str(cert.cert) if cert else None,
                keyfile=str(cert.key) if cert else None,
            )
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        self.paho = c

    # callbacks (paho's thread)
    def _on_connect(self, c: Any, u: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        with self._cond:
            self._connack = reason
            self._cond.notify_all()

    def _on_disconnect(self, c: Any, u: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties
        response = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        corr = bytes(correlation) if correlation is not None else None
        got = Received(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos, response, corr)
        with self._cond:
            self.messages.append(got)
            self._cond.notify_all()

    def _on_publish(self, c: Any, u: Any, mid: int, reason: ReasonCode, props: Any) -> None:
        with self._cond:
            self._acks[mid] = reason
            self._cond.notify_all()

    def _on_subscribe(
        self, c: Any, u: Any, mid: int, reasons: list[ReasonCode], props: Any
    ) -> None:
        with self._cond:
            self._subacks[mid] = reasons
            self._cond.notify_all()

    def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise AssertionError(f"{self.client_id}: no {what} within {timeout} s")

    def connect(self, timeout: float = LIMIT_S) -> str:
        """Connect and wait for the broker's answer: ``"Success"``, the CONNACK's refusal
        (e.g. ``"Not authorized"``), or the error that stopped the connection."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.session_expiry_s
        try:
            self.paho.connect(self.broker.host, self.port, keepalive=30,
                              clean_start=self.clean_start, properties=props)  # fmt: skip
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        self.paho.loop_start()
        self._wait(lambda: self._connack is not None or self._closed, timeout, "CONNACK")
        if self._connack is None:
            return "closed before CONNACK"
        return self._connack.getName()

    def connected(self) -> Client:
        """Connect; AssertionError unless the broker accepted."""
        answer = self.connect()
        if answer != "Success":
            raise AssertionError(f"{self.client_id}: connect refused: {answer}")
        return self

    def subscribe(self, topic: str, qos: int = 1) -> list[ReasonCode]:
        """Subscribe and wait for the SUBACK's reason codes."""
        _, mid = self.paho.subscribe(topic, qos)
        assert mid is not None
        self._wait(lambda: mid in self._subacks, LIMIT_S, f"SUBACK for {topic}")
        return self._subacks[mid]

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> ReasonCode:
        """Publish; with QoS 1 or 2 wait for the broker's answer and return its reason code
        (QoS 0 has none: "Success" once handed to the socket)."""
        props = None
        if response_topic is not None or correlation is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if response_topic is not None:
                props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        info = self.paho.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if qos == 0:
            return ReasonCode(PacketTypes.PUBACK, "Success")
        self._wait(lambda: info.mid in self._acks, LIMIT_S, f"PUBACK for {topic}")
        return self._acks[info.mid]

    def received(self, topic: str | None = None) -> list[Received]:
        """A snapshot of what arrived (on ``topic`` only, when given)."""
        with self._cond:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float = LIMIT_S) -> Received:
        """The first received message for which ``predicate`` holds, waiting for it."""
        found: list[Received] = []

        def check() -> bool:
            found[:] = [m for m in self.messages if predicate(m)][:1]
            return bool(found)

        self._wait(check, timeout, "matching message")
        return found[0]

    def close(self) -> None:
        """A clean DISCONNECT (no will) and stop the network thread."""
        self.paho.disconnect()
        self.paho.loop_stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def retained(broker: Broker, topic: str, **login: Any) -> Received | None:
    """The retained message on ``topic`` seen by a fresh subscriber (None when there is
    none). The broker sends retained messages right after the SUBACK; a control message
    published after that and received proves nothing retained is still on its way."""
    with Client(broker, **login).connected() as c:
        c.subscribe(topic)
        control = f"test/control/{c.client_id}"
        c.subscribe(control)
        c.publish(control, b"sync")
        c.wait_for(lambda m: m.topic == control)
        found = [m for m in c.received(topic) if m.retain]
        return found[-1] if found else None
