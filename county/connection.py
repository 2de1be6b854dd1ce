"""The MQTT 5 connection to the county's broker: paho's network thread keeps it up with
jittered reconnect backoff; every callback is handed to the asyncio loop's thread.

Above this module nothing sees a paho type: messages arrive as ``InboundMessage``, acks
as ``(mid, reason code)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from controller.boardport import backoff_delay, os_reason
from controller.mqttconfig import MqttSettings
from county.errors import CountyError, LinkSetupError
from county.inbound import InboundMessage

log = logging.getLogger(__name__)

KEEP_DELAYS: Final = 50  # reconnect waits kept in ``Connection.delays``
COUNTERS: Final = ("connects", "connect_failures", "disconnects", "published", "acked", "received")


class PublishError(CountyError):
    """A message cannot be published as asked (bad topic, QoS or size); names the topic."""


class _NotConnecting(OSError):
    """Raised in on_pre_connect to make paho count the attempt as failed and back off."""


class ReportingClient(mqtt.Client):
    """paho's client, keeping the error of the last failed connect for the log.

    paho 2.2.0 (pinned) swallows the OSError of a failed connect; without it the log could
    only say "failed", not "connection refused" or "certificate verify failed".
    """

    last_connect_error: str = ""

    def _create_socket(self) -> Any:
        try:
            return super()._create_socket()
        except OSError as exc:
            self.last_connect_error = describe_error(exc)
            raise


def describe_error(exc: BaseException) -> str:
    """What a failed connect means, in words (never a secret: only socket and TLS text)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate was not accepted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return os_reason(exc)


