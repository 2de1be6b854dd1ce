"""The simulator's control interface: a line protocol on a local socket, for any language.

One request per line (UTF-8, at most :data:`MAX_LINE_BYTES` bytes before the newline):
a verb, then words separated by spaces. Positional words fill a command's parameters in
order; ``key=value`` words name them (and are the only way to give keyword-only ones).
One reply per request, one line of JSON::

    door b1 3 open        ->  {"ok": true, "result": ...}
    door b1 three open    ->  {"ok": false, "error": "door: channel must be an integer,
                               got 'three'; usage: door <board> <channel:int> open|close"}

(the error is one line on the wire). ``help`` lists every verb with its syntax;
``help VERB`` describes one. A bad request gets an error reply and the connection stays
usable.

The protocol is generic: a :class:`ControlServer` serves any table of :class:`Command`
entries, each naming a method of an API object and its parameters. The table the
simulator serves is :data:`SIM_COMMANDS`. The server listens on a Unix socket path or on
a TCP port of 127.0.0.1 (never another interface) and is driven from a single-threaded
loop by :meth:`ControlServer.poll`. :class:`ControlClient` is a small blocking client.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import enum
import errno
import json
import logging
import math
import os
import selectors
import socket
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from tools.closeable import Closeable

log = logging.getLogger(__name__)

MAX_LINE_BYTES: Final = 4096
"""Longest request line accepted, in bytes, not counting the line ending."""
MAX_PENDING_REPLY_BYTES: Final = 256 * 1024
"""A client with this much unread reply data is not read from until it catches up."""
READ_CHUNK: Final = 65536
LOOPBACK: Final = "127.0.0.1"

PathOrPort = str | os.PathLike[str] | int


class ControlError(Exception):
    """The server answered ``{"ok": false}``; the message is the server's error text."""


# -- command table ------------------------------------------------------------------


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


REQUIRED: Final[Any] = _Marker("REQUIRED")
"""``Param.default`` for a parameter that must be given."""
OMIT: Final[Any] = _Marker("OMIT")
"""``Param.default`` for an optional parameter that is not passed to the method at all
when the request leaves it out (for ``**settings``-style methods)."""


@dataclasses.dataclass(frozen=True)
class Choice:
    """A parameter that is one of a fixed set of words, each standing for a value."""

    options: Mapping[str, Any]

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError("a choice needs at least one option")
        for word in self.options:
            if not word or any(c.isspace() or c == "=" for c in word):
                raise ValueError(f"choice option {word!r} must be one word without '='")

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(self.options)


def choice(options: Sequence[str] | Mapping[str, Any]) -> Choice:
    """A :class:`Choice`: a list of words (each passed as itself) or a mapping from word
    to the value passed (e.g. ``{"open": True, "close": False}``)."""
    if isinstance(options, Mapping):
        return Choice(dict(options))
    if isinstance(options, str):
        raise TypeError("choice() takes a list of words, not one string")
    return Choice({word: word for word in options})


ParamType = type[int] | type[float] | type[bool] | type[str] | Choice

