"""Debounced inputs: a raw level counts once it has held for the debounce time."""

from protocol.compat import ticks_diff


class Debouncer:
    """Stable levels of n inputs; ``update`` reports each accepted change once."""

    def __init__(self, n, debounce_ms):
        self.debounce_ms = debounce_ms
        self.stable = bytearray(n)  # accepted level, 0 or 1
        self._raw = bytearray(n)  # level seen on the previous pass
        self._since = [0] * n  # when the raw level last changed
        self._primed = False

    def update(self, raw, now, on_change):
        """Take this pass's raw levels; calls on_change(index, level, now) per accepted edge.

        The first pass adopts the raw levels without reporting them: the host reads the
        initial state with an ``inputs`` request."""
        stable = self.stable
        last = self._raw
        since = self._since
        if not self._primed:
            for i in range(len(raw)):
                stable[i] = last[i] = raw[i]
                since[i] = now
            self._primed = True
            return
        for i in range(len(raw)):
            level = raw[i]
            if level != last[i]:
                last[i] = level
                since[i] = now
            elif level != stable[i] and ticks_diff(now, since[i]) >= self.debounce_ms:
                stable[i] = level
                on_change(i, level, now)
