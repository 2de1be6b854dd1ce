"""What the read-only requests show: the ``state`` and ``compartments`` replies.

Built from the controller's live objects at the moment of the request; nothing here
changes state, and nothing here holds a secret (no keys, codes, PINs or code hashes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.api import Result, ok
from controller.boarddiag import board_detail
from controller.boardlink import LinkState
from controller.compartments import Compartment, Door

if TYPE_CHECKING:
    from controller.terminal import TerminalController

SLOT_UNITS = ("return", "dropoff")


def state_reply(ctl: TerminalController) -> Result:
    """The terminal fields (as in the ``terminal`` notice), the entrance, the configured
    slots, the active alarms with the time each was raised, and every board in detail
    (docs/controller.md 5.5)."""
    raised = {
        (str(n), str(s)): float(u)
        for n, s, u in ctl.store.db.execute("SELECT name, subject, raised_utc FROM alarms")
    }
    alarms = [
        {**a, "raised_utc": raised.get((str(a["alarm"]), str(a["subject"])))}
        for a in ctl.alarms.listing()
    ]
    now = ctl.timers.now_ms
    fields = {"kiosk_id": ctl.config.terminal.kiosk_id, **ctl.terminal_fields()}
    fields["entrance_door"] = ctl.entrance.door.value
    return ok(
        **fields,
        alarms=alarms,
        boards_detail=[board_detail(link, now) for link in ctl.links.values()],
        slots=[slot_view(ctl, unit) for unit in SLOT_UNITS if ctl.slot_board(unit)],
        utc=ctl.store.utc(),
    )


def slot_view(ctl: TerminalController, unit: str) -> dict[str, Any]:
    """A configured slot: ``busy`` (an operation holds it), ``offline`` (its board is not
    ready) or ``idle``, and its flap as the sensor last said (``unknown`` before that)."""
    board = ctl.slot_board(unit)
    link = ctl.links.get(board) if board is not None else None
    if unit in ctl.slot_holders:
        state = "busy"
    elif link is None or link.state != LinkState.READY:
        state = "offline"
    else:
        state = "idle"
    flap = ctl.slot_flaps.get(unit, Door.UNKNOWN)
    return {"unit": unit, "state": state, "flap": flap.value}


def compartment_view(ctl: TerminalController, c: Compartment) -> dict[str, Any]:
    """One entry of the ``compartments`` reply."""
    link = ctl.links.get(c.board)
    return {
        "compartment": c.label,
        "size": c.size,
        "state": c.state.value,
        "door": c.door.value,
        "led": c.led.value,
        "board_ready": link is not None and link.state == LinkState.READY,
        "busy_op": c.busy_op,
    }


def compartments_reply(ctl: TerminalController) -> Result:
    """Every compartment, in config order."""
    return ok(compartments=[compartment_view(ctl, c) for c in ctl.wall.by_label.values()])
