"""The wall model as lines of text: a header (terminal, source and freshness, boards,
entrance and slots), the compartment grid per board, active alarms and a legend.

Every line fits ``width`` characters. With ``color`` states are coloured with ANSI SGR
codes; without, every cell still carries its state letter (``[L]`` loaded) and word, so
the frame reads the same on any terminal, in a pipe and in tests. Text from the terminal
(ids, details, reasons) is shown with control characters replaced by "?", so no message
can move the cursor or change the terminal's settings.
"""

from __future__ import annotations

from typing import Final

from tools.wall.layout import arrange, fit_columns, inner_width
from tools.wall.model import WallModel
from tools.wall.views import CompartmentView, Link, SourceKind

Seg = tuple[str, str]  # (text, SGR parameters; "" for plain)
Line = list[Seg]

# state -> (letter, short word, SGR style)
STATE_LOOK: Final[dict[str | None, tuple[str, str, str]]] = {
    "empty": ("E", "empty", "32"),
    "loading": ("I", "loading", "36"),
    "loaded": ("L", "loaded", "1;34"),
    "opening": ("P", "opening", "1;36"),
    "open": ("O", "open", "1;96"),
    "emptied": ("T", "emptied", "36"),
    "expired": ("X", "expired", "33"),
    "jammed": ("J", "JAMMED", "1;97;41"),
    "forced": ("F", "FORCED", "1;97;41"),
    "held_open": ("H", "held-open", "1;30;43"),
    "out_of_service": ("S", "out-svc", "35"),
    "unknown": ("U", "unknown", "90"),
    None: ("?", "?", "2"),
}
LEGEND_WORDS: Final[dict[str | None, str]] = {
    "held_open": "held open",
    "out_of_service": "out of service",
    None: "no data",
}
LED_WORDS: Final[dict[str | None, str]] = {
    "off": "off",
    "on": "on",
    "blink": "blink",
    "none": "-",
    None: "?",
}
OK_STYLE: Final = "32"
WARN_STYLE: Final = "1;33"
BAD_STYLE: Final = "1;31"
TITLE_STYLE: Final = "1"
SEP: Final = " | "
UNITS: Final = {"return": "return slot", "dropoff": "drop-off slot"}


def clean(text: str) -> str:
    """Text safe to print: control and other non-printable characters become "?"."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def age(seconds: float) -> str:
    """A duration for people: 12 s, 3 min, 2 h, 4 d."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


def emit(line: Line, width: int, color: bool) -> str:
    """One line as text, cut to width visible characters, with SGR codes when color."""
    out: list[str] = []
    left = max(0, width)
    for text, style in line:
        if left <= 0:
            break
        piece = clean(text)[:left]
        left -= len(piece)
        out.append(f"\x1b[{style}m{piece}\x1b[0m" if color and style and piece else piece)
    text = "".join(out)
    return text if color else text.rstrip()


def wrap(label: Line, items: list[Line], width: int) -> list[Line]:
    """label followed by items joined with " | ", continued on indented lines."""
    lines: list[Line] = []
    current: Line = list(label)
    used = sum(len(t) for t, _ in current)
    indent = "  "
    fresh = True
    for item in items:
        size = sum(len(t) for t, _ in item)
        gap = 0 if fresh else len(SEP)
        if not fresh and used + gap + size > width:
            lines.append(current)
            current, used, fresh, gap = [(indent, "")], len(indent), True, 0
        if not fresh:
            current.append((SEP, ""))
        current.extend(item)
        used += gap + size
        fresh = False
    lines.append(current)
    return lines


def freshness(model: WallModel, now: float, stale_s: float) -> tuple[str, bool]:
    """How current the picture is, in words, and whether that is a problem."""
    feed = model.feed
    peer = "daemon" if model.source is SourceKind.BRIDGE else "broker"
    problem = f" ({feed.problem})" if feed.problem else ""
    if feed.link is Link.DOWN:
        return f"{peer} not reachable, retrying{problem}", True
    if feed.link is Link.CONNECTING:
        return f"connecting to the {peer}{problem}", bool(problem)
    status = model.status
    if model.source is SourceKind.MQTT and status is not None and status.state == "offline":
        if status.reason == "connection lost":
            return "terminal offline (last will)", True
        return f"terminal offline ({status.reason or 'no reason given'})", True
    if feed.last_update is None:
        if model.source is SourceKind.MQTT and feed.since is not None and now - feed.since > 5:
            # the broker filters what an account may not read: silence, not an error
            return "connected, but nothing arrived: check --kiosk and the account's rights", True
        return "waiting for data", False
    if now - feed.last_update > stale_s:
        return f"no update for {age(now - feed.last_update)}", True
    return "live", False


