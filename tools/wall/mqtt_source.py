"""The wall's feed from the county's MQTT broker (docs/mqtt/README.md), for watching a
terminal remotely with an operator account.

It subscribes (MQTT 5, paho-mqtt 2.2) to the terminal's ``alarm/#``, ``status``,
``metrics``, ``birth`` and ``state/#``, all retained but metrics: a fresh connection gets
the whole picture at once, and every change after. A zero-length retained message on an
alarm topic clears that alarm; at every (re)connect the known alarms are forgotten and
the retained ones arrive again, so an alarm cleared while the wall was away goes too.
paho's network thread hands every message to the asyncio loop; nothing here publishes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from county.connection import ReportingClient
from tools.wall.errors import WallAuthError, WallSetupError

log = logging.getLogger(__name__)

Emit = Callable[[str, Any], None]

ROOT: Final = "amtomat/v1"
TLS_PORT: Final = 8883
PLAIN_PORT: Final = 1883
KEEPALIVE_S: Final = 30
RETRY_MIN_S: Final = 1
RETRY_MAX_S: Final = 10
KIOSK_ID: Final = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")
# CONNACK reasons a retry cannot cure: bad user name or password, not authorized,
# bad authentication method, client identifier not valid
REFUSALS: Final = frozenset({0x86, 0x87, 0x8C, 0x85})


def check_kiosk(kiosk: str) -> str:
    """A kiosk id as the topics use it (it becomes part of the subscriptions, so no MQTT
    wildcard can slip in); WallSetupError naming it otherwise."""
    if not KIOSK_ID.fullmatch(kiosk):
        raise WallSetupError(
            f"kiosk id {kiosk!r} is not a terminal id: 2..63 of a-z, 0-9 and '-', "
            "starting with a letter or digit (the kiosk_id of the terminal's TOML)",
            kiosk,
        )
    return kiosk


def parse_host(text: str, tls: bool) -> tuple[str, int]:
    """HOST, HOST:PORT or [IPv6]:PORT; the port defaults to 8883 with TLS, else 1883.
    WallSetupError naming text when it is none of these."""
    default = TLS_PORT if tls else PLAIN_PORT
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (end + 1 < len(text) and text[end + 1] != ":"):
            host = ""
        else:
            host, port_text = text[1:end], text[end + 2 :]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host or any(c.isspace() or c in "/#+" for c in host) or not host.isprintable():
        raise WallSetupError(
            f"--mqtt {text!r} is not HOST, HOST:PORT or [IPv6]:PORT, e.g. mqtt.county.example:8883",
            text,
        )
    if not port_text:
        return host, default
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise WallSetupError(f"--mqtt {text!r}: port {port_text!r} is not 1..65535", text)
    return host, int(port_text)


@dataclass(frozen=True)
class MqttTarget:
    """The broker, the account and the terminal to watch. ``password`` never shows in
    repr or messages."""

    host: str
    port: int
    kiosk: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = True
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None

    @property
    def base(self) -> str:
        """``amtomat/v1/<kiosk>``."""
        return f"{ROOT}/{self.kiosk}"

    def subscriptions(self) -> list[str]:
        """Alarms first: their retained messages come before the states that end the
        first picture."""
        return [f"{self.base}/{t}" for t in ("alarm/#", "status", "metrics", "birth", "state/#")]


def _payload(raw: bytes) -> object:
    """The JSON object in raw, or raw itself for the model to refuse with a warning."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return raw


def translate(base: str, topic: str, raw: bytes) -> tuple[str, object] | None:
    """The model message for one MQTT message of the terminal at base, or None for a
    topic that is not part of the picture (and for a cleared non-alarm topic)."""
    if not topic.startswith(base + "/"):
        return None
    rest = topic[len(base) + 1 :]
    parts = rest.split("/")
    if parts[0] == "alarm" and len(parts) == 3:
        if not raw:
            return "alarm", {
                "alarm": unquote(parts[1]),
                "subject": unquote(parts[2]),
                "active": False,
            }
        data = _payload(raw)
        return "alarm", {**data, "active": True} if isinstance(data, dict) else data
    if not raw:
        return None
    kind = {
        "status": "status",
        "birth": "layout",
        "metrics": "metrics",
        "state/entrance": "entrance",
    }.get(rest)
    if kind is None and parts[0] == "state" and len(parts) == 3:
        kind = {"compartment": "compartment", "door": "door", "slot": "slot"}.get(parts[1])
    return None if kind is None else (kind, _payload(raw))


