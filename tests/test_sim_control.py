"""tools.sim.control: the simulator's line protocol, over real Unix and TCP loopback sockets.

The API behind the server is a plain recording class standing in for the simulator (the
peer's API surface, not one of our layers). The server runs its single-threaded poll
loop in a background thread, as the simulator's loop would; waits poll with generous
deadlines and assert on content only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import inspect
import json
import math
import select
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.sim.control import (
    MAX_LINE_BYTES,
    OMIT,
    SIM_COMMANDS,
    Command,
    ControlClient,
    ControlError,
    ControlServer,
    Param,
    choice,
    to_jsonable,
)
from tools.sim.simulator import Simulator

DEADLINE_S = 20.0
"""How long any wait may take before the test fails (generous; never asserted on)."""


class FakeSim:
    """Records every call; returns the method name and the arguments it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _record(self, method: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((method, kwargs))
        return {"method": method, **kwargs}

    def state(self) -> dict[str, Any]:
        return self._record("state")

    def boards_info(self) -> dict[str, Any]:
        return self._record("boards_info")

    def door(self, board: str, channel: int, open: bool) -> dict[str, Any]:
        return self._record("door", board=board, channel=channel, open=open)

    def item(self, board: str, channel: int, present: bool) -> dict[str, Any]:
        return self._record("item", board=board, channel=channel, present=present)

    def deposit(self, unit: str = "return") -> dict[str, Any]:
        return self._record("deposit", unit=unit)

    def swipe(self) -> dict[str, Any]:
        return self._record("swipe")

    def press_exit(self) -> dict[str, Any]:
        return self._record("press_exit")

    def entrance_door(self, open: bool) -> dict[str, Any]:
        return self._record("entrance_door", open=open)

    def tamper(self, active: bool) -> dict[str, Any]:
        return self._record("tamper", active=active)

    def service_door(self, open: bool) -> dict[str, Any]:
        return self._record("service_door", open=open)

    def jam(self, board: str, channel: int, on: bool) -> dict[str, Any]:
        return self._record("jam", board=board, channel=channel, on=on)

    def stick(self, board: str, input: str, level: int) -> dict[str, Any]:
        return self._record("stick", board=board, input=input, level=level)

    def unstick(self, board: str, input: str) -> dict[str, Any]:
        return self._record("unstick", board=board, input=input)

    def bounce(self, board: str, input: str, count: int = 5, ms: int = 2) -> dict[str, Any]:
        return self._record("bounce", board=board, input=input, count=count, ms=ms)

    def power(self, board: str, action: str) -> dict[str, Any]:
        return self._record("power", board=board, action=action)

    def noise(self, board: str, direction: str = "both", **settings: Any) -> dict[str, Any]:
        return self._record("noise", board=board, direction=direction, **settings)

    def cut_link(self, board: str, on: bool) -> dict[str, Any]:
        return self._record("cut_link", board=board, on=on)

    def edges(self, board: str, since: int = 0) -> dict[str, Any]:
        return self._record("edges", board=board, since=since)

    def advance(self, ms: int) -> dict[str, Any]:
        return self._record("advance", ms=ms)


@contextlib.contextmanager
def serving(server: ControlServer) -> Iterator[ControlServer]:
    """Run the server's poll loop in a thread (the simulator's loop, here) until done."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def loop() -> None:
        try:
            while not stop.is_set():
                server.poll(0.02)
        except BaseException as exc:  # surfaced by the test below
            failures.append(exc)

    thread = threading.Thread(target=loop, name="control-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(DEADLINE_S)
        server.close()
    assert not thread.is_alive()
    assert not failures, failures


@contextlib.contextmanager
def short_tmpdir() -> Iterator[Path]:
    """A short directory for Unix socket paths (they are limited to ~100 bytes)."""
    with tempfile.TemporaryDirectory(prefix="amtctl", dir="/tmp") as name:
        yield Path(name)


@contextlib.contextmanager
def sim_server(transport: str, api: object) -> Iterator[tuple[ControlServer, str | int]]:
    with short_tmpdir() as tmp:
        where: str | int = str(tmp / "ctl.sock") if transport == "unix" else 0
        server = ControlServer(api, SIM_COMMANDS, where)
        address: str | int = server.path if server.path is not None else server.port or 0
        with serving(server):
            yield server, address


@pytest.fixture(params=["unix", "tcp"])
def transport(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.fixture
def sim(transport: str) -> Iterator[tuple[FakeSim, ControlServer, ControlClient]]:
    api = FakeSim()
    with sim_server(transport, api) as (server, address), ControlClient(address) as client:
        yield api, server, client


SimFixture = tuple[FakeSim, ControlServer, ControlClient]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"waiting for {what}"
        time.sleep(0.01)


# -- every verb of the simulator's table ----------------------------------------------

VERB_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("state", "state", {}),
    ("boards", "boards_info", {}),
    ("door b1 3 open", "door", {"board": "b1", "channel": 3, "open": True}),
    ("door b1 0 close", "door", {"board": "b1", "channel": 0, "open": False}),
    ("door board=b1 channel=7 action=open", "door", {"board": "b1", "channel": 7, "open": True}),
    ("door b1 7 action=close", "door", {"board": "b1", "channel": 7, "open": False}),
    ("  door\tb1   12  open  \r", "door", {"board": "b1", "channel": 12, "open": True}),
    ("item b2 1 put", "item", {"board": "b2", "channel": 1, "present": True}),
    ("item b2 1 take", "item", {"board": "b2", "channel": 1, "present": False}),
    ("deposit", "deposit", {"unit": "return"}),
    ("deposit unit=dropoff", "deposit", {"unit": "dropoff"}),
    ("deposit unit=return", "deposit", {"unit": "return"}),
    ("swipe", "swipe", {}),
    ("exit", "press_exit", {}),
    ("entrance-door open", "entrance_door", {"open": True}),
    ("entrance-door close", "entrance_door", {"open": False}),
    ("tamper on", "tamper", {"active": True}),
    ("tamper off", "tamper", {"active": False}),
    ("service-door open", "service_door", {"open": True}),
    ("service-door close", "service_door", {"open": False}),
    ("jam b1 4 on", "jam", {"board": "b1", "channel": 4, "on": True}),
    ("jam b1 4 off", "jam", {"board": "b1", "channel": 4, "on": False}),
    ("stick b1 door3 1", "stick", {"board": "b1", "input": "door3", "level": 1}),
    ("stick b1 return.flap 0", "stick", {"board": "b1", "input": "return.flap", "level": 0}),
    ("unstick b1 entrance.grant", "unstick", {"board": "b1", "input": "entrance.grant"}),
    ("bounce b1 item3", "bounce", {"board": "b1", "input": "item3", "count": 5, "ms": 2}),
    ("bounce b1 item3 10", "bounce", {"board": "b1", "input": "item3", "count": 10, "ms": 2}),
    ("bounce b1 item3 3 4", "bounce", {"board": "b1", "input": "item3", "count": 3, "ms": 4}),
    ("bounce b1 item3 ms=7", "bounce", {"board": "b1", "input": "item3", "count": 5, "ms": 7}),
    ("power b1 cut", "power", {"board": "b1", "action": "cut"}),
    ("power b1 on", "power", {"board": "b1", "action": "on"}),
    ("power b1 reboot", "power", {"board": "b1", "action": "reboot"}),
    ("noise b1", "noise", {"board": "b1", "direction": "both"}),
    (
        "noise b1 dir=in drop=0.25 delay_ms=20",
        "noise",
        {"board": "b1", "direction": "in", "drop": 0.25, "delay_ms": 20},
    ),
    (
        "noise b1 bit_error=1e-3 duplicate=0 jitter_ms=5 dir=out",
        "noise",
        {"board": "b1", "direction": "out", "bit_error": 0.001, "duplicate": 0.0, "jitter_ms": 5},
    ),
    ("cut b1 on", "cut_link", {"board": "b1", "on": True}),
    ("cut b1 off", "cut_link", {"board": "b1", "on": False}),
    ("edges b1", "edges", {"board": "b1", "since": 0}),
    ("edges b1 250", "edges", {"board": "b1", "since": 250}),
    ("edges b1 since=9", "edges", {"board": "b1", "since": 9}),
    ("advance 100", "advance", {"ms": 100}),
    ("advance 0", "advance", {"ms": 0}),
]


def test_the_cases_cover_every_verb() -> None:
    covered = {line.split()[0] for line, _, _ in VERB_CASES}
    assert covered == {c.verb for c in SIM_COMMANDS}
    assert len(SIM_COMMANDS) == 19


def test_every_verb_converts_its_arguments(sim: SimFixture) -> None:
    api, _, client = sim
    for line, method, kwargs in VERB_CASES:
        result = client.call(line)
        assert result == {"method": method, **kwargs}, line
        called, got = api.calls[-1]
        assert (called, got) == (method, kwargs), line
        # Types, not only values: 1 is not True, 0.0 is a float.
        assert [type(v) for v in got.values()] == [type(v) for v in kwargs.values()], line
    assert len(api.calls) == len(VERB_CASES)


def test_help_lists_every_verb_with_its_syntax(sim: SimFixture) -> None:
    _, _, client = sim
    entries = client.call("help")
    usage = {e["verb"]: e["usage"] for e in entries}
    assert list(usage) == [c.verb for c in SIM_COMMANDS] + ["help"]
    assert all(e["help"] for e in entries)
    assert usage["door"] == "door <board> <channel:int> open|close"
    assert usage["item"] == "item <board> <channel:int> put|take"
    assert usage["deposit"] == "deposit [unit=return|dropoff]"
    assert usage["exit"] == "exit"
    assert usage["entrance-door"] == "entrance-door open|close"
    assert usage["stick"] == "stick <board> <input> <level:int>"
    assert usage["bounce"] == "bounce <board> <input> [count:int=5] [ms:int=2]"
    assert usage["power"] == "power <board> cut|on|reboot|reset"
    assert usage["noise"] == (
        "noise <board> [dir=both|in|out] [bit_error=float] [drop=float] [duplicate=float] "
        "[delay_ms=int] [jitter_ms=int]"
    )
    assert usage["cut"] == "cut <board> on|off"
    assert usage["edges"] == "edges <board> [since:int=0]"
    assert usage["advance"] == "advance <ms:int>"
    assert usage["help"] == "help [verb]"
    door = client.call("help door")
    assert door["usage"] == "door <board> <channel:int> open|close"
    with pytest.raises(ControlError, match="help: unknown verb 'dore'"):
        client.call("help dore")
    with pytest.raises(ControlError, match="help: takes at most one verb"):
        client.call("help door item")


USAGE_DOOR = "usage: door <board> <channel:int> open|close"
ERROR_CASES: list[tuple[str, str]] = [
    ("frobnicate", "unknown verb 'frobnicate'; valid verbs: help, state, boards, door, item,"),
    ("dor b1 3 open", "unknown verb 'dor' (did you mean 'door'?); valid verbs: help, state"),
    ("door b1 3", f"door: missing open|close; {USAGE_DOOR}"),
    ("door", f"door: missing <board>; {USAGE_DOOR}"),
    ("door b1 three open", f"door: channel must be an integer, got 'three'; {USAGE_DOOR}"),
    ("door b1 3.5 open", f"door: channel must be an integer, got '3.5'; {USAGE_DOOR}"),
    ("door b1 -1 open", f"door: channel must be at least 0, got '-1'; {USAGE_DOOR}"),
    ("door b1 3 ajar", f"door: action must be one of open, close, got 'ajar'; {USAGE_DOOR}"),
    ("door b1 3 open now", f"door: unexpected extra argument 'now'; {USAGE_DOOR}"),
    ("door b1 3 open=1", "door: unknown argument 'open'; valid arguments: board, channel, action"),
    ("door b1 3 colour=red", "door: unknown argument 'colour'; valid arguments: board, channel"),
    ("door b1 channel=3 channel=4 open", "door: channel given twice"),
    ("door b1 channel=3 open", "door: positional argument 'open' after a name=value argument"),
    ("door b1 3 open channel=4", "door: channel given twice"),
    ("deposit dropoff", "deposit: unexpected extra argument 'dropoff'"),
    ("deposit unit=bin", "deposit: unit must be one of return, dropoff, got 'bin'"),
    ("swipe now", "swipe: unexpected extra argument 'now'; usage: swipe"),
    ("tamper maybe", "tamper: state must be one of on, off, got 'maybe'"),
    ("stick b1 door3 2", "stick: level must be at most 1, got '2'"),
    ("bounce b1 item3 0", "bounce: count must be at least 1, got '0'"),
    ("power b1 off", "power: action must be one of cut, on, reboot, reset, got 'off'"),
    ("noise b1 drop=2", "noise: drop must be at most 1, got '2'"),
    ("noise b1 drop=nan", "noise: drop must be a finite number, got 'nan'"),
    ("noise b1 drop=lots", "noise: drop must be a number, got 'lots'"),
    ("noise b1 delay_ms=0.5", "noise: delay_ms must be an integer, got '0.5'"),
    ("noise b1 dir=sideways", "noise: dir must be one of both, in, out, got 'sideways'"),
    (
        "noise b1 loss=0.1",
        "noise: unknown argument 'loss'; valid arguments: board, dir, bit_error, drop, "
        "duplicate, delay_ms, jitter_ms",
    ),
    ("noise b1 0.1", "noise: unexpected extra argument '0.1'"),
    ("advance", "advance: missing <ms:int>; usage: advance <ms:int>"),
    ("advance -5", "advance: ms must be at least 0, got '-5'"),
    ("", "empty request; send 'help' for the list of verbs"),
    ("   \t ", "empty request"),
]


def test_bad_requests_get_errors_naming_the_word_and_the_choices(sim: SimFixture) -> None:
    api, _, client = sim
    for line, message in ERROR_CASES:
        with pytest.raises(ControlError) as info:
            client.call(line)
        assert str(info.value).startswith(message), (line, str(info.value))
    assert api.calls == []
    # The connection stayed usable throughout.
    assert client.call("swipe") == {"method": "swipe"}


def test_over_long_lines_and_invalid_utf8_get_one_error_each(sim: SimFixture) -> None:
    api, _, client = sim
    exact = ("state" + " " * (MAX_LINE_BYTES - 5)).encode()
    assert len(exact) == MAX_LINE_BYTES
    cases: list[tuple[bytes, bool, str]] = [
        (exact, True, ""),
        (exact + b"\r", True, ""),
        (exact + b" ", False, f"request line longer than {MAX_LINE_BYTES} bytes"),
        (b"state " + b"x" * 100_000, False, "request line longer than"),
        (b"door b1 3 \xffopen", False, "request is not valid UTF-8 (byte 0xff at offset 10)"),
        (b"\xc3", False, "request is not valid UTF-8 (byte 0xc3 at offset 0)"),
        ("door b1 3 öffnen".encode(), False, "door: action must be one of open, close"),
    ]
    for line, ok, message in cases:
        client.send_line(line)
        reply = client.read_reply()
        assert reply["ok"] is ok, (line[:40], reply)
        if not ok:
            assert reply["error"].startswith(message), reply
    assert [m for m, _ in api.calls] == ["state", "state"]
    assert client.call("state") == {"method": "state"}


def test_an_over_long_line_arriving_in_pieces_gets_one_reply(sim: SimFixture) -> None:
    _, _, client = sim
    for _ in range(30):
        client.sock.sendall(b"y" * 1000)  # 30 kB without a newline, in pieces
    client.sock.sendall(b"\nstate\n")
    first = client.read_reply()
    assert first["ok"] is False
    assert first["error"].startswith("request line longer than")
    assert client.read_reply() == {"ok": True, "result": {"method": "state"}}


def test_pipelined_requests_get_replies_in_order(sim: SimFixture) -> None:
    api, _, client = sim
    lines = [f"advance {i}" for i in range(300)]
    client.sock.sendall(("\n".join(lines) + "\n").encode())
    for i in range(300):
        assert client.read_reply() == {"ok": True, "result": {"method": "advance", "ms": i}}
    assert [kw["ms"] for _, kw in api.calls] == list(range(300))


def test_several_clients_at_once(transport: str) -> None:
    api = FakeSim()
    with sim_server(transport, api) as (server, address):
        clients = [ControlClient(address) for _ in range(6)]
        try:
            wait_until(lambda: server.clients == 6, "six clients")
            # Everyone sends before anyone reads; then each reads its own replies.
            for n, client in enumerate(clients):
                client.send_line(f"edges b{n} {n}")
                client.send_line(f"door b{n} {n} open")
            for n, client in enumerate(clients):
                assert client.read_reply()["result"] == {
                    "method": "edges",
                    "board": f"b{n}",
                    "since": n,
                }
                assert client.read_reply()["result"]["channel"] == n
            assert len(api.calls) == 12
        finally:
            for client in clients:
                client.close()
        wait_until(lambda: server.clients == 0, "the clients to go")


def test_disconnect_mid_line_does_nothing_and_the_server_goes_on(transport: str) -> None:
    api = FakeSim()
    with (
        sim_server(transport, api) as (server, address),
        ControlClient(address) as quitter,
        ControlClient(address) as stayer,
    ):
        quitter.sock.sendall(b"swipe\ndoor b1 3 op")  # a whole line, then half of one
        assert quitter.read_reply()["ok"] is True
        quitter.close()
        wait_until(lambda: server.clients == 1, "the server to notice")
        assert [m for m, _ in api.calls] == ["swipe"]
        assert stayer.call("state") == {"method": "state"}


def test_a_half_closed_client_gets_all_its_replies(transport: str) -> None:
    api = FakeSim()
    with sim_server(transport, api) as (_, address), ControlClient(address) as client:
        client.sock.sendall(b"swipe\nexit\ntamper on")  # the last line is unfinished
        client.sock.shutdown(socket.SHUT_WR)
        assert client.read_reply()["result"] == {"method": "swipe"}
        assert client.read_reply()["result"] == {"method": "press_exit"}
        with pytest.raises(ConnectionError):
            client.read_reply()
    assert [m for m, _ in api.calls] == ["swipe", "press_exit"]


def test_a_client_that_does_not_read_does_not_stall_the_others(transport: str) -> None:
    """A client that pipelines far more replies than the socket buffers hold, and reads
    none of them for a while: the server stops reading its requests (instead of
    buffering without bound), serves the others, and later delivers every reply."""
    api = FakeSim()
    requests = b"help\n" * 200 + b"".join(b"advance %d\n" % i for i in range(20_000))
    with sim_server(transport, api) as (_, address):
        if isinstance(address, int):
            flooder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            flooder.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            flooder.connect(("127.0.0.1", address))
        else:
            flooder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            flooder.connect(address)
        flooder.settimeout(DEADLINE_S)
        with flooder, flooder.makefile("rb") as replies, ControlClient(address) as other:
            # sendall blocks once the server stops reading, so it runs in a thread.
            sender = threading.Thread(target=flooder.sendall, args=(requests,), daemon=True)
            sender.start()
            assert other.call("state") == {"method": "state"}
            for _ in range(200):
                reply = json.loads(replies.readline())
                assert len(reply["result"]) == len(SIM_COMMANDS) + 1
            for i in range(20_000):
                reply = json.loads(replies.readline())
                assert reply == {"ok": True, "result": {"method": "advance", "ms": i}}
            sender.join(DEADLINE_S)
            assert not sender.is_alive()
            assert other.call("swipe") == {"method": "swipe"}


# -- the generic server -------------------------------------------------------------


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Inner:
    raw: bytes
    tags: set[str]


@dataclasses.dataclass
class Outer:
    name: str
    inner: Inner
    pair: tuple[int, float]


class Opaque:
    def __str__(self) -> str:
        return "<opaque thing>"


class Gadget:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def echo(self, **kwargs: Any) -> dict[str, Any]:
        self.seen.append(kwargs)
        return kwargs

    def fail(self, kind: str) -> None:
        if kind == "value":
            raise ValueError("no compartment 9 on board b1; channels: 0-7")
        if kind == "key":
            raise KeyError("b9")
        raise RuntimeError("the VM fell over")

    def blob(self) -> Any:
        return {
            "outer": Outer("x", Inner(b"\x00\xffA", {"b", "a"}), (1, 2.5)),
            "colour": Colour.RED,
            "floats": [math.nan, math.inf, -0.0],
            3: "int key",
            None: "none key",
            "path": Path("/tmp/x"),
            "opaque": Opaque(),
            "bytes": bytearray(b"\x01\x02"),
        }

    def unencodable(self) -> Any:
        nested: list[Any] = []
        deep = nested
        for _ in range(200):
            deep.append([])
            deep = deep[0]
        return nested


GADGET_COMMANDS = (
    Command(
        "set",
        "echo",
        (
            Param("flag", bool),
            Param("ratio", float, 0.5, minimum=0),
            Param("label", str, OMIT, keyword_only=True),
            Param("mode", choice({"fast": 1, "slow": 2}), 2, keyword_only=True),
        ),
        "Echo the converted arguments.",
    ),
    Command("fail", "fail", (Param("kind", choice(["value", "key", "other"])),), "Raise."),
    Command("blob", "blob", (), "Odd result types."),
    Command("deep", "unencodable", (), "A result too deep to encode."),
)


@pytest.fixture
def gadget(transport: str) -> Iterator[tuple[Gadget, ControlClient]]:
    api = Gadget()
    with short_tmpdir() as tmp:
        server = ControlServer(api, GADGET_COMMANDS, str(tmp / "g") if transport == "unix" else 0)
        address: str | int = server.path if server.path is not None else server.port or 0
        with serving(server), ControlClient(address) as client:
            yield api, client


def test_generic_conversions(gadget: tuple[Gadget, ControlClient]) -> None:
    api, client = gadget
    assert client.call("set on") == {"flag": True, "ratio": 0.5, "mode": 2}
    assert client.call("set false 2 label=hi mode=fast") == {
        "flag": False,
        "ratio": 2.0,
        "label": "hi",
        "mode": 1,
    }
    for word, value in [("TRUE", True), ("yes", True), ("1", True), ("No", False), ("0", False)]:
        assert client.call(f"set {word}")["flag"] is value
    assert client.call("set 1 ratio=1e2")["ratio"] == 100.0
    assert client.call("set 1 label=")["label"] == ""
    assert client.call("set 1 label=a=b")["label"] == "a=b"
    with pytest.raises(ControlError, match=r"set: flag must be true/false .*got 'maybe'"):
        client.call("set maybe")
    with pytest.raises(ControlError, match="set: ratio must be at least 0, got '-1'"):
        client.call("set 1 -1")
    with pytest.raises(ControlError, match="set: ratio must be a finite number, got 'inf'"):
        client.call("set 1 inf")
    assert len(api.seen) == 10


def test_method_errors(gadget: tuple[Gadget, ControlClient]) -> None:
    _, client = gadget
    with pytest.raises(ControlError) as info:
        client.call("fail value")
    assert str(info.value) == "fail: no compartment 9 on board b1; channels: 0-7"
    with pytest.raises(ControlError) as info:
        client.call("fail key")
    assert str(info.value) == "internal error: KeyError: 'b9'"
    with pytest.raises(ControlError) as info:
        client.call("fail other")
    assert str(info.value) == "internal error: RuntimeError: the VM fell over"
    with pytest.raises(ControlError, match="internal error: result of deep not encodable"):
        client.call("deep")
    # The server and the connection are fine.
    assert client.call("set 1") == {"flag": True, "ratio": 0.5, "mode": 2}


def test_results_are_encoded_as_json(gadget: tuple[Gadget, ControlClient]) -> None:
    _, client = gadget
    assert client.call("blob") == {
        "outer": {"name": "x", "inner": {"raw": "00ff41", "tags": ["a", "b"]}, "pair": [1, 2.5]},
        "colour": "red",
        "floats": ["nan", "inf", -0.0],
        "3": "int key",
        "null": "none key",
        "path": "/tmp/x",
        "opaque": "<opaque thing>",
        "bytes": "0102",
    }


def test_to_jsonable_directly() -> None:
    assert to_jsonable(memoryview(b"\xab")) == "ab"
    assert to_jsonable({(1, 2): "tuple key", True: "bool key"}) == {
        "[1, 2]": "tuple key",
        "true": "bool key",
    }
    assert to_jsonable(frozenset({3, 1, 2})) == [1, 2, 3]
    assert sorted(to_jsonable({1, "a"}), key=str) == [1, "a"]  # unsortable: any order


# -- construction -------------------------------------------------------------------


def test_the_table_must_match_the_api() -> None:
    class Partial:
        def state(self) -> None:
            pass

        boards_info = 5  # not callable

    with pytest.raises(ValueError) as info:
        ControlServer(Partial(), SIM_COMMANDS, 0)
    message = str(info.value)
    assert message.startswith("Partial lacks the method(s) boards_info, door, item,")
    assert "press_exit" in message and "cut_link" in message


def test_table_and_parameter_definitions_are_checked() -> None:
    with pytest.raises(ValueError, match="verb 'state' is defined twice"):
        ControlServer(FakeSim(), [*SIM_COMMANDS, Command("state", "state")], 0)
    with pytest.raises(ValueError, match="verb 'help' is defined twice"):
        ControlServer(FakeSim(), [Command("help", "state")], 0)
    with pytest.raises(ValueError, match="verb 'a b' must be one word"):
        Command("a b", "state")
    with pytest.raises(ValueError, match="x: duplicate parameter name a"):
        Command("x", "m", (Param("a", int), Param("a", str)))
    with pytest.raises(ValueError, match="x: duplicate keyword k"):
        Command("x", "m", (Param("a", int, kwarg="k"), Param("b", str, kwarg="k")))
    with pytest.raises(ValueError, match="required 'b' follows an optional positional"):
        Command("x", "m", (Param("a", int, 1), Param("b", int)))
    with pytest.raises(ValueError, match="parameter name 'a=b' must be one word"):
        Param("a=b", int)
    with pytest.raises(ValueError, match="'not-ident' is not an identifier"):
        Param("not-ident", int)
    with pytest.raises(ValueError, match="type must be int, float, bool, str or a choice"):
        Param("a", list)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bounds need an int or float type"):
        Param("a", str, minimum=0)
    with pytest.raises(ValueError, match="choice option 'a b' must be one word"):
        choice(["a b"])
    with pytest.raises(ValueError, match="a choice needs at least one option"):
        choice([])
    with pytest.raises(TypeError, match="list of words, not one string"):
        choice("open")
    with pytest.raises(TypeError, match="socket path or a port"):
        ControlServer(FakeSim(), SIM_COMMANDS, True)
    with pytest.raises(ValueError, match=r"control port must be 0\.\.65535"):
        ControlServer(FakeSim(), SIM_COMMANDS, 70000)


def test_unix_socket_file_handling() -> None:
    with short_tmpdir() as tmp:
        path = tmp / "ctl.sock"
        # A stale socket file (its server is gone) is replaced.
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(path))
        stale.close()
        assert path.exists()
        with ControlServer(FakeSim(), SIM_COMMANDS, path) as server:
            assert server.address == str(path)
            assert server.port is None
            # A live one is not taken over.
            with pytest.raises(ValueError, match="is in use by another process"):
                ControlServer(FakeSim(), SIM_COMMANDS, str(path))
        assert not path.exists()  # removed on close
        assert server.closed
        with pytest.raises(ValueError, match="control server is closed"):
            server.poll()
        server.close()  # idempotent
        regular = tmp / "file"
        regular.write_text("keep me")
        with pytest.raises(ValueError, match="exists and is not a socket"):
            ControlServer(FakeSim(), SIM_COMMANDS, regular)
        assert regular.read_text() == "keep me"
        with pytest.raises(ValueError, match="too long for a Unix socket"):
            ControlServer(FakeSim(), SIM_COMMANDS, str(tmp / ("x" * 120)))


def test_tcp_listens_on_loopback_only() -> None:
    with ControlServer(FakeSim(), SIM_COMMANDS, 0) as server:
        assert server.path is None
        assert server.port
        assert server.address == f"127.0.0.1:{server.port}"
        assert server._listener.getsockname()[0] == "127.0.0.1"


def test_drivable_from_a_single_threaded_loop_with_select() -> None:
    api = FakeSim()
    with ControlServer(api, SIM_COMMANDS, 0) as server:
        assert server.poll(0) == 0
        sock = socket.create_connection(("127.0.0.1", server.port or 0), timeout=DEADLINE_S)
        with sock:
            sock.sendall(b"swipe\nadvance 5\n")
            replies = b""
            answered = 0
            deadline = time.monotonic() + DEADLINE_S
            while replies.count(b"\n") < 2:
                assert time.monotonic() < deadline, replies
                select.select([server], [], [], 0.05)
                answered += server.poll(0)
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    replies += sock.recv(4096)
            assert answered == 2
            assert [json.loads(line) for line in replies.splitlines()] == [
                {"ok": True, "result": {"method": "swipe"}},
                {"ok": True, "result": {"method": "advance", "ms": 5}},
            ]
        assert server.requests == 2


def test_client_refuses_multi_line_requests(sim: SimFixture) -> None:
    _, _, client = sim
    with pytest.raises(ValueError, match="must not contain a newline"):
        client.call("state\nswipe")
    assert client.call("state") == {"method": "state"}


# -- fuzz ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_client() -> Iterator[ControlClient]:
    with sim_server("unix", FakeSim()) as (_, address), ControlClient(address) as client:
        yield client


WORDS = [
    "door", "b1", "3", "open", "noise", "dir=in", "drop=0.5", "=", "help", "advance",
    "-1", "1e400", "power", "\u00e9", "\x00", "==", "unit=", "since=", "deposit",
]  # fmt: skip
no_newline = st.binary(max_size=120).map(lambda b: b.replace(b"\n", b" "))
lines = st.one_of(
    no_newline,
    st.lists(st.sampled_from(WORDS), max_size=8).map(lambda ws: " ".join(ws).encode()),
    st.tuples(
        st.integers(MAX_LINE_BYTES - 2, MAX_LINE_BYTES + 3), st.sampled_from(b"a \r\xff")
    ).map(lambda t: bytes([t[1]]) * t[0]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(lines, min_size=1, max_size=12))
def test_fuzz_every_line_gets_exactly_one_json_reply(
    fuzz_client: ControlClient, batch: list[bytes]
) -> None:
    fuzz_client.sock.sendall(b"".join(line + b"\n" for line in batch) + b"boards\n")
    for line in batch:
        raw = fuzz_client._file.readline()
        reply = json.loads(raw)
        assert isinstance(reply, dict) and isinstance(reply["ok"], bool), raw
        if reply["ok"]:
            assert set(reply) == {"ok", "result"}
        else:
            assert set(reply) == {"ok", "error"} and isinstance(reply["error"], str)
            assert reply["error"], line
    # The next reply is the sentinel's: no line got two replies or none.
    assert fuzz_client.read_reply() == {"ok": True, "result": {"method": "boards_info"}}


@pytest.mark.parametrize(("line", "method", "kwargs"), VERB_CASES, ids=[c[0] for c in VERB_CASES])
def test_every_verb_fits_the_real_simulator_signature(
    line: str, method: str, kwargs: dict[str, Any]
) -> None:
    # The fake records calls; the real Simulator must accept the very same arguments.
    inspect.signature(getattr(Simulator, method)).bind(None, **kwargs)
