"""controller.boardport against `amtomat sim` in a subprocess: BoardManagers over the
socket:// URL and the pty reach READY, pulse and see the door open; power cuts, missing
ports, lost connections and wrong keys. Real time here, so nothing is asserted about
durations; waits are generous and end as soon as their condition holds."""

from __future__ import annotations

import asyncio
import random
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.boardconfig import BoardSpec, load
from controller.boardlink import BoardEvent, BoardLink, LinkState, RequestOutcome
from controller.boardport import (
    BoardManager,
    PortError,
    backoff_delay,
    monotonic_ms,
    open_port,
)
from controller.errors import ControllerError
from tools.mpvm import REPO_ROOT, find_node
from tools.sim.control import ControlClient

F = TypeVar("F", bound=Callable[..., None])


def needs_sim(test: F) -> F:
    """Runs `amtomat sim`, which needs node for its MicroPython VMs."""
    skip = pytest.mark.skipif(find_node() is None, reason="node is not installed")
    marked: F = pytest.mark.micropython(skip(test))
    return marked


TERMINAL = load(REPO_ROOT / "examples" / "demo-terminal.toml")
LINE = re.compile(r"board (\S+)\s+address (\d+)\s+pty (\S+)\s+url (\S+)\s+(\w+)")
LIMIT_S = 60.0
SIM = [sys.executable, "-m", "tools.cli", "sim"]


