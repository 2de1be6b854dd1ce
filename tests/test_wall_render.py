"""The wall's frames: every compartment appears with its state, door and LED in the grid
of its board; alarms newest first with their age; the freshness of the data in words;
colours map per state; every line fits the width; nothing from the terminal can put an
escape sequence on the screen."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_wall_model import T0, garbage, valid

from controller.config import load
from tools.wall.layout import arrange, fit_columns, inner_width
from tools.wall.model import STATES, SourceKind, WallModel
from tools.wall.render import STATE_LOOK, age, render
from tools.wall.targets import config_layout

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
DEMO = load("examples/demo-terminal.toml")


def demo_model(source: SourceKind = SourceKind.BRIDGE) -> WallModel:
    m = WallModel(source, "bridge tcp://127.0.0.1:7010")
    assert m.apply("config", config_layout(DEMO), T0)
    assert m.apply("link", {"state": "up"}, T0)
    return m


def cells(frame: list[str]) -> dict[str, list[str]]:
    """Compartment id -> its three cell lines, read back from a --no-color frame."""
    found: dict[str, list[str]] = {}
    rows = [line for line in frame if line.startswith("|")]
    for i in range(0, len(rows), 3):
        parts = [row.split("|")[1:-1] for row in rows[i : i + 3]]
        for column in range(len(parts[0])):
            lines = [p[column].strip() for p in parts]
            found[lines[0].split(" ")[0]] = lines
    return found


def states_everywhere(m: WallModel) -> None:
    for i, c in enumerate(DEMO.compartments):
        state = STATES[i % len(STATES)]
        door = "open" if i % 3 == 0 else "closed"
        fields = {"compartment": c.label, "state": state, "door": door}
        if i % 4:
            fields["led"] = ("off", "on", "blink", "none")[i % 4]
        assert m.apply("compartment", fields, T0 + 1)


def test_every_compartment_appears_with_state_door_and_led() -> None:
    m = demo_model()
    states_everywhere(m)
    frame = render(m, T0 + 2, width=100)
    shown = cells(frame)
    assert set(shown) == {c.label for c in DEMO.compartments}
    for i, c in enumerate(DEMO.compartments):
        state = STATES[i % len(STATES)]
        letter, word, _ = STATE_LOOK[state]
        first, door, led = shown[c.label]
        assert first == f"{c.label} [{letter}] {word}", first
        assert door == f"door {'open' if i % 3 == 0 else 'closed'}"
        want = ("?", "on", "blink", "-")[i % 4]
        assert led.split() == ["led", want, c.size], led
    text = "\n".join(frame)
    assert "boards: ?/2 ready" in text and "legend: [E] empty" in text


def test_grid_is_grouped_by_board_and_ordered_by_channel() -> None:
    m = WallModel(SourceKind.MQTT, "mqtt")
    m.apply(
        "layout",
        {
            "boards": [{"board": "right"}, {"board": "left"}],
            "compartments": [
                {"compartment": "L10", "board": "left", "channel": 3},
                {"compartment": "L2", "board": "left", "channel": 1},
                {"compartment": "R1", "board": "right", "channel": 2},
                {"compartment": "R9", "board": "right", "channel": 1},
            ],
        },
        T0,
    )
    m.apply("compartment", {"compartment": "stray", "state": "empty", "door": "closed"}, T0)
    groups = arrange(m, 1)
    assert [(g.board, [r[0] for r in g.rows]) for g in groups] == [
        ("right", ["R9", "R1"]),
        ("left", ["L2", "L10"]),
        (None, ["stray"]),
    ]
    frame = render(m, T0, width=80, columns=2)
    assert "compartments of no known board" in frame
    row = next(line for line in frame if line.startswith("|R9"))
    assert row.count("|") == 3  # two cells


def test_columns_fit_the_width() -> None:
    m = demo_model()
    inner = inner_width(m)
    assert fit_columns(80, inner) == (80 - 1) // (inner + 1)
    assert fit_columns(10, inner) == 1 and fit_columns(200, inner, 3) == 3
    for width in (40, 80, 132):
        frame = render(m, T0, width=width)
        grid = [line for line in frame if line.startswith(("|", "+"))]
        assert max(len(line) for line in grid) <= width


def test_alarms_newest_first_with_ages() -> None:
    m = demo_model()
    m.apply("alarm", {"alarm": "jam", "active": True, "subject": "A03", "detail": "no door"}, T0)
    m.apply("alarm", {"alarm": "forced_open", "active": True, "subject": "A05"}, T0 + 100)
    listing = [
        {"alarm": "jam", "subject": "A03", "detail": "no door"},
        {"alarm": "forced_open", "subject": "A05"},
        {"alarm": "tamper", "subject": "cabinet"},
    ]
    m.apply("state", {"alarms": listing}, T0 + 110)  # a snapshot: alarms known keep their age
    frame = render(m, T0 + 130, width=100)
    at = frame.index("alarms: 3 active, newest first")
    lines = [line.split() for line in frame[at + 1 : at + 4]]
    assert [line[0] for line in lines] == ["tamper", "forced_open", "jam"]
    assert lines[1][2:4] == ["30", "s"]
    assert lines[2][2:4] == ["2", "min"] and lines[2][4:] == ["no", "door"]
    assert lines[0][2] == ">20"  # seen in a snapshot: active at least that long


def test_no_alarms_says_none() -> None:
    assert "alarms: none" in render(demo_model(), T0, width=80)


def test_freshness_in_words() -> None:
    m = demo_model()
    assert "source: bridge tcp://127.0.0.1:7010 | waiting for data | no data yet" in render(
        m, T0, width=120
    )
    m.apply("compartment", {"compartment": "A01", "state": "empty", "door": "closed"}, T0)
    assert "| live | last update 3 s ago" in render(m, T0 + 3, width=120)[1]
    assert "| no update for 2 min | last update 2 min ago" in render(m, T0 + 150, width=120)[1]
    m.apply("link", {"state": "down", "problem": "connection refused"}, T0 + 151)
    line = render(m, T0 + 152, width=120)[1]
    assert "daemon not reachable, retrying (connection refused)" in line


def test_mqtt_silence_after_connecting_is_explained() -> None:
    m = WallModel(SourceKind.MQTT, "mqtt broker:8883 (TLS) kiosk typo-01")
    m.apply("link", {"state": "up"}, T0)
    assert "waiting for data" in render(m, T0 + 1, width=120)[1]
    later = render(m, T0 + 30, width=120)
    assert "nothing arrived: check --kiosk and the account's rights" in " ".join(later[1:3])


def test_mqtt_status_and_last_will() -> None:
    m = demo_model(SourceKind.MQTT)
    m.apply("status", {"state": "degraded", "session": 4, "reason": "boards not ready: b"}, T0)
    frame = render(m, T0, width=120)
    assert "terminal: degraded (boards not ready: b), session 4" in frame
    m.apply("status", {"state": "offline", "session": 4, "reason": "connection lost"}, T0)
    frame = render(m, T0 + 1, width=120)
    assert "terminal offline (last will)" in frame[1]
    assert "terminal: offline (last will: connection lost), session 4" in frame
    m.apply("status", {"state": "offline", "session": 5, "reason": "daemon stopping"}, T0)
    assert "terminal offline (daemon stopping)" in render(m, T0 + 1, width=120)[1]


def test_entrance_slots_boards_and_service_door() -> None:
    m = demo_model()
    m.apply(
        "state",
        {
            "entrance": {"mode": "lockdown", "door": "open"},
            "boards_ready": 1,
            "boards": 2,
            "boards_detail": [
                {"board": "wall-a", "state": "ready", "error": None},
                {"board": "wall-b", "state": "connecting", "error": "no answer"},
            ],
            "slots": [
                {"unit": "return", "state": "idle", "flap": "closed"},
                {"unit": "dropoff", "state": "open", "flap": "open"},
            ],
        },
        T0,
    )
    m.apply("door", {"door": "service", "state": "open"}, T0)
    text = "\n".join(render(m, T0, width=200))
    assert "boards: 1/2 ready | wall-a ready | wall-b connecting (no answer)" in text
    assert "entrance: lockdown, door open | return slot: idle, flap closed" in text
    assert "drop-off slot: open, flap open | service door: open" in text


def test_absent_fields_show_a_question_mark() -> None:
    m = demo_model()
    text = "\n".join(render(m, T0, width=100))
    assert "entrance: ?, door ? | slots: ?" in text
    first, door, led = cells(render(m, T0, width=100))["A01"]
    assert (first, door, led.split()[:2]) == ("A01 [?] ?", "door ?", ["led", "?"])


def test_colours_map_per_state() -> None:
    m = demo_model()
    states_everywhere(m)
    text = "\n".join(render(m, T0 + 2, width=100, color=True))
    for i, c in enumerate(DEMO.compartments):
        letter, _, style = STATE_LOOK[STATES[i % len(STATES)]]
        assert f"\x1b[{style}m{c.label} [{letter}]" in text, c.label
    styles = {look[2] for look in STATE_LOOK.values()}
    assert len(styles) >= 8  # free, holding, moving, attention, fault, unknown differ
    assert STATE_LOOK["jammed"][2] != STATE_LOOK["empty"][2] != STATE_LOOK["loaded"][2]
    plain = [ANSI.sub("", line).rstrip() for line in render(m, T0 + 2, width=100, color=True)]
    assert plain == render(m, T0 + 2, width=100)  # the same frame, only coloured


def test_text_from_the_terminal_cannot_reach_the_terminal_as_escapes() -> None:
    m = demo_model()
    m.apply("alarm", {"alarm": "jam", "subject": "A01", "detail": "\x1b[2J\x07boom\r"}, T0)
    m.apply("status", {"state": "online", "session": 1, "reason": "\x1b]0;pwned\x07"}, T0)
    m.apply("link", {"state": "down", "problem": "bad\x1b[31m"}, T0)
    for color in (False, True):
        text = "\n".join(render(m, T0, width=120, color=color))
        assert "\x07" not in text and "\r" not in text
        assert "\x1b[2J" not in text and "\x1b]" not in text
        assert "?[2J?boom?" in text


def test_age_words() -> None:
    assert [age(s) for s in (-5, 0, 59, 60, 3599, 3600, 86400 * 3)] == [
        "0 s",
        "0 s",
        "59 s",
        "1 min",
        "59 min",
        "1 h",
        "3 d",
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(valid, garbage), max_size=20),
    st.integers(1, 250),
    st.one_of(st.none(), st.integers(1, 12)),
    st.booleans(),
)
def test_any_model_renders_within_the_width(
    messages: list[tuple[str, Any]], width: int, columns: int | None, color: bool
) -> None:
    m = WallModel(SourceKind.MQTT, "mqtt broker:8883 (TLS) kiosk demo-01")
    for i, (kind, fields) in enumerate(messages):
        m.apply(kind, fields, T0 + i)
    frame = render(m, T0 + 30, width=width, columns=columns, color=color)
    for line in frame:
        assert len(ANSI.sub("", line)) <= max(20, width), line
        assert not any(ch != "\x1b" and not ch.isprintable() for ch in line), line
