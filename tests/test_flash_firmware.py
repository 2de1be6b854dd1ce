"""The parts of ``amtomat flash`` that talk to the running firmware, against the real firmware
in ``amtomat sim`` (real ptys, real MicroPython VMs): the maintenance handover with the key
fallback and its refusals, and the post-reset handshake and self-test through the daemon's
own BoardLink and BoardManager. Real time; waits are generous, nothing asserts durations."""

from __future__ import annotations

import io
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.boardconfig import load
from tools.flash.errors import (
    BoardMismatch,
    HandoverRefused,
    NoAnswer,
    NotConfirmed,
    UnknownKey,
)
from tools.flash.handover import reach_repl
from tools.flash.progress import Progress
from tools.flash.repl import BoardRepl
from tools.flash.selftest import run_selftest
from tools.mpvm import REPO_ROOT, find_node
from tools.sim.control import ControlClient

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_node() is None, reason="node is not installed"),
]
DEMO = REPO_ROOT / "examples" / "demo-terminal.toml"
LINE = re.compile(r"board (\S+)\s+address (\d+)\s+pty (\S+)\s+url (\S+)\s+(\w+)")


@dataclass
class Sim:
    proc: subprocess.Popen[str]
    ptys: dict[str, str]
    keys: dict[str, bytes]
    control: ControlClient


def _start(tmp: Path, *extra: str) -> Sim:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.cli",
            "sim",
            "--keystore",
            str(tmp / "keys"),
            "--control",
            str(port),
            *extra,
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ptys: dict[str, str] = {}
    for line in proc.stdout:
        m = LINE.search(line)
        if m:
            ptys[m.group(1)] = m.group(3)
        if "control" in line:
            break
    else:
        pytest.fail(f"sim ended early: {proc.stderr.read() if proc.stderr else ''}")
    keys = {}
    if "--unprovisioned" not in extra:
        keys = {b: (tmp / "keys" / f"{b}.key").read_bytes() for b in ptys}
    return Sim(proc, ptys, keys, ControlClient(port))


