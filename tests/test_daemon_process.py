"""The daemon as a real process: `amtomat run` against `amtomat sim`, a kiosk through the
asyncio client over TCP, a SIGKILL in the middle of a pickup, and `amtomat demo`.

These run on the wall clock (separate processes cannot share a simulated one); they wait
for conditions with generous limits and never assert durations.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.api import Status
from controller.keystore import read_key
from host_bridge.client import KioskClient
from tools.mpvm import REPO_ROOT
from tools.sim.control import ControlClient

DEMO = REPO_ROOT / "examples" / "demo-terminal.toml"
AMTOMAT = [sys.executable, "-m", "tools.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(cond: object, seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {seconds} s")


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ControlClient]:
    control = tmp_path / "sim.sock"
    proc = subprocess.Popen(
        [*AMTOMAT, "sim", "--config", str(DEMO), "--keystore", str(tmp_path / "data" / "keys"),
         "--control", str(control), "--tick-ms", "5"],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait(control.exists, 60, "simulator control socket")
        yield ControlClient(str(control))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def _terminal_file(tmp_path: Path, sim: ControlClient, bridge_port: int) -> Path:
    """The demo terminal with the simulator's URLs as ports, its data in tmp_path/data."""
    text = DEMO.read_text()
    for board in sim.call("boards"):
        text = text.replace(
            f'board_id = "{board["board"]}"',
            f'board_id = "{board["board"]}"\nport = "{board["url"]}"',
        )
    text = text.replace("tcp://127.0.0.1:7010", f"tcp://127.0.0.1:{bridge_port}")
    text = text.replace("door_open_s = 8 ", "door_open_s = 2 ")
    path = tmp_path / "terminal.toml"
    path.write_text(text)
    return path


class DaemonProcess:
    """`amtomat run` as a child process."""

    def __init__(self, config: Path, port: int) -> None:
        self.config = config
        self.port = port
        self.proc = subprocess.Popen(
            [*AMTOMAT, "run", "--config", str(config)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        _wait(self._listening, 60, "daemon bridge port")

    def _listening(self) -> bool:
        assert self.proc.poll() is None, self.proc.communicate()[0]
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def output(self) -> str:
        """Everything it printed (after it ended)."""
        return self.proc.communicate(timeout=20)[0]


async def _ready(client: KioskClient) -> None:
    for _ in range(600):
        state = await client.state()
        if state.ok and state.data and state.data["boards_ready"] == 2:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("boards not ready")


async def _load_and_pickup(url: str, key: bytes, sim: ControlClient) -> str:
    client = await KioskClient.connect(url, key, peer="kiosk-e2e")
    try:
        await _ready(client)
        steps: list[tuple[int, str]] = []

        async def collect() -> None:
            async for notice in client.notices():
                if notice.name == "progress":
                    steps.append((notice.fields["op"], notice.fields["step"]))

        collector = asyncio.create_task(collect())
        assert (await client.staff_login("mueller", "246810")).ok
        loaded = await client.load(reference="E2E-1", compartment="A02")
        assert loaded.ok and loaded.data is not None, loaded
        for _ in range(400):
            if (loaded.data["op"], "door_open") in steps:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # staff put the document in
        sim.call("door wall-a 2 close")
        done = await client.wait_done(loaded.data["op"], 20)
        assert done.fields["outcome"] == "completed", done
        code = loaded.data["code"]
        picked = await client.pickup(reference="E2E-1", code=code)
        assert picked.ok, picked
        collector.cancel()
        return str(code)
    finally:
        await client.close()


def test_daemon_killed_mid_pickup_restarts_with_outcome_unknown(
    tmp_path: Path, sim: ControlClient
) -> None:
    port = _free_port()
    config = _terminal_file(tmp_path, sim, port)
    daemon = DaemonProcess(config, port)
    key = read_key(tmp_path / "data" / "keys" / "_kiosk.key")
    assert key is not None
    url = f"tcp://127.0.0.1:{port}"
    code = asyncio.run(_load_and_pickup(url, key, sim))
    daemon.proc.send_signal(signal.SIGKILL)  # the pulse may or may not have left
    daemon.proc.wait(20)

    daemon = DaemonProcess(config, port)

    async def after_restart() -> None:
        client = await KioskClient.connect(url, key, peer="kiosk-e2e-2")
        try:
            await _ready(client)
            listing = await client.compartments()
            assert listing.data is not None
            a02 = next(c for c in listing.data["compartments"] if c["compartment"] == "A02")
            assert a02["state"] == "unknown"
            state = await client.state()
            assert state.data is not None
            assert {"alarm": "outcome_unknown", "subject": "A02"}.items() <= {
                k: v for a in state.data["alarms"] if a["subject"] == "A02" for k, v in a.items()
            }.items()
            again = await client.pickup(reference="E2E-1", code=code)
            assert again.status == Status.OUT_OF_SERVICE  # never repeated blindly
        finally:
            await client.close()

    asyncio.run(after_restart())
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    out = daemon.output()
    assert code not in out  # a locally issued code never reaches a log
    check = subprocess.run(
        [*AMTOMAT, "verify-audit", "--config", str(config)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "hash chain intact" in check.stdout


def test_run_with_a_bad_config_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(DEMO.read_text().replace("deposit_s = 60", "deposit_s = 6000"))
    result = subprocess.run(
        [*AMTOMAT, "run", "--config", str(bad)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 78
    assert "daemon.pickup.deposit_s" in result.stderr and "6000" in result.stderr


def test_demo_plays_through(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    result = subprocess.run(
        [*AMTOMAT, "demo", "--data", str(tmp_path / "demo")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"refused: wrong_code", out)
    assert "pickup completed" in out
    assert "alarm: jam on A03" in out
    assert "hash chain intact" in out
