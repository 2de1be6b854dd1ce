"""KioskClient against a real BridgeServer: reconnecting through a TCP relay that can
swallow the bridge's bytes or cut the line, timeouts, wait_done, bad calls, close."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest
from test_bridge_terminal import DEADLINE_S, IDENTITY, KEY, PICKUP_CODE, TerminalApi, eventually

from controller.api import Status
from host_bridge.client import RECONNECTED, KioskClient, Notice
from host_bridge.errors import (
    EndpointError,
    KioskConnectionError,
    KioskTimeout,
    KioskUsageError,
)
from host_bridge.server import BridgeServer


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 120))


class Relay:
    """A TCP relay between kiosk and bridge: ``hold`` swallows what the bridge sends,
    ``cut()`` breaks every connection through it (the kiosk will dial again)."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("tcp://").rsplit(":", 1)
        self.target = (host, int(port))
        self.hold = False
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"tcp://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, holdable: bool
        ) -> None:
            try:
                while data := await src.read(65536):
                    if not (holdable and self.hold):
                        dst.write(data)
            except ConnectionError:
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


async def names_until(notices: AsyncIterator[Notice], name: str) -> list[str]:
    seen: list[str] = []

    async def scan() -> None:
        async for notice in notices:
            seen.append(notice.name)
            if notice.name == name:
                return

    await asyncio.wait_for(scan(), DEADLINE_S)
    return seen


def test_after_a_lost_reply_the_client_reconnects_and_the_terminal_acts_once() -> None:
    async def body() -> None:
        api = TerminalApi()
        api.put("A1", "R-7")
        async with BridgeServer(api, ["tcp://127.0.0.1:0"], KEY, IDENTITY) as server:
            relay = await Relay(server.bound[0]).start()
            client = await KioskClient.connect(relay.url, KEY, peer="vendor")
            notices = client.notices()
            relay.hold = True  # the reply will be lost on the way
            pickup = asyncio.create_task(client.pickup("R-7", PICKUP_CODE))
            await eventually(lambda: api.calls_of("pickup"), "the pickup at the terminal")
            assert client.outstanding == 1
            relay.cut()
            relay.hold = False
            result = await asyncio.wait_for(pickup, DEADLINE_S)
            calls = api.calls_of("pickup")
            assert len(calls) == 1 and calls[0].request_id is not None
            assert result == api.results[calls[0].request_id] and result.ok
            assert relay.connections == 2 and client.sessions == 2
            assert client.outstanding == 0
            assert await names_until(notices, RECONNECTED) == [RECONNECTED]
            replayed = sum(c.counters()["replayed_results"] for c in server.connections)
            assert replayed == 1
            assert (await client.state()).ok  # and the new session carries on
            await client.close()
            await relay.close()

    run(body())


def test_a_call_without_reply_times_out_naming_the_request_and_leaves_nothing_behind() -> None:
    async def body() -> None:
        api = TerminalApi()
        async with BridgeServer(api, ["tcp://127.0.0.1:0"], KEY, IDENTITY) as server:
            relay = await Relay(server.bound[0]).start()
            async with await KioskClient.connect(relay.url, KEY) as client:
                relay.hold = True
                with pytest.raises(KioskTimeout) as err:
                    await client.call("compartments", timeout_s=0.3)
                assert err.value.value == "compartments" and "compartments" in str(err.value)
                assert isinstance(err.value, TimeoutError) and client.outstanding == 0
                relay.hold = False
                assert (await client.call("state", timeout_s=DEADLINE_S)).ok
            await relay.close()

    run(body())


def test_wait_done_finds_a_done_notice_that_came_first_and_times_out_otherwise() -> None:
    async def body() -> None:
        api = TerminalApi()
        api.put("B1", "R-8")
        async with (
            BridgeServer(api, ["tcp://127.0.0.1:0"], None, IDENTITY) as server,
            await KioskClient.connect(server.bound[0], None) as client,
        ):
            started = await client.pickup("R-8", PICKUP_CODE)
            assert started.ok and started.data is not None
            op = started.data["op"]
            notices = client.notices()
            api.finish(op)
            assert "done" in await names_until(notices, "compartment")
            done = await client.wait_done(op, 0.1)  # it is already here
            assert done.fields["op"] == op and done.fields["outcome"] == "completed"
            with pytest.raises(KioskTimeout) as err:
                await client.wait_done(op + 1, 0.2)
            assert err.value.value == op + 1

    run(body())


