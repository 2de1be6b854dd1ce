"""``amtomat test-channel``: pulse one compartment's solenoid after confirmation and report
what its door did.

It logs in as staff over the bridge (the PIN from a tty prompt that does not echo, or one
line of stdin with ``--pin-stdin``; it is never printed or logged), asks before it acts,
sends ``service_open`` with the reason "test-channel by <staff>", and follows the
operation's notices: pulse sent, door seen open (or not, after the daemon's retry), door
closed, outcome. Refusals (interlock, board offline, a document inside) show the
daemon's reason.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

from controller.config import Config
from host_bridge.client import RECONNECTED, KioskClient, Notice
from tools.diag import render
from tools.diag.daemon import (
    Bridge,
    add_daemon_arguments,
    ask,
    locate,
    probe,
    seconds_arg,
    session,
    with_key,
)
from tools.diag.errors import EXIT_FAILED, EXIT_OK, DaemonUnavailable, Refused, UsageError

PEER: Final = "amtomat-test-channel"
PIN_MAX: Final = 64
DEFAULT_CLOSE_WAIT_S: Final = 300.0
OPEN_SLACK_S: Final = 15.0  # beyond the daemon's two door-open windows, for the notices
STEP_TEXT: Final = {
    "door_open": "door seen open",
    "door_closed": "door closed",
}


@dataclass(frozen=True)
class Target:
    """The compartment to test and where it is wired."""

    label: str
    board: str
    channel: int


def resolve(cfg: Config, label: str | None, board: str | None, channel: int | None) -> Target:
    """The compartment named by label, or by board and channel; UsageError naming the value."""
    if label is not None and (board is not None or channel is not None):
        raise UsageError("name the compartment, or --board and --channel, not both", label)
    if label is not None:
        for c in cfg.compartments:
            if c.label == label:
                return Target(c.label, c.board, c.channel)
        known = ", ".join(c.label for c in cfg.compartments[:40])
        raise UsageError(f"no compartment {label!r} in the terminal config (known: {known})", label)
    if board is None or channel is None:
        raise UsageError("name a compartment, or give both --board and --channel", (board, channel))
    for c in cfg.compartments:
        if c.board == board and c.channel == channel:
            return Target(c.label, c.board, c.channel)
    boards = ", ".join(b.board_id for b in cfg.terminal.boards)
    raise UsageError(
        f"no compartment on board {board!r} channel {channel} (boards: {boards})", (board, channel)
    )


def check_staff(cfg: Config, staff: str) -> str:
    """The staff id, if the terminal config knows it; UsageError naming it otherwise."""
    if any(m.id == staff for m in cfg.staff):
        return staff
    known = ", ".join(m.id for m in cfg.staff) or "none configured"
    raise UsageError(
        f"--staff {staff!r} is not a staff id of this terminal (known: {known})", staff
    )


def check_pin(pin: str) -> str:
    """The PIN, if it is 1..64 printable characters; the error never shows it."""
    if not pin or len(pin) > PIN_MAX or not pin.isprintable():
        raise UsageError(
            f"the PIN must be 1 to {PIN_MAX} printable characters (got {len(pin)} characters)",
            len(pin),
        )
    return pin


def read_pin(from_stdin: bool, staff: str) -> str:
    """One line of stdin, or a prompt on the controlling terminal without echo."""
    if from_stdin:
        return check_pin(sys.stdin.readline().rstrip("\r\n"))
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        raise UsageError("no terminal to ask for the PIN on: pipe it in with --pin-stdin") from None
    os.close(fd)
    return check_pin(getpass.getpass(f"PIN of {staff}: "))


def confirm(question: str) -> bool:
    """Ask on stdout, read one line of stdin; only y or yes agrees."""
    print(f"{question} [y/N] ", end="", flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def say(line: str) -> None:
    """One line of the test's report, out at once."""
    print(line, flush=True)


async def _next(notices: AsyncIterator[Notice], limit_s: float) -> Notice | None:
    """The next notice, or None after limit_s; DaemonUnavailable when the session ended."""
    try:
        return await asyncio.wait_for(anext(notices), max(0.01, limit_s))
    except TimeoutError:
        return None
    except StopAsyncIteration:
        raise DaemonUnavailable(
            "the session with the daemon ended before the test did; see amtomat status and "
            "amtomat log --compartment for how it went",
            None,
        ) from None


