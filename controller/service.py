"""Staff work: login, the retrieval list, retrieving a document, service opens, taking a
compartment out of and back into service, expiry; the county's own requests (assign,
revoke, board reset); and the citizen's drop-off.

Staff log in per origin (a bridge connection) with a PIN checked against its salted hash;
wrong PINs lock that staff id out for a while. A login lapses after the configured idle
time. A county operator (``api.is_county``) needs no login and has admin rights. Every
staff action is audited with the staff id (or ``county:<operator>``) as actor.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from controller.api import Origin, Result, Status, fail, is_county, ok, shown
from controller.boardlink import RequestOutcome
from controller.compartments import Compartment, CState, Door
from controller.errors import ControllerError
from controller.operations import DoorCycle, Operation, Outcomes, SlotWait
from controller.pickup import check_reference
from controller.secrets import parse_hash, verify_secret

if TYPE_CHECKING:
    from controller.terminal import TerminalController

log = logging.getLogger(__name__)

REASON_MAX = 200


# ----- staff login -----------------------------------------------------------------------


def staff_login(ctl: TerminalController, args: Mapping[str, Any], origin: Origin) -> Result:
    """Check the PIN; on success the origin acts as that staff member."""
    staff_id, pin = args.get("staff"), args.get("pin")
    if not isinstance(staff_id, str) or not isinstance(pin, str) or not staff_id or not pin:
        return fail(Status.BAD_REQUEST, "staff and pin must be non-empty text")
    until = ctl.staff_attempts.locked_until(staff_id)
    if until is not None:
        minutes = max(1, round((until - ctl.store.utc()) / 60))
        return fail(Status.LOCKED_OUT, f"too many wrong PINs: try again in about {minutes} min")
    member = ctl.staff.get(staff_id)
    matches = verify_secret(pin, member.pin_hash if member else ctl.dummy_pin_hash)
    if member is None or not matches:
        verdict = ctl.staff_attempts.failure(staff_id)
        with ctl.store.tx():
            ctl.store.audit(origin.name, "staff_login_failed", staff_id[:32])
        if verdict.locked_until is not None:
            if member is not None:  # guessed ids raise nothing: no alarm flood
                ctl.alarms.raise_("staff_lockout", staff_id, "too many wrong PINs")
            return fail(Status.LOCKED_OUT, "too many wrong PINs: this staff id is locked out")
        return fail(Status.WRONG_CODE, f"staff id and PIN do not match ({verdict.remaining} left)")
    ctl.staff_attempts.success(staff_id)
    origin.staff = staff_id
    origin.staff_until_ms = ctl.timers.now_ms + ctl.config.staff_auth.session_s * 1000
    with ctl.store.tx():
        ctl.store.audit(staff_id, "staff_login", origin.name)
    return ok(staff=staff_id, name=member.name, role=member.role)


def staff_logout(ctl: TerminalController, origin: Origin) -> Result:
    """End the origin's staff login (if any)."""
    if origin.staff is not None:
        with ctl.store.tx():
            ctl.store.audit(origin.staff, "staff_logout", origin.name)
    origin.staff = None
    return ok()


def require_staff(ctl: TerminalController, origin: Origin, admin: bool = False) -> Result | None:
    """None when the origin has a live staff login (of an admin if asked), else a refusal.
    A live login is extended by every request. A county operator passes as an admin."""
    if is_county(origin):
        return None  # TerminalController.call makes it the actor for the request
    now = ctl.timers.now_ms
    if origin.staff is None or now >= origin.staff_until_ms:
        origin.staff = None
        return fail(Status.NOT_LOGGED_IN, "log in as staff first (staff_login)")
    member = ctl.staff.get(origin.staff)
    if member is None:
        origin.staff = None
        return fail(Status.NOT_LOGGED_IN, "this staff id is no longer configured")
    if admin and member.role != "admin":
        return fail(Status.FORBIDDEN, f"staff {origin.staff} is not an admin")
    origin.staff_until_ms = now + ctl.config.staff_auth.session_s * 1000
    return None


def _reason(args: Mapping[str, Any]) -> str | None:
    reason = args.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > REASON_MAX:
        return None
    return reason.strip()


# ----- retrieval, service open, service state ----------------------------------------------


