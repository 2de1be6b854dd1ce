"""BridgeServer with the real KioskClient over real transports: TCP loopback, Unix
sockets, ptys and a serial line made of ptys. Waits are on conditions, never on time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest
from test_bridge_terminal import (
    DEADLINE_S,
    IDENTITY,
    KEY,
    OTHER_KEY,
    PICKUP_CODE,
    STAFF_PIN,
    TerminalApi,
    eventually,
)

from controller.api import Status
from host_bridge.catalog import KIOSK, REQUEST_IDS
from host_bridge.client import KioskClient, Notice
from host_bridge.connection import KIOSK_MAX_FRAME, BridgeConnection
from host_bridge.errors import EndpointError, KioskAuthError
from host_bridge.fdlink import make_raw
from host_bridge.server import BridgeServer
from protocol import cbor, cobs
from protocol import session as S
from protocol.frame import F_SEQ, build


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 120))


async def take(notices: AsyncIterator[Notice], name: str) -> Notice:
    """The next notice called name (earlier ones of other names are skipped)."""

    async def scan() -> Notice:
        async for notice in notices:
            if notice.name == name:
                return notice
        raise AssertionError(f"notices ended before a {name} notice")

    return await asyncio.wait_for(scan(), DEADLINE_S)


def tcp(server: BridgeServer) -> str:
    return server.bound[0]


async def citizen_and_staff_flow(client: KioskClient, api: TerminalApi) -> None:
    """Log in, load, let the door close, then a wrong and a right pickup code."""
    notices = client.notices()
    assert (await client.staff_login("anna", "0000")).status == Status.FORBIDDEN
    assert (await client.staff_login("anna", STAFF_PIN)).ok
    loaded = await client.load("R-1", compartment="A2")
    assert loaded.ok and loaded.data is not None
    op = loaded.data["op"]
    progress = await take(notices, "progress")
    assert progress.fields == {
        "op": op,
        "operation": "load",
        "step": "compartment_open",
        "compartment": "A2",
    }
    api.finish(op)
    done = await client.wait_done(op, DEADLINE_S)
    assert done.fields["status"] == 0 and done.fields["outcome"] == "completed"
    assert (await take(notices, "compartment")).fields["state"] == "loaded"
    wrong = await client.pickup("R-1", "000000")
    assert wrong.status == Status.WRONG_CODE and wrong.reason is not None
    right = await client.pickup("R-1", PICKUP_CODE)
    assert right.ok and right.data is not None and right.data["compartment"] == "A2"


def test_tcp_a_whole_session_with_replies_and_notices() -> None:
    async def body() -> None:
        api = TerminalApi()
        async with BridgeServer(api, ["tcp://127.0.0.1:0"], KEY, IDENTITY) as server:
            assert tcp(server).startswith("tcp://127.0.0.1:") and not tcp(server).endswith(":0")
            async with await KioskClient.connect(tcp(server), KEY, peer="vendor 1.0") as client:
                assert client.identity["kiosk_id"] == "myk-03"
                assert client.identity["provisioned"] is True
                await citizen_and_staff_flow(client, api)
            assert all(c.request_id and c.request_id.startswith("vendor 1.0/") for c in api.calls)

    run(body())


def test_unix_socket_replaces_a_stale_socket_and_removes_its_own(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # bound, never listening: what a crashed process leaves
    stale.close()

    async def body() -> None:
        api = TerminalApi()
        async with BridgeServer(api, [f"unix:{path}"], None, IDENTITY) as server:
            assert server.bound == [f"unix:{path}"]
            async with await KioskClient.connect(f"unix:{path}", None) as client:
                assert client.identity["provisioned"] is False
                await citizen_and_staff_flow(client, api)
            with pytest.raises(EndpointError, match="another process listens"):
                await BridgeServer(api, [f"unix:{path}"], None, IDENTITY).start()
        assert not path.exists()

    run(body())


def test_unix_endpoint_never_deletes_a_file_that_is_not_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("keep me")

    async def body() -> None:
        with pytest.raises(EndpointError, match="is not a socket"):
            await BridgeServer(TerminalApi(), [f"unix:{path}"], None, IDENTITY).start()

    run(body())
    assert path.read_text() == "keep me"


def test_pty_endpoint_links_the_slave_for_the_kiosk_and_unlinks_it_on_close(
    tmp_path: Path,
) -> None:
    link = tmp_path / "kiosk-tty"
    link.symlink_to("/nonexistent/old-pty")  # left over from an earlier run

    async def body() -> None:
        api = TerminalApi()
        async with BridgeServer(api, [f"pty:{link}"], KEY, IDENTITY) as server:
            target = os.readlink(link)
            assert target.startswith("/dev/pts/") and server.bound == [f"pty:{link}"]
            async with await KioskClient.connect(str(link), KEY) as client:
                await citizen_and_staff_flow(client, api)
            # the kiosk application restarts: a new client, a new hello, same line
            async with await KioskClient.connect(f"pty:{link}", KEY) as again:
                assert (await again.state()).ok
            assert len(server.connections) == 1 and server.connections[0].sessions == 2
        assert not link.exists() and not link.is_symlink()

    run(body())


def test_pty_endpoint_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "kiosk-tty"
    path.write_text("keep me")

    async def body() -> None:
        with pytest.raises(EndpointError, match="not a symlink"):
            await BridgeServer(TerminalApi(), [f"pty:{path}"], KEY, IDENTITY).start()

    run(body())
    assert path.read_text() == "keep me"


def test_serial_endpoint_opens_a_line_that_appears_later(tmp_path: Path) -> None:
    """The bridge's serial port and the kiosk's are two ptys joined by a relay (a cable)."""
    line = tmp_path / "ttyKIOSK"

    async def body() -> None:
        loop = asyncio.get_running_loop()
        bridge_m, bridge_s = os.openpty()
        kiosk_m, kiosk_s = os.openpty()
        for fd in (bridge_s, kiosk_s):
            make_raw(fd)
        for fd in (bridge_m, kiosk_m):
            os.set_blocking(fd, False)

        def relay(src: int, dst: int) -> None:
            with contextlib.suppress(BlockingIOError):
                os.write(dst, os.read(src, 65536))

        loop.add_reader(bridge_m, relay, bridge_m, kiosk_m)
        loop.add_reader(kiosk_m, relay, kiosk_m, bridge_m)
        api = TerminalApi()
        try:
            async with BridgeServer(api, [f"serial:{line}?baud=57600"], KEY, IDENTITY) as server:
                assert server.bound == [f"serial:{line}?baud=57600"]
                await asyncio.sleep(0.05)
                line.symlink_to(os.ttyname(bridge_s))  # the USB adapter is plugged in
                url = os.ttyname(kiosk_s)
                async with await KioskClient.connect(url, KEY, timeout_s=DEADLINE_S) as client:
                    await citizen_and_staff_flow(client, api)
        finally:
            for fd in (bridge_m, kiosk_m):
                loop.remove_reader(fd)
            for fd in (bridge_m, bridge_s, kiosk_m, kiosk_s):
                os.close(fd)

    run(body())


def test_many_clients_at_once_each_with_its_own_staff_login() -> None:
    async def body() -> None:
        api = TerminalApi()
        async with BridgeServer(api, ["tcp://127.0.0.1:0"], KEY, IDENTITY) as server:
            clients = await asyncio.gather(
                *(KioskClient.connect(tcp(server), KEY, peer=f"k{i}") for i in range(20))
            )
            readers = [c.notices() for c in clients]
            staff = clients[::2]
            assert all(
                r.ok
                for r in await asyncio.gather(*(c.staff_login("anna", STAFF_PIN) for c in staff))
            )
            results = await asyncio.gather(*(c.entrance_mode("normal") for c in clients))
            assert [r.status for r in results] == [
                Status.OK if i % 2 == 0 else Status.NOT_LOGGED_IN for i in range(20)
            ]
            for reader in readers:  # every connection hears every change
                for _ in range(10):
                    assert (await take(reader, "terminal")).fields["entrance"] == "normal"
            assert len(server.connections) == 20
            await asyncio.gather(*(c.close() for c in clients))
            await eventually(lambda: not server.connections, "the server saw them all go")
            assert len(api.calls_of("staff_logout")) == 10  # closing logs staff out

    run(body())


def test_a_client_sending_garbage_costs_only_its_own_connection() -> None:
    async def body() -> None:
        api = TerminalApi()
        rng = random.Random(5)
        async with BridgeServer(api, ["tcp://127.0.0.1:0"], KEY, IDENTITY) as server:
            host, port = tcp(server).removeprefix("tcp://").rsplit(":", 1)
            _, junk = await asyncio.open_connection(host, int(port))
            client = await KioskClient.connect(tcp(server), KEY)
            for _ in range(64):
                junk.write(rng.randbytes(1024) + b"\x00" + rng.randbytes(20))
                await junk.drain()
                assert (await client.state()).ok
            await citizen_and_staff_flow(client, api)
            await eventually(lambda: len(server.connections) == 2, "both connections")
            by_peer = {c.peer: c.counters() for c in server.connections}
            garbage, good = by_peer[""], by_peer["kiosk"]
            assert garbage["bytes_in"] >= 64 * 1044 and garbage["handshakes"] == 0
            assert garbage["malformed"] + garbage["crc_errors"] + garbage["oversize"] > 0
            assert good["malformed"] == good["crc_errors"] == good["tag_errors"] == 0
            junk.close()
            await client.close()

    run(body())


@pytest.mark.parametrize(
    ("client_key", "server_key", "words"),
    [
        (OTHER_KEY, KEY, "wrong pairing key"),
        (None, KEY, "requires a pairing key"),
        (KEY, None, "refusing an unauthenticated session"),
    ],
)
def test_a_kiosk_without_the_right_key_never_connects_and_is_told_why(
    client_key: bytes | None, server_key: bytes | None, words: str
) -> None:
    async def body() -> None:
        api = TerminalApi()
        async with BridgeServer(api, ["tcp://127.0.0.1:0"], server_key, IDENTITY) as server:
            with pytest.raises(KioskAuthError) as err:
                await KioskClient.connect(tcp(server), client_key, timeout_s=DEADLINE_S)
            assert words in str(err.value) and err.value.value == tcp(server)
            assert KEY.hex() not in str(err.value) and OTHER_KEY.hex() not in str(err.value)
            assert api.calls == []

    run(body())


def test_unauthenticated_frames_get_no_session_and_no_reply_from_a_keyed_bridge() -> None:
    async def body() -> None:
        api = TerminalApi()
        async with BridgeServer(api, ["tcp://127.0.0.1:0"], KEY, IDENTITY) as server:
            host, port = tcp(server).removeprefix("tcp://").rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            kiosk = S.Session(
                S.INITIATOR,
                KIOSK,
                lambda v: writer.write(bytes(v)),
                os.urandom,
                key=None,
                max_frame=KIOSK_MAX_FRAME,
            )
            kiosk.connect(0)
            out = bytearray(64)
            n = build(out, F_SEQ, 0, 0, 0, 8, 0, cbor.dumps([REQUEST_IDS["state"], 9]), None)
            writer.write(cobs.encode(out[:n]) + b"\x00")
            await eventually(lambda: server.connections, "the connection")
            conn: BridgeConnection = server.connections[0]
            await eventually(lambda: conn.counters()["downgrades"] >= 1, "the frame refused")
            for now in range(0, 1000, 10):
                try:
                    kiosk.feed(await asyncio.wait_for(reader.read(4096), 0.01), now)
                except TimeoutError:
                    kiosk.poll(now)
            assert not kiosk.established and "no key is configured" in kiosk.last_error
            assert kiosk.receive() is None and api.calls == []
            writer.close()

    run(body())


def test_an_exception_in_the_controller_reaches_the_kiosk_as_an_internal_result() -> None:
    async def body() -> None:
        api = TerminalApi()
        async with (
            BridgeServer(api, ["tcp://127.0.0.1:0"], KEY, IDENTITY) as server,
            await KioskClient.connect(tcp(server), KEY) as client,
        ):
            api.explode = KeyError("compartment")
            broken = await client.compartments()
            assert broken.status == Status.INTERNAL and "compartments" in str(broken.reason)
            assert (await client.compartments()).ok

    run(body())


def test_closing_the_server_logs_staff_out_and_ends_the_clients_link() -> None:
    async def body() -> None:
        api = TerminalApi()
        server = BridgeServer(api, ["tcp://127.0.0.1:0"], KEY, IDENTITY)
        await server.start()
        client = await KioskClient.connect(tcp(server), KEY)
        assert (await client.staff_login("anna", STAFF_PIN)).ok
        await server.close()
        assert len(api.calls_of("staff_logout")) == 1 and api.listeners == []
        await eventually(lambda: client.counters()["transport_losses"] >= 1, "the link loss")
        await client.close()
        await server.close()  # idempotent

    run(body())


def test_bad_endpoints_fail_at_construction_and_a_busy_port_at_start() -> None:
    with pytest.raises(EndpointError, match="'tcp:/x:1'"):
        BridgeServer(TerminalApi(), ["tcp:/x:1"], KEY, IDENTITY)

    async def body() -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            server = BridgeServer(TerminalApi(), [f"tcp://127.0.0.1:{port}"], KEY, IDENTITY)
            with pytest.raises(EndpointError, match="cannot listen"):
                await server.start()

    run(body())
