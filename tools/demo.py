"""``amtomat demo`` (``make demo``): the whole terminal on one machine, played through.

It starts the simulator (the real firmware in MicroPython VMs) as a subprocess, starts the
daemon in this process against it with the demo terminal and embedded defaults (data in
``data/demo/``), and then, as a kiosk over the bridge and as the people in front of it
over the simulator's control socket, plays: a staff load, a citizen's pickup with the old
document returned, one wrong code and one jammed door. Each step is printed. It exits 0
when every step went as expected. ``--keep-running`` leaves it all running for a person
to drive through the bridge client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from controller import config as daemon_config
from controller.config import Config
from controller.daemon import Daemon
from controller.keystore import ensure_key
from host_bridge.client import KioskClient
from tools.mpvm import REPO_ROOT
from tools.sim.control import ControlClient, ControlError

DEMO_TOML = REPO_ROOT / "examples" / "demo-terminal.toml"
STAFF = ("mueller", "246810")  # the demo file's demo PIN (never on a real terminal)


class DemoFailed(Exception):
    """A step of the demo did not go as expected; the message says which."""


def say(text: str) -> None:
    """One readable line of the demo."""
    print(text, flush=True)


def demo_config(data: Path, board_urls: dict[str, str]) -> Config:
    """The demo terminal with its data in ``data``, boards on the simulator's URLs, the
    bridge on a free loopback port, and brisk timeouts so the demo does not drag."""
    cfg = daemon_config.loads(DEMO_TOML.read_text(), str(DEMO_TOML), base_dir=data)
    boards = tuple(dataclasses.replace(b, port=board_urls[b.board_id]) for b in cfg.terminal.boards)
    terminal = dataclasses.replace(cfg.terminal, boards=boards)
    daemon = dataclasses.replace(
        cfg.daemon, database=data / "amtomat.db", keystore=data / "keys", tick_ms=5
    )
    pickup = dataclasses.replace(cfg.pickup, door_open_s=3, deposit_s=30)
    listen = (daemon_config.Endpoint("tcp", host="127.0.0.1", port=0),)  # a free port
    bridge = dataclasses.replace(cfg.bridge, listen=listen, key_file=data / "keys" / "_kiosk.key")
    return dataclasses.replace(cfg, terminal=terminal, daemon=daemon, pickup=pickup, bridge=bridge)


@contextlib.contextmanager
def simulator(data: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """The simulator subprocess with its control socket; stopped on exit."""
    control = data / "sim.sock"
    cmd = [
        sys.executable, "-m", "tools.cli", "sim", "--config", str(DEMO_TOML),
        "--keystore", str(data / "keys"), "--control", str(control), "--tick-ms", "5",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip().startswith("control"):
                break
        else:
            raise DemoFailed(f"the simulator stopped at start (exit {proc.wait()})")
        yield proc, control
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


class Person:
    """The people in front of the terminal, through the simulator's control socket."""

    def __init__(self, control: Path) -> None:
        self.client = ControlClient(str(control))

    async def do(self, line: str) -> Any:
        """One action (a control verb line)."""
        return await asyncio.to_thread(self.client.call, line)

    def board_urls(self) -> dict[str, str]:
        """The boards' TCP URLs."""
        return {b["board"]: b["url"] for b in self.client.call("boards")}