@dataclass
class SimProcess:
    proc: subprocess.Popen[str]
    ptys: dict[str, str]
    urls: dict[str, str]
    keys: dict[str, bytes]
    control_port: int

    def control(self, line: str) -> Any:
        client = ControlClient(self.control_port)
        try:
            return client.call(line)
        finally:
            client.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    tmp = tmp_path_factory.mktemp("boardport")
    port = _free_port()
    with open(tmp / "sim.err", "w") as err:
        proc = subprocess.Popen(
            [*SIM, "--keystore", str(tmp / "keys"), "--control", str(port)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert proc.stdout is not None
    ptys: dict[str, str] = {}
    urls: dict[str, str] = {}
    for line in proc.stdout:
        m = LINE.search(line)
        if m:
            ptys[m.group(1)] = m.group(3)
            urls[m.group(1)] = m.group(4)
        if "control" in line and "127.0.0.1" in line:
            break
    else:
        proc.wait(10)
        pytest.fail(f"sim ended early: {(tmp / 'sim.err').read_text()}")
    keys = {b: (tmp / "keys" / f"{b}.key").read_bytes() for b in ptys}
    try:
        yield SimProcess(proc, ptys, urls, keys, port)
    finally:
        proc.kill()
        proc.wait(10)


class Boards:
    """Links for some boards on one port, recording events, and their manager."""

    def __init__(
        self,
        url: str,
        boards: list[tuple[str, bytes | None]],
        connect_timeout_ms: int = 10000,
        **manager_args: Any,
    ) -> None:
        self.events: list[BoardEvent] = []
        self.links = {
            board_id: BoardLink(
                self._spec(board_id),
                key,
                self._write,
                on_event=self.events.append,
                connect_timeout_ms=connect_timeout_ms,
            )
            for board_id, key in boards
        }
        manager_args.setdefault("now", monotonic_ms)
        self.manager = BoardManager(url, list(self.links.values()), **manager_args)

    @staticmethod
    def _spec(board_id: str) -> BoardSpec:
        return TERMINAL.board(board_id)

    def _write(self, data: bytes) -> None:
        self.manager.write(data)

    def saw(self, board_id: str, kind: str, channel: int) -> bool:
        return any(
            e.board_id == board_id and e.kind == kind and e.channel == channel for e in self.events
        )

    async def call(self, board_id: str, name: str, args: list[Any]) -> RequestOutcome:
        future: asyncio.Future[RequestOutcome] = asyncio.get_running_loop().create_future()
        self.links[board_id].request(name, args, monotonic_ms(), future.set_result)
        return await asyncio.wait_for(future, LIMIT_S)


async def until(cond: Callable[[], bool], limit_s: float = LIMIT_S) -> None:
    """Wait until cond() holds; AssertionError after a generous limit."""
    async with asyncio.timeout(limit_s):
        while not cond():
            await asyncio.sleep(0.01)


async def stop(manager: BoardManager, task: asyncio.Task[None]) -> None:
    manager.close()
    await asyncio.wait_for(task, 10)


@needs_sim
@pytest.mark.parametrize("how", ["url", "pty"])
def test_a_board_over_the_socket_url_and_the_pty_pulses_and_reports_the_door(
    sim: SimProcess, how: str
) -> None:
    board, other, channel = ("wall-a", "wall-b", 10) if how == "url" else ("wall-b", "wall-a", 8)
    port = sim.urls[board] if how == "url" else sim.ptys[board]
    # the other board's link shares the port as on an RS-485 bus: it hears only frames
    # of another address and never connects
    boards = Boards(port, [(board, sim.keys[board]), (other, sim.keys[other])])
    failing = Boards("/dev/amtomat-no-such-port", [(board, sim.keys[board])])

    async def main() -> None:
        task = asyncio.create_task(boards.manager.run())
        broken = asyncio.create_task(failing.manager.run())
        try:
            link = boards.links[board]
            await until(lambda: link.state is LinkState.READY)
            outcome = await boards.call(board, "pulse", [channel, 200])
            assert outcome.ok and outcome.data["ms"] == 200
            await until(lambda: boards.saw(board, "door_open", channel))
            if how == "pty":
                with pytest.raises(PortError, match="busy"):
                    await open_port(port)
        finally:
            await stop(boards.manager, task)
            await stop(failing.manager, broken)

    asyncio.run(main())
    sim.control(f"door {board} {channel} close")
    assert all(link.state is LinkState.OFFLINE for link in boards.links.values())
    bystander = boards.links[other]
    assert LinkState.READY not in (bystander.state,) and bystander.counters()["other_addr"] > 0
    assert failing.manager.port_errors >= 1  # it kept failing while the other one worked


@needs_sim
def test_a_power_cut_takes_the_link_down_and_power_on_brings_it_back(sim: SimProcess) -> None:
    boards = Boards(sim.urls["wall-a"], [("wall-a", sim.keys["wall-a"])])
    link = boards.links["wall-a"]
    boots: list[int | None] = []

    async def main() -> None:
        task = asyncio.create_task(boards.manager.run())
        try:
            await until(lambda: link.state is LinkState.READY)
            boots.append(link.boot_id)
            sim.control("power wall-a cut")
            await until(lambda: link.state is LinkState.CONNECTING)
            assert "link lost" in link.last_error
            sim.control("power wall-a on")
            await until(lambda: link.state is LinkState.READY)
            boots.append(link.boot_id)
            assert link.identity["reset_reason"] == "power"
        finally:
            await stop(boards.manager, task)

    try:
        asyncio.run(main())
    finally:
        sim.control("power wall-a on")
    assert boots[0] != boots[1]
    assert boards.manager.port_errors == 0  # the TCP connection itself stayed up


def test_a_missing_port_is_retried_with_growing_jittered_delays() -> None:
    spec = TERMINAL.board("wall-a")
    link = BoardLink(spec, None, lambda data: None, on_event=lambda e: None)
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 7:
            manager.close()

    manager = BoardManager(
        "/dev/amtomat-no-such-port",
        [link],
        now=monotonic_ms,
        backoff_min_s=0.5,
        backoff_max_s=4.0,
        rng=random.Random(11),
        sleep=sleep,
    )
    asyncio.run(asyncio.wait_for(manager.run(), 30))
    rng = random.Random(11)
    assert delays == [backoff_delay(n, 0.5, 4.0, rng) for n in range(7)]
    assert delays[0] == 0.5
    for n, d in enumerate(delays[1:], 1):
        base = min(4.0, 0.5 * 2**n)
        assert base / 2 <= d <= base
    assert len(set(delays[3:])) == 4  # jittered, not one fixed value
    assert manager.port_errors == 7 and manager.reconnects == 0
    assert link.state is LinkState.OFFLINE


def test_open_port_errors_name_the_url_and_the_reason() -> None:
    async def reason(url: str) -> str:
        with pytest.raises(PortError) as info:
            await open_port(url)
        assert info.value.url == url and url in str(info.value)
        return info.value.reason

    async def main() -> None:
        assert await reason("/dev/amtomat-no-such-port") == "no such device"
        refused = f"socket://127.0.0.1:{_free_port()}"
        assert await reason(refused) == "connection refused: nothing listens there"
        assert "socket://host:port" in await reason("socket://127.0.0.1")
        assert "socket://host:port" in await reason("socket://127.0.0.1:70000")
        assert "unsupported URL" in await reason("ftp://example.org/x")
        assert await reason("/dev/null") == "not a serial device"

    asyncio.run(main())


def test_a_port_closed_by_the_other_end_is_opened_again() -> None:
    async def main() -> tuple[BoardManager, BoardLink]:
        accepted = 0

        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        link = BoardLink(TERMINAL.board("wall-a"), None, lambda d: None, on_event=lambda e: None)

        async def no_wait(seconds: float) -> None:
            await asyncio.sleep(0)

        manager = BoardManager(
            f"socket://127.0.0.1:{port}", [link], now=monotonic_ms, sleep=no_wait
        )
        task = asyncio.create_task(manager.run())
        await until(lambda: accepted >= 3)
        await stop(manager, task)
        server.close()
        return manager, link

    manager, link = asyncio.run(main())
    assert manager.reconnects >= 2 and manager.port_errors >= 2
    assert link.state is LinkState.OFFLINE and "end of stream" in link.last_error


@needs_sim
def test_a_board_that_never_connects_gets_its_reset_line_pulsed(sim: SimProcess) -> None:
    resets: list[str] = []
    errors: list[str] = []

    def hard_reset(board_id: str) -> None:
        resets.append(board_id)
        errors.append(boards.links[board_id].last_error)
        sim.control(f"power {board_id} reset")  # the Pi pulls the board's RUN line

    before = _boots(sim, "wall-b")
    wrong_key = bytes(32)
    boards = Boards(
        sim.urls["wall-b"],
        [("wall-b", wrong_key)],
        connect_timeout_ms=1000,
        reset_after=2,
        hard_reset=hard_reset,
    )
    link = boards.links["wall-b"]

    async def main() -> None:
        task = asyncio.create_task(boards.manager.run())
        try:
            await until(lambda: bool(resets))
            assert link.failures == 0  # they start over after the reset
        finally:
            await stop(boards.manager, task)

    asyncio.run(main())
    assert set(resets) == {"wall-b"} and boards.manager.hard_resets == len(resets)
    assert all("wrong key" in e for e in errors), errors
    assert [b["cause"] for b in _boots(sim, "wall-b")[len(before) :]] == ["hard"] * len(resets)


def _boots(sim: SimProcess, board_id: str) -> list[dict[str, Any]]:
    (info,) = [b for b in sim.control("boards") if b["board"] == board_id]
    boots: list[dict[str, Any]] = info["boots"]
    return boots


def test_manager_arguments_are_checked() -> None:
    link = BoardLink(TERMINAL.board("wall-a"), None, lambda d: None, on_event=lambda e: None)
    same = BoardLink(TERMINAL.board("wall-a"), None, lambda d: None, on_event=lambda e: None)
    with pytest.raises(ControllerError, match="address 1"):
        BoardManager("/dev/x", [link, same], now=monotonic_ms)
    with pytest.raises(ControllerError, match="no boards"):
        BoardManager("/dev/x", [], now=monotonic_ms)
    with pytest.raises(ControllerError, match=r"poll_ms must be 1\.\.1000, got 0"):
        BoardManager("/dev/x", [link], now=monotonic_ms, poll_ms=0)
    with pytest.raises(ControllerError, match="backoff"):
        BoardManager("/dev/x", [link], now=monotonic_ms, backoff_min_s=2, backoff_max_s=1)


@given(
    st.integers(0, 100),
    st.floats(0.01, 10),
    st.floats(0.01, 100),
    st.integers(0, 2**32),
)
def test_backoff_stays_between_its_bounds(attempt: int, lo: float, hi: float, seed: int) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    delay = backoff_delay(attempt, lo, hi, random.Random(seed))
    assert lo <= delay <= hi
    assert delay >= min(hi, lo * 2**attempt) / 2
