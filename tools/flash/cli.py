"""``amtomat flash``: provision a board (firmware, config, key), verify, reset, self-test;
``amtomat flash --list``: the attached boards and what runs on them.

Exit status: 0 ok, 1 failure, 2 usage or config error, 3 board not reachable (no board,
several, port busy, no answer, unknown key), 4 board not supported (MicroPython version,
.mpy ABI, no space), 5 verification mismatch, 6 no answer (or a mismatch) after the reset,
7 the self-test found a problem, 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from tools.flash import ports
from tools.flash.errors import EXIT_OK, EXIT_SELFTEST, FlashError, NoBoard
from tools.flash.flow import ANSWER_TIMEOUT_S, DEFAULT_CONFIG, FlashOptions, FlashRun, Summary
from tools.flash.progress import Progress, human_size


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 < seconds <= 3600")
    return value


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``flash``."""
    p = sub.add_parser(
        "flash",
        parents=[common],
        help="provision a board: firmware, config, key, self-test",
        description=(
            "Flash one board over USB: compile the firmware for its MicroPython, copy what "
            "differs, write its config and key (kept in the daemon's keystore, never "
            "printed), verify every file by sha256, reset, handshake and self-test. "
            "Idempotent and safe to interrupt: run it again to finish."
        ),
        epilog=(
            "exit status: 0 ok, 1 failure, 2 usage or config error, 3 board not reachable, "
            "4 board not supported, 5 verification mismatch, 6 no answer after reset, "
            "7 self-test problem, 130 interrupted. See docs/flash.md."
        ),
    )
    p.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"terminal TOML (default: {DEFAULT_CONFIG})",
    )
    p.add_argument("--board", metavar="ID", help="board_id of the board to flash")
    p.add_argument(
        "--port",
        help="serial port (default: the board's port from the TOML, else the single "
        "attached MicroPython board)",
    )
    p.add_argument(
        "--keystore",
        type=Path,
        help="key folder (default: [daemon] keystore of the TOML)",
    )
    p.add_argument("--rekey", action="store_true", help="give the board a new key")
    p.add_argument(
        "--pulse",
        action="store_true",
        help="pulse every channel after asking (y/n/q) and report whether its door opened",
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help="replace another program or a board configured as another board without asking",
    )
    p.add_argument(
        "--answer-timeout",
        type=_positive_seconds,
        default=ANSWER_TIMEOUT_S,
        metavar="SECONDS",
        help=f"wait this long for the handshake after the reset (default {ANSWER_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="compiled firmware cache (default: ~/.cache/amtomat/firmware)",
    )
    p.add_argument("--list", action="store_true", help="list the attached boards and exit")
    p.add_argument(
        "--no-probe",
        action="store_true",
        help="with --list: only the USB listing, do not open the ports",
    )
    p.set_defaults(func=_run, flash_parser=p)


def _ask(question: str) -> str:
    """A line from stdin after the question; "q" at the end of input."""
    sys.stdout.write(question)
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line:
        sys.stdout.write("\n")
        return "q"
    return line


def _confirmer(yes: bool) -> Any:
    def confirm(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            return False
        return _ask(f"{question} [y/N] ").strip().lower().startswith("y")

    return confirm


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.flash_parser
    if args.list:
        return _fail_or(lambda: _list(not args.no_probe))
    if not args.board:
        parser.error("--board ID is required (or --list)")
    opts = FlashOptions(
        config=args.config,
        board_id=args.board,
        port=args.port,
        keystore=args.keystore,
        rekey=args.rekey,
        pulse=args.pulse,
        yes=args.yes,
        answer_timeout_s=args.answer_timeout,
        cache_dir=args.cache,
    )
    progress = Progress(sys.stdout)
    run = FlashRun(opts, progress, ask=_ask, confirm=_confirmer(args.yes))
    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        return _fail_or(lambda: _report(run.run(), progress))
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fail_or(action: Any) -> int:
    try:
        status: int = action()
    except FlashError as exc:
        sys.stdout.flush()
        print(f"amtomat flash: {exc}", file=sys.stderr)
        return exc.exit_status
    return status


def _report(summary: Summary, progress: Progress) -> int:
    s = summary
    fw = s.firmware
    problems = s.problems
    progress.step(
        f"board {s.board_id} is flashed and answers"
        + (f", but the self-test found {len(problems)} problem(s)" if problems else "")
    )
    keys = {
        "kept": "kept (the board already had it)",
        "written": "the keystore's key, written to the board",
        "new": "new key, stored in the keystore and on the board",
    }
    serial_number = s.serial_number or s.facts.unique_id or None
    rows = [
        ("board", f"{s.board_id} on {s.port}"),
        (
            "firmware",
            f"{fw.fw_version} build {fw.build_hash} ({len(fw.files)} files, "
            f"{human_size(fw.size)}; {len(s.copied)} copied, {len(s.removed)} removed)",
        ),
        (
            "MicroPython",
            f"{s.facts.version_text} on {s.facts.platform} ({s.facts.machine}), {s.abi}",
        ),
        (
            "USB serial",
            (s.serial_number or f"{s.facts.unique_id or 'unknown'} (the board's unique id)"),
        ),
        ("key", keys.get(s.key, s.key)),
        ("took", f"{s.timings.get('total', 0.0):.1f} s"),
    ]
    for name, value in rows:
        progress.note(f"{name:<12} {value}")
    if serial_number:
        progress.note(f"{'udev':<12} name the port {ports.UDEV_DIR}/{s.board_id} with the rule")
        progress.note(f"{'':<12} {ports.udev_rule(serial_number, s.board_id)}")
        progress.note(
            f"{'':<12} (amtomat udev-rules writes them for every board), then set "
            f'port = "{ports.UDEV_DIR}/{s.board_id}" for this board in the terminal TOML'
        )
    for problem in problems:
        progress.warn(problem)
    return EXIT_SELFTEST if problems else EXIT_OK


def _list(probe: bool) -> int:
    from tools.flash.listing import describe_port

    attached = ports.list_ports()
    boards = [p for p in attached if p.micropython]
    print(ports.format_ports(attached) if attached else "no serial ports")
    if not boards:
        raise NoBoard(
            "no board attached: no serial port with the USB id of a MicroPython board. Plug "
            "the board in with a data cable (not a charging cable); a board in BOOTSEL mode "
            "shows up as a USB drive: copy MicroPython's UF2 to it first",
            [p.device for p in attached],
        )
    if probe:
        for port in boards:
            print(f"{port.device}: {describe_port(port.device)}")
    return EXIT_OK