def _stop(sim: Sim) -> None:
    sim.control.close()
    sim.proc.terminate()
    try:
        sim.proc.wait(10)
    except subprocess.TimeoutExpired:
        sim.proc.kill()
        sim.proc.wait(10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    s = _start(tmp_path_factory.mktemp("sim"))
    try:
        yield s
    finally:
        _stop(s)


def _reach(
    sim: Sim,
    board: str,
    candidates: list[tuple[str, bytes]],
    *,
    board_id: str | None = None,
    addresses: list[int] | None = None,
) -> object:
    """reach_repl on board's pty, flashing it as board_id (default: itself); nobody confirms."""
    spec = load(DEMO).board(board)
    repl = BoardRepl.open(sim.ptys[board])
    try:
        return reach_repl(
            repl,
            board_id=board_id or board,
            addresses=addresses or [spec.address],
            candidates=candidates,
            recovery_pin=spec.recovery_pin,
            keystore="/keys",
            confirm_other_board=lambda seen: False,
        )
    finally:
        repl.close()


def test_selftest_reaches_ready_reads_every_input_and_pulses_on_request(sim: Sim) -> None:
    spec = load(DEMO).board("wall-a")
    out = io.StringIO()
    answers = iter(["y\n", "n\n", "q\n"])
    asked: list[str] = []

    def ask(question: str) -> str:
        asked.append(question)
        return next(answers)

    report = run_selftest(
        sim.ptys["wall-a"],
        spec,
        sim.keys["wall-a"],
        build_hash="dev",  # the simulator's boards have no build file
        answer_timeout_s=30,
        labels={1: "A01", 2: "A02"},
        pulse_ms=300,
        ask=ask,
        progress=Progress(out, tty=False),
    )
    assert report.identity["board_id"] == "wall-a"
    assert report.diagnostics["board_id"] == "wall-a"
    text = out.getvalue()
    assert "channel 1 (A01): door closed [GPIO 1]" in text
    assert "channel 12: door closed [GPIO 28]" in text
    assert "return_slot: deposit clear [mcp0:B1], flap closed [mcp0:B0]" in text
    assert "entrance: door closed [mcp0:B3], exit released [mcp0:B4], grant off [mcp0:B2]" in text
    assert asked == [
        "pulse channel 1 (A01)? [y/n/q] ",
        "pulse channel 2 (A02)? [y/n/q] ",
        "pulse channel 3? [y/n/q] ",
    ]
    assert "channel 1 (A01): pulse sent (300 ms)" in text
    assert "channel 1 (A01): door seen open" in text
    assert "channel 2 (A02): skipped" in text and "pulses stopped" in text
    assert [(p.channel, p.granted_ms, p.door_seen_open) for p in report.pulses] == [(1, 300, True)]
    assert report.problems == []
    sim.control.call("door wall-a 1 close")


def test_selftest_reports_a_jammed_door_as_a_problem(sim: Sim) -> None:
    spec = load(DEMO).board("wall-a")
    sim.control.call("jam wall-a 2 on")
    answers = iter(["n\n", "y\n", "q\n"])
    try:
        report = run_selftest(
            sim.ptys["wall-a"],
            spec,
            sim.keys["wall-a"],
            build_hash="dev",
            answer_timeout_s=30,
            labels={},
            pulse_ms=300,
            ask=lambda q: next(answers),
            progress=Progress(io.StringIO(), tty=False),
        )
    finally:
        sim.control.call("jam wall-a 2 off")
    assert report.pulses[0].granted_ms == 300 and not report.pulses[0].door_seen_open
    assert len(report.problems) == 1 and "channel 2: door NOT seen open" in report.problems[0]


def test_selftest_refuses_a_board_running_another_build(sim: Sim) -> None:
    spec = load(DEMO).board("wall-a")
    with pytest.raises(BoardMismatch, match="reports firmware build 'dev'"):
        run_selftest(
            sim.ptys["wall-a"],
            spec,
            sim.keys["wall-a"],
            build_hash="0123456789abcdef",
            answer_timeout_s=30,
            labels={},
            pulse_ms=None,
            ask=lambda q: "q",
            progress=Progress(io.StringIO(), tty=False),
        )


def test_selftest_with_the_wrong_key_gets_no_answer(sim: Sim) -> None:
    from tools.flash.errors import NoAnswerAfterReset

    spec = load(DEMO).board("wall-a")
    with pytest.raises(NoAnswerAfterReset, match="not answering after reset") as exc:
        run_selftest(
            sim.ptys["wall-a"],
            spec,
            secrets.token_bytes(32),
            build_hash="dev",
            answer_timeout_s=3,
            labels={},
            pulse_ms=None,
            ask=lambda q: "q",
            progress=Progress(io.StringIO(), tty=False),
        )
    assert "wrong key" in str(exc.value)


def test_unknown_key_is_refused_with_the_recovery_jumper(sim: Sim) -> None:
    wrong = [("wall-b.key", secrets.token_bytes(32))]
    with pytest.raises(UnknownKey, match="GPIO 28 \\(recovery_pin\\) to GND") as exc:
        _reach(sim, "wall-b", wrong)
    assert "tried wall-b.key" in str(exc.value)
    with pytest.raises(UnknownKey, match="BOOTSEL"):  # wall-a has no recovery_pin
        _reach(sim, "wall-a", [("wall-a.key", secrets.token_bytes(32))])


def test_board_configured_as_another_board_needs_confirmation(sim: Sim) -> None:
    with pytest.raises(NotConfirmed, match="configured as 'wall-b', not 'wall-c'"):
        _reach(sim, "wall-b", [("wall-b.key", sim.keys["wall-b"])], board_id="wall-c")
    assert sim.control.call("state")["boards"]["wall-b"]["state"] == "running"


def test_a_board_moved_from_another_place_is_found_and_needs_confirmation(sim: Sim) -> None:
    """Flashing wall-a onto the board that is wall-b: nothing at wall-a's address, wall-a's
    key fails at wall-b's address, wall-b's key opens the session, the welcome says wall-b."""
    keys = [("wall-a.key", sim.keys["wall-a"]), ("wall-b.key", sim.keys["wall-b"])]
    with pytest.raises(NotConfirmed, match="configured as 'wall-b', not 'wall-a'"):
        _reach(sim, "wall-b", keys, board_id="wall-a", addresses=[1, 2])


def test_maintenance_handover_tries_the_old_key_after_the_current_one(sim: Sim) -> None:
    """The current key fails, .key.old works, the firmware hands the port to the REPL. The
    simulator has no REPL behind it, so entering the raw REPL is the step that fails."""
    candidates = [("wall-b.key", secrets.token_bytes(32)), ("wall-b.key.old", sim.keys["wall-b"])]
    try:
        with pytest.raises(NoAnswer, match="accepted the maintenance request"):
            _reach(sim, "wall-b", candidates)
        assert sim.control.call("state")["boards"]["wall-b"]["state"] == "repl"
    finally:
        sim.control.call("power wall-b reboot")


def test_nothing_behind_the_port_is_no_answer() -> None:
    master, slave = os.openpty()
    try:
        repl = BoardRepl.open(os.ttyname(slave))
        try:
            with pytest.raises(NoAnswer, match="nothing answered") as exc:
                reach_repl(
                    repl,
                    board_id="wall-a",
                    addresses=[1],
                    candidates=[],
                    recovery_pin=None,
                    keystore="/k",
                    confirm_other_board=lambda s: False,
                    repl_wait_s=0.3,
                    firmware_wait_s=0.5,
                )
            assert "MicroPython is installed" in str(exc.value)
        finally:
            repl.close()
    finally:
        os.close(master)
        os.close(slave)


def test_unprovisioned_firmware_cannot_hand_over(tmp_path: Path) -> None:
    sim = _start(tmp_path, "--unprovisioned")
    try:
        for candidates in ([], [("wall-a.key", secrets.token_bytes(32))]):
            with pytest.raises(HandoverRefused, match="without a key"):
                _reach(sim, "wall-a", candidates)
    finally:
        _stop(sim)
