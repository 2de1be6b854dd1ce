"""Reaching the running daemon: its kiosk bridge, found through the terminal TOML.

The daemon owns the serial ports, so diagnostics ask it over the bridge like a kiosk
does: ``locate(config)`` picks a local endpoint of ``bridge.listen`` (a Unix socket, else
TCP; a serial or pty line belongs to the kiosk) and reads the pairing key; ``session``
checks that something listens there and opens a ``KioskClient`` session. The key is
never printed: ``Bridge`` leaves it out of its repr.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from controller import endpoints
from controller.api import Result
from controller.config import Config, load
from controller.endpoints import Endpoint
from controller.errors import ControllerError
from controller.keystore import read_key
from host_bridge.client import KioskClient
from host_bridge.errors import KioskAuthError, KioskConnectionError, KioskTimeout
from tools.diag.errors import (
    ConfigUnreadable,
    DaemonUnavailable,
    KeyUnreadable,
    NoLocalEndpoint,
    Refused,
)

DEFAULT_CONFIG: Final = Path("/etc/amtomat/terminal.toml")
DEFAULT_TIMEOUT_S: Final = 10.0
PROBE_TIMEOUT_S: Final = 3.0


@dataclass(frozen=True)
class Bridge:
    """Where the daemon's bridge answers on this machine, and how to authenticate."""

    config: Config = field(repr=False)
    endpoint: Endpoint
    key_file: Path | None  # None: the bridge takes sessions without a pairing key
    key: bytes | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The endpoint as KioskClient takes it."""
        return self.endpoint.url


def add_daemon_arguments(p: argparse.ArgumentParser) -> None:
    """``--config`` and ``--timeout``, shared by the commands that ask the daemon."""
    p.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"the terminal TOML (default {DEFAULT_CONFIG})",
    )
    p.add_argument(
        "--timeout",
        type=seconds_arg,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait for the daemon's answers (default {DEFAULT_TIMEOUT_S:g})",
    )


def seconds_arg(text: str) -> float:
    """An argparse type: seconds, 0 < S <= 3600; argparse names the bad value."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 and at most 3600 seconds")
    return value


def load_config(path: Path) -> Config:
    """The terminal TOML; ConfigUnreadable naming the file and the problem."""
    try:
        return load(path)
    except ControllerError as exc:
        message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
        raise ConfigUnreadable(message, str(path)) from None
    except OSError as exc:
        raise ConfigUnreadable(f"{path}: cannot read it ({exc.strerror})", str(path)) from None


def local_endpoint(listen: Sequence[Endpoint]) -> Endpoint:
    """The endpoint to connect to (``controller.endpoints.local_endpoint``);
    NoLocalEndpoint when there is none."""
    found = endpoints.local_endpoint(listen)
    if found is not None:
        return found
    shown = ", ".join(e.url for e in listen) or "nothing"
    raise NoLocalEndpoint(
        f"bridge.listen has no tcp:// or unix: endpoint ({shown}); the diagnostics reach "
        'the daemon through one: add e.g. "unix:/run/amtomat/bridge.sock" or '
        '"tcp://127.0.0.1:7010" to bridge.listen and restart the daemon',
        shown,
    )


def locate(config_path: Path) -> Bridge:
    """The bridge of the terminal described by config_path (key not read yet)."""
    cfg = load_config(config_path)
    endpoint = local_endpoint(cfg.bridge.listen)
    return Bridge(cfg, endpoint, cfg.bridge.key_file if cfg.bridge.require_key else None)


def with_key(bridge: Bridge) -> Bridge:
    """The bridge with its pairing key read; KeyUnreadable saying why and what to do."""
    if bridge.key_file is None:
        return bridge
    try:
        key = read_key(bridge.key_file)
    except ControllerError as exc:
        raise KeyUnreadable(
            f"the pairing key cannot be used: {exc} (run as the daemon's user, e.g. "
            "sudo -u amtomat amtomat ..., or as root)",
            str(bridge.key_file),
        ) from None
    if key is None:
        raise KeyUnreadable(
            f"no pairing key at {bridge.key_file}: the daemon writes it at its first start; "
            "check bridge.key_file in the terminal TOML and that the daemon has started once",
            str(bridge.key_file),
        )
    return Bridge(bridge.config, bridge.endpoint, bridge.key_file, key)


def probe(endpoint: Endpoint, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Return when something accepts connections at endpoint; DaemonUnavailable (or
    KeyUnreadable for a socket we may not open) otherwise."""
    hint = "is the daemon running? (systemctl status amtomat; journalctl -u amtomat)"
    try:
        if endpoint.kind == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout_s)
                s.connect(endpoint.path)
        else:
            family = socket.AF_INET6 if _is_v6(endpoint.host) else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(timeout_s)
                s.connect((endpoint.host, endpoint.port))
    except PermissionError:
        raise KeyUnreadable(
            f"no permission to connect to {endpoint.url}: run as the daemon's user "
            "(sudo -u amtomat amtomat ...) or as root",
            endpoint.url,
        ) from None
    except (FileNotFoundError, ConnectionRefusedError):
        message = f"nothing listens at {endpoint.url}: {hint}"
        raise DaemonUnavailable(message, endpoint.url) from None
    except OSError as exc:
        why = exc.strerror or errno.errorcode.get(exc.errno or 0, "") or str(exc) or "timed out"
        message = f"cannot reach {endpoint.url} ({why}): {hint}"
        raise DaemonUnavailable(message, endpoint.url) from None


def _is_v6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


@contextlib.asynccontextmanager
async def session(bridge: Bridge, peer: str, timeout_s: float) -> AsyncIterator[KioskClient]:
    """A bridge session as peer; DaemonUnavailable or KeyUnreadable when none comes up."""
    probe(bridge.endpoint)
    bridge = with_key(bridge)
    try:
        client = await KioskClient.connect(bridge.url, bridge.key, peer=peer, timeout_s=timeout_s)
    except KioskAuthError as exc:
        raise KeyUnreadable(
            f"the bridge refused the pairing key in {bridge.key_file}: {exc}; the daemon and "
            "this command must read the same bridge.key_file",
            bridge.url,
        ) from None
    except KioskConnectionError as exc:
        raise DaemonUnavailable(f"{exc}: is the daemon running and healthy?", bridge.url) from None
    try:
        yield client
    finally:
        await client.close()


async def ask(client: KioskClient, request: str, timeout_s: float, **args: Any) -> dict[str, Any]:
    """One request's data; Refused with the daemon's status and reason, DaemonUnavailable
    when no reply comes within timeout_s."""
    try:
        result: Result = await client.call(request, timeout_s, **args)
    except KioskTimeout as exc:
        raise DaemonUnavailable(f"{exc}: the daemon is not answering", request) from None
    if not result.ok:
        raise Refused(f"{request} refused ({result.status.name.lower()}): {result.reason}", result)
    return dict(result.data or {})
