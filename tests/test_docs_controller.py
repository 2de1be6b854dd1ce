"""docs/controller.md and docs/operations.md name every compartment state, transition and
alarm the code has, and nothing it lacks, so the documents cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

from controller.compartments import TRANSITIONS, CState

ROOT = Path(__file__).resolve().parent.parent
CONTROLLER_MD = ROOT / "docs" / "controller.md"
OPERATIONS_MD = ROOT / "docs" / "operations.md"
RAISE_CALL = re.compile(r"alarms\.raise_\(")
RAISE_NAME = re.compile(r"alarms\.raise_\(\s*\"([a-z_]+)\"")
NAME = re.compile(r"`([a-z_]+)`")


def raised_alarm_names() -> set[str]:
    """Every alarm name passed as a literal to ``alarms.raise_(`` in controller/*.py."""
    names: set[str] = set()
    for path in sorted((ROOT / "controller").glob("*.py")):
        text = path.read_text()
        found = RAISE_NAME.findall(text)
        calls = len(RAISE_CALL.findall(text))
        assert len(found) == calls, (
            f"{path.name}: {calls} alarms.raise_( calls but {len(found)} literal names; "
            "pass the alarm name as a string literal so the docs check can see it"
        )
        names.update(found)
    return names


def marked_rows(doc: str, marker: str) -> list[list[str]]:
    """The body rows of the table between <!-- marker:begin --> and <!-- marker:end -->."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    assert doc.count(begin) == 1 and doc.count(end) == 1, f"markers {marker} missing"
    block = doc.split(begin)[1].split(end)[0]
    lines = [line.strip() for line in block.strip().splitlines()]
    assert len(lines) > 2 and all(line.startswith("|") for line in lines), block
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def first_column_names(rows: list[list[str]]) -> set[str]:
    """The backticked name of each row's first cell."""
    names: set[str] = set()
    for row in rows:
        found = NAME.findall(row[0])
        assert len(found) == 1, f"row {row[0]!r} should name exactly one thing"
        names.add(found[0])
    return names


def test_the_alarm_scan_finds_the_alarms_of_the_code() -> None:
    names = raised_alarm_names()
    # a regex that matched nothing would make the checks below pass vacuously
    assert {"jam", "forced_open", "held_open", "board_offline"} <= names


def test_every_compartment_state_is_in_the_controller_doc() -> None:
    doc = CONTROLLER_MD.read_text()
    missing = [s.value for s in CState if f"`{s.value}`" not in doc]
    assert not missing, f"docs/controller.md does not mention states {missing}"


def test_the_state_table_lists_exactly_the_states_of_the_code() -> None:
    rows = marked_rows(CONTROLLER_MD.read_text(), "states")
    listed = [NAME.findall(row[0])[0] for row in rows]
    assert sorted(listed) == sorted(s.value for s in CState)


def test_every_raised_alarm_is_in_the_controller_doc() -> None:
    doc = CONTROLLER_MD.read_text()
    missing = sorted(n for n in raised_alarm_names() if f"`{n}`" not in doc)
    assert not missing, f"docs/controller.md does not mention alarms {missing}"


def test_the_alarm_tables_list_exactly_the_alarms_of_the_code() -> None:
    raised = raised_alarm_names()
    for path in (CONTROLLER_MD, OPERATIONS_MD):
        listed = first_column_names(marked_rows(path.read_text(), "alarms"))
        assert listed == raised, (
            f"{path.name}: alarms not documented {sorted(raised - listed)}, "
            f"documented but never raised {sorted(listed - raised)}"
        )


def test_the_transition_table_is_the_codes_table() -> None:
    documented: set[tuple[str, str]] = set()
    for row in marked_rows(CONTROLLER_MD.read_text(), "transitions"):
        sources, targets = NAME.findall(row[0]), NAME.findall(row[1])
        assert sources and targets and row[2], f"incomplete row {row}"
        documented.update((a, b) for a in sources for b in targets)
    allowed = {(a.value, b.value) for a, targets in TRANSITIONS.items() for b in targets if a != b}
    assert not documented - allowed, f"documented but refused: {sorted(documented - allowed)}"
    assert not allowed - documented, f"allowed but undocumented: {sorted(allowed - documented)}"
