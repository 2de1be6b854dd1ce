"""`amtomat sim` as a user runs it: a process, boards on a pty and a socket:// URL that
pyserial opens unchanged, and the control socket. Real time here, so nothing is
asserted about durations; waits are generous and end as soon as the condition holds."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from protocol import session as S
from protocol.messages import BOARD
from tools.mpvm import REPO_ROOT, find_node
from tools.sim.control import ControlClient, ControlError

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_node() is None, reason="node is not installed"),
]
SIM = [sys.executable, "-m", "tools.cli", "sim"]
LINE = re.compile(r"board (\S+)\s+address (\d+)\s+pty (\S+)\s+url (\S+)\s+(\w+)")


class Sim:
    def __init__(
        self, proc: subprocess.Popen[str], boards: dict[str, dict[str, str]], control: int
    ):
        self.proc = proc
        self.boards = boards
        self.control = control


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    port = _free_port()
    proc = subprocess.Popen(
        [*SIM, "--keystore", str(tmp_path / "keys"), "--control", str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    boards: dict[str, dict[str, str]] = {}
    for line in proc.stdout:
        m = LINE.search(line)
        if m:
            boards[m.group(1)] = {"address": m.group(2), "pty": m.group(3), "url": m.group(4)}
        if "control" in line and "127.0.0.1" in line:
            break
    else:
        proc.wait(10)
        pytest.fail(f"sim ended early: {proc.stderr.read() if proc.stderr else ''}")
    try:
        yield Sim(proc, boards, port)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _key(tmp: Path, board: str) -> bytes:
    return (tmp / "keys" / f"{board}.key").read_bytes()


class Host:
    """A real-time host session over a pyserial port."""

    def __init__(self, port: Any, key: bytes, addr: int) -> None:
        self.port = port
        self.session = S.Session(S.INITIATOR, BOARD, self._write, os.urandom, key=key, addr=addr)
        self.messages: list[list[Any]] = []

    def _write(self, view: memoryview) -> None:
        self.port.write(bytes(view))

    def pump_until(self, cond: Callable[[], bool], limit_s: float = 30) -> None:
        end = time.monotonic() + limit_s
        while not cond():
            assert time.monotonic() < end, "condition not reached"
            now = int(time.monotonic() * 1000) & ((1 << 30) - 1)
            data = self.port.read(self.port.in_waiting or 1)
            if data:
                self.session.feed(data, now)
            if self.session.state in (S.IDLE, S.DOWN):
                self.session.connect(now)
            msg = self.session.receive()
            while msg is not None:
                self.messages.append(msg)
                msg = self.session.receive()
            self.session.poll(now)

    def call(self, msg: list[Any]) -> list[Any]:
        cid = self.session.request(msg)
        self.pump_until(lambda: any(m[0] == 0x40 and m[1] == cid for m in self.messages))
        return next(m for m in self.messages if m[0] == 0x40 and m[1] == cid)


def test_boards_answer_over_pty_and_socket_and_the_control_socket_acts(
    sim: Sim, tmp_path: Path
) -> None:
    assert set(sim.boards) == {"wall-a", "wall-b"}
    a = sim.boards["wall-a"]
    key = _key(tmp_path, "wall-a")
    assert oct(os.stat(tmp_path / "keys" / "wall-a.key").st_mode & 0o777) == "0o600"
    with serial.serial_for_url(a["url"], timeout=0.05) as port:
        host = Host(port, key, int(a["address"]))
        host.pump_until(lambda: host.session.established)
        assert host.session.peer["board_id"] == "wall-a"
        assert host.call([0x14])[2] == 0
        control = ControlClient(sim.control)
        assert control.call("door wall-a 3 open")["open"] is True
        host.pump_until(
            lambda: any(m[0] == 0x60 and m[2] == "door_open" and m[4] == 3 for m in host.messages)
        )
        with pytest.raises(ControlError, match="channel"):
            control.call("door wall-a 99 open")
        state = control.call("state")
        assert state["boards"]["wall-a"]["world"]["doors"]["3"]["open"] is True
        control.close()
    b = sim.boards["wall-b"]
    with serial.Serial(b["pty"], timeout=0.05) as port:
        host = Host(port, _key(tmp_path, "wall-b"), int(b["address"]))
        host.pump_until(lambda: host.session.established)
        assert host.session.peer["board_id"] == "wall-b"
    sim.proc.send_signal(signal.SIGTERM)
    out, _ = sim.proc.communicate(timeout=20)
    assert sim.proc.returncode == 0 and "stopped" in out


def test_a_bad_config_is_refused_with_the_key_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[terminal]\nkiosk_id = "x1"\nsite = "s"\n[[boards]]\nboard_id = "b"\n'
        "[[boards.channels]]\nchannel = 1\nsolenoid = 2\n"
    )
    proc = subprocess.run(
        [*SIM, "--config", str(bad), "--keystore", str(tmp_path / "keys")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "boards[0].channels[0]" in proc.stderr and "door" in proc.stderr
