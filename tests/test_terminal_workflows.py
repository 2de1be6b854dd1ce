"""Every workflow end to end on one simulated clock: a kiosk speaking the bridge protocol,
the bridge connection, the controller with its SQLite file, real board links, and the
real firmware in MicroPython VMs around the simulated world (tests/terminal_rig.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from terminal_rig import ADMIN_PIN, STAFF_PIN, TerminalRig, demo_rig

from controller.api import Origin, Status
from controller.secrets import hash_secret


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[TerminalRig]:
    with demo_rig(tmp_path / "amtomat.db") as r:
        yield r


def load_document(rig: TerminalRig, reference: str, **args: object) -> tuple[str, str | None]:
    """Staff load a document; the simulated person closes the door. Returns (label, code)."""
    rig.staff("mueller", STAFF_PIN)
    result = rig.call("load", reference=reference, **args)
    assert result.ok, result
    assert result.data is not None
    label, op = result.data["compartment"], result.data["op"]
    c = rig.ctl.wall.get(label)
    assert c is not None
    rig.wait(lambda: "door_open" in rig.kiosk.steps(op))  # type: ignore[union-attr]
    rig.sim.advance(800)  # staff put the document in
    if rig.ctl.items.get(label) is not None:
        rig.sim.item(c.board, c.channel, True)
    rig.sim.advance(400)
    rig.sim.door(c.board, c.channel, False)
    rig.wait(lambda: rig.kiosk.done(op) is not None)  # type: ignore[union-attr]
    done = rig.kiosk.done(op)  # type: ignore[union-attr]
    assert done is not None and done["outcome"] == "completed", done
    rig.call("staff_logout")
    return label, result.data.get("code")


def pulses(rig: TerminalRig, board: str, channel: int) -> int:
    """Solenoid pulses the board really gave this channel (from the simulated wiring)."""
    name = f"channel {channel} solenoid"
    return sum(1 for e in rig.sim.output_edges(board) if e.name == name and e.on)


def test_load_then_pickup_with_return(rig: TerminalRig) -> None:
    label, code = load_document(rig, "DOC-1", size="S", return_required=True)
    assert code is not None and code.isdigit() and len(code) == 8
    c = rig.ctl.wall.get(label)
    assert c is not None and c.state.value == "loaded"
    result = rig.call("pickup", reference="DOC-1", code=code)
    assert result.ok, result
    assert result.data is not None
    op = result.data["op"]
    kiosk = rig.kiosk
    assert kiosk is not None
    rig.wait(lambda: "return_open" in kiosk.steps(op))
    assert pulses(rig, c.board, c.channel) == 1  # only the loading pulse so far
    rig.sim.advance(500)  # the citizen reaches the slot
    rig.sim.deposit("return")
    rig.wait(lambda: "door_open" in kiosk.steps(op))
    assert pulses(rig, c.board, c.channel) == 2
    rig.sim.door(c.board, c.channel, False)
    rig.wait(lambda: kiosk.done(op) is not None)
    done = kiosk.done(op)
    assert done is not None and done["outcome"] == "completed"
    assert kiosk.steps(op) == ["return_open", "returned", "opening", "door_open", "door_closed"]
    assert c.state.value == "empty"
    counters = rig.store.counters()
    assert counters["pickups"] == 1 and counters["documents_returned"] == 1
    # the same reference and code do not open anything again
    again = rig.call("pickup", reference="DOC-1", code=code)
    assert again.status == Status.WRONG_CODE
    assert rig.store.verify_audit().ok


def test_wrong_codes_lock_out_the_reference(rig: TerminalRig) -> None:
    label, code = load_document(rig, "DOC-2")
    assert code is not None
    wrong = "0" * 8 if code != "0" * 8 else "1" * 8
    limit = rig.config.pickup.attempts_per_reference
    for i in range(limit - 1):
        result = rig.call("pickup", reference="DOC-2", code=wrong)
        assert result.status == Status.WRONG_CODE, result
        assert result.data == {"left": limit - 1 - i}
    result = rig.call("pickup", reference="DOC-2", code=wrong)
    assert result.status == Status.LOCKED_OUT
    # even the right code is refused while locked out, and nothing opened
    result = rig.call("pickup", reference="DOC-2", code=code)
    assert result.status == Status.LOCKED_OUT
    c = rig.ctl.wall.get(label)
    assert c is not None and pulses(rig, c.board, c.channel) == 1
    # an unknown reference answers exactly like a wrong code
    other = rig.call("pickup", reference="NO-SUCH", code="12345678")
    assert other.status == Status.WRONG_CODE
    entries = rig.store.audit_entries(action="pickup_wrong_code")
    assert len(entries) == limit + 1
    assert code not in str([e.detail for e in entries])


def test_return_not_deposited_releases_nothing(rig: TerminalRig) -> None:
    label, code = load_document(rig, "DOC-3", return_required=True)
    assert code is not None
    c = rig.ctl.wall.get(label)
    assert c is not None
    result = rig.call("pickup", reference="DOC-3", code=code)
    assert result.ok and result.data is not None
    op = result.data["op"]
    kiosk = rig.kiosk
    assert kiosk is not None
    rig.wait(lambda: kiosk.done(op) is not None, 30000)
    done = kiosk.done(op)
    assert done is not None and done["outcome"] == "aborted"
    assert "return slot" in done["reason"]
    assert pulses(rig, c.board, c.channel) == 1
    assert c.state.value == "loaded"


def test_jammed_door_retries_once_then_out_of_service(rig: TerminalRig) -> None:
    label, code = load_document(rig, "DOC-4")
    assert code is not None
    c = rig.ctl.wall.get(label)
    assert c is not None
    rig.sim.jam(c.board, c.channel, True)
    result = rig.call("pickup", reference="DOC-4", code=code)
    assert result.ok and result.data is not None
    op = result.data["op"]
    kiosk = rig.kiosk
    assert kiosk is not None
    rig.wait(lambda: kiosk.done(op) is not None, 20000)
    done = kiosk.done(op)
    assert done is not None and done["outcome"] == "jammed"
    assert "retry" in kiosk.steps(op)
    assert pulses(rig, c.board, c.channel) == 3  # loading, first try, the one retry
    assert c.state.value == "jammed"
    assert ("jam", label) in rig.ctl.alarms.active
    assert any(n == "alarm" and f["alarm"] == "jam" for n, f in kiosk.notices)
    # a jammed compartment refuses pickups until staff clear it
    assert rig.call("pickup", reference="DOC-4", code=code).status == Status.OUT_OF_SERVICE
    rig.sim.jam(c.board, c.channel, False)
    rig.staff("mueller", STAFF_PIN)
    fixed = rig.call("set_service", compartment=label, in_service=True, reason="latch freed")
    assert fixed.ok and c.state.value == "loaded"
    assert ("jam", label) not in rig.ctl.alarms.active


def test_forced_door_raises_an_alarm(rig: TerminalRig) -> None:
    c = rig.ctl.wall.get("A05")
    assert c is not None
    rig.sim.door(c.board, c.channel, True)
    rig.wait(lambda: c.state.value == "forced")
    assert ("forced_open", "A05") in rig.ctl.alarms.active
    rig.sim.door(c.board, c.channel, False)
    rig.wait(lambda: ("forced_open", "A05") not in rig.ctl.alarms.active)
    assert c.state.value == "forced"  # staff must look at it
    assert rig.call("retrieval_list").status == Status.NOT_LOGGED_IN


def test_held_open_during_pickup(rig: TerminalRig) -> None:
    label, code = load_document(rig, "DOC-5")
    assert code is not None
    c = rig.ctl.wall.get(label)
    assert c is not None
    result = rig.call("pickup", reference="DOC-5", code=code)
    assert result.data is not None
    op = result.data["op"]
    rig.wait(lambda: c.state.value == "open")
    rig.wait(lambda: ("held_open", label) in rig.ctl.alarms.active, 40000)
    assert c.state.value == "held_open"
    rig.sim.door(c.board, c.channel, False)
    kiosk = rig.kiosk
    assert kiosk is not None
    rig.wait(lambda: kiosk.done(op) is not None)
    assert ("held_open", label) not in rig.ctl.alarms.active
    assert c.state.value == "empty"


def test_document_not_taken_keeps_it_loaded(rig: TerminalRig) -> None:
    # wall-b channel 1 has an item sensor
    _, code = load_document(rig, "DOC-6", compartment="B01")
    assert code is not None and rig.ctl.items["B01"] is True
    result = rig.call("pickup", reference="DOC-6", code=code)
    assert result.data is not None
    op = result.data["op"]
    c = rig.ctl.wall.get("B01")
    assert c is not None
    rig.wait(lambda: c.state.value == "open")
    rig.sim.advance(1100)
    led = [e.on for e in rig.sim.output_edges("wall-b") if e.name == "channel 1 LED"]
    assert led[:2] == [True, False]  # the compartment's LED blinks while offered
    rig.sim.door(c.board, c.channel, False)
    kiosk = rig.kiosk
    assert kiosk is not None
    rig.wait(lambda: kiosk.done(op) is not None)
    rig.sim.advance(200)
    led = [e.on for e in rig.sim.output_edges("wall-b") if e.name == "channel 1 LED"]
    assert led[-1] is False  # and goes out when the door closed
    done = kiosk.done(op)
    assert done is not None and done["outcome"] == "not_taken"
    assert c.state.value == "loaded"


def test_staff_login_lockout_and_rights(rig: TerminalRig) -> None:
    assert rig.call("load", reference="X").status == Status.NOT_LOGGED_IN
    for _ in range(rig.config.staff_auth.attempts - 1):
        assert rig.call("staff_login", staff="mueller", pin="000000").status == Status.WRONG_CODE
    assert rig.call("staff_login", staff="mueller", pin="000000").status == Status.LOCKED_OUT
    assert rig.call("staff_login", staff="mueller", pin=STAFF_PIN).status == Status.LOCKED_OUT
    # a locked-out staff id does not lock others
    assert rig.call("staff_login", staff="admin", pin=ADMIN_PIN).ok
    pins = [e.detail for e in rig.store.audit_entries()]
    assert STAFF_PIN not in str(pins) and "000000" not in str(pins)


def test_county_issued_code_hash(rig: TerminalRig) -> None:
    _, code = load_document(rig, "DOC-7", code_hash=hash_secret("55512345"))
    assert code is None
    result = rig.call("pickup", reference="DOC-7", code="555-123 45")
    assert result.ok, result


def test_no_free_compartment_of_size(rig: TerminalRig) -> None:
    rig.staff("mueller", STAFF_PIN)
    result = rig.call("load", reference="R", size="XL")
    assert result.status == Status.BAD_REQUEST and "XL" in (result.reason or "")
    for c in rig.ctl.wall.by_label.values():
        if c.size == "L":
            rig.ctl.wall.set_state(c, c.state.OUT_OF_SERVICE, "test", "full")
    result = rig.call("load", reference="R", size="L")
    assert result.status == Status.NO_COMPARTMENT


def test_dropoff_and_timeout(rig: TerminalRig) -> None:
    kiosk = rig.kiosk
    assert kiosk is not None
    result = rig.call("dropoff")
    assert result.ok and result.data is not None
    op = result.data["op"]
    rig.sim.advance(500)
    rig.sim.deposit("dropoff")
    rig.wait(lambda: kiosk.done(op) is not None)
    assert kiosk.done(op)["outcome"] == "completed"  # type: ignore[index]
    result = rig.call("dropoff")
    assert result.data is not None
    op = result.data["op"]
    rig.wait(lambda: kiosk.done(op) is not None, 30000)
    assert kiosk.done(op)["outcome"] == "aborted"  # type: ignore[index]


def test_expiry_and_staff_retrieval(rig: TerminalRig) -> None:
    label, _ = load_document(rig, "DOC-8", expires_days=1)
    c = rig.ctl.wall.get(label)
    assert c is not None
    rig.utc_offset = 0
    rig.clock.utc = lambda: 1_790_000_000.0 + rig.sim.now / 1000 + 2 * 86400
    rig.store.utc = rig.clock.utc
    rig.sim.advance(61_000)
    assert c.state.value == "expired"
    rig.staff("mueller", STAFF_PIN)
    listing = rig.call("retrieval_list")
    assert listing.ok and listing.data is not None
    assert [e["reference"] for e in listing.data["expired"]] == ["DOC-8"]
    result = rig.call("retrieve", compartment=label)
    assert result.ok and result.data is not None
    rig.wait(lambda: c.state.value == "open")
    rig.sim.door(c.board, c.channel, False)
    rig.wait(lambda: c.state.value == "empty")
    assert rig.call("retrieval_list").data == {"expired": [], "attention": []}


def test_service_open_needs_admin_for_a_loaded_compartment(rig: TerminalRig) -> None:
    label, _ = load_document(rig, "DOC-9")
    rig.staff("mueller", STAFF_PIN)
    result = rig.call("service_open", compartment=label, reason="check")
    assert result.status == Status.FORBIDDEN
    result = rig.call("service_open", compartment="A12", reason="check")
    assert result.ok
    rig.call("staff_logout")
    rig.staff("admin", ADMIN_PIN)
    assert rig.call("service_open", compartment=label, reason="inspection").ok


def test_entrance_grant_forced_lockdown(rig: TerminalRig) -> None:
    kiosk = rig.kiosk
    assert kiosk is not None
    rig.sim.swipe()
    rig.wait(lambda: rig.sim.boards["wall-a"].world.entrance_released)
    rig.sim.entrance_door(True)
    rig.sim.advance(300)
    assert ("forced_open", "entrance") not in rig.ctl.alarms.active
    rig.sim.entrance_door(False)
    rig.sim.advance(300)
    rig.staff("mueller", STAFF_PIN)
    assert rig.call("entrance_mode", mode="lockdown").ok
    released_before = rig.store.counters().get("entrance_grants", 0)
    rig.sim.swipe()
    rig.sim.advance(1000)
    assert rig.store.counters().get("entrance_grants", 0) == released_before
    assert rig.store.counters()["entrance_refused"] == 1
    rig.sim.entrance_door(True)  # opened without a grant
    rig.wait(lambda: ("forced_open", "entrance") in rig.ctl.alarms.active)
    rig.sim.advance(rig.config.entrance.held_open_s * 1000 + 500)
    assert ("held_open", "entrance") in rig.ctl.alarms.active
    rig.sim.entrance_door(False)
    rig.wait(lambda: ("held_open", "entrance") not in rig.ctl.alarms.active)
    assert ("forced_open", "entrance") not in rig.ctl.alarms.active


def test_interlock_service_door(rig: TerminalRig) -> None:
    _, code = load_document(rig, "DOC-10")
    assert code is not None
    rig.sim.service_door(True)
    rig.sim.advance(300)
    result = rig.call("pickup", reference="DOC-10", code=code)
    assert result.status == Status.INTERLOCK and "service door" in (result.reason or "")
    rig.sim.service_door(False)
    rig.sim.advance(300)
    assert rig.call("pickup", reference="DOC-10", code=code).ok


def test_repeated_request_id_opens_once(rig: TerminalRig) -> None:
    label, code = load_document(rig, "DOC-11")
    origin = Origin("kiosk")
    first = rig.ctl.call("pickup", {"reference": "DOC-11", "code": code}, origin, "k/77")
    second = rig.ctl.call("pickup", {"reference": "DOC-11", "code": code}, origin, "k/77")
    assert first == second and first.ok
    c = rig.ctl.wall.get(label)
    assert c is not None
    rig.wait(lambda: c.state.value == "open")
    assert pulses(rig, c.board, c.channel) == 2


def test_board_unplugged_mid_pickup(rig: TerminalRig) -> None:
    label, code = load_document(rig, "DOC-12", return_required=True)
    assert code is not None
    c = rig.ctl.wall.get(label)
    assert c is not None
    result = rig.call("pickup", reference="DOC-12", code=code)
    assert result.data is not None
    op = result.data["op"]
    kiosk = rig.kiosk
    assert kiosk is not None
    rig.wait(lambda: "return_open" in kiosk.steps(op))
    rig.sim.advance(500)
    rig.unplug(c.board, True)  # the cable comes out: the board goes to its safe state
    rig.sim.deposit("return")  # the deposit happens while nobody listens
    rig.wait(lambda: kiosk.done(op) is not None, 30000)
    done = kiosk.done(op)
    assert done is not None and done["outcome"] in ("refused", "unknown", "aborted")
    assert (("board_offline", c.board)) in rig.ctl.alarms.active
    assert pulses(rig, c.board, c.channel) == 1
    assert rig.call("pickup", reference="DOC-12", code=code).status == Status.BOARD_OFFLINE
    rig.unplug(c.board, False)
    rig.wait(lambda: ("board_offline", c.board) not in rig.ctl.alarms.active, 15000)
    assert rig.call("pickup", reference="DOC-12", code=code).ok


def test_daemon_killed_mid_pickup_and_restarted(rig: TerminalRig) -> None:
    label, code = load_document(rig, "DOC-13")
    c = rig.ctl.wall.get(label)
    assert c is not None
    origin = Origin("kiosk")
    result = rig.ctl.call("pickup", {"reference": "DOC-13", "code": code}, origin, "k/9")
    assert result.ok
    rig.sim.tick()  # the pulse leaves; the daemon dies before the reply
    rig.restart()
    rig.ready()
    c = rig.ctl.wall.get(label)
    assert c is not None
    assert c.state.value == "unknown"
    assert ("outcome_unknown", label) in rig.ctl.alarms.active
    rows = rig.store.db.execute("SELECT outcome FROM operations WHERE kind='pickup'").fetchall()
    assert rows == [("unknown",)]
    # the same request id gets its old answer, and nothing is repeated
    again = rig.ctl.call("pickup", {"reference": "DOC-13", "code": code}, origin, "k/9")
    assert again == result
    rig.sim.advance(2000)
    assert pulses(rig, c.board, c.channel) <= 2
    assert rig.call("pickup", reference="DOC-13", code=code).status == Status.OUT_OF_SERVICE
    assert rig.store.verify_audit().ok
