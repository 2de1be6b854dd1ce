"""Names that differ between CPython and MicroPython, defined once."""

__all__ = ["TICKS_PERIOD", "const", "equal_constant_time", "ticks_diff"]

TYPE_CHECKING = False  # mypy treats this name as true; MicroPython has no typing module
if TYPE_CHECKING:

    def const(value: int) -> int:
        """MicroPython's compile-time constant marker; identity on CPython."""
        return value

else:
    try:
        from micropython import const
    except ImportError:  # CPython

        def const(value):
            return value


try:
    from hmac import compare_digest as _compare_digest  # pyright: ignore[reportMissingImports]
except ImportError:  # MicroPython has no hmac module
    _compare_digest = None  # type: ignore[assignment]


def equal_constant_time(a: bytes, b: "bytes | memoryview") -> bool:
    """True when a == b; the time taken does not depend on where they differ."""
    if _compare_digest is not None:
        return bool(_compare_digest(a, b))
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


TICKS_PERIOD = const(1 << 30)  # clocks given to the protocol may wrap here, like time.ticks_ms
_TICKS_MASK = const((1 << 30) - 1)
_TICKS_HALF = const(1 << 29)


def ticks_diff(later: int, earlier: int) -> int:
    """later - earlier in ms for clocks that wrap at TICKS_PERIOD (signed, |d| < 2**29)."""
    return ((later - earlier + _TICKS_HALF) & _TICKS_MASK) - _TICKS_HALF
