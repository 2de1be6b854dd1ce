"""A citizen's pickup: reference and code checked, the old document taken back through
the return slot when required, then the compartment opened and followed until emptied.

Codes are compared as salted scrypt hashes in constant time. Wrong codes count against
the reference and against the whole terminal; either limit locks pickups out for a
while. A reference that does not exist costs the same time and counts the same as a
wrong code, so a caller cannot tell the two apart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from controller.api import Result, Status, fail, ok
from controller.compartments import Compartment, CState, Door
from controller.errors import ControllerError
from controller.operations import DoorCycle, Operation, Outcomes, SlotWait
from controller.secrets import hash_secret, normalise_code, verify_secret

if TYPE_CHECKING:
    from controller.terminal import TerminalController

log = logging.getLogger(__name__)

REFERENCE_MAX = 40
TERMINAL_KEY = "terminal"
_DUMMY_HASH: str | None = None  # compared against when a reference does not exist


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_secret("not-a-code")
    return _DUMMY_HASH


def check_reference(value: Any) -> str | None:
    """The reference if it is well formed (1..40 printable characters), else None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not 1 <= len(text) <= REFERENCE_MAX or not text.isprintable():
        return None
    return text


def _locked_reason(until: float, utc: float) -> str:
    minutes = max(1, round((until - utc) / 60))
    return f"too many wrong codes: try again in about {minutes} min"


def start_pickup(ctl: TerminalController, args: Mapping[str, Any], origin: str) -> Result:
    """Check the code and start the pickup; the reply carries the operation id."""
    reference = check_reference(args.get("reference"))
    if reference is None:
        return fail(Status.BAD_REQUEST, "reference must be 1 to 40 printable characters")
    raw = args.get("code")
    try:
        code = normalise_code(raw) if isinstance(raw, str) else None
    except ControllerError:
        code = None
    if code is None:
        return fail(Status.BAD_REQUEST, "code must be digits (spaces and '-' are ignored)")
    utc = ctl.store.utc()
    for limiter, key in (
        (ctl.terminal_attempts, TERMINAL_KEY),
        (ctl.reference_attempts, reference),
    ):
        until = limiter.locked_until(key)
        if until is not None:
            return fail(Status.LOCKED_OUT, _locked_reason(until, utc))
    row = ctl.store.db.execute(
        "SELECT id, compartment, code_hash, return_required, status FROM assignments "
        "WHERE reference=? AND status IN ('active', 'expired')",
        (reference,),
    ).fetchone()
    matches = verify_secret(code, row[2] if row is not None else _dummy_hash())
    if row is None or not matches:
        return _wrong_code(ctl, reference, origin)
    ctl.reference_attempts.success(reference)
    assignment, label, return_required, status = int(row[0]), str(row[1]), bool(row[3]), row[4]
    if status == "expired":
        return fail(
            Status.NOT_FOUND,
            "the collection period has ended; the document is kept at the town hall",
        )
    c = ctl.wall.get(label)
    if c is None:
        return fail(Status.INTERNAL, f"compartment {label} is no longer configured")
    refusal = ctl.refuse_opening(c, pickup=True)
    if refusal is not None:
        return refusal
    if c.state != CState.LOADED:
        return fail(Status.OUT_OF_SERVICE, f"compartment {label} is {c.state.value}: ask staff")
    if return_required:
        holder = ctl.slot_holders.get("return")
        if holder is not None:
            return fail(Status.CONFLICT, "the return slot is in use; try again in a minute")
        if ctl.slot_board("return") is None:
            return fail(Status.NOT_CONFIGURED, "this terminal has no return slot")
    pickup = Pickup(ctl, origin, c, assignment, return_required)
    pickup.begin()
    return ok(op=pickup.op, compartment=label, return_required=return_required)