def retrieval_list(ctl: TerminalController) -> Result:
    """Expired documents still in the terminal, and compartments whose state needs staff."""
    rows = ctl.store.db.execute(
        "SELECT compartment, reference, loaded_utc, expires_utc FROM assignments "
        "WHERE status='expired' ORDER BY compartment"
    )
    expired = [
        {"compartment": c, "reference": r, "loaded_utc": lo, "expires_utc": ex}
        for c, r, lo, ex in rows
    ]
    attention = [
        {"compartment": c.label, "state": c.state.value}
        for c in ctl.wall.by_label.values()
        if c.state in (CState.JAMMED, CState.FORCED, CState.UNKNOWN, CState.HELD_OPEN)
    ]
    return ok(expired=expired, attention=attention)


def _compartment(ctl: TerminalController, args: Mapping[str, Any]) -> Compartment | Result:
    label = args.get("compartment")
    c = ctl.wall.get(label) if isinstance(label, str) else None
    if c is None:
        return fail(Status.NOT_FOUND, f"no compartment {shown(label)}")
    if c.busy_op is not None:
        return fail(Status.CONFLICT, f"compartment {c.label} is busy with operation {c.busy_op}")
    return c


def start_retrieve(ctl: TerminalController, args: Mapping[str, Any], origin: Origin) -> Result:
    """Staff take a document out (expired, or any that must go): the assignment ends."""
    found = _compartment(ctl, args)
    if isinstance(found, Result):
        return found
    return _open_for_staff(ctl, found, origin, "retrieve", None)


def start_service_open(ctl: TerminalController, args: Mapping[str, Any], origin: Origin) -> Result:
    """Open a compartment for service with a reason; a loaded one needs an admin at the
    kiosk, and ``force: true`` from the county (audited as forced)."""
    found = _compartment(ctl, args)
    if isinstance(found, Result):
        return found
    reason = _reason(args)
    if reason is None:
        return fail(Status.BAD_REQUEST, f"reason must be 1 to {REASON_MAX} characters")
    forced = False
    if found.state in (CState.LOADED, CState.EXPIRED):
        if is_county(origin):
            if args.get("force") is not True:
                return fail(
                    Status.CONFLICT,
                    f"compartment {found.label} holds a document: send force: true with a reason",
                )
            forced = True
        else:
            refusal = require_staff(ctl, origin, admin=True)
            if refusal is not None:
                return fail(
                    refusal.status, f"compartment {found.label} holds a document: {refusal.reason}"
                )
    return _open_for_staff(ctl, found, origin, "service_open", reason, forced)


def _open_for_staff(
    ctl: TerminalController,
    c: Compartment,
    origin: Origin,
    kind: str,
    reason: str | None,
    forced: bool = False,
) -> Result:
    refusal = ctl.refuse_opening(c)
    if refusal is not None:
        return refusal
    assert origin.staff is not None
    op = StaffOpen(ctl, origin.staff, c, kind, reason, forced)
    op.begin()
    return ok(op=op.op, compartment=c.label)


def set_service(ctl: TerminalController, args: Mapping[str, Any], origin: Origin) -> Result:
    """Take a compartment out of service, or back in (its alarms are cleared then)."""
    found = _compartment(ctl, args)
    if isinstance(found, Result):
        return found
    reason, in_service = _reason(args), args.get("in_service")
    if reason is None or not isinstance(in_service, bool):
        return fail(Status.BAD_REQUEST, "in_service (bool) and a reason are required")
    assert origin.staff is not None
    if in_service:
        ctl.wall.set_state(found, ctl.resting_state(found), origin.staff, reason)
        ctl.alarms.clear_subject(found.label, origin.staff, reason)
    else:
        ctl.wall.set_state(found, CState.OUT_OF_SERVICE, origin.staff, reason)
    return ok(compartment=found.label, state=found.state.value)


