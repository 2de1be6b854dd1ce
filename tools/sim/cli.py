"""``amtomat sim``: run a simulated terminal until interrupted."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path

from controller.boardconfig import Terminal, load
from controller.errors import ConfigError
from controller.keystore import KeystoreError, ensure_key

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "demo-terminal.toml"


def board_keys(terminal: Terminal, keystore: Path) -> dict[str, bytes | None]:
    """The key of every board from keystore/<board_id>.key (32 raw bytes, mode 0600),
    generated for a board that has none. Keys are never printed or logged."""
    return {b.board_id: ensure_key(keystore / f"{b.board_id}.key") for b in terminal.boards}


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Register ``sim`` on the amtomat command line."""
    p = sub.add_parser(
        "sim",
        parents=[common],
        help="run a simulated terminal (real firmware in MicroPython VMs)",
        description=(
            "Run every board of a terminal config in its own MicroPython VM with simulated"
            " doors, sensors and people. Each board is reachable over a pty and a socket://"
            " URL; a control socket takes person actions and faults (send 'help')."
        ),
    )
    p.add_argument(
        "--config",
        type=Path,
        default=DEMO_CONFIG,
        help="terminal TOML (default: the demo terminal)",
    )
    p.add_argument(
        "--keystore",
        type=Path,
        default=Path("data/keys"),
        help="folder of board keys, <board_id>.key, made if missing (default: data/keys)",
    )
    p.add_argument("--unprovisioned", action="store_true", help="run the boards without keys")
    p.add_argument(
        "--control",
        default=None,
        help="control socket: a Unix socket path or a TCP port on 127.0.0.1"
        " (default: a Unix socket in the temp folder)",
    )
    p.add_argument("--tick-ms", type=int, default=5, help="simulated ms per pass (1..50)")
    p.add_argument("--seed", type=int, default=1, help="seed of the line-noise generators")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Start the simulator, print how to reach it, run until SIGINT or SIGTERM."""
    from tools.sim.control import SIM_COMMANDS, ControlServer
    from tools.sim.simulator import Simulator, SimulatorError

    try:
        terminal = load(args.config)
        keys = (
            {b.board_id: None for b in terminal.boards}
            if args.unprovisioned
            else board_keys(terminal, args.keystore)
        )
        sim = Simulator(terminal, keys, serve=True, tick_ms=args.tick_ms, seed=args.seed)
    except (ConfigError, KeystoreError, SimulatorError, OSError) as exc:
        print(f"amtomat sim: {exc}", file=sys.stderr)
        return 2
    control: str | int = args.control or os.path.join(
        tempfile.gettempdir(), f"amtomat-sim-{terminal.kiosk_id}.sock"
    )
    if isinstance(control, str) and control.isdigit():
        control = int(control)
    stop = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    with sim:
        server = ControlServer(sim, SIM_COMMANDS, control)
        try:
            print(f"amtomat sim: terminal {terminal.kiosk_id}, {len(sim.boards)} boards")
            for info in sim.boards_info():
                key = "provisioned" if info["provisioned"] else "unprovisioned"
                print(
                    f"  board {info['board']:<10} address {info['address']:<3} pty {info['pty']}"
                    f"  url {info['url']}  {key}"
                )
            where = f"127.0.0.1:{control}" if isinstance(control, int) else control
            print(f"  control {where} (one command per line; 'help' lists them)", flush=True)
            sim.run_realtime(lambda: not stop, server.poll)
        finally:
            server.close()
    print("amtomat sim: stopped")
    return 0