def _header(model: WallModel, now: float, width: int, stale_s: float) -> list[Line]:
    lines: list[Line] = []
    title: Line = [("amtomat wall", TITLE_STYLE), (SEP, ""), (model.kiosk_id or "?", TITLE_STYLE)]
    if model.site:
        title += [(SEP, ""), (model.site, "")]
    lines.append(title)
    fresh, bad = freshness(model, now, stale_s)
    last = model.feed.last_update
    when = "no data yet" if last is None else f"last update {age(now - last)} ago"
    lines += wrap(
        [("source: ", "")],
        [[(model.feed.description, "")], [(fresh, BAD_STYLE if bad else OK_STYLE)], [(when, "")]],
        width,
    )
    if model.source is SourceKind.MQTT:
        lines.append(_status_line(model))
    lines += wrap([("boards: ", "")], _board_items(model), width)
    lines += wrap([], _unit_items(model), width)
    if model.warnings:
        lines.append(
            [
                (
                    f"ignored {model.warnings} malformed message(s) or item(s); "
                    f"last: {model.last_warning}",
                    WARN_STYLE,
                )
            ]
        )
    return lines


def _status_line(model: WallModel) -> Line:
    status = model.status
    if status is None:
        return [("terminal: ", ""), ("? (no status received yet)", WARN_STYLE)]
    style = {"online": OK_STYLE, "degraded": WARN_STYLE, "maintenance": WARN_STYLE}.get(
        status.state, BAD_STYLE
    )
    text = status.state
    if status.state == "offline" and status.reason == "connection lost":
        text += " (last will: connection lost)"
    elif status.reason:
        text += f" ({status.reason})"
    return [("terminal: ", ""), (text, style), (f", session {status.session}", "")]


def _board_items(model: WallModel) -> list[Line]:
    boards = list(model.boards.values())
    ready = model.boards_ready
    total = model.boards_total
    if ready is None and boards and all(b.state is not None for b in boards):
        ready = sum(1 for b in boards if b.state == "ready")
    if total is None and boards:
        total = len(boards)
    count = f"{'?' if ready is None else ready}/{'?' if total is None else total} ready"
    good = ready is not None and total is not None and ready >= total
    items: list[Line] = [[(count, OK_STYLE if good else WARN_STYLE)]]
    for b in boards:
        state = b.state or "?"
        extra = f" ({b.error})" if b.error else (f" (fw {b.firmware})" if b.firmware else "")
        style = OK_STYLE if state == "ready" else BAD_STYLE
        items.append([(f"{b.id} ", ""), (state, style), (extra, "")])
    return items


def _unit_items(model: WallModel) -> list[Line]:
    door = model.entrance_door
    mode = model.entrance_mode
    items: list[Line] = [
        [
            ("entrance: ", ""),
            (mode or "?", BAD_STYLE if mode == "lockdown" else ""),
            (", door ", ""),
            (door or "?", WARN_STYLE if door == "open" else ""),
        ]
    ]
    if not model.slots:
        items.append([("slots: ?", "")])
    for slot in model.slots.values():
        items.append(
            [
                (f"{UNITS.get(slot.unit, slot.unit)}: {slot.state or '?'}, flap ", ""),
                (slot.flap or "?", WARN_STYLE if slot.flap == "open" else ""),
            ]
        )
    if model.service_door is not None:
        style = WARN_STYLE if model.service_door == "open" else ""
        items.append([("service door: ", ""), (model.service_door, style)])
    return items


def _fit(line: Line, size: int) -> Line:
    """line cut or padded with blanks to exactly size visible characters."""
    out: Line = []
    left = size
    for text, style in line:
        piece = text[: max(0, left)]
        if piece:
            out.append((piece, style))
        left -= len(piece)
    if left > 0:
        out.append((" " * left, ""))
    return out


