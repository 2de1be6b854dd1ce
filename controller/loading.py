"""Staff loading a document: a free compartment of the right size (or the one staff
chose) opens, staff put the document in and close the door, and the compartment holds
the reference, the code's hash, the expiry and whether a return is required.

A code issued by the county arrives as a hash only. A code issued here is generated,
hashed, and handed back once in the reply to the caller that loaded and once to each of
the controller's ``code_listeners`` (the county's SMS gateway); it is never stored or
logged (a repeated request gets the reply without it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from controller.api import Result, Status, fail, ok, shown
from controller.compartments import Compartment, CState, Door
from controller.operations import DoorCycle, Operation, Outcomes
from controller.pickup import check_reference
from controller.secrets import hash_secret, new_code, parse_hash

if TYPE_CHECKING:
    from controller.terminal import TerminalController

log = logging.getLogger(__name__)

DAY_S = 86400


def _choose(ctl: TerminalController, size: str | None) -> Compartment | None:
    """The first free, ready compartment of the size (labels in order)."""
    for c in sorted(ctl.wall.by_label.values(), key=lambda c: c.label):
        if c.state != CState.EMPTY or c.busy_op is not None:
            continue
        if size is not None and c.size != size:
            continue
        if ctl.refuse_opening(c) is None:
            return c
    return None


def start_load(ctl: TerminalController, args: Mapping[str, Any], origin: str) -> Result:
    """Validate, pick a compartment, record the assignment and open the door."""
    reference = check_reference(args.get("reference"))
    if reference is None:
        return fail(Status.BAD_REQUEST, "reference must be 1 to 40 printable characters")
    size, label = args.get("size"), args.get("compartment")
    sizes = ctl.config.daemon.sizes
    if isinstance(size, str) and size not in sizes:
        return fail(Status.BAD_REQUEST, f"size {shown(size)} is not one of {', '.join(sizes)}")
    expires_days = args.get("expires_days")
    if expires_days is None:
        expires_days = ctl.config.daemon.expiry_days
    if isinstance(expires_days, bool) or not isinstance(expires_days, int):
        return fail(
            Status.BAD_REQUEST, f"expires_days must be a whole number, got {shown(expires_days)}"
        )
    if not 1 <= expires_days <= 365:
        return fail(Status.OUT_OF_RANGE, f"expires_days {expires_days} is not 1..365")
    return_required = args.get("return_required")
    if return_required is not None and not isinstance(return_required, bool):
        return fail(
            Status.BAD_REQUEST,
            f"return_required must be true or false, got {shown(return_required)}",
        )
    if (size is not None and not isinstance(size, str)) or (
        label is not None and not isinstance(label, str)
    ):
        return fail(Status.BAD_REQUEST, "size and compartment must be text")
    code_hash, code = args.get("code_hash"), None
    if code_hash is not None:
        if not isinstance(code_hash, str):
            return fail(Status.BAD_REQUEST, "code_hash must be text (scrypt$...)")
        try:
            parse_hash(code_hash)
        except Exception as exc:
            return fail(Status.BAD_REQUEST, f"code_hash: {exc}")
    taken = ctl.store.db.execute(
        "SELECT compartment FROM assignments WHERE reference=? "
        "AND status IN ('loading', 'active', 'expired')",
        (reference,),
    ).fetchone()
    if taken is not None:
        return fail(Status.CONFLICT, f"reference {reference} is already in compartment {taken[0]}")
    if label is not None:
        c = ctl.wall.get(label)
        if c is None:
            return fail(Status.NOT_FOUND, f"no compartment {shown(label)}")
        if c.state != CState.EMPTY or c.busy_op is not None:
            return fail(Status.CONFLICT, f"compartment {label} is {c.state.value}, not empty")
        if size is not None and c.size != size:
            return fail(Status.BAD_REQUEST, f"compartment {label} is size {c.size}, not {size}")
        refusal = ctl.refuse_opening(c)
        if refusal is not None:
            return refusal
    else:
        found = _choose(ctl, size)
        if found is None:
            what = f"of size {size} " if size else ""
            return fail(Status.NO_COMPARTMENT, f"no free compartment {what}is ready")
        c = found
    if code_hash is None:
        code = new_code(ctl.config.pickup.code_digits)
        code_hash = hash_secret(code)
    load = Load(ctl, origin, c)
    expires = ctl.store.utc() + expires_days * DAY_S
    with ctl.store.tx():
        cur = ctl.store.db.execute(
            "INSERT INTO assignments(compartment, reference, code_hash, return_required, "
            "expires_utc, loaded_by, loaded_utc, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'loading')",
            (c.label, reference, code_hash, int(bool(args.get("return_required"))), expires,
             origin, ctl.store.utc()),
        )  # fmt: skip
        assert cur.lastrowid is not None
        load.assignment = cur.lastrowid
        ctl.store.audit(
            origin, "assignment_created", c.label, op=load.op, reference=reference,
            code_issued="county" if code is None else "terminal",
            return_required=bool(args.get("return_required")), expires_utc=expires,
        )  # fmt: skip
    load.begin()
    if load.ended:
        return fail(Status.BOARD_OFFLINE, load.failure or "the compartment did not open")
    data: dict[str, Any] = {"op": load.op, "compartment": c.label, "expires_utc": expires}
    if code is not None:
        data["code"] = code
        _tell_code_listeners(ctl, reference, code, c.label, expires)
    return ok(**data)


def _tell_code_listeners(
    ctl: TerminalController, reference: str, code: str, label: str, expires: float
) -> None:
    """Hand a locally issued code to each code listener; a failing one is logged by the
    name of its exception only (its message might hold the code)."""
    issued = {"reference": reference, "code": code, "compartment": label,
              "expires_utc": float(expires)}  # fmt: skip
    for listener in list(ctl.code_listeners):
        try:
            listener(dict(issued))
        except Exception as exc:
            log.error(
                "code listener %s failed for %s: %s",
                getattr(listener, "__qualname__", type(listener).__name__),
                reference,
                type(exc).__name__,
            )


class Load(Operation):
    """Open, wait for the door to close, then mark loaded."""

    kind = "load"

    def __init__(self, ctl: TerminalController, origin: str, c: Compartment) -> None:
        super().__init__(ctl, origin, c)
        self.c = c
        self.assignment = 0
        self.failure: str | None = None
        self.cycle = DoorCycle(
            self,
            c,
            opened=self._opened,
            closed=self._closed,
            failed=self._fail,
            hold_s=ctl.config.loading.close_s,
        )

    def begin(self) -> None:
        """Open the compartment for staff."""
        self.ctl.wall.set_state(self.c, CState.LOADING, self.origin, "loading", op=self.op)
        self.step_to("opening")
        self.cycle.start()

    def _opened(self) -> None:
        self.step_to("door_open")

    def _closed(self) -> None:
        self.step_to("door_closed")
        if self.ctl.item_present(self.c) is False:
            self._end_assignment("aborted")
            self.ctl.wall.set_state(self.c, CState.EMPTY, "system", "no document detected")
            self.finish(Outcomes.ABORTED, Status.OK, "no document detected in the compartment")
            return
        with self.ctl.store.tx():
            self.ctl.store.db.execute(
                "UPDATE assignments SET status='active' WHERE id=?", (self.assignment,)
            )
            self.ctl.wall.set_state(self.c, CState.LOADED, self.origin, "loaded", op=self.op)
        self.finish(Outcomes.COMPLETED, Status.OK, None)

    def _fail(self, outcome: Outcomes, status: Status, reason: str) -> None:
        self.failure = reason
        self._end_assignment("aborted")
        if self.c.state == CState.LOADING:
            self.ctl.wall.set_state(self.c, CState.EMPTY, "system", "loading failed")
        self.finish(outcome, status, reason)

    def _end_assignment(self, status: str) -> None:
        with self.ctl.store.tx():
            self.ctl.store.db.execute(
                "UPDATE assignments SET status=?, ended_utc=? WHERE id=?",
                (status, self.ctl.store.utc(), self.assignment),
            )

    def cancel_timers(self) -> None:
        """Stop the door deadlines."""
        self.cycle.cancel()

    def on_door(self, c: Compartment, door: Door) -> None:
        """Route the door to the cycle."""
        self.cycle.on_door(door)
