"""VM side of a simulated board: the real firmware runtime on the fake ``machine``.

The host (``tools.sim.vmboard.VMBoard``) installs this as ``/lib/simboard.py`` next to
``/lib/machine.py`` (the fake), ``/lib/amtfw`` and ``/lib/protocol``, writes the board's
files, and then drives it with one ``exec`` per call:

- ``boot(reset_cause, seed, now, levels, devices, app, ctrl_c)``: a fresh board.
- ``tick(now, rx, levels)``: one main-loop pass at simulated time ``now`` (ms); returns a
  line.
- ``files()``: the board's flash files (top-level files of ``/``), for a power cut.

Each returns one line: ``MARK`` followed by JSON. Bytes travel as hex; pins are GPIO
numbers or expander pin names ("mcp0:A3"); edges are ``[sim_time_ms, pin, level]``.
The board's ``time.ticks_ms()`` starts at 0 at every boot, as on hardware.

What main.py does on a board is done here too: a crash turns the outputs off, writes the
crash file and resets; a ReplHandover or a Ctrl-C (0x03 from the host while the REPL
window is open on a USB link) leaves the board in the REPL, which prints its banner on
the USB port.
"""

import json
import os

import machine  # type: ignore[import-not-found]

from amtfw import config, platform, runtime

TYPE_CHECKING = False  # mypy treats this name as true; MicroPython has no typing module
if TYPE_CHECKING:
    from typing import Any

MARK = "@@SIMBOARD@@"
TICKS_MASK = 0x3FFFFFFF
REPL_BANNER = (
    b"MicroPython v1.29.0 on 2025-12-01; Raspberry Pi Pico with RP2040\r\n"
    b'Type "help()" for more information.\r\n>>> '
)
RUNNING = "running"
REPL = "repl"  # the firmware stopped; the REPL has the port
DEAD = "dead"  # reset: the host must boot a fresh VM


class BufferPort:
    """The host port as two byte buffers; same interface as hardware.UsbPort."""

    def __init__(self) -> None:
        self._rx = bytearray()
        self.tx = bytearray()
        self.started = False
        self.released = False

    def start(self) -> None:
        self.started = True

    def release(self) -> None:
        self.started = False
        self.released = True

    def receive(self, data: bytes) -> None:
        self._rx.extend(data)

    def readinto(self, buf: bytearray) -> int:
        n = min(len(buf), len(self._rx))
        if n:
            buf[:n] = self._rx[:n]
            self._rx = self._rx[n:]  # MicroPython's bytearray has no slice deletion
        return n

    def write(self, data: "bytes | bytearray | memoryview") -> None:
        self.tx.extend(data)

    def take(self) -> bytes:
        data = bytes(self.tx)
        self.tx = bytearray()
        return data


def _no_sleep(ms: int) -> None:
    return None


def _app_class(name: str) -> "Any":
    module = __import__(name)
    for part in name.split(".")[1:]:
        module = getattr(module, part)
    return module.BoardApp