class StaffOpen(Operation):
    """Retrieval or service open: open, wait for closed, then settle the state."""

    def __init__(
        self,
        ctl: TerminalController,
        staff: str,
        c: Compartment,
        kind: str,
        reason: str | None,
        forced: bool = False,
    ) -> None:
        self.kind = kind
        super().__init__(ctl, staff, c)
        self.c = c
        self.reason = reason
        self.forced = forced
        self.cycle = DoorCycle(
            self, c, opened=self._opened, closed=self._closed, failed=self._failed,
            hold_s=ctl.config.loading.close_s,
        )  # fmt: skip

    def begin(self) -> None:
        """Pulse the compartment."""
        extra = {"forced": True} if self.forced else {}
        self.ctl.wall.set_state(
            self.c, CState.OPENING, self.origin, self.kind, op=self.op, reason=self.reason,
            **extra,
        )  # fmt: skip
        self.step_to("opening")
        self.cycle.start()

    def _opened(self) -> None:
        self.ctl.wall.set_state(self.c, CState.OPEN, self.origin, "door seen open", op=self.op)
        self.step_to("door_open")

    def _closed(self) -> None:
        self.step_to("door_closed")
        with self.ctl.store.tx():
            if self.kind == "retrieve":
                self.ctl.store.db.execute(
                    "UPDATE assignments SET status='retrieved', ended_utc=? "
                    "WHERE compartment=? AND status IN ('active', 'expired')",
                    (self.ctl.store.utc(), self.c.label),
                )
                self.ctl.store.bump("retrievals")
            self.ctl.wall.set_state(self.c, self.ctl.resting_state(self.c), self.origin, "closed")
        self.ctl.alarms.clear_subject(self.c.label, self.origin, f"{self.kind} done")
        self.finish(Outcomes.COMPLETED, Status.OK, None)

    def _failed(self, outcome: Outcomes, status: Status, reason: str) -> None:
        if self.c.state == CState.OPENING and outcome == Outcomes.REFUSED:
            self.ctl.wall.set_state(self.c, self.ctl.resting_state(self.c), "system", "refused")
        self.finish(outcome, status, reason)

    def cancel_timers(self) -> None:
        """Stop the door deadlines."""
        self.cycle.cancel()

    def on_door(self, c: Compartment, door: Door) -> None:
        """Route the door to the cycle."""
        self.cycle.on_door(door)


# ----- the county's own requests -----------------------------------------------------------


def _open_assignment(ctl: TerminalController, args: Mapping[str, Any]) -> tuple[Any, ...] | Result:
    """(id, compartment, status, reference) of the active or expired assignment named by
    args["reference"], or a refusal."""
    reference = check_reference(args.get("reference"))
    if reference is None:
        return fail(
            Status.BAD_REQUEST,
            f"reference must be 1 to 40 printable characters, got {shown(args.get('reference'))}",
        )
    row = ctl.store.db.execute(
        "SELECT id, compartment, status FROM assignments "
        "WHERE reference=? AND status IN ('active', 'expired')",
        (reference,),
    ).fetchone()
    if row is None:
        return fail(Status.NOT_FOUND, f"no document {shown(reference)} in the terminal")
    return int(row[0]), str(row[1]), str(row[2]), reference


def assign(ctl: TerminalController, args: Mapping[str, Any], actor: str) -> Result:
    """Set the code hash of a document in the terminal (its status stays as it is); the
    hash never reaches the audit log."""
    code_hash = args.get("code_hash")
    if not isinstance(code_hash, str):
        return fail(Status.BAD_REQUEST, "code_hash must be text (scrypt$...)")
    try:
        parse_hash(code_hash)
    except ControllerError as exc:
        return fail(Status.BAD_REQUEST, f"code_hash: {exc}")
    found = _open_assignment(ctl, args)
    if isinstance(found, Result):
        return found
    assignment, label, status, reference = found
    with ctl.store.tx():
        ctl.store.db.execute(
            "UPDATE assignments SET code_hash=? WHERE id=?", (code_hash, assignment)
        )
        ctl.store.audit(actor, "pickup_assigned", label, reference=reference, status=status)
    return ok(reference=reference, compartment=label, status=status)


def revoke(ctl: TerminalController, args: Mapping[str, Any], actor: str) -> Result:
    """The document can no longer be picked up: its assignment expires (so it is on the
    retrieval list) and a loaded compartment becomes expired."""
    reason = _reason(args)
    if reason is None:
        return fail(Status.BAD_REQUEST, f"reason must be 1 to {REASON_MAX} characters")
    found = _open_assignment(ctl, args)
    if isinstance(found, Result):
        return found
    assignment, label, _, reference = found
    c = ctl.wall.get(label)
    if c is not None and c.busy_op is not None:
        return fail(Status.CONFLICT, f"compartment {label} is busy with operation {c.busy_op}")
    with ctl.store.tx():
        ctl.store.db.execute("UPDATE assignments SET status='expired' WHERE id=?", (assignment,))
        if c is not None and c.state == CState.LOADED:
            ctl.wall.set_state(c, CState.EXPIRED, actor, "pickup revoked")
        ctl.store.audit(actor, "pickup_revoked", label, reference=reference, reason=reason)
    return ok(reference=reference, compartment=label, state=c.state.value if c else None)