_BOOL_WORDS: Final = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter of a :class:`Command`.

    ``name`` is the word used in ``name=value`` and in messages; ``kwarg`` is the
    method's keyword (default: ``name``). ``default`` is :data:`REQUIRED`, :data:`OMIT`
    or a value. ``keyword_only`` parameters are given only as ``name=value``. ``minimum``
    and ``maximum`` bound int and float values.
    """

    name: str
    type: ParamType
    default: Any = REQUIRED
    kwarg: str | None = None
    keyword_only: bool = False
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() or c == "=" for c in self.name):
            raise ValueError(f"parameter name {self.name!r} must be one word without '='")
        if not self.keyword.isidentifier():
            raise ValueError(f"parameter {self.name!r}: {self.keyword!r} is not an identifier")
        if not isinstance(self.type, Choice) and self.type not in (int, float, bool, str):
            raise ValueError(
                f"parameter {self.name!r}: type must be int, float, bool, str or a choice(), "
                f"got {self.type!r}"
            )
        if (self.minimum is not None or self.maximum is not None) and self.type not in (
            int,
            float,
        ):
            raise ValueError(f"parameter {self.name!r}: bounds need an int or float type")

    @property
    def keyword(self) -> str:
        return self.kwarg or self.name

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def type_name(self) -> str:
        if isinstance(self.type, Choice):
            return "|".join(self.type.words)
        return self.type.__name__

    @property
    def usage(self) -> str:
        """How the parameter appears in ``help``: ``<channel:int>``, ``open|close``,
        ``[count:int=5]``, ``[unit=return|dropoff]``, ``[drop=float]``."""
        if self.keyword_only:
            if self.default is REQUIRED:
                return f"{self.name}={self.type_name}"
            return f"[{self.name}={self.type_name}]"
        if isinstance(self.type, Choice):
            shown = self.type_name
        elif self.type is str:
            shown = self.name
        else:
            shown = f"{self.name}:{self.type_name}"
        if self.default is REQUIRED:
            return shown if isinstance(self.type, Choice) else f"<{shown}>"
        if self.default is OMIT:
            return f"[{shown}]"
        return f"[{shown}={self._show_default()}]"

    def _show_default(self) -> str:
        if isinstance(self.type, Choice):
            for word, value in self.type.options.items():
                if value == self.default:
                    return word
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)

    def convert(self, word: str) -> Any:
        """The value a request word stands for.

        ``ValueError`` naming the parameter, what it must be, and the word given.
        """
        kind = self.type
        if isinstance(kind, Choice):
            if word in kind.options:
                return kind.options[word]
            raise ValueError(f"{self.name} must be one of {', '.join(kind.words)}, got {word!r}")
        if kind is str:
            return word
        if kind is bool:
            try:
                return _BOOL_WORDS[word.lower()]
            except KeyError:
                raise ValueError(
                    f"{self.name} must be true/false (or on/off, yes/no, 1/0), got {word!r}"
                ) from None
        value: int | float
        if kind is int:
            try:
                value = int(word, 10)
            except ValueError:
                raise ValueError(f"{self.name} must be an integer, got {word!r}") from None
        else:
            try:
                value = float(word)
            except ValueError:
                raise ValueError(f"{self.name} must be a number, got {word!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"{self.name} must be a finite number, got {word!r}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{self.name} must be at least {_num(self.minimum)}, got {word!r}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{self.name} must be at most {_num(self.maximum)}, got {word!r}")
        return value


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclasses.dataclass(frozen=True)
class Command:
    """One verb of the protocol: calls ``api.<method>(**converted arguments)``."""

    verb: str
    method: str
    params: tuple[Param, ...] = ()
    help: str = ""

    def __post_init__(self) -> None:
        if not self.verb or any(c.isspace() or c == "=" for c in self.verb):
            raise ValueError(f"verb {self.verb!r} must be one word without '='")
        names = [p.name for p in self.params]
        keywords = [p.keyword for p in self.params]
        for seen, what in ((names, "parameter name"), (keywords, "keyword")):
            dupes = sorted({x for x in seen if seen.count(x) > 1})
            if dupes:
                raise ValueError(f"{self.verb}: duplicate {what} {', '.join(dupes)}")
        optional_seen = False
        for param in self.params:
            if param.keyword_only:
                continue
            if not param.required:
                optional_seen = True
            elif optional_seen:
                raise ValueError(
                    f"{self.verb}: required {param.name!r} follows an optional positional parameter"
                )

    @property
    def usage(self) -> str:
        return " ".join([self.verb, *(p.usage for p in self.params)])

    def parse(self, words: Sequence[str]) -> dict[str, Any]:
        """Keyword arguments for the method from the words after the verb."""
        positional = [p for p in self.params if not p.keyword_only]
        by_name = {p.name: p for p in self.params}
        given: dict[str, str] = {}
        named_seen = False
        for word in words:
            key, sep, value = word.partition("=")
            if sep:
                param = by_name.get(key)
                if param is None:
                    valid = ", ".join(by_name) or "none"
                    raise ValueError(f"unknown argument {key!r}; valid arguments: {valid}")
                if key in given:
                    raise ValueError(f"{key} given twice")
                given[key] = value
                named_seen = True
                continue
            if named_seen:
                raise ValueError(f"positional argument {word!r} after a name=value argument")
            if len(given) >= len(positional):
                raise ValueError(f"unexpected extra argument {word!r}")
            given[positional[len(given)].name] = word
        kwargs: dict[str, Any] = {}
        for param in self.params:
            if param.name in given:
                kwargs[param.keyword] = param.convert(given[param.name])
            elif param.required:
                raise ValueError(f"missing {param.usage}")
            elif param.default is not OMIT:
                kwargs[param.keyword] = param.default
        return kwargs


# -- JSON replies ---------------------------------------------------------------------


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """``value`` in JSON's terms: bytes become hex strings, dataclasses dicts, enums
    their values, sets sorted lists, non-finite floats strings, anything else ``str``."""
    if _depth > 64:
        raise ValueError("result nested too deeply")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, _depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {_json_key(k, _depth): to_jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        items = [to_jsonable(v, _depth + 1) for v in value]
        with contextlib.suppress(TypeError):
            items.sort()
        return items
    if isinstance(value, list | tuple):
        return [to_jsonable(v, _depth + 1) for v in value]
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _json_key(key: Any, depth: int) -> str:
    if isinstance(key, str):
        return key
    plain = to_jsonable(key, depth + 1)
    return plain if isinstance(plain, str) else json.dumps(plain, allow_nan=False)


def encode_reply(ok: bool, payload: Any) -> bytes:
    """One reply line (JSON, ASCII, newline-terminated)."""
    body = {"ok": True, "result": payload} if ok else {"ok": False, "error": payload}
    return json.dumps(body, ensure_ascii=True, allow_nan=False).encode("ascii") + b"\n"


# -- server -------------------------------------------------------------------------


class _Client:
    __slots__ = ("discarding", "eof", "inbuf", "outbuf", "peer", "sock")

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.discarding = False  # inside a line longer than MAX_LINE_BYTES
        self.eof = False  # the client has sent everything it will send


class ControlServer(Closeable):
    """Serves a command table over a Unix socket path or a TCP port on 127.0.0.1.

    ``path_or_port``: an ``int`` is a TCP port on 127.0.0.1 (0 picks a free one; see
    ``.port``); a ``str`` or path is a Unix socket path (a stale socket file there is
    replaced; the file is removed on :meth:`close`). Every command's method must exist
    on ``api``.
    """

    def __init__(self, api: object, commands: Sequence[Command], path_or_port: PathOrPort):
        self.api: Final = api
        table: dict[str, Command] = {}
        for command in commands:
            if command.verb == "help" or command.verb in table:
                raise ValueError(f"verb {command.verb!r} is defined twice (help is built in)")
            table[command.verb] = command
        missing = [c.method for c in commands if not callable(getattr(api, c.method, None))]
        if missing:
            raise ValueError(
                f"{type(api).__name__} lacks the method(s) {', '.join(missing)} "
                "that the command table calls"
            )
        self.commands: Final[Mapping[str, Command]] = table
        self.path: str | None = None
        self.port: int | None = None
        self._path_stat: os.stat_result | None = None
        self._clients: dict[int, _Client] = {}
        self._selector = selectors.DefaultSelector()
        self._closed = False
        self.requests = 0
        """Requests answered so far."""
        if isinstance(path_or_port, bool) or not isinstance(path_or_port, int | str | os.PathLike):
            raise TypeError(f"path_or_port must be a socket path or a port, got {path_or_port!r}")
        try:
            if isinstance(path_or_port, int):
                self._listener = self._listen_tcp(path_or_port)
            else:
                self._listener = self._listen_unix(os.fspath(path_or_port))
            self._listener.setblocking(False)
            self._selector.register(self._listener, selectors.EVENT_READ, None)
        except BaseException:
            self._selector.close()
            raise

    def _listen_tcp(self, port: int) -> socket.socket:
        if not 0 <= port <= 65535:
            raise ValueError(f"control port must be 0..65535, got {port}")
        listener = socket.create_server((LOOPBACK, port), backlog=16)
        self.port = listener.getsockname()[1]
        return listener

    def _listen_unix(self, path: str) -> socket.socket:
        if len(os.fsencode(path)) >= 104:
            raise ValueError(f"control socket path is too long for a Unix socket: {path}")
        with contextlib.suppress(FileNotFoundError):
            mode = os.lstat(path).st_mode
            if not stat.S_ISSOCK(mode):
                raise ValueError(f"control socket path exists and is not a socket: {path}")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except (ConnectionRefusedError, FileNotFoundError):
                os.unlink(path)  # stale: nobody listens there any more
            else:
                raise ValueError(f"control socket {path} is in use by another process")
            finally:
                probe.close()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
            listener.listen(16)
        except BaseException:
            listener.close()
            raise
        self.path = path
        self._path_stat = os.stat(path)
        return listener

    @property
    def address(self) -> str:
        """Where clients connect: the socket path, or ``127.0.0.1:PORT``."""
        return self.path if self.path is not None else f"{LOOPBACK}:{self.port}"

    @property
    def clients(self) -> int:
        return len(self._clients)

    def fileno(self) -> int:
        """A descriptor that is readable whenever :meth:`poll` has work to do (the
        server's own epoll/kqueue descriptor), for the simulator's selector."""
        fileno = getattr(self._selector, "fileno", None)
        if fileno is None:  # pragma: no cover - select/poll selectors have no descriptor
            raise OSError(errno.ENOTSUP, f"{type(self._selector).__name__} has no descriptor")
        result: int = fileno()
        return result

    # -- loop -----------------------------------------------------------------------

    def poll(self, timeout: float = 0) -> int:
        """Accept clients, answer complete request lines, send pending replies.

        Waits at most ``timeout`` seconds for something to happen; returns how many
        requests were answered.
        """
        if self._closed:
            raise ValueError("control server is closed")
        before = self.requests
        for key, events in self._selector.select(timeout):
            if key.data is None:
                self._accept()
                continue
            client: _Client = key.data
            if self._clients.get(key.fd) is not client:
                continue  # dropped earlier in this poll
            if events & selectors.EVENT_READ:
                self._receive(client)
            self._service(client)
        return self.requests - before

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                log.warning("control: accept failed: %s", exc)
                return
            sock.setblocking(False)
            peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else "unix"
            client = _Client(sock, peer)
            self._clients[sock.fileno()] = client
            self._selector.register(sock, selectors.EVENT_READ, client)

    def _receive(self, client: _Client) -> None:
        try:
            data = client.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            # Reset by the peer: like TCP itself, forget what it sent and what it was sent.
            data = b""
            client.inbuf.clear()
            client.outbuf.clear()
        if data:
            client.inbuf += data
        else:
            client.eof = True

    def _service(self, client: _Client) -> None:
        """Answer what can be answered, send what can be sent, then wait for the right
        events: no reading while a client leaves too many replies unread."""
        while True:
            self._handle_lines(client)
            if not self._send(client):
                return
            if client.outbuf or b"\n" not in client.inbuf:
                break
        if client.eof and not client.outbuf:
            self._drop(client)  # a partial last line is dropped unanswered
            return
        events = selectors.EVENT_WRITE if client.outbuf else 0
        if not client.eof and len(client.outbuf) < MAX_PENDING_REPLY_BYTES:
            events |= selectors.EVENT_READ
        if self._selector.get_key(client.sock).events != events:
            self._selector.modify(client.sock, events, client)

    def _handle_lines(self, client: _Client) -> None:
        buf = client.inbuf
        while len(client.outbuf) < MAX_PENDING_REPLY_BYTES:
            newline = buf.find(b"\n")
            if newline < 0:
                if len(buf) > MAX_LINE_BYTES + 1:  # room for a '\r' before the newline
                    client.discarding = True
                    buf.clear()
                return
            line = bytes(buf[:newline])
            del buf[: newline + 1]
            if client.discarding:
                client.discarding = False
                client.outbuf += self._too_long()
            else:
                client.outbuf += self.handle_line(line)
            self.requests += 1

    def _send(self, client: _Client) -> bool:
        """Send what the socket takes; False when the client is gone."""
        if not client.outbuf:
            return True
        try:
            sent = client.sock.send(client.outbuf)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            self._drop(client)
            return False
        del client.outbuf[:sent]
        return True

    def _too_long(self) -> bytes:
        return encode_reply(
            False, f"request line longer than {MAX_LINE_BYTES} bytes; nothing was done"
        )

    def handle_line(self, raw: bytes) -> bytes:
        """The reply line for one request line (without its newline). Never raises."""
        try:
            return self._handle_line(raw)
        except Exception as exc:  # a bug of ours; the connection and the server go on
            log.exception("control: request %r failed", raw[:200])
            return encode_reply(False, f"internal error: {type(exc).__name__}: {exc}")

    def _handle_line(self, raw: bytes) -> bytes:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > MAX_LINE_BYTES:
            return self._too_long()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return encode_reply(
                False,
                f"request is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
                f"{exc.start}); nothing was done",
            )
        words = text.split()
        if not words:
            return encode_reply(False, "empty request; send 'help' for the list of verbs")
        verb, args = words[0], words[1:]
        if verb == "help":
            return self._help(args)
        command = self.commands.get(verb)
        if command is None:
            return encode_reply(False, self._unknown_verb(verb))
        try:
            kwargs = command.parse(args)
        except ValueError as exc:
            return encode_reply(False, f"{verb}: {exc}; usage: {command.usage}")
        return self._call(command, kwargs)

    def _unknown_verb(self, verb: str) -> str:
        verbs = ["help", *self.commands]
        close = difflib.get_close_matches(verb, verbs, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown verb {verb!r}{hint}; valid verbs: {', '.join(verbs)}"

    def _help(self, args: Sequence[str]) -> bytes:
        if len(args) > 1:
            return encode_reply(False, "help: takes at most one verb; usage: help [verb]")
        entries = [
            {"verb": c.verb, "usage": c.usage, "help": c.help} for c in self.commands.values()
        ]
        entries.append(
            {"verb": "help", "usage": "help [verb]", "help": "List the verbs or describe one."}
        )
        if not args:
            return encode_reply(True, entries)
        for entry in entries:
            if entry["verb"] == args[0]:
                return encode_reply(True, entry)
        return encode_reply(False, "help: " + self._unknown_verb(args[0]))

    def _call(self, command: Command, kwargs: dict[str, Any]) -> bytes:
        try:
            result = getattr(self.api, command.method)(**kwargs)
        except ValueError as exc:
            return encode_reply(False, f"{command.verb}: {exc}")
        except Exception as exc:
            log.exception("control: %s failed", command.verb)
            return encode_reply(False, f"internal error: {type(exc).__name__}: {exc}")
        try:
            return encode_reply(True, to_jsonable(result))
        except Exception as exc:
            log.exception("control: the result of %s could not be encoded", command.verb)
            return encode_reply(
                False, f"internal error: result of {command.verb} not encodable: {exc}"
            )

    def _drop(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if self._clients.pop(fd, None) is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(client.sock)
        client.sock.close()

    # -- lifetime -------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Disconnect every client, stop listening, remove the socket file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for client in list(self._clients.values()):
            self._drop(client)
        self._listener.close()
        self._selector.close()
        if self.path is not None and self._path_stat is not None:
            with contextlib.suppress(OSError):
                now = os.stat(self.path)
                if (now.st_dev, now.st_ino) == (self._path_stat.st_dev, self._path_stat.st_ino):
                    os.unlink(self.path)


# -- client -------------------------------------------------------------------------


class ControlClient(Closeable):
    """A blocking client: ``call("door b1 3 open")`` returns the result or raises
    :class:`ControlError` with the server's message."""

    def __init__(self, path_or_port: PathOrPort, timeout: float = 30.0) -> None:
        if isinstance(path_or_port, bool):
            raise TypeError(f"path_or_port must be a socket path or a port, got {path_or_port!r}")
        if isinstance(path_or_port, int):
            self.sock = socket.create_connection((LOOPBACK, path_or_port), timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(os.fspath(path_or_port))
            except BaseException:
                self.sock.close()
                raise
        self._file = self.sock.makefile("rb")

    def send_line(self, line: str | bytes) -> None:
        """Send one request line (a newline is added)."""
        data = line.encode("utf-8") if isinstance(line, str) else line
        if b"\n" in data:
            raise ValueError("a request is one line; it must not contain a newline")
        self.sock.sendall(data + b"\n")

    def read_reply(self) -> dict[str, Any]:
        """The next reply, decoded (``{"ok": ..., "result"/"error": ...}``)."""
        line = self._file.readline()
        if not line:
            raise ConnectionError("the control server closed the connection")
        reply = json.loads(line)
        if not isinstance(reply, dict) or "ok" not in reply:
            raise ControlError(f"malformed reply: {line!r}")
        return reply

    def call(self, line: str) -> Any:
        """Send a request and return its result; :class:`ControlError` on ok=false."""
        self.send_line(line)
        reply = self.read_reply()
        if not reply["ok"]:
            raise ControlError(reply.get("error", "unknown error"))
        return reply.get("result")

    def close(self) -> None:
        self._file.close()
        self.sock.close()


# -- the simulator's table ------------------------------------------------------------

_BOARD: Final = Param("board", str)
_CHANNEL: Final = Param("channel", int, minimum=0)
_ON_OFF: Final = {"on": True, "off": False}
_OPEN_CLOSE: Final = {"open": True, "close": False}


def _setting(name: str, kind: type[int] | type[float], maximum: float) -> Param:
    return Param(name, kind, OMIT, keyword_only=True, minimum=0, maximum=maximum)


SIM_COMMANDS: Final[tuple[Command, ...]] = (
    Command("state", "state", (), "The whole simulated terminal: boards, doors, items, units."),
    Command("boards", "boards_info", (), "The virtual boards with their pty paths and URLs."),
    Command(
        "door",
        "door",
        (_BOARD, _CHANNEL, Param("action", choice(_OPEN_CLOSE), kwarg="open")),
        "A person opens or closes a compartment door.",
    ),
    Command(
        "item",
        "item",
        (_BOARD, _CHANNEL, Param("action", choice({"put": True, "take": False}), kwarg="present")),
        "A person puts an item into a compartment or takes it out.",
    ),
    Command(
        "deposit",
        "deposit",
        (Param("unit", choice(["return", "dropoff"]), "return", keyword_only=True),),
        "A document is dropped into the return slot or the drop-off slot.",
    ),
    Command("swipe", "swipe", (), "A bank card is swiped: the entrance reader grants."),
    Command("exit", "press_exit", (), "The exit button inside the container is pressed."),
    Command(
        "entrance-door",
        "entrance_door",
        (Param("action", choice(_OPEN_CLOSE), kwarg="open"),),
        "The entrance door is pushed open or falls shut.",
    ),
    Command(
        "tamper",
        "tamper",
        (Param("state", choice(_ON_OFF), kwarg="active"),),
        "The cabinet tamper switch trips or is restored.",
    ),
    Command(
        "service-door",
        "service_door",
        (Param("action", choice(_OPEN_CLOSE), kwarg="open"),),
        "The service door is opened or closed.",
    ),
    Command(
        "jam",
        "jam",
        (_BOARD, _CHANNEL, Param("state", choice(_ON_OFF), kwarg="on")),
        "A compartment's door jams: it stays shut when its solenoid is pulsed.",
    ),
    Command(
        "stick",
        "stick",
        (_BOARD, Param("input", str), Param("level", int, minimum=0, maximum=1)),
        "Hold an input (door3, item3, return.flap, entrance.grant, ...) at a level.",
    ),
    Command(
        "unstick",
        "unstick",
        (_BOARD, Param("input", str)),
        "Let a stuck input follow the simulated hardware again.",
    ),
    Command(
        "bounce",
        "bounce",
        (
            _BOARD,
            Param("input", str),
            Param("count", int, 5, minimum=1, maximum=1000),
            Param("ms", int, 2, minimum=0, maximum=10_000),
        ),
        "Make an input bounce: count extra edges, ms apart.",
    ),
    Command(
        "power",
        "power",
        (_BOARD, Param("action", choice(["cut", "on", "reboot", "reset"]))),
        "Cut a board's power, restore it, power-cycle it, or pull its hard-reset line.",
    ),
    Command(
        "noise",
        "noise",
        (
            _BOARD,
            Param(
                "dir", choice(["both", "in", "out"]), "both", kwarg="direction", keyword_only=True
            ),
            _setting("bit_error", float, 1),
            _setting("drop", float, 1),
            _setting("duplicate", float, 1),
            _setting("delay_ms", int, 3_600_000),
            _setting("jitter_ms", int, 3_600_000),
        ),
        "Line noise on a board's link (in: towards the board, out: from it); "
        "settings not given stay as they are.",
    ),
    Command(
        "cut",
        "cut_link",
        (_BOARD, Param("state", choice(_ON_OFF), kwarg="on")),
        "Cut a board's link (every byte lost both ways) or restore it.",
    ),
    Command(
        "edges",
        "edges",
        (_BOARD, Param("since", int, 0, minimum=0)),
        "Every output edge of a board (pin, level, what it drives) at or after simulated ms since.",
    ),
    Command(
        "advance",
        "advance",
        (Param("ms", int, minimum=0),),
        "Advance simulated time by ms (when the simulator runs on manual time).",
    ),
)
"""The verbs ``amtomat sim`` serves, calling methods of its ``Simulator``."""