class Board:
    def __init__(
        self,
        reset_cause: str,
        seed: int,
        now: int,
        levels: "dict[int | str, int] | None",
        devices: "dict[str, str] | None",
        app: str,
        ctrl_c: bool = True,
    ) -> None:
        machine.sim_reset_state(machine.RESET_CAUSES[reset_cause], now=now)
        self.boot_now = now
        self.usb = True
        self.ctrl_c = ctrl_c  # emulate 0x03 stopping the firmware inside the REPL window
        self._attach_expanders(devices or {})
        for pin in levels or {}:
            machine.sim_set_level(pin, (levels or {})[pin])
        self.port = BufferPort()
        self.state = RUNNING
        self.error: str | None = None
        self.action: str | None = None
        self.rt: Any = None
        try:
            self.rt = runtime.Runtime(
                machine, self.port, now=0, seed=seed, app_class=_app_class(app), sleep_ms=_no_sleep
            )
        except runtime.ReplHandover as exc:
            self._to_repl(exc, "recovery")
        except machine.SimReset:
            self.state = DEAD
            self.action = "reset"
        except Exception as exc:
            self._crash(exc)

    def _attach_expanders(self, devices: "dict[str, str]") -> None:
        raw = platform.read_file(config.CONFIG_PATH)
        if raw is None:
            return
        try:
            cfg = config.parse(raw)
        except config.ConfigError:
            return
        self.usb = cfg.link.get("type") != "rs485"
        for i in range(len(cfg.expanders)):
            e = cfg.expanders[i]
            name = f"mcp{i}"
            dev = machine.sim_attach_mcp23017(e["i2c"], e["address"], name)
            if name in devices:
                dev.sim_restore(devices[name])

    def _to_repl(self, exc: BaseException, action: str) -> None:
        self.state = REPL
        self.action = action
        if self.rt is not None:
            self.rt.shutdown()
        if self.usb:  # why the firmware stopped, then the REPL starts on the same port
            if isinstance(exc, KeyboardInterrupt):
                why = "Traceback (most recent call last):\r\nKeyboardInterrupt: \r\n"
            else:
                why = f"amtfw: {exc}\r\n"  # printed by runtime.main()
            self.port.write(why.encode() + REPL_BANNER)

    def _crash(self, exc: BaseException) -> None:
        # main.py: outputs off (runtime.main's finally), crash file, machine.reset()
        if self.rt is not None:
            self.rt.shutdown()
        platform.record_crash(exc)
        self.error = platform.format_exception(exc)
        self.state = DEAD
        self.action = "crash"

    def tick(self, now: int, rx: bytes) -> None:
        self.action = None
        if self.state != RUNNING:
            return  # in the REPL (bytes go to it) or reset
        if rx:
            if self.usb and self.ctrl_c and not self.port.started and 3 in rx:
                # USB with the keyboard interrupt still on: 0x03 raises KeyboardInterrupt
                self._to_repl(KeyboardInterrupt(), "interrupt")
                return
            self.port.receive(rx)
        try:
            self.rt.run_once((now - self.boot_now) & TICKS_MASK)
        except runtime.ReplHandover as exc:
            self._to_repl(exc, "repl")
        except machine.SimReset:
            self.state = DEAD
            self.action = "reset"
        except Exception as exc:
            self._crash(exc)

    def report(self, now: int, extra: "dict[str, Any] | None" = None) -> str:
        machine.sim_advance(now)
        wdt_ok = machine.sim_wdt_ok(now)
        out: dict[str, Any] = {
            "tx": self.port.take().hex(),
            "edges": [[t, pin, level] for (t, pin, level) in machine.sim_take_edges()],
            "action": self.action,
            "state": self.state,
            "wdt_ok": wdt_ok,
            "error": self.error,
            "usb": self.usb,
        }
        self.error = None
        if extra:
            out.update(extra)
        return MARK + json.dumps(out)


board: Board | None = None


def boot(
    reset_cause: str = "power",
    seed: int = 0,
    now: int = 0,
    levels: "dict[int | str, int] | None" = None,
    devices: "dict[str, str] | None" = None,
    app: str = "amtfw.app",
    ctrl_c: bool = True,
) -> str:
    """Start a board at simulated time now; the line carries boot edges and ``info``."""
    global board
    board = Board(reset_cause, seed, now, levels, devices, app, ctrl_c)
    info = board.rt.info if board.rt is not None else None
    return board.report(now, {"info": info})


def tick(now: int, rx: bytes = b"", levels: "dict[int | str, int] | None" = None) -> str:
    """One loop pass at simulated time now with rx from the host and input levels."""
    b = board
    assert b is not None, "boot() first"
    machine.sim_set_time(now)
    if levels:
        for pin in levels:
            machine.sim_set_level(pin, levels[pin])
    b.tick(now, rx)
    return b.report(now)


def device_state() -> str:
    """MCP23017 registers, which survive a reset of the microcontroller."""
    devices = {name: dev.sim_state() for name, dev in machine.sim.named.items()}
    return MARK + json.dumps({"devices": devices})


def files() -> str:
    """Top-level files of ``/`` (the board's flash besides the code) as hex."""
    out = {}
    for name in os.listdir("/"):
        path = "/" + name
        if os.stat(path)[0] & 0x8000:  # a regular file
            data = platform.read_file(path)
            if data is not None:
                out[path] = data.hex()
    return MARK + json.dumps(out)