class Connection:
    """One MQTT 5 connection to the broker, kept up by paho's network thread with jittered
    reconnect backoff; every callback is delivered on the asyncio loop's thread.

    ``next_session`` runs on the network thread before each attempt and numbers it;
    ``will(session)`` gives that connection's last will (published retained, QoS 1).
    ``on_connected(session)`` follows an accepted CONNACK, after the ``subscriptions``
    were sent; ``on_disconnected(reason)`` follows the loss (or stop) of such a
    connection; ``on_ack(mid, reason code)`` follows a PUBACK, and for QoS 0 the write
    to the socket (code 0). Refused attempts are retried with backoff and logged once
    per change of reason; nothing secret is logged.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        loop: asyncio.AbstractEventLoop,
        password: str | None,
        next_session: Callable[[], int],
        will: Callable[[int], tuple[str, bytes]],
        on_connected: Callable[[int], None],
        on_disconnected: Callable[[str], None],
        on_ack: Callable[[int, int], None],
        on_message: Callable[[InboundMessage], None],
        subscriptions: Sequence[tuple[str, int]] = (),
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.delays: list[float] = []
        self._loop = loop
        self._next_session = next_session
        self._will = will
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._on_ack = on_ack
        self._on_message = on_message
        self._subscriptions = tuple(subscriptions)
        self._rng = rng or random.Random()
        self._lock = threading.Lock()  # counters and delays: written on both threads
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._started = False
        self._stopping = False  # read by the network thread
        self._connected = False  # the loop thread's view
        self._ack_waiters: dict[int, asyncio.Future[int]] = {}
        # network thread only:
        self._attempt = 0  # failed attempts since the last CONNACK ok
        self._session = 0  # the session of the current attempt
        self._net_connected = False  # CONNACK ok on the current socket
        self._wait_chosen = False  # the wait after the current attempt is set
        self._pre_connects = 0  # attempts begun since start()
        self._last_problem: str | None = None  # logged once per change

        client = ReportingClient(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=True,
        )
        if settings.username or password is not None:
            client.username_pw_set(settings.username or None, password)
        if settings.tls:
            self._set_tls(client, settings)
        client.on_pre_connect = self._pre_connect
        client.on_connect = self._connect
        client.on_connect_fail = self._connect_fail
        client.on_disconnect = self._disconnect
        client.on_publish = self._publish
        client.on_message = self._message
        client.on_subscribe = self._subscribe
        self._client = client

    @staticmethod
    def _set_tls(client: mqtt.Client, settings: MqttSettings) -> None:
        try:
            client.tls_set(
                ca_certs=str(settings.ca_file) if settings.ca_file else None,
                certfile=str(settings.cert_file) if settings.cert_file else None,
                keyfile=str(settings.key_file) if settings.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (OSError, ValueError) as exc:
            files = ", ".join(
                f"{name} {path}"
                for name, path in (
                    ("ca_file", settings.ca_file),
                    ("cert_file", settings.cert_file),
                    ("key_file", settings.key_file),
                )
                if path is not None
            )
            raise LinkSetupError(
                f"mqtt TLS files ({files or 'system CA certificates'}) cannot be used: "
                f"{describe_error(exc) if isinstance(exc, OSError) else exc}; check that "
                "they are PEM files and that key_file belongs to cert_file",
                files,
            ) from None

    # ----- the loop thread's side ------------------------------------------------------

    def start(self) -> None:
        """Start connecting in the background; returns at once. A second call does nothing."""
        if self._started:
            return
        self._started = True
        s = self.settings
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0  # the outbox above re-sends: no broker session
        self._client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)
        self._client.connect_async(
            s.host, s.port, keepalive=s.keepalive_s, clean_start=True, properties=props
        )
        self._client.loop_start()

    @property
    def connected(self) -> bool:
        """CONNACK ok and not lost since (the loop thread's view)."""
        return self._connected

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        correlation: bytes | None = None,
    ) -> int | None:
        """Hand a message to paho: its mid, or None when not connected (nothing queued).

        A QoS 1 message that paho took is re-sent by paho after a reconnect until the
        broker acknowledges it (``on_ack``)."""
        if qos not in (0, 1, 2):
            raise PublishError(f"cannot publish to {topic!r}: QoS {qos!r} is not 0, 1 or 2", qos)
        if not topic or "+" in topic or "#" in topic or "\0" in topic:
            raise PublishError(
                f"cannot publish to {topic!r}: a topic is not empty and has no + # or NUL",
                topic,
            )
        if not self._connected:
            return None
        props: Properties | None = None
        if correlation is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.CorrelationData = correlation
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        except ValueError as exc:
            raise PublishError(f"cannot publish to {topic!r}: {exc}", topic) from None
        taken = info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (
            qos > 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN  # queued for the reconnect
        )
        if not taken:
            return None
        self._count("published")
        return info.mid

    async def stop(self, final: tuple[str, bytes] | None = None, timeout_s: float = 2.0) -> None:
        """When connected: publish ``final`` retained QoS 1 and wait up to ``timeout_s`` for
        its PUBACK; then a clean DISCONNECT (the broker drops the will) and stop the network
        thread without blocking the loop."""
        if not self._started:
            return
        self._stopping = True
        if final is not None and self._connected:
            mid = self.publish(final[0], final[1], qos=1, retain=True)
            if mid is not None:
                waiter = self._loop.create_future()
                self._ack_waiters[mid] = waiter
                try:
                    await asyncio.wait_for(waiter, timeout_s)
                except TimeoutError:
                    log.warning(
                        "county link: the broker did not acknowledge the final status "
                        "within %.1f s; disconnecting anyway",
                        timeout_s,
                    )
                finally:
                    self._ack_waiters.pop(mid, None)
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        if self._connected:
            self._connected = False
            self._on_disconnected_safe("stopped")

    def counters(self) -> dict[str, int]:
        """connects, connect_failures, disconnects, published, acked (PUBACKs and QoS 0
        writes), received."""
        with self._lock:
            return dict(self._counters)

    def _count(self, name: str) -> None:
        with self._lock:
            self._counters[name] += 1

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop's thread; dropped once the loop is closed."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
            self._loop.call_soon_threadsafe(fn, *args)

    def _loop_connected(self, session: int) -> None:
        self._connected = True
        self._call("on_connected", self._on_connected, session)

    def _loop_lost(self, reason: str) -> None:
        if not self._connected:
            return
        self._connected = False
        self._on_disconnected_safe(reason)

    def _on_disconnected_safe(self, reason: str) -> None:
        self._call("on_disconnected", self._on_disconnected, reason)

    def _loop_ack(self, mid: int, code: int) -> None:
        waiter = self._ack_waiters.get(mid)
        if waiter is not None and not waiter.done():
            waiter.set_result(code)
        self._call("on_ack", self._on_ack, mid, code)

    @staticmethod
    def _call(name: str, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("county link: the %s callback failed", name)

    # ----- paho's network thread ---------------------------------------------------------

    def _pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        self._pre_connects += 1
        self._net_connected = False
        self._wait_chosen = False
        if self._stopping:
            raise _NotConnecting("the link is stopping")
        try:
            self._session = self._next_session()
            topic, payload = self._will(self._session)
            client.will_set(topic, payload, qos=1, retain=True)
        except Exception as exc:
            # Counted and logged by _connect_fail, which paho calls for this OSError.
            self._client.last_connect_error = (
                f"cannot prepare the connection ({type(exc).__name__}: {exc})"
            )
            raise _NotConnecting(str(exc)) from exc

    def _connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._failed(f"the broker refused the connection: {reason.getName()}")
            return
        self._net_connected = True
        self._attempt = 0
        self._last_problem = None
        log.info("county link: connected to %s:%d (session %d)",
                 self.settings.host, self.settings.port, self._session)  # fmt: skip
        self._count("connects")
        if self._stopping:
            client.disconnect()
            return
        if self._subscriptions:
            # Retain As Published: a command a live subscriber gets keeps its retain flag,
            # so a retained command is seen as one and refused.
            client.subscribe([
                (topic, SubscribeOptions(qos=qos, retainAsPublished=True))
                for topic, qos in self._subscriptions
            ])  # fmt: skip
        self._post(self._loop_connected, self._session)

    def _connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if self._stopping:
            return
        error = self._client.last_connect_error or "cannot connect"
        self._client.last_connect_error = ""
        # Only a failed first connect happens in loop_forever's first loop (two waits).
        self._failed(
            f"cannot connect to {self.settings.host}:{self.settings.port}: {error}",
            first_loop=self._pre_connects == 1,
        )

    def _disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._net_connected:
            self._net_connected = False
            self._count("disconnects")
            text = "stopped" if self._stopping else f"connection lost: {reason.getName()}"
            if not self._stopping:
                log.warning("county link: %s", text)
                self._choose_wait()
            self._post(self._loop_lost, text)
        elif not self._stopping:
            self._failed(f"the broker closed the connection before accepting it: {reason}")

    def _failed(self, problem: str, *, first_loop: bool = False) -> None:
        """One failed attempt: count it, log a new kind of problem, set the next wait."""
        if self._wait_chosen:
            return  # a refused CONNACK is followed by the socket's close: one failure
        self._count("connect_failures")
        self._problem(problem)
        self._choose_wait(first_loop=first_loop)

    def _problem(self, problem: str) -> None:
        if problem != self._last_problem:
            log.warning("county link: %s; retrying with backoff", problem)
            self._last_problem = problem

    def _choose_wait(self, *, first_loop: bool = False) -> None:
        """Set paho's next reconnect wait to one jittered backoff delay.

        After ``reconnect_delay_set(a, b)`` paho waits ``a``, then ``min(2a, b)`` if it waits
        again before a connect: with a == b that is exactly ``d``. A failed first connect
        (loop_forever's first loop) is followed by two waits; d/3 and 2d/3 add up to d.
        """
        s = self.settings
        d = backoff_delay(self._attempt, s.reconnect_min_s, s.reconnect_max_s, self._rng)
        self._attempt += 1
        self._wait_chosen = True
        with self._lock:
            self.delays.append(d)
            del self.delays[:-KEEP_DELAYS]
        # paho annotates the delays as int but only adds and compares them: floats work.
        if first_loop:
            self._client.reconnect_delay_set(d / 3, 2 * d / 3)  # type: ignore[arg-type]
        else:
            self._client.reconnect_delay_set(d, d)  # type: ignore[arg-type]

    def _publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        self._count("acked")
        self._post(self._loop_ack, mid, reason.value)

    def _subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties,
    ) -> None:
        for (topic, _), reason in zip(self._subscriptions, reasons, strict=False):
            if reason.is_failure:
                log.warning("county link: the broker refused the subscription %s: %s",
                            topic, reason.getName())  # fmt: skip

    def _message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            log.warning("county link: dropped a message whose topic is not UTF-8")
            return
        props = msg.properties
        response = getattr(props, "ResponseTopic", None) if props is not None else None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        self._count("received")
        message = InboundMessage(
            topic=topic,
            payload=bytes(msg.payload),
            retain=bool(msg.retain),
            qos=int(msg.qos),
            response_topic=response if isinstance(response, str) else None,
            correlation=bytes(correlation) if isinstance(correlation, bytes | bytearray) else None,
        )
        self._post(self._call, "on_message", self._on_message, message)