class Steps:
    """Every progress notice since the kiosk connected, so none is missed."""

    def __init__(self, kiosk: KioskClient) -> None:
        self.seen: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.shown: set[tuple[int, str]] = set()
        self.task = asyncio.create_task(self._collect(kiosk))

    async def _collect(self, kiosk: KioskClient) -> None:
        async for notice in kiosk.notices():
            if notice.name == "progress":
                self.seen.append(notice.fields)
                self.changed.set()

    async def until(self, op: int, step: str, seconds: float = 20) -> None:
        """Wait for op's step, printing the steps of op on the way."""
        end = time.monotonic() + seconds
        while True:
            for fields in self.seen:
                if fields["op"] == op and (op, fields["step"]) not in self.shown:
                    self.shown.add((op, fields["step"]))
                    say(f"      · {fields['step'].replace('_', ' ')}")
            if any(f["op"] == op and f["step"] == step for f in self.seen):
                return
            self.changed.clear()
            left = end - time.monotonic()
            if left <= 0:
                raise DemoFailed(f"operation {op} never reached {step}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)


async def play(cfg: Config, kiosk: KioskClient, person: Person) -> None:
    """The demo's script; DemoFailed when a step is not as expected."""
    steps = Steps(kiosk)

    def where(label: str) -> tuple[str, int]:
        spec = next(c for c in cfg.compartments if c.label == label)
        return spec.board, spec.channel

    async def expect(result: Any, what: str) -> dict[str, Any]:
        if not result.ok:
            raise DemoFailed(f"{what}: {result.status.name} {result.reason}")
        return dict(result.data or {})

    say("1. Staff member mueller logs in at the kiosk and loads a passport")
    await expect(await kiosk.staff_login(*STAFF), "staff login")
    data = await expect(
        await kiosk.load(reference="P-2026-0815", size="S", return_required=True), "load"
    )
    label, code, op = data["compartment"], data["code"], data["op"]
    say(f"   compartment {label} opens; the pickup code (sent by SMS in real life) is {code}")
    await steps.until(op, "door_open")
    board, channel = where(label)
    await asyncio.sleep(0.5)
    await person.do(f"door {board} {channel} close")
    done = await kiosk.wait_done(op, 15)
    say(f"   staff close the door: load {done.fields['outcome']}")
    data = await expect(await kiosk.load(reference="P-2026-0999", compartment="A03"), "load 2")
    op2 = data["op"]
    await steps.until(op2, "door_open")
    await asyncio.sleep(0.5)
    await person.do("door wall-a 3 close")
    await kiosk.wait_done(op2, 15)
    code2 = data["code"]
    say("   a second passport goes into A03")
    await kiosk.staff_logout()

    say("2. A citizen types a wrong code")
    wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
    result = await kiosk.pickup(reference="P-2026-0815", code=wrong)
    if result.ok:
        raise DemoFailed("a wrong code was accepted")
    say(f"   refused: {result.status.name.lower()}: {result.reason}")

    say("3. The citizen types the right code, returns the old ID card, takes the passport")
    data = await expect(await kiosk.pickup(reference="P-2026-0815", code=code), "pickup")
    op = data["op"]
    await steps.until(op, "return_open")
    await asyncio.sleep(0.5)
    await person.do("deposit unit=return")
    say("      (the old ID card goes through the return slot)")
    await steps.until(op, "door_open")
    await asyncio.sleep(0.5)
    await person.do(f"door {board} {channel} close")
    done = await kiosk.wait_done(op, 15)
    if done.fields["outcome"] != "completed":
        raise DemoFailed(f"pickup ended {done.fields['outcome']}: {done.fields['reason']}")
    say(f"   pickup {done.fields['outcome']}: compartment {label} is empty again")

    say("4. A jammed door: compartment A03 does not open")
    await person.do("jam wall-a 3 on")
    data = await expect(await kiosk.pickup(reference="P-2026-0999", code=code2), "pickup 2")
    done = await kiosk.wait_done(data["op"], 20)
    if done.fields["outcome"] != "jammed":
        raise DemoFailed(f"the jammed pickup ended {done.fields['outcome']}")
    state = await expect(await kiosk.state(), "state")
    alarms = ", ".join(f"{a['alarm']} on {a['subject']}" for a in state["alarms"])
    say(f"   one retry, then: {done.fields['reason']}; alarm: {alarms}")
    say("   the county sees the alarm; the citizen is asked to come back")
    steps.task.cancel()


async def run_demo(data: Path, keep_running: bool) -> int:
    """Start simulator and daemon, play the script, report; returns the exit status."""
    data.mkdir(parents=True, exist_ok=True)
    for name in ("amtomat.db", "amtomat.db-wal", "amtomat.db-shm"):
        (data / name).unlink(missing_ok=True)  # every run starts with an empty terminal
    with simulator(data) as (_, control):
        person = Person(control)
        cfg = demo_config(data, person.board_urls())
        daemon = Daemon(cfg)
        await daemon.start()
        try:
            assert daemon.bridge is not None
            url = daemon.bridge.bound[0]
            key = ensure_key(cfg.bridge.key_file)
            n, boards = len(cfg.compartments), len(cfg.terminal.boards)
            kiosk_id = cfg.terminal.kiosk_id
            say(f"amtomat demo: terminal {kiosk_id}: {n} compartments, {boards} boards")
            say("  (the real firmware in MicroPython VMs, simulated doors and people);")
            say(f"  daemon with its kiosk bridge on {url}, data in {data}")
            kiosk = await KioskClient.connect(url, key, peer="amtomat-demo")
            try:
                await _wait_ready(kiosk)
                await play(cfg, kiosk, person)
            finally:
                await kiosk.close()
            assert daemon.store is not None
            check = daemon.store.verify_audit()
            say(f"5. Audit log: {check.entries} entries, hash chain "
                f"{'intact' if check.ok else 'BROKEN: ' + str(check.problem)}")  # fmt: skip
            if keep_running:
                say(f"running: bridge {url}, pairing key {cfg.bridge.key_file}, simulator "
                    f"control {control}; Ctrl-C stops")  # fmt: skip
                await _until_signal()
            return 0 if check.ok else 1
        except (DemoFailed, ControlError) as exc:
            say(f"demo FAILED: {exc}")
            return 1
        finally:
            await daemon.stop()


async def _wait_ready(kiosk: KioskClient, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        state = await kiosk.state()
        if state.ok and state.data and state.data["boards_ready"] == state.data["boards"]:
            return
        await asyncio.sleep(0.2)
    raise DemoFailed("the boards did not become ready")


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``amtomat demo``."""
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="run the whole terminal on this machine and play a pickup",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--keep-running", action="store_true", help="leave it running afterwards")
    p.add_argument(
        "--data", type=Path, default=Path("data/demo"), help="folder for the database and keys"
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Entry point of ``amtomat demo``."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return asyncio.run(run_demo(args.data.absolute(), args.keep_running))
