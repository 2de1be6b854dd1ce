"""A base for objects that own a resource and are used in ``with`` blocks."""

from __future__ import annotations

from typing import Self


class Closeable:
    """``with obj:`` closes obj on the way out, whatever happened inside."""

    def close(self) -> None:
        """Release what the object holds; subclasses implement it."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
