"""The wall's state: compartments (state, door, LED), boards, entrance, slots, alarms, the
terminal's MQTT status and the health of the feed, changed only by ``WallModel.apply``.

Sources (the kiosk bridge, MQTT, the terminal TOML) translate what they receive into
messages ``(kind, fields)`` of the vocabulary below; ``apply`` checks every field before
it changes anything, so a malformed message is ignored whole (an item of a list is
ignored alone) and counted as a warning, never raised. A field a terminal does not send
yet (an older daemon without ``led``) stays ``None``, which the view shows as "?".

- ``layout``: ``compartments`` [{compartment, board?, channel?, size?}], ``boards``
  [{board, state?, firmware?}]?, ``kiosk_id``?, ``site``? (the MQTT birth)
- ``config``: as ``layout``, from the terminal's TOML (not news from the terminal)
- ``compartments``: ``compartments`` [{compartment, state, door, led?, size?}], all of them
- ``compartment``: compartment, state?, door?, led?, size?
- ``door``: door (a compartment, ``entrance`` or ``service``), state
- ``state``: the bridge's ``state`` reply: entrance, boards_ready, boards, alarms,
  boards_detail [{board, state, error?, firmware?}], slots?, utc?
- ``terminal``: entrance, boards_ready, boards
- ``entrance``: mode?, door?
- ``slot``: unit, state?, flap?
- ``alarm``: alarm, subject, active?, detail?, raised_utc? (RFC 3339 text or UTC seconds)
- ``alarms``: ``alarms`` [{alarm, subject, detail?, raised_utc?}], every active alarm
- ``status``: state, session, reason?: the terminal's MQTT status (a lower session is
  ignored: a late last will)
- ``metrics``: boards {id: {state}}, utc?
- ``link``: state (connecting, up, down), problem?: the feed itself

Every accepted message but ``config`` and ``link`` counts as an update from the terminal.
Times from the terminal (an alarm's ``raised_utc``) are moved to the wall's clock by the
difference seen in live messages (the ``state`` reply's and the metrics' ``utc``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tools.wall.checks import (
    MAX_ID,
    Bad,
    Entrance,
    choice,
    count,
    entrance_of,
    ident,
    list_of,
    map_of,
    opt_choice,
    opt_count,
    opt_text,
    parse_utc,
    shown,
    text,
    time_of,
)
from tools.wall.views import (
    DOORS,
    LEDS,
    MODES,
    STATES,
    STATUSES,
    AlarmView,
    BoardView,
    CompartmentView,
    Feed,
    Link,
    SlotView,
    SourceKind,
    TerminalStatus,
)

__all__ = [
    "DOORS",
    "LEDS",
    "MODES",
    "STATES",
    "STATUSES",
    "AlarmView",
    "BoardView",
    "CompartmentView",
    "Feed",
    "Link",
    "SlotView",
    "SourceKind",
    "TerminalStatus",
    "WallModel",
    "parse_utc",
]

log = logging.getLogger(__name__)

RAISED_JITTER_S: Final = 2.0
_LOCAL: Final = frozenset({"config", "link"})  # not news from the terminal
_ALARM_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _settled(known: float | None, reported: float | None) -> float | None:
    """An alarm's raised time: the known one unless the report differs by more than the
    jitter of the clock-offset estimate (a report moved by a fresh offset every read)."""
    if reported is None or (known is not None and abs(known - reported) <= RAISED_JITTER_S):
        return known
    return reported


@dataclass
class WallModel:
    """See the module docstring. ``version`` grows with every change the view shows;
    ``warnings`` counts ignored messages and items, ``last_warning`` says why."""

    source: SourceKind
    description: str
    kiosk_id: str | None = None
    site: str | None = None
    compartments: dict[str, CompartmentView] = field(default_factory=dict)
    boards: dict[str, BoardView] = field(default_factory=dict)
    boards_ready: int | None = None  # as the terminal counts them (bridge)
    boards_total: int | None = None
    entrance_mode: str | None = None
    entrance_door: str | None = None
    service_door: str | None = None
    slots: dict[str, SlotView] = field(default_factory=dict)
    alarms: dict[tuple[str, str], AlarmView] = field(default_factory=dict)
    status: TerminalStatus | None = None
    clock_offset: float | None = None  # the wall's clock minus the terminal's, when known
    feed: Feed = field(init=False)
    have: set[str] = field(default_factory=set)
    version: int = 0
    warnings: int = 0
    last_warning: str | None = None

    def __post_init__(self) -> None:
        self.feed = Feed(self.description)
        self._now = 0.0
        self._dirty = False
        self._handlers: dict[str, Callable[[Mapping[str, Any]], None]] = {
            "layout": self._layout,
            "config": self._layout,
            "compartments": self._compartments,
            "compartment": self._compartment,
            "door": self._door,
            "state": self._state,
            "terminal": self._terminal,
            "entrance": self._entrance_msg,
            "slot": self._slot,
            "alarm": self._alarm,
            "alarms": self._alarms,
            "status": self._status,
            "metrics": self._metrics,
            "link": self._link,
        }

    # ----- the one entry point --------------------------------------------------------

    def apply(self, kind: str, fields: object, now: float) -> bool:
        """Apply one message at wall-clock time now (UTC seconds); False when it was
        ignored as malformed (counted in ``warnings``). Never raises for bad input."""
        self._now = now
        self._dirty = False
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        try:
            if handler is None:
                raise Bad(f"unknown message kind {shown(kind)}")
            handler(map_of(fields, kind))
        except Bad as exc:
            self._warn(f"{kind}: {exc}" if handler is not None else str(exc))
            return False
        finally:
            if self._dirty:
                self.version += 1
        if kind not in _LOCAL:
            self.feed.last_update = now
        self.have.add("layout" if kind == "config" else kind)
        return True

    @property
    def complete(self) -> bool:
        """The first full picture arrived: the bridge's state and compartment list; over
        MQTT the status, a layout and a state for every compartment of it."""
        if self.source is SourceKind.BRIDGE:
            return {"state", "compartments"} <= self.have
        return (
            {"status", "layout"} <= self.have
            and bool(self.compartments)
            and all(c.state is not None for c in self.compartments.values())
        )

    # ----- helpers --------------------------------------------------------------------

    def _warn(self, why: str) -> None:
        self.warnings += 1
        self.last_warning = why
        self._dirty = True
        log.debug("ignored: %s", why)

    def _put(self, obj: object, name: str, value: object) -> None:
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            self._dirty = True

    def _each(
        self, f: Mapping[str, Any], key: str, check: Callable[[Mapping[str, Any]], Any]
    ) -> list[Any]:
        """check() of every item of a list field, in order; an item that is no map or
        fails its check is ignored alone, with a warning."""
        out: list[Any] = []
        for i, item in enumerate(list_of(f.get(key), key)):
            try:
                out.append(check(map_of(item, f"item {i}")))
            except Bad as exc:
                self._warn(f"{key}[{i}]: {exc}")
        return out

    def _compartment_of(self, cid: str) -> CompartmentView:
        view = self.compartments.get(cid)
        if view is None:
            view = self.compartments[cid] = CompartmentView(cid)
            self._dirty = True
        return view

    def _board_of(self, bid: str) -> BoardView:
        view = self.boards.get(bid)
        if view is None:
            view = self.boards[bid] = BoardView(bid)
            self._dirty = True
        return view

    # ----- handlers: check everything first, then change -------------------------------

    def _layout(self, f: Mapping[str, Any]) -> None:
        kiosk = opt_text(f, "kiosk_id", limit=MAX_ID)
        site = opt_text(f, "site")

        def place(item: Mapping[str, Any]) -> tuple[str, str | None, int | None, str | None]:
            board = None if item.get("board") is None else ident(item, "board")
            size = None if item.get("size") is None else ident(item, "size")
            return ident(item, "compartment"), board, opt_count(item, "channel"), size

        def board(item: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
            return (
                ident(item, "board"),
                opt_text(item, "state", limit=MAX_ID),
                opt_text(item, "firmware", limit=MAX_ID),
            )

        list_of(f.get("compartments"), "compartments")
        if f.get("boards") is not None:
            list_of(f.get("boards"), "boards")
        places = self._each(f, "compartments", place)
        boards = self._each(f, "boards", board) if f.get("boards") is not None else []
        self._put(self, "kiosk_id", kiosk or self.kiosk_id)
        self._put(self, "site", site or self.site)
        old, self.compartments = self.compartments, {}
        for cid, bid, channel, size in places:
            view = old.pop(cid, None) or CompartmentView(cid)
            self.compartments[cid] = view
            self._put(view, "board", bid)
            self._put(view, "channel", channel)
            self._put(view, "size", size if size is not None else view.size)
        for cid, view in old.items():  # reported by the terminal but not in this layout
            if view.state is not None or view.door is not None:
                self.compartments[cid] = view
                self._put(view, "board", None)
                self._put(view, "channel", None)
        old_boards, self.boards = self.boards, {}
        for bid, state, firmware in boards:
            board_view = old_boards.pop(bid, None) or BoardView(bid)
            self.boards[bid] = board_view
            if state is not None:
                self._put(board_view, "state", state)
            if firmware is not None:
                self._put(board_view, "firmware", firmware)
        for view in self.compartments.values():
            bid = view.board
            if bid is not None and bid not in self.boards:
                found: BoardView | None = old_boards.pop(bid, None)
                self.boards[bid] = found if found is not None else BoardView(bid)
        self._dirty = True

    def _compartment_fields(
        self, f: Mapping[str, Any]
    ) -> tuple[str, str | None, str | None, str | None, str | None]:
        size = None if f.get("size") is None else ident(f, "size")
        return (
            ident(f, "compartment"),
            opt_choice(f, "state", STATES),
            opt_choice(f, "door", DOORS),
            opt_choice(f, "led", LEDS),
            size,
        )

    def _set_compartment(
        self, cid: str, state: str | None, door: str | None, led: str | None, size: str | None
    ) -> None:
        view = self._compartment_of(cid)
        for name, value in (("state", state), ("door", door), ("led", led), ("size", size)):
            if value is not None:
                self._put(view, name, value)

    def _compartments(self, f: Mapping[str, Any]) -> None:
        list_of(f.get("compartments"), "compartments")
        rows = self._each(f, "compartments", self._compartment_fields)
        listed = {row[0] for row in rows}
        for row in rows:
            self._set_compartment(*row)
        for cid, view in self.compartments.items():
            if cid not in listed:  # the terminal no longer knows it
                for name in ("state", "door", "led"):
                    self._put(view, name, None)

    def _compartment(self, f: Mapping[str, Any]) -> None:
        self._set_compartment(*self._compartment_fields(f))

    def _door(self, f: Mapping[str, Any]) -> None:
        name = ident(f, "door")
        state = choice(f, "state", DOORS)
        if name == "entrance":
            self._put(self, "entrance_door", state)
        elif name == "service":
            self._put(self, "service_door", state)
        else:
            self._put(self._compartment_of(name), "door", state)

    def _boards_detail(
        self, item: Mapping[str, Any]
    ) -> tuple[str, str | None, str | None, str | None]:
        return (
            ident(item, "board"),
            opt_text(item, "state", limit=MAX_ID),
            opt_text(item, "error"),
            opt_text(item, "firmware", limit=MAX_ID),
        )

    def _slot_fields(self, item: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
        return (
            ident(item, "unit"),
            opt_text(item, "state", limit=MAX_ID),
            opt_choice(item, "flap", DOORS),
        )

    def _alarm_fields(
        self, item: Mapping[str, Any], offset: float | None
    ) -> tuple[str, str, str | None, float | None]:
        """An alarm; its raised_utc moved from the terminal's clock to the wall's."""
        name = text(item, "alarm", limit=MAX_ID)
        if not _ALARM_NAME.fullmatch(name):
            raise Bad(f"alarm {shown(name)} is not an alarm name")
        raised = time_of(item, "raised_utc")
        if raised is not None:
            raised += offset or 0.0
        return name, ident(item, "subject"), opt_text(item, "detail"), raised

    def _terminal_counts(
        self, f: Mapping[str, Any]
    ) -> tuple[Entrance | None, int | None, int | None]:
        entrance = entrance_of(f["entrance"]) if f.get("entrance") is not None else None
        ready, total = opt_count(f, "boards_ready"), opt_count(f, "boards")
        return entrance, ready, total

    def _apply_terminal(
        self, entrance: Entrance | None, ready: int | None, total: int | None
    ) -> None:
        if entrance is not None:
            if entrance.mode is not None:
                self._put(self, "entrance_mode", entrance.mode)
            if entrance.door is not None:
                self._put(self, "entrance_door", entrance.door)
        if ready is not None:
            self._put(self, "boards_ready", ready)
        if total is not None:
            self._put(self, "boards_total", total)

    def _state(self, f: Mapping[str, Any]) -> None:
        kiosk = opt_text(f, "kiosk_id", limit=MAX_ID)
        utc = time_of(f, "utc")  # the terminal's clock as it answered
        offset = self._now - utc if utc is not None else self.clock_offset
        counts = self._terminal_counts(f)
        for key in ("alarms", "boards_detail", "slots"):
            if f.get(key) is not None:
                list_of(f.get(key), key)
        alarms = (
            self._each(f, "alarms", lambda item: self._alarm_fields(item, offset))
            if f.get("alarms") is not None
            else None
        )
        details = (
            self._each(f, "boards_detail", self._boards_detail)
            if f.get("boards_detail") is not None
            else []
        )
        slots = self._each(f, "slots", self._slot_fields) if f.get("slots") is not None else None
        if kiosk is not None:
            self._put(self, "kiosk_id", kiosk)
        self.clock_offset = offset
        self._apply_terminal(*counts)
        for bid, state, error, firmware in details:
            view = self._board_of(bid)
            self._put(view, "state", state)
            self._put(view, "error", error)
            if firmware is not None:
                self._put(view, "firmware", firmware)
        if slots is not None:
            self._replace_slots(slots)
        if alarms is not None:
            self._replace_alarms(alarms)

    def _terminal(self, f: Mapping[str, Any]) -> None:
        self._apply_terminal(*self._terminal_counts(f))

    def _entrance_msg(self, f: Mapping[str, Any]) -> None:
        entrance = entrance_of(f)
        self._apply_terminal(entrance, None, None)

    def _slot(self, f: Mapping[str, Any]) -> None:
        unit, state, flap = self._slot_fields(f)
        view = self.slots.get(unit)
        if view is None:
            view = self.slots[unit] = SlotView(unit)
            self._dirty = True
        if state is not None:
            self._put(view, "state", state)
        if flap is not None:
            self._put(view, "flap", flap)

    def _replace_slots(self, slots: list[tuple[str, str | None, str | None]]) -> None:
        new = {unit: SlotView(unit, state, flap) for unit, state, flap in slots}
        if new != self.slots:
            self.slots = new
            self._dirty = True

    def _alarm(self, f: Mapping[str, Any]) -> None:
        active = f.get("active", True)
        if not isinstance(active, bool):
            raise Bad(f"active must be true or false, got {shown(active)}")
        if active:
            name, subject, detail, raised = self._alarm_fields(f, self.clock_offset)
        else:  # a clear needs only the name and the subject
            name = text(f, "alarm", limit=MAX_ID)
            subject = ident(f, "subject")
        key = (name, subject)
        if not active:
            if self.alarms.pop(key, None) is not None:
                self._dirty = True
            return
        known = self.alarms.get(key)
        if known is None:
            # a live notice without a time: it was raised just now
            self.alarms[key] = AlarmView(name, subject, detail, raised or self._now, self._now)
            self._dirty = True
            return
        self._put(known, "detail", detail)
        self._put(known, "raised", _settled(known.raised, raised))

    def _alarms(self, f: Mapping[str, Any]) -> None:
        list_of(f.get("alarms"), "alarms")
        offset = self.clock_offset
        self._replace_alarms(self._each(f, "alarms", lambda i: self._alarm_fields(i, offset)))

    def _replace_alarms(self, alarms: list[tuple[str, str, str | None, float | None]]) -> None:
        """A full list: alarms known before keep when they were raised and seen."""
        new: dict[tuple[str, str], AlarmView] = {}
        for name, subject, detail, raised in alarms:
            known = self.alarms.get((name, subject))
            if known is not None:
                new[(name, subject)] = AlarmView(
                    name,
                    subject,
                    detail,
                    _settled(known.raised, raised),
                    known.seen,
                )
            else:
                new[(name, subject)] = AlarmView(name, subject, detail, raised, self._now)
        if new != self.alarms:
            self.alarms = new
            self._dirty = True

    def _status(self, f: Mapping[str, Any]) -> None:
        state = choice(f, "state", STATUSES)
        session = count(f, "session")
        reason = opt_text(f, "reason")
        if self.status is not None and session < self.status.session:
            return  # a late will of an earlier connection (docs/mqtt/README.md)
        new = TerminalStatus(state, session, reason)
        if new != self.status:
            self.status = new
            self._dirty = True

    def _metrics(self, f: Mapping[str, Any]) -> None:
        boards = map_of(f.get("boards"), "boards")
        utc = time_of(f, "utc")  # metrics are live, never retained: a fair reading of its clock
        states: list[tuple[str, str]] = []
        for bid, value in boards.items():
            try:
                item = map_of(value, f"boards[{shown(bid)}]")
                board = ident({"board": bid}, "board")
                states.append((board, text(item, "state", limit=MAX_ID)))
            except Bad as exc:
                self._warn(f"boards: {exc}")
        if utc is not None:
            self.clock_offset = self._now - utc
        for bid, state in states:
            self._put(self._board_of(bid), "state", state)

    def _link(self, f: Mapping[str, Any]) -> None:
        value = f.get("state")
        try:
            link = Link(value)
        except ValueError:
            raise Bad(f"state {shown(value)} is not one of connecting, up, down") from None
        problem = opt_text(f, "problem")
        if link is not self.feed.link:
            self.feed.link = link
            self.feed.since = self._now
            self._dirty = True
        self._put(self.feed, "problem", problem)
