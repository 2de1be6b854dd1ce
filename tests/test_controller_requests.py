"""Bad input is normal input: any request name with any arguments gets a Result naming
what is wrong, never an exception and never an internal error, and changes nothing it
should not. Runs the real controller on a real SQLite file with no board attached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.api import REQUESTS, Origin, Status
from controller.config import load
from controller.store import Store
from controller.terminal import TerminalController

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo-terminal.toml"

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=60),
    st.text(alphabet="0123456789 -", max_size=14),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.sampled_from(["S", "L", "A01", "B08", "normal", "lockdown", "scrypt$1$1$1$$"]),
)


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> TerminalController:
    store = Store(tmp_path_factory.mktemp("db") / "a.db")
    return TerminalController(load(DEMO), store)


def _staff_origin(ctl: TerminalController, role: str) -> Origin:
    staff = "admin" if role == "admin" else "mueller"
    return Origin("fuzz", staff=staff, staff_until_ms=ctl.timers.now_ms + 10**9)


@settings(max_examples=300, deadline=None)
@given(
    request=st.one_of(st.sampled_from(sorted(REQUESTS)), st.text(max_size=12)),
    extra=st.dictionaries(st.text(max_size=12), values, max_size=4),
    known=st.data(),
    role=st.sampled_from(["none", "staff", "admin"]),
)
def test_any_request_gets_a_clear_answer(
    ctl: TerminalController, request: str, extra: dict[str, Any], known: Any, role: str
) -> None:
    args = dict(extra)
    for name, _, _ in REQUESTS.get(request, ()):
        if known.draw(st.booleans()):
            args[name] = known.draw(values)
    origin = Origin("fuzz") if role == "none" else _staff_origin(ctl, role)
    if request == "staff_login":
        args["pin"] = str(args.get("pin"))[:8]  # scrypt per example: keep it cheap
    result = ctl.call(request, args, origin)
    assert result.status != Status.INTERNAL, result
    if not result.ok:
        assert result.reason, result
    if request not in REQUESTS:
        assert result.status == Status.UNKNOWN_MESSAGE
    assert ctl.store.verify_audit().ok


def test_nothing_opens_without_a_board(ctl: TerminalController) -> None:
    origin = _staff_origin(ctl, "staff")
    result = ctl.call("load", {"reference": "R-1", "size": "S"}, origin)
    assert result.status == Status.NO_COMPARTMENT  # every board is offline
    result = ctl.call("load", {"reference": "R-1", "compartment": "A01"}, origin)
    assert result.status == Status.BOARD_OFFLINE and "wall-a" in (result.reason or "")
    rows = ctl.store.db.execute("SELECT COUNT(*) FROM assignments").fetchone()
    assert rows == (0,)