async def follow(
    notices: AsyncIterator[Notice],
    op: int,
    target: Target,
    open_window_s: float,
    close_wait_s: float,
) -> int:
    """Report the operation's steps until its done notice; the exit status."""
    clock = time.monotonic
    deadline = clock() + open_window_s
    seen_open = False
    while True:
        notice = await _next(notices, deadline - clock())
        if notice is None:
            if seen_open:
                say(
                    f"door still open after {close_wait_s:g} s: operation {op} goes on at the "
                    f"terminal until the door of {target.label} is closed"
                )
            else:
                say(f"no word from the daemon within {open_window_s:g} s about operation {op}")
            return EXIT_FAILED
        f = notice.fields
        if notice.name == RECONNECTED:
            say("the session with the daemon was re-established; notices may be missing")
        elif notice.name == "progress" and f.get("op") == op:
            step = f.get("step")
            if step == "opening":
                say(f"pulse sent to {target.board} channel {target.channel}")
            elif step == "retry":
                say("door not seen open in time: the daemon pulsed once more")
            elif step == "door_open":
                seen_open = True
                say(STEP_TEXT["door_open"])
                say(f"close the door of {target.label} to finish (waiting {close_wait_s:g} s)")
                deadline = clock() + close_wait_s
            else:
                say(STEP_TEXT.get(str(step), f"step {step}"))
        elif notice.name == "done" and f.get("op") == op:
            outcome = f.get("outcome")
            reason = f.get("reason")
            if outcome == "completed":
                say("outcome: completed (the channel works)")
                return EXIT_OK
            if outcome == "jammed" and not seen_open:
                say("door not seen open after the retry")
            say(f"outcome: {outcome}" + (f": {reason}" if reason else ""))
            return EXIT_FAILED


async def run_test(args: argparse.Namespace, bridge: Bridge, target: Target, pin: str) -> int:
    """Log in, confirm, open, follow, log out; the exit status."""
    cfg = bridge.config
    async with session(bridge, PEER, args.timeout) as client:
        notices = client.notices()  # registered before anything can happen
        listing = await ask(client, "compartments", args.timeout)
        view = next(
            (c for c in listing.get("compartments") or [] if c.get("compartment") == target.label),
            None,
        )
        login = await client.call("staff_login", args.timeout, staff=args.staff, pin=pin)
        if not login.ok:
            raise Refused(
                f"staff login of {args.staff} refused ({login.status.name.lower()}): "
                f"{login.reason}",
                args.staff,
            )
        try:
            return await _open_and_follow(args, client, notices, cfg, target, view)
        finally:
            with contextlib.suppress(Exception):
                await client.call("staff_logout", args.timeout)


async def _open_and_follow(
    args: argparse.Namespace,
    client: KioskClient,
    notices: AsyncIterator[Notice],
    cfg: Config,
    target: Target,
    view: dict[str, Any] | None,
) -> int:
    where = f"{target.label} ({target.board}, channel {target.channel})"
    if not args.yes:
        now = "" if view is None else f" It is {view.get('state')}, door {view.get('door')}."
        if not await asyncio.to_thread(confirm, f"pulse the solenoid of {where}?{now}"):
            say("not confirmed: nothing was pulsed")
            return EXIT_FAILED
    reason = f"test-channel by {args.staff}"
    result = await client.call(
        "service_open", args.timeout, compartment=target.label, reason=reason
    )
    if not result.ok:
        raise Refused(
            f"the daemon refused to open {where} ({result.status.name.lower()}): {result.reason}",
            target.label,
        )
    op = int((result.data or {})["op"])
    say(f"operation {op}: service open of {where}")
    open_window = 2 * cfg.pickup.door_open_s + OPEN_SLACK_S
    return await follow(notices, op, target, open_window, args.close_wait)


def _run(args: argparse.Namespace) -> int:
    def body() -> int:
        bridge = locate(args.config)
        target = resolve(bridge.config, args.compartment, args.board, args.channel)
        check_staff(bridge.config, args.staff)
        probe(bridge.endpoint)  # the daemon answers before anyone types a PIN
        bridge = with_key(bridge)
        pin = read_pin(args.pin_stdin, args.staff)
        return asyncio.run(run_test(args, bridge, target, pin))

    return render.run("test-channel", body)


def _channel(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a channel number") from None
    if not 1 <= value <= 255:
        raise argparse.ArgumentTypeError(f"{text!r} is not a channel 1..255")
    return value


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``test-channel``."""
    p = sub.add_parser(
        "test-channel",
        parents=[common],
        help="pulse one compartment's solenoid after confirmation and report the door",
        description="Log in as staff, confirm, open one compartment for service (reason "
        "'test-channel by <staff>') and report: pulse sent, door seen open, door closed, "
        "outcome. Exit status 0 when the door opened and closed, 1 when it did not or the "
        "daemon refused, 2 for bad arguments, 69/77/78 as for status.",
    )
    p.add_argument("compartment", nargs="?", metavar="COMPARTMENT", help="compartment id, e.g. A03")
    p.add_argument("--board", metavar="B", help="board id (with --channel) instead of an id")
    p.add_argument("--channel", type=_channel, metavar="N", help="channel on --board")
    p.add_argument("--staff", required=True, metavar="ID", help="staff id to log in as")
    p.add_argument(
        "--pin-stdin", action="store_true", help="read the PIN from one line of stdin, no prompt"
    )
    p.add_argument("--yes", action="store_true", help="do not ask before pulsing")
    p.add_argument(
        "--close-wait",
        type=seconds_arg,
        default=DEFAULT_CLOSE_WAIT_S,
        metavar="S",
        help=f"seconds to wait for the door to close again (default {DEFAULT_CLOSE_WAIT_S:g})",
    )
    add_daemon_arguments(p)
    p.set_defaults(func=_run)
