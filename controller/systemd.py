"""sd_notify without dependencies: readiness, status text, watchdog pings to systemd."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Final

log = logging.getLogger(__name__)

MAX_STATUS_CHARS: Final = 400


class Notifier:
    """Sends sd_notify datagrams to systemd; without a socket every method does nothing.

    Sending never raises: the first failure after a success (or at start) is logged as a
    warning, repeats at debug level, so a lost systemd socket cannot stop the daemon.
    """

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        """``address`` is a socket path or ``"@name"`` (abstract); None disables sending."""
        self._address: str | bytes | None = None
        if address is not None:
            self._address = _socket_address(address)
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, *, pid: int | None = None) -> Notifier:
        """The notifier systemd asked for in ``env`` (NOTIFY_SOCKET, WATCHDOG_USEC/_PID).

        The watchdog counts only when WATCHDOG_PID is unset or equals ``pid`` (our pid by
        default). Malformed values are logged and ignored, never raised.
        """
        own_pid = os.getpid() if pid is None else pid
        address = env.get("NOTIFY_SOCKET") or None
        if address is not None and not (address.startswith(("/", "@")) and len(address) > 1):
            log.warning(
                "NOTIFY_SOCKET=%r is neither a socket path nor @abstract; not notifying systemd",
                address,
            )
            address = None
        usec: int | None = None
        usec_text = env.get("WATCHDOG_USEC")
        if usec_text:
            if usec_text.isdigit() and usec_text.isascii() and int(usec_text) > 0:
                usec = int(usec_text)
            else:
                log.warning("WATCHDOG_USEC=%r is not a positive integer; no watchdog", usec_text)
        pid_text = env.get("WATCHDOG_PID")
        if usec is not None and pid_text and pid_text != str(own_pid):
            log.debug("WATCHDOG_PID=%s is not our pid %d; no watchdog", pid_text, own_pid)
            usec = None
        return cls(address, watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to call ``watchdog()``: half of WATCHDOG_USEC, or None without one."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def ready(self, status: str | None = None) -> None:
        """Tell systemd start-up is complete (READY=1), optionally with a status line."""
        lines = ["READY=1"]
        if status is not None:
            lines.append(f"STATUS={_one_line(status)}")
        self._send("\n".join(lines))

    def status(self, text: str) -> None:
        """Set the one-line status ``systemctl status`` shows."""
        self._send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> None:
        """Ping the watchdog (WATCHDOG=1); call every ``watchdog_interval_s``."""
        self._send("WATCHDOG=1")

    def stopping(self) -> None:
        """Tell systemd the daemon is shutting down (STOPPING=1)."""
        self._send("STOPPING=1")

    def close(self) -> None:
        """Close the socket; later calls open it again."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, message: str) -> None:
        """One datagram to the socket; failures logged (once per run of failures)."""
        if self._address is None:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto(message.encode("utf-8", "replace"), self._address)
        except OSError as exc:
            if not self._failing:
                log.warning("cannot notify systemd at %s: %s", self._shown_address(), exc)
            else:
                log.debug("cannot notify systemd at %s: %s", self._shown_address(), exc)
            self._failing = True
            self.close()
            return
        if self._failing:
            log.info("notifying systemd at %s works again", self._shown_address())
        self._failing = False

    def _shown_address(self) -> str:
        address = self._address
        if isinstance(address, bytes):
            return "@" + address[1:].decode("utf-8", "replace")
        return str(address)


def _socket_address(address: str) -> str | bytes:
    """The sendto() address: a path as is, ``@name`` as the abstract ``b"\\0name"``."""
    if address.startswith("@"):
        return b"\0" + address[1:].encode("utf-8")
    return address


def _one_line(text: str) -> str:
    """Status text as one line (a newline would start another assignment), bounded."""
    flat = " ".join(str(text).split())
    return flat[:MAX_STATUS_CHARS]
