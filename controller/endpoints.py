"""Endpoint URLs: one parser for the config's ``bridge.listen``, the bridge and its clients.

``tcp://HOST:PORT``, ``unix:PATH``, ``serial:PATH[?baud=N]`` and ``pty:PATH`` become an
:class:`Endpoint` or a ``ConfigError`` naming the key, the text, the problem and the fix.
The config and the bridge listen on one machine's address at a fixed port; two keyword
switches allow what tests and clients need beyond that: port 0 (``free_port``) and host
names (``host_names``).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Literal, cast

from controller.errors import ConfigError
from controller.tomlcheck import PATH_MAX_LEN, _show

EndpointKind = Literal["tcp", "unix", "serial", "pty"]

KINDS: Final = ("tcp", "unix", "serial", "pty")
PORT_MAX: Final = 65535
SERIAL_BAUD_RANGE: Final = (1200, 4_000_000)
DEFAULT_SERIAL_BAUD: Final = 115200
UNIX_PATH_MAX: Final = 107  # bytes of sockaddr_un.sun_path, less the terminating NUL
HOST_NAME_MAX_LEN: Final = 253

_PORT_RE: Final = re.compile(r"[0-9]{1,5}")
_DIGITS_RE: Final = re.compile(r"[0-9]{1,8}")
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME_RE: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


@dataclass(frozen=True)
class Endpoint:
    """One endpoint; ``url`` (and ``str()``) is its canonical text, which parses back to it."""

    kind: EndpointKind
    host: str = ""  # tcp: an IP address (IPv6 without brackets), localhost or a host name
    port: int = 0  # tcp; 0 asks the system for a free port
    path: str = ""  # unix, serial, pty
    baud: int = DEFAULT_SERIAL_BAUD  # serial

    @property
    def url(self) -> str:
        """The endpoint as text; ``parse_endpoint(e.url) == e``."""
        if self.kind == "tcp":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"tcp://{host}:{self.port}"
        if self.kind == "serial":
            return f"serial:{self.path}?baud={self.baud}"
        return f"{self.kind}:{self.path}"

    def __str__(self) -> str:
        return self.url


_ANY_ADDRESS: Final = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def local_endpoint(listen: Sequence[Endpoint]) -> Endpoint | None:
    """Where a tool on this machine reaches a bridge listening on ``listen``: the first
    Unix socket, else the first TCP endpoint (an any-address as its loopback); None when
    there is neither (serial lines and ptys belong to the kiosk)."""
    for e in listen:
        if e.kind == "unix":
            return e
    for e in listen:
        if e.kind == "tcp":
            return replace(e, host=_ANY_ADDRESS.get(e.host, e.host))
    return None


def parse_endpoint(
    text: object,
    base_dir: Path | None = None,
    key: str = "endpoint",
    *,
    free_port: bool = False,
    host_names: bool = False,
) -> Endpoint:
    """``tcp://HOST:PORT``, ``unix:PATH``, ``serial:PATH[?baud=N]`` or ``pty:PATH``.

    HOST is localhost or one machine's IP address (IPv6 in brackets); with ``host_names``
    also a DNS host name (a client connecting). PORT is 1..65535; with ``free_port`` also 0,
    which asks the system for a free port (a listener in tests and the demo). A relative
    PATH is taken from ``base_dir`` when given. Errors are ConfigError on ``key``.
    """
    fix = (
        "write tcp://HOST:PORT ("
        + ("an address or a host name" if host_names else "a loopback or explicit address")
        + ", e.g. tcp://127.0.0.1:7010), unix:PATH, serial:PATH or serial:PATH?baud=N, "
        "or pty:PATH"
    )
    if not isinstance(text, str):
        raise ConfigError(key, text, f"{_show(text)} is not text", fix)

    def bad(detail: str) -> ConfigError:
        return ConfigError(key, text, f"{_show(text)} is not an endpoint: {detail}", fix)

    if not text.isprintable() or any(c.isspace() for c in text):
        raise bad("it holds a blank or a control character")
    kind, sep, rest = text.partition(":")
    if not sep:
        raise bad("it names no kind")
    if kind == "tcp":
        if not rest.startswith("//"):
            raise bad("a tcp endpoint starts with tcp://")
        return _tcp(text, rest[2:], key, bad, free_port=free_port, host_names=host_names)
    if kind not in KINDS:
        raise bad(f"{_show(kind)} is not a kind ({', '.join(KINDS)})")
    baud = DEFAULT_SERIAL_BAUD
    if kind == "serial":
        rest, query, option = rest.partition("?")
        if query:
            baud = _baud(text, option, key)
    why = _path_problem(rest)
    if why:
        raise ConfigError(key, text, f"{_show(text)} has no valid path: {why}", fix)
    path = Path(rest)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if kind == "unix" and len(os.fsencode(str(path))) > UNIX_PATH_MAX:
        raise ConfigError(
            key,
            text,
            f"the socket path {_show(str(path))} is longer than {UNIX_PATH_MAX} bytes",
            "use a shorter path, e.g. unix:/run/amtomat/kiosk.sock",
        )
    return Endpoint(cast(EndpointKind, kind), path=str(path), baud=baud)


def _path_problem(path: str) -> str:
    """Why ``path`` (an endpoint's PATH as written) is not one, or ""."""
    if not path:
        return "the path is empty"
    if "?" in path:
        return "the path holds a ? (options are serial:PATH?baud=N only)"
    if len(path) > PATH_MAX_LEN:
        return f"the path is longer than {PATH_MAX_LEN} characters"
    return ""


def _baud(text: str, option: str, key: str) -> int:
    """The N of a serial endpoint's ``baud=N`` option."""
    name, _, number = option.partition("=")
    if name != "baud" or not _DIGITS_RE.fullmatch(number):
        raise ConfigError(
            key,
            text,
            f"{_show(text)} has an unknown option {_show(option)}",
            "the one option is baud=N with N a whole number, e.g. serial:/dev/ttyUSB0?baud=9600",
        )
    baud = int(number)
    lo, hi = SERIAL_BAUD_RANGE
    if not lo <= baud <= hi:
        raise ConfigError(key, baud, f"baud {baud} is out of range", f"use {lo}..{hi}")
    return baud


def _tcp(
    text: str,
    authority: str,
    key: str,
    bad: Callable[[str], ConfigError],
    *,
    free_port: bool,
    host_names: bool,
) -> Endpoint:
    """``authority`` is what follows ``tcp://``: HOST:PORT."""
    bracketed = authority.startswith("[")
    end = authority.find("]") + 1 if bracketed else authority.find(":")
    if bracketed and end == 0:
        raise bad("the [ before an IPv6 address is not closed")
    if end < 0:
        end = len(authority)
    host, after = authority[:end], authority[end:]
    if after in ("", ":"):
        raise bad("the port is missing")
    if not after.startswith(":"):
        raise bad("write :PORT right after the host")
    port_text = after[1:]
    if not bracketed and ":" in port_text:
        raise bad("an IPv6 address goes in brackets, e.g. tcp://[::1]:7010")
    if not host:
        raise bad("the host is missing")
    if not _PORT_RE.fullmatch(port_text):
        raise bad(f"the port {_show(port_text)} is not 1 to 5 digits")
    host = _host(host, text, key, host_names)
    port = int(port_text)
    low = 0 if free_port else 1
    if not low <= port <= PORT_MAX:
        raise ConfigError(
            key, text, f"port {port} is out of range", f"use a port {low}..{PORT_MAX}"
        )
    return Endpoint("tcp", host=host, port=port)


def _host(host: str, text: str, key: str, host_names: bool) -> str:
    """localhost, the canonical form of one machine's IP address, or (``host_names``) a
    DNS host name as written."""
    if host == "localhost":
        return host
    bracketed = host.startswith("[")
    try:
        ip = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        ip = None
    if ip is None and not bracketed and host_names and _is_host_name(host):
        return host
    if ip is None or bracketed != (ip.version == 6):
        raise ConfigError(
            key,
            text,
            f"{_show(host)} is not an IP address" + (" or host name" if host_names else ""),
            "write an IPv4 address, an IPv6 address in [brackets], "
            + ("localhost or a host name" if host_names else "or localhost"),
        )
    if ip.is_unspecified or ip.is_multicast:
        raise ConfigError(
            key,
            text,
            f"{_show(host)} is not a single address",
            "connect to 127.0.0.1 for a bridge on this machine, or to the Pi's address"
            if host_names
            else "listen on 127.0.0.1 for a kiosk on this machine, or on the Pi's own address "
            "in the kiosk network; never on every interface",
        )
    return str(ip)


def _is_host_name(host: str) -> bool:
    """RFC 1123 labels, at most 253 characters, a last label that is not all digits."""
    last = host.rstrip(".").rpartition(".")[2]
    return (
        len(host) <= HOST_NAME_MAX_LEN
        and _HOST_NAME_RE.fullmatch(host) is not None
        and not last.isdigit()
    )
