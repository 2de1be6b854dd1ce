"""``amtomat boards``: every board as the daemon sees it, one block per board.

Link state and last error, firmware and build hash, boot id, uptime, reset reason, the
board's event counters, and the link counters of both ends side by side (the daemon's
session and the board's own, from its last ``diagnostics`` reply).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from typing import Any, Final

from tools.diag import render
from tools.diag.daemon import add_daemon_arguments, ask, locate, session
from tools.diag.errors import EXIT_ATTENTION, EXIT_OK

PEER: Final = "amtomat-boards"
# (counter, label) in the order the table shows them
LINK_ROWS: Final = (
    ("frames_in", "frames in"),
    ("frames_out", "frames out"),
    ("retransmits", "retransmits"),
    ("tag_errors", "tag failures"),
    ("crc_errors", "CRC errors"),
    ("replays", "replays"),
    ("malformed", "malformed frames"),
    ("link_downs", "link downs"),
    ("srtt_ms", "RTT (smoothed)"),
)


async def fetch(args: argparse.Namespace) -> dict[str, Any]:
    """The daemon's ``state`` reply."""
    bridge = locate(args.config)
    async with session(bridge, PEER, args.timeout) as client:
        return await ask(client, "state", args.timeout)


def _counter(counters: Mapping[str, Any] | None, name: str) -> str:
    if counters is None:
        return render.NONE
    value = counters.get(name)
    if name == "srtt_ms":
        return render.NONE if value is None else f"{value} ms"
    return render.text(value)


def board_block(b: Mapping[str, Any]) -> str:
    """One board as text (see docs/diagnostics.md, ``amtomat boards``)."""
    where = f"address {b.get('address')}, port {render.text(b.get('port'))}"
    fw_hash = b.get("fw_hash")
    firmware = render.text(b.get("firmware"))
    if fw_hash is not None:
        firmware += f" (build {fw_hash})"
    age = b.get("diagnostics_age_s")
    uptime = render.duration(b.get("uptime_s"))
    if age is not None:
        uptime += f"  (diagnostics {render.duration(age)} old)"
    events = b.get("events")
    event_text = (
        render.NONE
        if events is None
        else f"last id {events.get('last_id')}, held {events.get('held')}, "
        f"lost {events.get('lost')}, bad acks {events.get('bad_acks')}"
    )
    stats = b.get("board_stats")
    pairs = [
        ("link", render.text(b.get("state"))),
        ("last error", render.text(b.get("error"))),
        ("firmware", firmware),
        ("provisioned", render.text(b.get("provisioned"))),
        ("boot id", render.text(b.get("boot_id"))),
        ("uptime", uptime),
        ("reset reason", render.text(b.get("reset_reason"))),
        ("events", event_text),
        ("connects", f"{b.get('connects', 0)} (failed in a row: {b.get('failures', 0)})"),
    ]
    if stats is not None:
        pairs.append(
            (
                "board counts",
                f"pulses {stats.get('pulses')}, commands {stats.get('commands')}, "
                f"refused {stats.get('refused')}, safe-state entries {stats.get('safe_entries')}",
            )
        )
        if stats.get("crash"):
            pairs.append(("last crash", str(stats["crash"]).splitlines()[-1][:120]))
    host, board = b.get("link"), b.get("board_link")
    rows = [[label, _counter(host, name), _counter(board, name)] for name, label in LINK_ROWS]
    counters = render.table(["link counter", "daemon side", "board side"], rows, indent="  ")
    return f"board {b.get('board')}  ({where})\n{render.fields(pairs)}\n\n{counters}"


def show(state: Mapping[str, Any]) -> str:
    """Every board's block, blank lines between."""
    boards = state.get("boards_detail") or []
    head = f"terminal {state.get('kiosk_id')}: {state.get('boards_ready')}/{state.get('boards')} "
    head += "boards ready"
    return "\n\n".join([head, *(board_block(b) for b in boards)])


def all_ready(state: Mapping[str, Any]) -> bool:
    """True when every configured board is ready."""
    return bool(state.get("boards")) and state.get("boards_ready") == state.get("boards")


def _run(args: argparse.Namespace) -> int:
    def body() -> int:
        state = asyncio.run(fetch(args))
        if args.json:
            details = state.get("boards_detail")
            print(render.as_json({"kiosk_id": state.get("kiosk_id"), "boards": details}))
        else:
            print(show(state))
        return EXIT_OK if all_ready(state) else EXIT_ATTENTION

    return render.run("boards", body)


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``boards``."""
    p = sub.add_parser(
        "boards",
        parents=[common],
        help="each board's link, firmware, uptime and link counters",
        description="Show every board as the running daemon sees it: link state, last "
        "error, firmware, boot id, uptime, reset reason and the link counters of both "
        "ends. Exit status 0 when every board is ready, 3 when one is not; 69 when the "
        "daemon does not answer, 77 when the pairing key cannot be used, 78 for a bad "
        "config (docs/diagnostics.md).",
    )
    add_daemon_arguments(p)
    p.add_argument("--json", action="store_true", help="print the boards as JSON")
    p.set_defaults(func=_run)
