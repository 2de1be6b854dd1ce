"""``amtomat status``: the terminal in one screen, and an exit status for monitoring.

The summary (terminal, boards ready, entrance, slots, active alarms with their age and
detail) and the compartment list (state, door, LED, the operation holding it). Exit
status 0 when every board is ready and no alarm is active, 3 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Final

from tools.diag import render
from tools.diag.boards import all_ready
from tools.diag.daemon import add_daemon_arguments, ask, locate, session
from tools.diag.errors import EXIT_ATTENTION, EXIT_OK

PEER: Final = "amtomat-status"
RESTING: Final = frozenset({"empty", "loaded", "expired"})


async def fetch(args: argparse.Namespace) -> dict[str, Any]:
    """``{"identity", "state", "compartments"}`` from the daemon."""
    bridge = locate(args.config)
    async with session(bridge, PEER, args.timeout) as client:
        state = await ask(client, "state", args.timeout)
        listing = await ask(client, "compartments", args.timeout)
        identity = dict(client.identity)
    return {
        "identity": {k: identity.get(k) for k in ("kiosk_id", "site", "sw_version")},
        "state": state,
        "compartments": listing.get("compartments") or [],
    }


def healthy(state: Mapping[str, Any]) -> bool:
    """Every board ready and no active alarm."""
    return all_ready(state) and not state.get("alarms")


def _alarm_rows(state: Mapping[str, Any]) -> list[list[str]]:
    now = state.get("utc")
    rows = []
    for a in state.get("alarms") or []:
        raised = a.get("raised_utc")
        age = None if raised is None or now is None else float(now) - float(raised)
        since = render.duration(age) if age is not None else render.NONE
        rows.append(
            [str(a.get("alarm")), str(a.get("subject")), since, render.text(a.get("detail"))]
        )
    return rows


def summary(report: Mapping[str, Any]) -> str:
    """The terminal's summary and its alarms."""
    state = report["state"]
    ident = report.get("identity") or {}
    entrance_text = (
        f"{render.text(state.get('entrance'))}, door {render.text(state.get('entrance_door'))}"
    )
    slots = state.get("slots") or []
    slot_text = (
        "; ".join(f"{s.get('unit')} {s.get('state')} (flap {s.get('flap')})" for s in slots)
        or "none configured"
    )
    not_ready = [
        f"{b.get('board')} {b.get('state')}"
        for b in state.get("boards_detail") or []
        if b.get("state") != "ready"
    ]
    boards = f"{state.get('boards_ready')}/{state.get('boards')} ready"
    if not_ready:
        boards += f" (not ready: {', '.join(not_ready)})"
    alarms = state.get("alarms") or []
    pairs = [
        ("terminal", f"{state.get('kiosk_id')}  {render.text(ident.get('site'))}"),
        ("software", render.text(ident.get("sw_version"))),
        ("boards", boards),
        ("entrance", entrance_text),
        ("slots", slot_text),
        ("alarms", f"{len(alarms)} active" if alarms else "none"),
        ("verdict", "all well" if healthy(state) else "NEEDS ATTENTION"),
    ]
    out = render.fields(pairs, indent="")
    if alarms:
        headers = ["alarm", "subject", "active for", "detail"]
        out += "\n\n" + render.table(headers, _alarm_rows(state), indent="  ")
    return out


def compartment_table(compartments: Sequence[Mapping[str, Any]]) -> str:
    """Every compartment: size, state, door, LED, board ready, the operation holding it."""
    rows = []
    for c in compartments:
        mark = "" if c.get("state") in RESTING and c.get("door") != "open" else "  <"
        rows.append(
            [
                str(c.get("compartment")),
                str(c.get("size")),
                str(c.get("state")),
                str(c.get("door")),
                render.text(c.get("led")),
                render.text(c.get("board_ready")),
                render.text(c.get("busy_op")) + mark,
            ]
        )
    headers = ["compartment", "size", "state", "door", "LED", "board ready", "busy op"]
    return render.table(headers, rows)


def show(report: Mapping[str, Any]) -> str:
    """Summary, then the compartment list."""
    return f"{summary(report)}\n\n{compartment_table(report['compartments'])}"


def _run(args: argparse.Namespace) -> int:
    def body() -> int:
        report = asyncio.run(fetch(args))
        print(render.as_json(report) if args.json else show(report))
        return EXIT_OK if healthy(report["state"]) else EXIT_ATTENTION

    return render.run("status", body)


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``status``."""
    p = sub.add_parser(
        "status",
        parents=[common],
        help="terminal summary, alarms and compartments (exit 3 when it needs attention)",
        description="Show the terminal as the running daemon sees it: boards, entrance, "
        "slots, active alarms and every compartment. Exit status 0 when all is well, 3 "
        "when an alarm is active or a board is not ready; 69 when the daemon does not "
        "answer, 77 when the pairing key cannot be used, 78 for a bad config.",
    )
    add_daemon_arguments(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_run)