class MqttSource:
    """See the module docstring. ``run(emit)`` runs until cancelled; it raises
    WallAuthError when the broker refuses the login and WallSetupError when the TLS
    files cannot be used."""

    def __init__(self, target: MqttTarget, *, client_id: str | None = None) -> None:
        check_kiosk(target.kiosk)
        self.target = target
        self.client_id = client_id or f"amtomat-wall-{secrets.token_hex(4)}"

    @property
    def description(self) -> str:
        """Where the data comes from, for the frame's source line."""
        t = self.target
        host = f"[{t.host}]" if ":" in t.host else t.host
        return f"mqtt {host}:{t.port} ({'TLS' if t.tls else 'plain'}) kiosk {t.kiosk}"

    def _client(self) -> ReportingClient:
        t = self.target
        client = ReportingClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=True,
        )
        if t.username is not None or t.password is not None:
            client.username_pw_set(t.username, t.password)
        if t.tls:
            self._tls(client)
        client.reconnect_delay_set(RETRY_MIN_S, RETRY_MAX_S)
        return client

    def _tls(self, client: mqtt.Client) -> None:
        t = self.target
        files = [(n, p) for n, p in (("--cafile", t.cafile), ("--cert", t.certfile),
                                     ("--keyfile", t.keyfile)) if p is not None]  # fmt: skip
        for name, path in files:
            try:
                with open(path, "rb") as f:
                    f.read(1)
            except OSError as exc:
                raise WallSetupError(
                    f"{name} {path}: cannot read it ({exc.strerror or exc}); fix the path "
                    "or the file's permissions",
                    str(path),
                ) from None
        try:
            client.tls_set(
                ca_certs=str(t.cafile) if t.cafile else None,
                certfile=str(t.certfile) if t.certfile else None,
                keyfile=str(t.keyfile) if t.keyfile else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (OSError, ValueError) as exc:
            shown = ", ".join(f"{n} {p}" for n, p in files) or "the system's CA certificates"
            raise WallSetupError(
                f"TLS files ({shown}) cannot be used: {exc}; they must be PEM files, and "
                "--keyfile must belong to --cert",
                shown,
            ) from None

    async def run(self, emit: Emit) -> None:
        """Connect (paho reconnects by itself) and hand every message to emit."""
        loop = asyncio.get_running_loop()
        fatal: asyncio.Future[None] = loop.create_future()
        t = self.target

        def post(kind: str, fields: object) -> None:
            loop.call_soon_threadsafe(emit, kind, fields)

        def fail(exc: Exception) -> None:
            if not fatal.done():
                fatal.set_exception(exc)

        def on_connect(c: Any, u: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
            if reason.is_failure:
                why = f"the broker refused the login: {reason.getName()}"
                post("link", {"state": "down", "problem": why})
                if reason.value in REFUSALS:
                    account = t.username or "(no user name)"
                    error = WallAuthError(
                        f"{self.description}: {why} (account {account}); check --username "
                        "and --password-file, or the client certificate",
                        account,
                    )
                    loop.call_soon_threadsafe(fail, error)
                return
            post("alarms", {"alarms": []})  # the retained ones follow
            c.subscribe([(topic, SubscribeOptions(qos=1)) for topic in t.subscriptions()])
            post("link", {"state": "up"})

        def on_connect_fail(c: Any, u: Any) -> None:
            why = client.last_connect_error or "no connection"
            post("link", {"state": "down", "problem": why})

        def on_disconnect(c: Any, u: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
            post("link", {"state": "down", "problem": f"disconnected: {reason.getName()}"})

        def on_message(c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
            found = translate(t.base, msg.topic, bytes(msg.payload))
            if found is not None:
                post(*found)

        client = self._client()
        client.on_connect = on_connect
        client.on_connect_fail = on_connect_fail
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        emit("link", {"state": "connecting"})
        client.connect_async(t.host, t.port, keepalive=KEEPALIVE_S, clean_start=True,
                             properties=props)  # fmt: skip
        client.loop_start()
        try:
            await fatal
        finally:
            client.disconnect()
            client.loop_stop()