def _wrong_code(ctl: TerminalController, reference: str, origin: str) -> Result:
    terminal = ctl.terminal_attempts.failure(TERMINAL_KEY)
    per_ref = ctl.reference_attempts.failure(reference)
    with ctl.store.tx():
        ctl.store.bump("pickup_wrong_code")
        ctl.store.audit(origin, "pickup_wrong_code", "terminal", attempts_left=per_ref.remaining)
    until = per_ref.locked_until or terminal.locked_until
    if until is not None:
        if terminal.locked_until is not None:  # one reference's lockout is a typo, not an alarm
            ctl.alarms.raise_("code_lockout", "terminal", "too many wrong codes on the terminal")
        return fail(Status.LOCKED_OUT, _locked_reason(until, ctl.store.utc()))
    left = min(per_ref.remaining, terminal.remaining)
    return fail(
        Status.WRONG_CODE, f"reference and code do not match ({left} attempts left)", left=left
    )


class Pickup(Operation):
    """Return slot (when required), then the compartment; see the module docstring."""

    kind = "pickup"

    def __init__(
        self,
        ctl: TerminalController,
        origin: str,
        c: Compartment,
        assignment: int,
        return_required: bool,
    ) -> None:
        super().__init__(ctl, origin, c)
        self.c = c
        self.assignment = assignment
        self.return_required = return_required
        self.slot: SlotWait | None = None
        self.returned = False
        self.cycle = DoorCycle(
            self, c, opened=self._opened, closed=self._closed, failed=self._failed, led=True
        )

    def begin(self) -> None:
        """First step: the return slot, or the compartment straight away."""
        if self.return_required:
            self.slot = SlotWait(self, "return", deposited=self._deposited, failed=self._failed)
            self.step_to("return_open")
            self.slot.start()
        else:
            self._open_compartment()

    def _deposited(self) -> None:
        self.returned = True
        self.step_to("returned")
        with self.ctl.store.tx():
            self.ctl.store.audit(self.origin, "document_returned", self.c.label, op=self.op)
            self.ctl.store.bump("documents_returned")
        self._open_compartment()

    def _open_compartment(self) -> None:
        refusal = self.ctl.refuse_opening(self.c, pickup=True)
        if refusal is not None:
            self._failed(Outcomes.REFUSED, refusal.status, refusal.reason or "refused")
            return
        self.ctl.wall.set_state(self.c, CState.OPENING, self.origin, "pickup", op=self.op)
        self.step_to("opening")
        self.cycle.start()

    def _opened(self) -> None:
        self.ctl.wall.set_state(self.c, CState.OPEN, self.origin, "door seen open", op=self.op)
        self.step_to("door_open")

    def _closed(self) -> None:
        self.step_to("door_closed")
        if self.ctl.item_present(self.c) is True:
            self.ctl.wall.set_state(self.c, CState.LOADED, "system", "document still there")
            self.finish(Outcomes.NOT_TAKEN, Status.OK, "the document was not taken")
            return
        with self.ctl.store.tx():
            self.ctl.store.db.execute(
                "UPDATE assignments SET status='collected', ended_utc=? WHERE id=?",
                (self.ctl.store.utc(), self.assignment),
            )
            self.ctl.wall.set_state(self.c, CState.EMPTIED, self.origin, "document taken")
            self.ctl.wall.set_state(self.c, CState.EMPTY, "system", "ready for loading")
            self.ctl.count_pickup(self.assignment)
        self.finish(Outcomes.COMPLETED, Status.OK, None)

    def _failed(self, outcome: Outcomes, status: Status, reason: str) -> None:
        if self.c.state in (CState.OPENING,) and outcome == Outcomes.REFUSED:
            self.ctl.wall.set_state(self.c, CState.LOADED, "system", "pickup refused")
        if self.returned and outcome != Outcomes.COMPLETED:
            # the old document is in the slot, the new one is not out: staff must help
            self.ctl.alarms.raise_(
                "pickup_after_return_failed",
                self.c.label,
                f"old document returned, compartment not released: {reason}",
            )
        self.finish(outcome, status, reason)

    def cancel_timers(self) -> None:
        """Stop the slot and door deadlines."""
        if self.slot is not None:
            self.slot.cancel()
        self.cycle.cancel()

    def on_door(self, c: Compartment, door: Door) -> None:
        """Route the door to the cycle."""
        self.cycle.on_door(door)

    def on_deposit(self, unit: str) -> None:
        """Route a return-slot deposit to the slot wait."""
        if unit == "return" and self.slot is not None:
            self.slot.on_deposit()
