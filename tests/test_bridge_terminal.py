"""A small, honest implementation of controller.api.Api for the bridge tests, and its tests.

It keeps compartments in a dict, checks staff PINs and pickup codes, de-duplicates by
request_id as the Api contract demands, and reports long operations with progress and
done notices; ``finish(op)`` ends one (the tests play the person closing the door).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.api import Listener, Origin, Result, Status, fail, ok

STAFF_PIN = "4711"
PICKUP_CODE = "K7Q2M9"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
IDENTITY: dict[str, Any] = {
    "kiosk_id": "myk-03",
    "site": "Mayen",
    "sw_version": "0.4.1",
    "features": ["notices", "staff"],
    "compartments": 3,
}
DEADLINE_S = 20.0  # how long an asyncio test waits for a condition; never asserted on


async def eventually(cond: Callable[[], object], what: str, limit_s: float = DEADLINE_S) -> None:
    """Wait (on the real clock, generously) until cond() is true."""
    end = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < end, f"waiting for {what}"
        await asyncio.sleep(0.01)


@dataclass
class Call:
    """One Api.call as the terminal saw it."""

    request: str
    args: dict[str, Any]
    origin: str
    request_id: str | None


@dataclass
class TerminalApi:
    """Three compartments, one staff member, pickups with a fixed code."""

    compartments: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            c: {"state": "empty", "door": "closed", "reference": None} for c in ("A1", "A2", "B1")
        }
    )
    calls: list[Call] = field(default_factory=list)
    results: dict[str, Result] = field(default_factory=dict)
    operations: dict[int, dict[str, Any]] = field(default_factory=dict)
    listeners: list[Listener] = field(default_factory=list)
    entrance: str = "normal"
    explode: Exception | None = None  # raised by the next call, once
    next_op: int = 100

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def emit(self, name: str, **fields: Any) -> None:
        for listener in list(self.listeners):
            listener(name, fields)

    def call(
        self, request: str, args: Mapping[str, Any], origin: Origin, request_id: str | None = None
    ) -> Result:
        self.calls.append(Call(request, dict(args), origin.name, request_id))
        if request_id is not None and request_id in self.results:
            return self.results[request_id]
        if self.explode is not None:
            exc, self.explode = self.explode, None
            raise exc
        handler = getattr(self, f"_{request}", None)
        if handler is None:
            return fail(Status.UNKNOWN_MESSAGE, f"unknown request {request!r}")
        result: Result = handler(origin, **args)
        if request_id is not None:
            self.results[request_id] = result
        return result

    def calls_of(self, request: str) -> list[Call]:
        return [c for c in self.calls if c.request == request]

    # ----- requests ------------------------------------------------------------------

    def _state(self, origin: Origin) -> Result:
        return ok(entrance=self.entrance, staff=origin.staff, operations=len(self.operations))

    def _compartments(self, origin: Origin) -> Result:
        return ok(compartments=[{"id": c, **v} for c, v in self.compartments.items()])

    def _staff_login(self, origin: Origin, staff: str, pin: str) -> Result:
        if staff != "anna" or pin != STAFF_PIN:
            return fail(Status.FORBIDDEN, f"staff {staff!r} and PIN do not match")
        origin.staff = staff
        return ok(staff=staff)

    def _staff_logout(self, origin: Origin) -> Result:
        origin.staff = None
        return ok()

    def _load(self, origin: Origin, reference: str, **rest: Any) -> Result:
        if origin.staff is None:
            return fail(Status.NOT_LOGGED_IN, "load needs a staff login")
        wanted = rest.get("compartment")
        free = [c for c, v in self.compartments.items() if v["state"] == "empty"]
        if wanted is not None and wanted not in self.compartments:
            return fail(Status.NOT_CONFIGURED, f"no compartment {wanted!r}")
        chosen = wanted if wanted is not None else (free[0] if free else None)
        if chosen is None or chosen not in free:
            return fail(Status.NO_COMPARTMENT, "no free compartment")
        self.compartments[chosen].update(state="loading", reference=reference)
        return self._start("load", chosen, "compartment_open")

    def _pickup(self, origin: Origin, reference: str, code: str) -> Result:
        found = [c for c, v in self.compartments.items() if v["reference"] == reference]
        if not found or self.compartments[found[0]]["state"] != "loaded":
            return fail(Status.NOT_FOUND, f"no document with reference {reference!r}")
        if code != PICKUP_CODE:
            return fail(Status.WRONG_CODE, f"reference {reference!r} and code do not match")
        self.compartments[found[0]]["state"] = "opening"
        return self._start("pickup", found[0], "compartment_open")

    def _entrance_mode(self, origin: Origin, mode: str) -> Result:
        if origin.staff is None:
            return fail(Status.NOT_LOGGED_IN, "entrance_mode needs a staff login")
        if mode not in ("normal", "lockdown"):
            return fail(Status.OUT_OF_RANGE, f"mode {mode!r} is not normal or lockdown")
        self.entrance = mode
        self.emit("terminal", entrance=mode, boards_ready=2, boards=2)
        return ok()

    def _start(self, operation: str, compartment: str, step: str) -> Result:
        op = self.next_op
        self.next_op += 1
        self.operations[op] = {"operation": operation, "compartment": compartment}
        self.emit("progress", op=op, operation=operation, step=step, compartment=compartment)
        return ok(op=op, compartment=compartment)

    # ----- the world -----------------------------------------------------------------

    def finish(self, op: int) -> None:
        """The person closes the door: the operation completes."""
        started = self.operations.pop(op)
        compartment = started["compartment"]
        state = "loaded" if started["operation"] == "load" else "emptied"
        self.compartments[compartment]["state"] = state
        self.emit(
            "progress",
            op=op,
            operation=started["operation"],
            step="door_closed",
            compartment=compartment,
        )
        self.emit("done", op=op, operation=started["operation"], status=0, outcome="completed")
        self.emit("compartment", compartment=compartment, state=state, door="closed")

    def put(self, compartment: str, reference: str) -> None:
        """A document is in a compartment, ready for pickup."""
        self.compartments[compartment].update(state="loaded", reference=reference)


# ----- the terminal's own behaviour (what the bridge tests rely on) ---------------------


def test_a_request_id_seen_before_gets_its_result_again_without_a_second_effect() -> None:
    api = TerminalApi()
    staff = Origin("t")
    api.call("staff_login", {"staff": "anna", "pin": STAFF_PIN}, staff)
    first = api.call("load", {"reference": "R-1"}, staff, "kiosk/7")
    again = api.call("load", {"reference": "R-1"}, staff, "kiosk/7")
    assert first == again and first.ok
    assert [v["state"] for v in api.compartments.values()].count("loading") == 1


def test_load_needs_staff_and_a_pickup_needs_the_code() -> None:
    api = TerminalApi()
    citizen = Origin("t")
    assert api.call("load", {"reference": "R-1"}, citizen).status == Status.NOT_LOGGED_IN
    api.put("A2", "R-1")
    wrong = api.call("pickup", {"reference": "R-1", "code": "000000"}, citizen)
    assert wrong.status == Status.WRONG_CODE and "000000" not in str(wrong.reason)
    assert api.call("pickup", {"reference": "R-1", "code": PICKUP_CODE}, citizen).ok


def test_finishing_an_operation_emits_done_and_the_compartment_state() -> None:
    api = TerminalApi()
    seen: list[tuple[str, dict[str, Any]]] = []
    api.subscribe(lambda name, fields: seen.append((name, fields)))
    api.put("B1", "R-9")
    op = api.call("pickup", {"reference": "R-9", "code": PICKUP_CODE}, Origin("t")).data
    assert op is not None
    api.finish(op["op"])
    assert [name for name, _ in seen] == ["progress", "progress", "done", "compartment"]
    assert seen[2][1]["status"] == 0 and api.compartments["B1"]["state"] == "emptied"