def board_reset(ctl: TerminalController, args: Mapping[str, Any], actor: str) -> Result:
    """Soft reset over the protocol, or ``hard`` a pulse on the board's reset line; answers
    at once (the link reconnects by itself)."""
    board, hard = args.get("board"), args.get("hard")
    if hard is None:
        hard = False
    if not isinstance(hard, bool):
        return fail(Status.BAD_REQUEST, f"hard must be true or false, got {shown(hard)}")
    known = [b.board_id for b in ctl.config.terminal.boards]
    if not isinstance(board, str) or board not in known:
        return fail(Status.NOT_FOUND, f"no board {shown(board)}; boards: {', '.join(known)}")
    if hard:
        gpio = ctl.gpio
        if gpio is None or not gpio.has_reset(board):
            return fail(Status.NOT_CONFIGURED, f"board {board} has no reset line on the Pi's GPIO")
        gpio.hard_reset(board)
        link = ctl.links.get(board)
        if link is not None:
            link.note_hard_reset(ctl.timers.now_ms)
    else:

        def answered(outcome: RequestOutcome) -> None:
            log.info("soft reset of board %s: %s", board, outcome.reason or "answered")

        try:
            ctl.command(board, "reset", [], None, answered)
        except ControllerError as exc:
            return fail(Status.BOARD_OFFLINE, f"board {board}: soft reset not sent: {exc}")
    with ctl.store.tx():
        ctl.store.audit(actor, "board_reset", board, hard=hard)
    return ok(board=board, hard=hard)


# ----- drop-off ----------------------------------------------------------------------------


def start_dropoff(ctl: TerminalController, origin: Origin) -> Result:
    """Open the drop-off slot for a citizen's document."""
    if ctl.slot_board("dropoff") is None:
        return fail(Status.NOT_CONFIGURED, "this terminal has no drop-off slot")
    if ctl.slot_holders.get("dropoff") is not None:
        return fail(Status.CONFLICT, "the drop-off slot is in use; try again in a minute")
    refusal = ctl.interlock(None)
    if refusal is not None:
        return refusal
    op = Dropoff(ctl, origin.name)
    op.begin()
    if op.ended:
        return fail(Status.BOARD_OFFLINE, op.failure or "the slot did not open")
    return ok(op=op.op)


class Dropoff(Operation):
    """Slot open, deposit within the time allowed."""

    kind = "dropoff"

    def __init__(self, ctl: TerminalController, origin: str) -> None:
        super().__init__(ctl, origin, None)
        self.failure: str | None = None
        self.slot = SlotWait(self, "dropoff", deposited=self._deposited, failed=self._failed)

    def begin(self) -> None:
        """Release the flap."""
        self.step_to("slot_open")
        self.slot.start()

    def _deposited(self) -> None:
        self.step_to("deposited")
        self.finish(Outcomes.COMPLETED, Status.OK, None)

    def _failed(self, outcome: Outcomes, status: Status, reason: str) -> None:
        self.failure = reason
        self.finish(outcome, status, reason)

    def cancel_timers(self) -> None:
        """Stop waiting for the deposit."""
        self.slot.cancel()

    def on_deposit(self, unit: str) -> None:
        """A document went through the drop-off slot."""
        if unit == "dropoff":
            self.slot.on_deposit()


# ----- expiry ------------------------------------------------------------------------------


def expire_due(ctl: TerminalController) -> int:
    """Mark loaded documents past their expiry; returns how many."""
    rows = ctl.store.db.execute(
        "SELECT id, compartment FROM assignments WHERE status='active' AND expires_utc <= ?",
        (ctl.store.utc(),),
    ).fetchall()
    n = 0
    for assignment, label in rows:
        c = ctl.wall.get(label)
        if c is None or c.busy_op is not None:
            continue
        with ctl.store.tx():
            ctl.store.db.execute(
                "UPDATE assignments SET status='expired' WHERE id=?", (assignment,)
            )
            if c.state == CState.LOADED:
                ctl.wall.set_state(c, CState.EXPIRED, "system", "collection period over")
            ctl.store.bump("expired")
        n += 1
    return n
