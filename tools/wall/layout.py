"""Where each compartment sits on the screen: grouped by board (in the layout's order),
ordered by channel, in rows of a number of columns that fits the terminal's width."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from tools.wall.model import WallModel
from tools.wall.views import CompartmentView

MIN_INNER: Final = 16  # characters inside a cell: "A01 [L] loaded" and "door closed"
MAX_INNER: Final = 30
FIXED: Final = 14  # a cell's line 1 beyond the id: " [L] " and a state word of up to 9


@dataclass(frozen=True)
class Group:
    """The compartments of one board (None: board unknown), row by row."""

    board: str | None
    rows: tuple[tuple[str, ...], ...]


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """A01 < A2 < A10: digits compare as numbers."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text) if part
    )


def _order(view: CompartmentView) -> tuple[int, int, tuple[tuple[int, int | str], ...]]:
    return (view.channel is None, view.channel or 0, _natural(view.id))


def inner_width(model: WallModel) -> int:
    """Characters inside one cell: enough for the longest id, within limits."""
    longest = max((len(c) for c in model.compartments), default=3)
    return max(MIN_INNER, min(MAX_INNER, longest + FIXED))


def fit_columns(width: int, inner: int, requested: int | None = None) -> int:
    """Cells per row: ``requested`` when given, else as many as fit in width (at least 1).
    A row of n cells takes n * (inner + 1) + 1 characters."""
    if requested is not None:
        return max(1, requested)
    return max(1, (width - 1) // (inner + 1))


def arrange(model: WallModel, columns: int) -> list[Group]:
    """The groups in display order: boards of the layout first, then other boards by
    name, then compartments of no known board."""
    by_board: dict[str | None, list[CompartmentView]] = {}
    for view in model.compartments.values():
        by_board.setdefault(view.board, []).append(view)
    order: list[str | None] = [b for b in model.boards if b in by_board]
    others: list[str] = [b for b in by_board if b is not None and b not in model.boards]
    others.sort(key=_natural)
    order += others
    if None in by_board:
        order.append(None)
    columns = max(1, columns)
    groups = []
    for board in order:
        ids = [v.id for v in sorted(by_board[board], key=_order)]
        rows = tuple(tuple(ids[i : i + columns]) for i in range(0, len(ids), columns))
        groups.append(Group(board, rows))
    return groups
