"""``amtomat fakeboard``: a fake USB MicroPython board on a pty, as a process.

Prints one JSON line ``{"port": "/dev/pts/N", "link": PATH|null, "serial_number": ...}``
on stdout once the board is ready, logs to stderr, and runs until SIGTERM or SIGINT; then
it saves the board's files into the flash folder and exits.

Exit status: 0 stopped by SIGTERM or SIGINT, 1 the board could not start or failed
(node missing, unusable flash folder, --link in the way), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from tools.fakeboard.errors import FakeBoardError

EXIT_OK = 0
EXIT_FAILURE = 1


def _arg(check: Callable[[Any], Any], convert: Callable[[str], Any] = str) -> Any:
    """An argparse type: convert, then check with a FakeBoard validator."""

    def parse(text: str) -> Any:
        try:
            return check(convert(text))
        except (FakeBoardError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc) or f"bad value {text!r}") from None

    return parse


def _int_any_base(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"{text!r} is not an integer (decimal or 0x hex)") from None


def _check_pattern(pattern: str) -> str:
    from tools.fakeboard.pattern import glob_regex

    glob_regex(pattern)
    return pattern


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``fakeboard``."""
    from tools.fakeboard.identity import (
        DEFAULT_SERIAL,
        PICO_CAPACITY,
        PICO_MACHINE,
        check_capacity,
        check_mpy,
        check_serial,
        check_version,
    )

    p = sub.add_parser(
        "fakeboard",
        parents=[common],
        help="a fake USB MicroPython board on a pty (for tests and demos)",
        description=(
            "Run a fake Raspberry Pi Pico: a pty wired to a real MicroPython VM whose files "
            "live in the flash folder. mpremote works against it; once flashed it runs the "
            "firmware and speaks the board protocol on the same pty."
        ),
        epilog=(
            "exit status: 0 stopped by SIGTERM or SIGINT, 1 the board could not start or "
            "failed, 2 usage error. See docs/fakeboard.md."
        ),
    )
    p.add_argument(
        "--flash",
        required=True,
        type=Path,
        metavar="DIR",
        help="the board's file system (created if missing; empty = factory-fresh board)",
    )
    p.add_argument("--link", type=Path, metavar="PATH", help="make PATH a symlink to the pty")
    p.add_argument(
        "--micropython",
        type=_arg(check_version),
        metavar="VERSION",
        help="MicroPython version the board claims, e.g. 1.19.1 (default: the VM's)",
    )
    p.add_argument(
        "--mpy",
        type=_arg(check_mpy, _int_any_base),
        metavar="N",
        help="sys.implementation._mpy the board claims, e.g. 0x306 (default: the VM's)",
    )
    p.add_argument(
        "--capacity",
        type=_arg(check_capacity, _int_any_base),
        default=PICO_CAPACITY,
        metavar="BYTES",
        help=f"flash file system size (default {PICO_CAPACITY}, a Pico's)",
    )
    p.add_argument(
        "--corrupt",
        type=_arg(_check_pattern),
        metavar="PATTERN",
        help="flip one byte of every file matching this fnmatch pattern when it is written",
    )
    p.add_argument(
        "--silent-after-reset",
        action="store_true",
        help="never answer again after the next hard reset",
    )
    p.add_argument(
        "--serial",
        type=_arg(check_serial),
        default=DEFAULT_SERIAL,
        metavar="SN",
        help=f"serial number, 16 hex digits (default {DEFAULT_SERIAL})",
    )
    p.add_argument(
        "--machine", default=PICO_MACHINE, metavar="TEXT", help="the machine the board claims"
    )
    p.add_argument(
        "--no-door-follows-pulse",
        dest="door_follows_pulse",
        action="store_false",
        help="doors stay closed when their channel is pulsed",
    )
    p.set_defaults(func=_run)


def _fail(message: str) -> int:
    print(f"amtomat fakeboard: {message}", file=sys.stderr)
    return EXIT_FAILURE


def _run(args: argparse.Namespace) -> int:
    from tools.fakeboard.board import FakeBoard

    link: Path | None = args.link
    if link is not None and (link.exists() or link.is_symlink()) and not link.is_symlink():
        return _fail(f"--link {link} exists and is not a symlink; choose another path")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        board = FakeBoard(
            args.flash,
            serial_number=args.serial,
            micropython=args.micropython,
            mpy=args.mpy,
            machine_name=args.machine,
            capacity=args.capacity,
            corrupt=args.corrupt,
            silent_after_reset=args.silent_after_reset,
            door_follows_pulse=args.door_follows_pulse,
        )
        board.start()
    except FakeBoardError as exc:
        return _fail(str(exc))
    try:
        if link is not None:
            if link.is_symlink():
                link.unlink()
            link.symlink_to(board.port)
        ready = {
            "port": board.port,
            "link": None if link is None else str(link),
            "serial_number": board.serial_number,
        }
        print(json.dumps(ready), flush=True)
        while not stop.wait(0.2):
            if board.failure is not None:
                return _fail(f"the board stopped: {board.failure}")
        return EXIT_OK
    except OSError as exc:
        return _fail(f"--link {link}: {exc.strerror}")
    finally:
        board.close()
        if link is not None and link.is_symlink() and str(link.readlink()) == board.port:
            link.unlink()