def test_bad_calls_are_refused_before_sending_and_never_show_a_secret() -> None:
    async def body() -> None:
        api = TerminalApi()
        async with (
            BridgeServer(api, ["tcp://127.0.0.1:0"], None, IDENTITY) as server,
            await KioskClient.connect(server.bound[0], None) as client,
        ):
            with pytest.raises(KioskUsageError, match="unknown request 'open_all'"):
                await client.call("open_all")
            with pytest.raises(KioskUsageError, match="no argument 'colour'"):
                await client.call("retrieve", compartment="A1", colour="red")
            with pytest.raises(KioskUsageError, match="argument code is missing"):
                await client.call("pickup", reference="R-1")
            with pytest.raises(KioskUsageError) as err:
                await client.call("staff_login", staff="anna", pin=987654)
            assert "pin must be text, got int" in str(err.value)
            assert "987654" not in str(err.value)
            with pytest.raises(KioskUsageError, match="expires_days must be uint or null, got -3"):
                await client.load("R-1", expires_days=-3)
            assert api.calls == []
            # a later optional argument sends null for the skipped ones before it
            assert (await client.load("R-1", return_required=True)).status == (Status.NOT_LOGGED_IN)
            assert api.calls[-1].args["return_required"] is True
            assert api.calls[-1].args["size"] is None

    run(body())


def test_bad_urls_and_keys_are_refused_at_once() -> None:
    async def body() -> None:
        with pytest.raises(EndpointError, match="port 99999"):
            await KioskClient.connect("tcp://127.0.0.1:99999", KEY)
        with pytest.raises(KioskUsageError, match="32 bytes, got 5") as err:
            await KioskClient.connect("tcp://127.0.0.1:1", b"short")
        assert "short" not in str(err.value)

    run(body())


def test_connecting_to_nothing_fails_with_the_reason() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nobody listens there

    async def body() -> None:
        with pytest.raises(KioskConnectionError) as err:
            await KioskClient.connect(f"tcp://127.0.0.1:{port}", KEY, timeout_s=0.5)
        assert f"127.0.0.1:{port}" in str(err.value) and "cannot open" in str(err.value)

    run(body())


def test_close_fails_waiting_calls_and_ends_notice_readers() -> None:
    async def body() -> None:
        api = TerminalApi()
        async with BridgeServer(api, ["tcp://127.0.0.1:0"], KEY, IDENTITY) as server:
            relay = await Relay(server.bound[0]).start()
            client = await KioskClient.connect(relay.url, KEY)
            notices = client.notices()
            relay.hold = True
            waiting = asyncio.create_task(client.state())
            done_wait = asyncio.create_task(client.wait_done(5, DEADLINE_S))
            await eventually(lambda: client.outstanding == 1, "the call in flight")
            await client.close()
            with pytest.raises(KioskConnectionError, match="closed"):
                await waiting
            with pytest.raises(KioskConnectionError, match="closed"):
                await done_wait
            assert [n async for n in notices] == []
            with pytest.raises(KioskConnectionError, match="closed"):
                await client.state()
            await client.close()  # idempotent
            await relay.close()

    run(body())


def doc_example() -> Any:
    """The ``collect`` function of docs/kiosk-bridge.md's client example."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "kiosk-bridge.md").read_text()
    block = doc.split("<!-- example:client -->\n```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {"__name__": "kiosk_example"}
    exec(compile(block, "docs/kiosk-bridge.md", "exec"), namespace)
    return namespace["collect"]


def test_the_documented_client_example_runs_a_pickup(capsys: pytest.CaptureFixture[str]) -> None:
    collect = doc_example()

    async def body() -> None:
        api = TerminalApi()
        api.put("A2", "R-2024-0815")
        async with BridgeServer(api, ["tcp://127.0.0.1:0"], KEY, IDENTITY) as server:
            url = server.bound[0]
            wrong = await collect(url, KEY, "R-2024-0815", "000000")
            assert wrong.startswith("WRONG_CODE: reference 'R-2024-0815'")
            pickup = asyncio.create_task(collect(url, KEY, "R-2024-0815", PICKUP_CODE))
            await eventually(lambda: api.operations, "the pickup under way")
            api.finish(next(iter(api.operations)))
            assert await pickup == "completed"
        assert "show the screen for compartment_open" in capsys.readouterr().out

    run(body())