def _cell(view: CompartmentView, inner: int) -> list[Line]:
    """A cell's three lines: id, state letter and word; door; LED and size."""
    letter, word, style = STATE_LOOK.get(view.state, STATE_LOOK[None])
    room = inner - len(f" [{letter}] {word}")
    ident = view.id if len(view.id) <= room else view.id[: max(1, room - 1)] + "~"
    door = view.door or "?"
    led = LED_WORDS.get(view.led, "?")
    size = view.size or ""
    pad = max(1, inner - 5 - len(led) - len(size))
    door_style = WARN_STYLE if view.door == "open" else ""
    led_style = {"on": "1;93", "blink": "5;1;93"}.get(view.led or "", "")
    return [
        _fit([(f"{ident} [{letter}] {word}".ljust(inner), style)], inner),
        _fit([("door ", ""), (door, door_style)], inner),
        _fit([("led  ", ""), (led, led_style), (" " * pad + size, "")], inner),
    ]


def _grid(model: WallModel, width: int, columns: int | None) -> list[Line]:
    inner = inner_width(model)
    cols = fit_columns(width, inner, columns)
    lines: list[Line] = []
    for group in arrange(model, cols):
        lines.append([])
        if group.board is None:
            lines.append([("compartments of no known board", TITLE_STYLE)])
        else:
            board = model.boards.get(group.board)
            state = board.state if board is not None and board.state else "?"
            lines.append(
                [
                    (group.board, TITLE_STYLE),
                    ("  ", ""),
                    (state, OK_STYLE if state == "ready" else BAD_STYLE),
                ]
            )
        previous = len(group.rows[0]) if group.rows else 0
        lines.append([(_border(previous, inner), "")])
        for row in group.rows:
            cells = [_cell(model.compartments[cid], inner) for cid in row]
            for i in range(3):
                line: Line = [("|", "")]
                for cell in cells:
                    line += cell[i]
                    line.append(("|", ""))
                lines.append(line)
            lines.append([(_border(len(row), inner), "")])
    return lines


def _border(cells: int, inner: int) -> str:
    return "+" + "+".join("-" * inner for _ in range(cells)) + "+"


def _alarms(model: WallModel, now: float) -> list[Line]:
    if not model.alarms:
        return [[("alarms: ", ""), ("none", OK_STYLE)]]
    alarms = sorted(model.alarms.values(), key=lambda a: a.since, reverse=True)
    lines: list[Line] = [
        [(f"alarms: {len(alarms)} active, newest first", BAD_STYLE)],
    ]
    name_w = max(len(a.name) for a in alarms)
    subject_w = max(len(a.subject) for a in alarms)
    for a in alarms:
        when = age(now - a.since)
        if a.raised is None:
            when = ">" + when  # active at least since the wall first saw it
        lines.append(
            [
                ("  ", ""),
                (a.name.ljust(name_w), BAD_STYLE),
                ("  ", ""),
                (a.subject.ljust(subject_w), ""),
                ("  ", ""),
                (when.rjust(7), ""),
                ("  ", ""),
                (a.detail or "", ""),
            ]
        )
    return lines


def _legend(width: int) -> list[Line]:
    items: list[Line] = []
    for state, (letter, word, style) in STATE_LOOK.items():
        items.append([(f"[{letter}] {LEGEND_WORDS.get(state, word.lower())}", style)])
    items.append([("door open/closed, led on/blink/off/- (none)", "")])
    return wrap([("legend: ", "")], items, width)


def render(
    model: WallModel,
    now: float,
    *,
    width: int,
    columns: int | None = None,
    color: bool = False,
    stale_s: float = 10.0,
) -> list[str]:
    """One frame: the lines to show, each at most width characters (visible)."""
    width = max(20, width)
    lines = _header(model, now, width, stale_s)
    if model.compartments:
        lines += _grid(model, width, columns)
    else:
        lines += [[], [("no compartments known yet", WARN_STYLE)]]
    lines.append([])
    lines += _alarms(model, now)
    lines.append([])
    lines += _legend(width)
    return [emit(line, width, color) for line in lines]
