"""Where the bridge listens: ``tcp://HOST:PORT``, ``unix:PATH``, ``serial:PATH[?baud=N]``
and ``pty:PATH``, parsed into an :class:`Endpoint` or refused with an EndpointError."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from host_bridge.errors import EndpointError

Kind = Literal["tcp", "unix", "serial", "pty"]

DEFAULT_BAUD: Final = 115200
MIN_BAUD: Final = 50
MAX_BAUD: Final = 4_000_000
UNIX_PATH_MAX: Final = 107  # sun_path holds 108 bytes including the terminating NUL
FORMS: Final = "tcp://HOST:PORT, unix:PATH, serial:PATH[?baud=N] or pty:PATH"


@dataclass(frozen=True)
class Endpoint:
    """One parsed endpoint; ``str()`` gives its canonical text, which parses back to it."""

    kind: Kind
    host: str = ""  # tcp only
    port: int = 0  # tcp only; 0 asks the system for a free port
    path: str = ""  # unix, serial, pty
    baud: int = DEFAULT_BAUD  # serial only

    def __str__(self) -> str:
        if self.kind == "tcp":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"tcp://{host}:{self.port}"
        if self.kind == "serial" and self.baud != DEFAULT_BAUD:
            return f"serial:{self.path}?baud={self.baud}"
        return f"{self.kind}:{self.path}"


def _fail(text: str, problem: str) -> EndpointError:
    return EndpointError(f"endpoint {text!r}: {problem}; use {FORMS}", text)


def _path(text: str, path: str) -> str:
    if not path:
        raise _fail(text, "the path is empty")
    if "\x00" in path:
        raise _fail(text, "the path contains a NUL byte")
    if path != path.strip():
        raise _fail(text, f"the path {path!r} has leading or trailing blanks")
    return path


def _number(text: str, what: str, digits: str, lo: int, hi: int) -> int:
    if not digits.isascii() or not digits.isdigit():
        raise _fail(text, f"{what} {digits!r} is not a whole number")
    value = int(digits)
    if not lo <= value <= hi:
        raise _fail(text, f"{what} {value} is outside {lo}..{hi}")
    return value


def _tcp(text: str, rest: str) -> Endpoint:
    host, sep, port = rest.rpartition(":")
    if not sep or not port:
        raise _fail(text, "the port is missing")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host or ":" not in host:
            raise _fail(text, f"[{host}] is not an IPv6 address")
    elif ":" in host:
        raise _fail(text, "an IPv6 address needs brackets, e.g. tcp://[::1]:7000")
    if not host:
        raise _fail(text, "the host is missing")
    if any(c.isspace() or c in "/?#@[]" for c in host) or not host.isprintable():
        raise _fail(text, f"the host {host!r} contains a character a host name cannot have")
    return Endpoint("tcp", host=host, port=_number(text, "port", port, 0, 65535))


def _serial(text: str, rest: str) -> Endpoint:
    path, sep, query = rest.partition("?")
    baud = DEFAULT_BAUD
    if sep:
        key, eq, value = query.partition("=")
        if key != "baud" or not eq:
            raise _fail(text, f"unknown option {query!r}; the only one is baud=N")
        baud = _number(text, "baud", value, MIN_BAUD, MAX_BAUD)
    return Endpoint("serial", path=_path(text, path), baud=baud)


def parse_endpoint(text: str) -> Endpoint:
    """The endpoint ``text`` names; EndpointError naming it and the accepted forms."""
    if not isinstance(text, str):
        raise EndpointError(f"endpoint must be text like {FORMS}, got {text!r}", text)
    scheme, sep, rest = text.partition(":")
    if not sep:
        raise _fail(text, "no kind given")
    if scheme == "tcp":
        if not rest.startswith("//"):
            raise _fail(text, "tcp endpoints start with tcp://")
        return _tcp(text, rest[2:])
    if scheme == "unix":
        path = _path(text, rest)
        if len(path.encode("utf-8", "surrogateescape")) > UNIX_PATH_MAX:
            raise _fail(text, f"a socket path is at most {UNIX_PATH_MAX} bytes")
        return Endpoint("unix", path=path)
    if scheme == "serial":
        return _serial(text, rest)
    if scheme == "pty":
        return Endpoint("pty", path=_path(text, rest))
    raise _fail(text, f"unknown kind {scheme!r}")
