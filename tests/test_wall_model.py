"""The wall's model: messages of every kind change what they should and nothing else;
malformed messages and items are ignored with a counted warning and never raise
(hypothesis: any sequence of valid messages keeps the model consistent, garbage too)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tools.wall.model import (
    DOORS,
    LEDS,
    MODES,
    STATES,
    STATUSES,
    Link,
    SourceKind,
    WallModel,
    parse_utc,
)

T0 = 1_790_000_000.0


def layout(*ids: str, board: str = "wall-a") -> dict[str, Any]:
    return {
        "kiosk_id": "demo-01",
        "site": "Koblenz",
        "boards": [{"board": board}],
        "compartments": [
            {"compartment": c, "board": board, "channel": i + 1, "size": "S"}
            for i, c in enumerate(ids)
        ],
    }


def bridge_model() -> WallModel:
    m = WallModel(SourceKind.BRIDGE, "bridge tcp://127.0.0.1:7010")
    assert m.apply("config", layout("A01", "A02", "A03"), T0)
    return m


# ----- single messages ------------------------------------------------------------------


def test_config_layout_is_not_news_from_the_terminal() -> None:
    m = bridge_model()
    assert list(m.compartments) == ["A01", "A02", "A03"]
    assert m.compartments["A02"].channel == 2 and m.compartments["A02"].board == "wall-a"
    assert m.feed.last_update is None and m.kiosk_id == "demo-01"
    assert not m.complete


def test_bridge_picture_is_complete_after_state_and_compartments() -> None:
    m = bridge_model()
    assert m.apply(
        "state",
        {
            "kiosk_id": "demo-01",
            "entrance": {"mode": "normal", "door": "closed"},
            "boards_ready": 1,
            "boards": 1,
            "alarms": [],
            "boards_detail": [{"board": "wall-a", "state": "ready", "error": None}],
            "slots": [{"unit": "return", "state": "idle", "flap": "closed"}],
        },
        T0 + 1,
    )
    assert not m.complete
    rows = [{"compartment": c, "state": "empty", "door": "closed"} for c in ("A01", "A02")]
    assert m.apply("compartments", {"compartments": rows}, T0 + 2)
    assert m.complete and m.feed.last_update == T0 + 2
    assert m.entrance_mode == "normal" and m.entrance_door == "closed"
    assert m.slots["return"].flap == "closed" and m.boards["wall-a"].state == "ready"
    # A03 was not in the list: the terminal does not know it, so nothing is claimed
    assert m.compartments["A03"].state is None and m.compartments["A01"].state == "empty"


def test_an_older_state_reply_with_entrance_as_text_still_works() -> None:
    m = bridge_model()
    assert m.apply("state", {"entrance": "lockdown", "boards_ready": 0, "boards": 2}, T0)
    assert m.entrance_mode == "lockdown" and m.entrance_door is None
    assert (m.boards_ready, m.boards_total) == (0, 2)


def test_compartment_notice_changes_only_the_fields_it_carries() -> None:
    m = bridge_model()
    m.apply("compartment", {"compartment": "A01", "state": "loaded", "door": "closed"}, T0)
    v = m.version
    assert m.apply("compartment", {"compartment": "A01", "state": "open", "door": "open"}, T0)
    assert m.version > v
    c = m.compartments["A01"]
    assert (c.state, c.door, c.led) == ("open", "open", None)  # no led from this daemon
    assert m.apply("compartment", {"compartment": "A01", "led": "blink"}, T0)
    assert (c.state, c.led) == ("open", "blink")
    v = m.version
    assert m.apply("compartment", {"compartment": "A01", "led": "blink"}, T0 + 5)
    assert m.version == v  # nothing changed: no new frame needed
    assert m.feed.last_update == T0 + 5  # but the terminal spoke


def test_unknown_compartment_appears_without_a_board() -> None:
    m = bridge_model()
    assert m.apply("compartment", {"compartment": "Z9", "state": "empty", "door": "closed"}, T0)
    assert m.compartments["Z9"].board is None


def test_doors_of_compartments_entrance_and_service() -> None:
    m = bridge_model()
    assert m.apply("door", {"door": "A02", "state": "open"}, T0)
    assert m.apply("door", {"door": "entrance", "state": "closed"}, T0)
    assert m.apply("door", {"door": "service", "state": "open"}, T0)
    assert m.compartments["A02"].door == "open"
    assert (m.entrance_door, m.service_door) == ("closed", "open")


def test_alarm_raised_live_then_cleared() -> None:
    m = bridge_model()
    raised = {"alarm": "forced_open", "active": True, "subject": "A01", "detail": "no pulse"}
    assert m.apply("alarm", raised, T0 + 3)
    a = m.alarms[("forced_open", "A01")]
    assert a.raised == T0 + 3 and a.detail == "no pulse"
    cleared = {"alarm": "forced_open", "active": False, "subject": "A01", "detail": "closed"}
    assert m.apply("alarm", cleared, T0 + 4)
    assert not m.alarms


def test_alarm_from_mqtt_carries_when_it_was_raised() -> None:
    m = WallModel(SourceKind.MQTT, "mqtt")
    fields = {
        "alarm": "jam",
        "subject": "A3",
        "detail": None,
        "raised_utc": "2026-11-21T10:14:58.902Z",
        "active": True,
    }
    assert m.apply("alarm", fields, T0)
    assert m.alarms[("jam", "A3")].raised == parse_utc("2026-11-21T10:14:58.902Z")


def test_alarm_snapshot_keeps_when_known_alarms_were_first_seen() -> None:
    m = bridge_model()
    m.apply("alarm", {"alarm": "jam", "active": True, "subject": "A01"}, T0)
    listing = [
        {"alarm": "jam", "subject": "A01", "detail": "x"},
        {"alarm": "tamper", "subject": "cabinet"},
    ]
    assert m.apply("state", {"alarms": listing}, T0 + 60)
    assert m.alarms[("jam", "A01")].raised == T0
    tamper = m.alarms[("tamper", "cabinet")]
    assert tamper.raised is None and tamper.seen == T0 + 60  # active at least since then
    assert m.apply("alarms", {"alarms": []}, T0 + 61)
    assert not m.alarms


def test_alarms_of_the_state_reply_carry_utc_seconds() -> None:
    m = bridge_model()
    listing = [{"alarm": "jam", "subject": "A01", "detail": None, "raised_utc": T0 - 30.5}]
    assert m.apply("state", {"alarms": listing}, T0)
    assert m.alarms[("jam", "A01")].raised == T0 - 30.5
    # a terminal whose clock is 1000 s behind: ages stay right on the wall's clock
    skewed = [{"alarm": "jam", "subject": "A03", "raised_utc": T0 - 1030.0}]
    assert m.apply("state", {"alarms": skewed, "utc": T0 - 1000.0}, T0)
    assert m.alarms[("jam", "A03")].raised == T0 - 30 and m.clock_offset == 1000
    mqtt = {"alarm": "tamper", "subject": "cabinet", "raised_utc": "2026-09-21T00:00:00.000Z"}
    assert m.apply("alarm", mqtt, T0)
    assert m.alarms[("tamper", "cabinet")].raised == parse_utc(mqtt["raised_utc"]) + 1000
    bad = [{"alarm": "jam", "subject": "A02", "raised_utc": True}]
    assert m.apply("state", {"alarms": bad}, T0)
    assert m.warnings == 1 and "raised_utc True" in (m.last_warning or "")


def test_a_steady_terminal_makes_no_new_frames() -> None:
    m = bridge_model()

    def reply(utc: float) -> dict[str, Any]:
        return {
            "entrance": {"mode": "normal", "door": "closed"},
            "boards_ready": 1,
            "boards": 1,
            "alarms": [{"alarm": "jam", "subject": "A01", "detail": "x", "raised_utc": 500.0}],
            "boards_detail": [{"board": "wall-a", "state": "ready", "firmware": "0.3.0"}],
            "utc": utc,
        }

    assert m.apply("state", reply(1000.0), T0)
    version = m.version
    for i in range(1, 6):  # every refresh: the terminal's clock read with a little latency
        assert m.apply("state", reply(1000.0 + 2 * i - 0.05 * i), T0 + 2 * i)
    assert m.version == version and m.feed.last_update == T0 + 10


def test_status_ignores_a_late_will_of_an_earlier_session() -> None:
    m = WallModel(SourceKind.MQTT, "mqtt")
    assert m.apply("status", {"state": "online", "session": 7, "reason": None}, T0)
    assert m.apply("status", {"state": "offline", "session": 6, "reason": "connection lost"}, T0)
    assert m.status is not None and m.status.state == "online"
    assert m.apply("status", {"state": "offline", "session": 7, "reason": "connection lost"}, T0)
    assert m.status.state == "offline"
    assert m.warnings == 0


def test_mqtt_picture_is_complete_with_status_birth_and_every_compartment() -> None:
    m = WallModel(SourceKind.MQTT, "mqtt")
    birth = layout("A1", "A2")
    birth["boards"] = [{"board": "wall-a", "state": "ready", "firmware": "1.4.0"}]
    assert m.apply("layout", birth, T0)
    assert m.apply("status", {"state": "online", "session": 1, "reason": None}, T0)
    assert m.apply("compartment", {"compartment": "A1", "state": "empty", "door": "closed"}, T0)
    assert not m.complete
    assert m.apply("compartment", {"compartment": "A2", "state": "loaded", "door": "closed"}, T0)
    assert m.complete and m.boards["wall-a"].firmware == "1.4.0"


def test_metrics_update_board_states() -> None:
    m = WallModel(SourceKind.MQTT, "mqtt")
    assert m.apply("metrics", {"boards": {"wall-a": {"state": "connecting", "counters": {}}}}, T0)
    assert m.boards["wall-a"].state == "connecting"


def test_link_changes_the_feed_but_is_no_update() -> None:
    m = bridge_model()
    feed = m.feed
    assert feed.link is Link.CONNECTING and feed.since is None
    assert m.apply("link", {"state": "down", "problem": "connection refused"}, T0 + 9)
    assert (m.feed.link, m.feed.problem) == (Link.DOWN, "connection refused")
    assert m.feed.since == T0 + 9 and m.feed.last_update is None
    assert m.apply("link", {"state": "up"}, T0 + 10)
    assert (m.feed.link, m.feed.problem) == (Link.UP, None)


def test_layout_keeps_what_the_terminal_reported() -> None:
    m = WallModel(SourceKind.MQTT, "mqtt")
    m.apply("compartment", {"compartment": "A2", "state": "jammed", "door": "closed"}, T0)
    m.apply("compartment", {"compartment": "OLD", "state": "empty", "door": "closed"}, T0)
    assert m.apply("layout", layout("A1", "A2"), T0)
    assert list(m.compartments)[:2] == ["A1", "A2"]
    assert m.compartments["A2"].state == "jammed" and m.compartments["A2"].board == "wall-a"
    assert m.compartments["OLD"].board is None  # still shown, as of no known board


# ----- bad input ------------------------------------------------------------------------

BAD = [
    ("compartment", {"compartment": "A01", "state": "exploded"}, "'exploded'"),
    ("compartment", {"state": "open"}, "compartment is missing"),
    ("compartment", {"compartment": "A\x1b[2J", "state": "open"}, "printable id"),
    ("compartment", ["A01", "open"], "must be a map"),
    ("compartment", b"{not json", "must be a map"),
    ("door", {"door": "A01", "state": "ajar"}, "'ajar'"),
    ("alarm", {"alarm": "Bad Name", "subject": "A01"}, "not an alarm name"),
    ("alarm", {"alarm": "jam", "subject": "A01", "active": "yes"}, "true or false"),
    ("alarm", {"alarm": "jam", "subject": "A01", "raised_utc": "yesterday"}, "RFC 3339"),
    ("status", {"state": "online", "session": -1}, "not a count"),
    ("status", {"state": "sleeping", "session": 3}, "'sleeping'"),
    ("state", {"boards_ready": True}, "not a count"),
    ("state", {"alarms": "none"}, "must be a list"),
    ("link", {"state": "sideways"}, "'sideways'"),
    ("metrics", {"boards": []}, "must be a map"),
    ("nonsense", {}, "unknown message kind"),
]


def test_bad_messages_are_ignored_whole_with_a_warning_naming_the_value() -> None:
    for kind, fields, says in BAD:
        m = bridge_model()
        before = (m.version, {k: vars(v).copy() for k, v in m.compartments.items()})
        assert not m.apply(kind, fields, T0), (kind, fields)
        assert m.warnings == 1 and m.last_warning is not None
        assert says in m.last_warning, (kind, m.last_warning)
        assert {k: vars(v) for k, v in m.compartments.items()} == before[1]
        assert m.feed.last_update is None


def test_a_bad_item_is_dropped_alone() -> None:
    m = bridge_model()
    rows = [
        {"compartment": "A01", "state": "loaded", "door": "closed"},
        {"compartment": "A02", "state": "??", "door": "closed"},
        "A03",
    ]
    assert m.apply("compartments", {"compartments": rows}, T0)
    assert m.compartments["A01"].state == "loaded"
    assert m.warnings == 2
    assert "compartments[2]" in (m.last_warning or "")


# ----- properties -----------------------------------------------------------------------

ids = st.sampled_from(["A01", "A02", "A03", "B01", "wall-a/3", "Z"])
boards = st.sampled_from(["wall-a", "wall-b", "x"])
opt = st.none  # an optional field left out as null
utc = st.builds(
    lambda s, ms: f"2026-11-{s % 28 + 1:02d}T{s % 24:02d}:{s % 60:02d}:{ms % 60:02d}.{ms:03d}Z",
    st.integers(0, 10_000),
    st.integers(0, 999),
)
valid = st.one_of(
    st.tuples(
        st.sampled_from(["layout", "config"]),
        st.fixed_dictionaries(
            {
                "compartments": st.lists(
                    st.fixed_dictionaries(
                        {"compartment": ids, "board": boards, "channel": st.integers(0, 16)}
                    ),
                    max_size=6,
                ),
                "boards": st.lists(
                    st.fixed_dictionaries(
                        {"board": boards, "state": st.sampled_from(["ready", "offline"])}
                    ),
                    max_size=3,
                ),
            }
        ),
    ),
    st.tuples(
        st.just("compartment"),
        st.fixed_dictionaries(
            {
                "compartment": ids,
                "state": st.sampled_from(STATES),
                "door": st.sampled_from(DOORS),
                "led": st.one_of(opt(), st.sampled_from(LEDS)),
            }
        ),
    ),
    st.tuples(
        st.just("compartments"),
        st.fixed_dictionaries(
            {
                "compartments": st.lists(
                    st.fixed_dictionaries(
                        {
                            "compartment": ids,
                            "state": st.sampled_from(STATES),
                            "door": st.sampled_from(DOORS),
                        }
                    ),
                    max_size=6,
                )
            }
        ),
    ),
    st.tuples(
        st.just("door"),
        st.fixed_dictionaries(
            {
                "door": st.one_of(ids, st.sampled_from(["entrance", "service"])),
                "state": st.sampled_from(DOORS),
            }
        ),
    ),
    st.tuples(
        st.just("alarm"),
        st.fixed_dictionaries(
            {
                "alarm": st.sampled_from(["jam", "forced_open", "tamper"]),
                "subject": ids,
                "active": st.booleans(),
                "detail": st.one_of(opt(), st.text(max_size=20)),
            },
            optional={"raised_utc": utc},
        ),
    ),
    st.tuples(
        st.just("state"),
        st.fixed_dictionaries(
            {
                "entrance": st.one_of(
                    st.sampled_from(MODES),
                    st.fixed_dictionaries(
                        {"mode": st.sampled_from(MODES), "door": st.sampled_from(DOORS)}
                    ),
                ),
                "boards_ready": st.integers(0, 3),
                "boards": st.integers(0, 3),
                "alarms": st.lists(
                    st.fixed_dictionaries(
                        {"alarm": st.sampled_from(["jam", "tamper"]), "subject": ids}
                    ),
                    max_size=3,
                ),
                "boards_detail": st.lists(
                    st.fixed_dictionaries(
                        {"board": boards, "state": st.sampled_from(["ready", "connecting"])}
                    ),
                    max_size=3,
                ),
            }
        ),
    ),
    st.tuples(
        st.just("slot"),
        st.fixed_dictionaries(
            {
                "unit": st.sampled_from(["return", "dropoff"]),
                "state": st.sampled_from(["idle", "open"]),
                "flap": st.sampled_from(DOORS),
            }
        ),
    ),
    st.tuples(
        st.just("status"),
        st.fixed_dictionaries(
            {
                "state": st.sampled_from(STATUSES),
                "session": st.integers(1, 5),
                "reason": st.one_of(opt(), st.text(max_size=20)),
            }
        ),
    ),
    st.tuples(
        st.just("link"),
        st.fixed_dictionaries(
            {
                "state": st.sampled_from(["connecting", "up", "down"]),
                "problem": st.one_of(opt(), st.text(max_size=20)),
            }
        ),
    ),
    st.tuples(st.just("alarms"), st.just({"alarms": []})),
)
garbage = st.tuples(
    st.one_of(
        st.sampled_from(["compartment", "alarm", "state", "layout", "status", "door", "link"]),
        st.text(max_size=8),
    ),
    st.recursive(
        st.one_of(
            st.none(), st.booleans(), st.integers(), st.text(max_size=10), st.binary(max_size=8)
        ),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(
                st.sampled_from(
                    [
                        "compartment",
                        "state",
                        "door",
                        "alarm",
                        "subject",
                        "active",
                        "compartments",
                        "alarms",
                        "session",
                        "led",
                        "entrance",
                    ]
                ),
                inner,
                max_size=5,
            ),
        ),
        max_leaves=12,
    ),
)


def consistent(m: WallModel) -> None:
    for cid, c in m.compartments.items():
        assert c.id == cid
        assert c.state is None or c.state in STATES
        assert c.door is None or c.door in DOORS
        assert c.led is None or c.led in LEDS
        assert c.board is None or c.board in m.boards
    for (name, subject), a in m.alarms.items():
        assert (a.name, a.subject) == (name, subject)
    for bid, b in m.boards.items():
        assert b.id == bid
    assert m.entrance_mode in (None, *MODES)
    assert isinstance(m.feed.link, Link)


@settings(max_examples=300, deadline=None)
@given(st.lists(valid, max_size=25))
def test_any_sequence_of_valid_messages_keeps_the_model_consistent(
    messages: list[tuple[str, dict[str, Any]]],
) -> None:
    m = WallModel(SourceKind.MQTT, "mqtt")
    best_session = 0
    for i, (kind, fields) in enumerate(messages):
        assert m.apply(kind, fields, T0 + i), (kind, fields, m.last_warning)
        consistent(m)
        if m.status is not None:
            assert m.status.session >= best_session  # never goes back
            best_session = m.status.session
    assert m.warnings == 0


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(valid, garbage), max_size=25))
def test_garbage_is_counted_never_raised(messages: list[tuple[str, Any]]) -> None:
    m = WallModel(SourceKind.BRIDGE, "bridge")
    for i, (kind, fields) in enumerate(messages):
        before = m.warnings
        accepted = m.apply(kind, fields, T0 + i)
        if not accepted:
            assert m.warnings > before and m.last_warning
        consistent(m)
