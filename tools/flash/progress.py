"""What the installer sees: step lines, and for long steps a progress bar on a terminal or
one plain line per item otherwise (a log, a pipe, a test)."""

from __future__ import annotations

from typing import TextIO


def human_size(n: int) -> str:
    """``512 B``, ``12.3 KB``, ``1.4 MB`` (powers of 1024)."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


class Progress:
    """Step lines and bars on out; ``tty`` None asks out.isatty()."""

    def __init__(self, out: TextIO, tty: bool | None = None, width: int = 30) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.width = width

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def step(self, text: str) -> None:
        """A new step of the flow."""
        self._line(f"==> {text}")

    def note(self, text: str) -> None:
        """A detail of the current step."""
        self._line(f"    {text}")

    def warn(self, text: str) -> None:
        """Something the installer should know; flashing goes on."""
        self._line(f"    warning: {text}")

    def bar(self, verb: str, total: int, count: int) -> Bar:
        """A bar over total bytes in count items, e.g. ``bar("copy", 54000, 23)``."""
        return Bar(self, verb, total, count)


class Bar:
    """Progress over bytes of several items; see ``Progress.bar``."""

    def __init__(self, progress: Progress, verb: str, total: int, count: int) -> None:
        self.p = progress
        self.verb = verb
        self.total = max(total, 1)
        self.count = count
        self.done = 0
        self._item_done = 0
        self._item = ""
        self._index = 0
        self._shown = -1
        if not progress.tty:
            progress.note(f"{verb} {count} file{'' if count == 1 else 's'}, {human_size(total)}")

    def item(self, name: str, size: int) -> None:
        """The next item starts."""
        self.done += self._item_done
        self._item_done = 0
        self._item = name
        self._index += 1
        if self.p.tty:
            self._draw(force=True)
        else:
            self.p.note(f"{self.verb} {name} ({human_size(size)}) [{self._index}/{self.count}]")

    def update(self, item_done: int) -> None:
        """Bytes of the current item done so far."""
        self._item_done = item_done
        if self.p.tty:
            self._draw()

    def finish(self) -> None:
        """All items done: the bar ends its line."""
        self.done += self._item_done
        self._item_done = 0
        if self.p.tty:
            self._draw(force=True)
            self.p.out.write("\n")
            self.p.out.flush()

    def _draw(self, force: bool = False) -> None:
        done = min(self.done + self._item_done, self.total)
        percent = done * 100 // self.total
        if percent == self._shown and not force:
            return
        self._shown = percent
        width = self.p.width
        filled = width * done // self.total
        bar = "#" * filled + "-" * (width - filled)
        sizes = f"{human_size(done)}/{human_size(self.total)}"
        text = f"\r    [{bar}] {percent:3d}% {sizes} {self._item}"
        self.p.out.write(text[:120].ljust(120))
        self.p.out.flush()
