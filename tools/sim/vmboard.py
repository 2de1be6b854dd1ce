"""One simulated board: the real firmware in an npm MicroPython VM on a fake ``machine``.

``VMBoard`` starts a ``NodeMicroPython``, installs ``protocol/`` (as ``/lib/protocol``),
``firmware_micropython/amtfw`` (as ``/lib/amtfw``), the fake ``machine`` and the VM-side
driver ``simboard`` (``tools/sim/vm``, as ``/lib/machine.py`` and ``/lib/simboard.py``),
writes the board's flash files (``/amtomat.json``, ``/amtomat.key``) and boots the
firmware's ``Runtime`` with a buffer port in place of USB or RS-485.

Each ``tick`` is one pass of the firmware's main loop and one ``exec`` round trip: bytes
from the host and changed input levels go in; bytes to the host, output edges, the
action the firmware took and the watchdog's state come out.

Resets are the caller's to carry out, as on hardware where the board just restarts:
after a tick whose ``action`` is ``"reset"`` or ``"crash"`` or whose ``wdt_ok`` is False,
call ``reboot(cause)``. ``reboot`` and ``power_cut``/``power_on`` keep the board's flash
files (config, key, crash file); ``reboot`` also keeps the MCP23017 latches, which a
microcontroller reset does not clear, while a power cut turns every output off.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Final

from protocol.compat import TICKS_PERIOD
from protocol.crypto import KEY_LEN
from tools.closeable import Closeable
from tools.mpvm import (
    DEFAULT_TIMEOUT,
    REPO_ROOT,
    MicroPythonError,
    NodeMicroPython,
    python_files,
)

Pin = int | str
"""A GPIO number or an expander pin name as in the board config ("mcp0:A3")."""
Edge = tuple[int, Pin, int]
"""(simulated ms, pin, physical level) of an output change."""

MARK: Final = "@@SIMBOARD@@"  # simboard.MARK: starts the JSON line of every reply
TICKS_MASK: Final = TICKS_PERIOD - 1
CONFIG_PATH: Final = "/amtomat.json"
KEY_PATH: Final = "/amtomat.key"
RESET_CAUSES: Final = ("power", "watchdog", "hard", "soft", "deepsleep")
DEFAULT_BOARD_HEAP: Final = 1024 * 1024
"""MicroPython heap of a simulated board. A Pico has about 190 KB free; the VM also
compiles the firmware from source and runs the simulator's glue, so it gets more."""

SIM_VM_DIR: Final = REPO_ROOT / "tools" / "sim" / "vm"
FIRMWARE_DIR: Final = REPO_ROOT / "firmware_micropython"


class VMBoardError(Exception):
    """The simulated board cannot do what was asked (it is off, or its VM failed)."""


@dataclass(frozen=True)
class TickResult:
    """What one main-loop pass of the board did.

    ``action``: None; "reset" (machine.reset() after the host's reset command); "repl"
    (maintenance command: the REPL has the port); "crash" (an exception ended the
    firmware; ``error`` holds it; main.py wrote the crash file and reset); "interrupt"
    (0x03 from the host inside the REPL window on USB: the REPL took over). ``state``:
    "running", "repl" (firmware stopped, REPL on the port) or "dead" (reset: reboot it).
    ``wdt_ok`` is False once the hardware watchdog would have reset the board.
    """

    tx: bytes
    edges: list[Edge]
    action: str | None
    wdt_ok: bool
    state: str = "running"
    error: str | None = None
    console: str = ""  # text the VM printed outside the protocol (diagnostics)


@dataclass
class _Pending:
    tx: bytearray = field(default_factory=bytearray)
    edges: list[Edge] = field(default_factory=list)


def _code_files() -> list[tuple[str, bytes]]:
    """(VM path, contents) of everything a simulated board imports."""
    out: list[tuple[str, bytes]] = []
    for package_dir, vm_dir in (
        (REPO_ROOT / "protocol", "/lib/protocol"),
        (FIRMWARE_DIR / "amtfw", "/lib/amtfw"),
    ):
        for path in python_files(package_dir):
            rel = path.relative_to(package_dir).as_posix()
            out.append((str(PurePosixPath(vm_dir) / rel), path.read_bytes()))
    for name in ("machine.py", "simboard.py"):
        out.append((f"/lib/{name}", (SIM_VM_DIR / name).read_bytes()))
    return out


def _pin(value: Any) -> Pin:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise VMBoardError(f"the VM reported a pin that is neither int nor str: {value!r}")
    return value


class VMBoard(Closeable):
    """A board running the real firmware in its own MicroPython VM; see the module doc.

    board_json: the config file as written at provisioning. key: the 32-byte board key, or
    None (unprovisioned). reset_cause: why the board starts ("power" for a fresh one).
    heap_bytes: the VM's MicroPython heap (None: DEFAULT_BOARD_HEAP). seed: the VM has no
    os.urandom, so the firmware's random bytes (nonces, boot id) come from a seeded
    generator: a fresh seed from the host's os.urandom at every boot, or ``seed + boots``
    when a seed is given (reproducible runs). now_ms: simulated time of the first boot
    (the caller's clock). app: module holding the ``BoardApp`` class; a test may pass a
    stand-in it installs through ``extra_files`` (VM path -> contents). usb_ctrl_c: on a
    USB board, a 0x03 byte from the host inside the firmware's REPL window
    (``repl_window_ms`` after boot, keyboard interrupt still on) stops the firmware as it
    does on hardware (action "interrupt", state "repl"); False turns that emulation off.
    A host must therefore stay silent for that window after a board boots: COBS frames
    often contain 0x03.
    """

    def __init__(
        self,
        board_json: bytes,
        key: bytes | None,
        *,
        reset_cause: str = "power",
        heap_bytes: int | None = None,
        seed: int | None = None,
        now_ms: int = 0,
        app: str = "amtfw.app",
        extra_files: dict[str, bytes] | None = None,
        usb_ctrl_c: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if key is not None and len(key) != KEY_LEN:
            raise ValueError(f"key must be {KEY_LEN} bytes or None, got {len(key)} bytes")
        self.heap_bytes = DEFAULT_BOARD_HEAP if heap_bytes is None else heap_bytes
        self.timeout = timeout
        self.app = app
        self.usb_ctrl_c = usb_ctrl_c
        self._seed = seed
        self._flash: dict[str, bytes] = {CONFIG_PATH: bytes(board_json)}
        if key is not None:
            self._flash[KEY_PATH] = bytes(key)
        self._extra = dict(extra_files or {})  # code files, e.g. a stand-in app
        self._vm: NodeMicroPython | None = None
        self._levels: dict[Pin, int] = {}  # every input level applied so far
        self._devices: dict[str, str] = {}  # MCP23017 registers carried over a reboot
        self._outputs: dict[Pin, int] = {}  # output levels, from the edges
        self._last_now = now_ms  # caller's clock at the last call
        self._sim_ms = now_ms  # the VM's clock: the caller's, unwrapped
        self._pending = _Pending()
        self.state = "off"
        self.info: dict[str, Any] | None = None  # what the firmware reports at handshake
        self.boots: list[str] = []  # reset cause of every boot
        self.power_on(reset_cause)

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the VM exists (firmware running, in the REPL, or reset and waiting)."""
        return self._vm is not None

    def power_on(self, reset_cause: str = "power") -> None:
        """Start a fresh VM with the same flash files and boot the firmware."""
        if reset_cause not in RESET_CAUSES:
            raise ValueError(f"reset_cause must be one of {', '.join(RESET_CAUSES)}")
        if self._vm is not None:
            raise VMBoardError("the board is on: power_cut() or reboot() first")
        vm = NodeMicroPython(heap_bytes=self.heap_bytes, timeout=self.timeout)
        try:
            for path, data in _code_files():
                vm.write_file(path, data)
            for path, data in self._extra.items():
                vm.write_file(path, data)
            for path, data in self._flash.items():
                vm.write_file(path, data)
            vm.exec("import simboard as __sb")
        except BaseException:
            vm.close()
            raise
        self._vm = vm
        self.boots.append(reset_cause)
        reply = self._call(
            f"__sb.boot({reset_cause!r}, {self._boot_seed()!r}, {self._sim_ms!r},"
            f" {self._levels!r}, {self._devices!r}, {self.app!r}, {self.usb_ctrl_c!r})"
        )
        self._devices = {}
        info = reply.get("info")
        self.info = info if isinstance(info, dict) else None
        self._pending.tx += self._tx_of(reply)
        self._pending.edges += self._edges_of(reply, self._last_now)

    def power_cut(self) -> list[Edge]:
        """Power gone: the VM ends, every output (expanders too) falls to 0. The flash
        files stay. Returns the edges of the outputs that were high."""
        if self._vm is not None:
            try:
                self._save_flash()
            except VMBoardError:
                pass  # a failed VM keeps the files saved last
            finally:
                self._vm.close()
                self._vm = None
        self._devices = {}
        self.state = "off"
        edges: list[Edge] = [(self._last_now, pin, 0) for pin, v in self._outputs.items() if v]
        self._outputs = {}
        self._pending = _Pending()
        return edges

    def reboot(self, cause: str = "soft") -> None:
        """Reset the microcontroller and boot again. GPIO outputs fall to 0 at once (their
        edges come with the next tick); MCP23017 latches hold until the firmware clears
        them at boot; flash files stay."""
        if cause not in RESET_CAUSES:
            raise ValueError(f"cause must be one of {', '.join(RESET_CAUSES)}")
        if self._vm is None:
            raise VMBoardError("the board is off: power_on() it")
        self._save_flash()
        devices = self._call("__sb.device_state()").get("devices")
        self._vm.close()
        self._vm = None
        self._devices = {str(k): str(v) for k, v in (devices or {}).items()}
        edges: list[Edge] = [
            (self._last_now, pin, 0)
            for pin, level in self._outputs.items()
            if isinstance(pin, int) and level
        ]
        for _t, pin, _level in edges:
            self._outputs[pin] = 0
        self.state = "off"
        self._pending = _Pending(edges=edges)
        self.power_on(cause)  # adds the boot's edges and bytes to the pending ones

    def close(self) -> None:
        """Stop the VM (nothing is saved); safe to call twice."""
        if self._vm is not None:
            self._vm.close()
            self._vm = None
        self.state = "off"

    # -- the loop ----------------------------------------------------------------------

    def tick(
        self, now_ms: int, rx: bytes = b"", levels: dict[Pin, int] | None = None
    ) -> TickResult:
        """One main-loop pass at simulated time now_ms (may wrap at 2**30 like ticks_ms).

        rx: bytes from the host; levels: physical input levels that changed (they stay
        until changed again, and across reboots).
        """
        if self._vm is None:
            raise VMBoardError("the board is off: power_on() it first")
        self._sim_ms += (now_ms - self._last_now) & TICKS_MASK
        self._last_now = now_ms
        changed = {_pin(p): 1 if v else 0 for p, v in (levels or {}).items()}
        self._levels.update(changed)
        reply = self._call(f"__sb.tick({self._sim_ms!r}, {bytes(rx)!r}, {changed!r})")
        pending = self._pending
        self._pending = _Pending()
        edges = pending.edges + self._edges_of(reply, now_ms)
        action = reply.get("action")
        error = reply.get("error")
        return TickResult(
            tx=bytes(pending.tx) + self._tx_of(reply),
            edges=edges,
            action=action if isinstance(action, str) else None,
            wdt_ok=bool(reply.get("wdt_ok", True)),
            state=self.state,
            error=error if isinstance(error, str) else None,
            console=str(reply.get("__console", "")),
        )

    # -- files -------------------------------------------------------------------------

    def read_file(self, path: str) -> bytes | None:
        """A file of the board's flash (e.g. "/amtfw_crash.txt"), or None."""
        if self._vm is not None:
            self._save_flash()
        return self._flash.get(path)

    def write_file(self, path: str, data: bytes) -> None:
        """Put a file on the board's flash (seen by the firmware at its next boot)."""
        if not path.startswith("/") or path.count("/") != 1:
            raise ValueError(f"flash files live in /: {path!r}")
        self._flash[path] = bytes(data)
        if self._vm is not None:
            self._vm.write_file(path, data)

    def remove_file(self, path: str) -> None:
        self._flash.pop(path, None)
        if self._vm is not None:
            self._vm.exec(f"import os\ntry:\n    os.remove({path!r})\nexcept OSError:\n    pass")

    # -- internals ---------------------------------------------------------------------

    def _call(self, expression: str) -> dict[str, Any]:
        """Evaluate a simboard call in the VM; its MARK+JSON line as a dict."""
        vm = self._vm
        assert vm is not None
        try:
            out = vm.exec(f"print({expression})")
        except MicroPythonError as exc:
            raise VMBoardError(f"the board's VM failed: {exc}") from exc
        console, sep, line = out.rpartition(MARK)
        if not sep:
            raise VMBoardError(f"the board's VM gave no reply line:\n{out[-2000:]}")
        try:
            reply = json.loads(line)
        except ValueError as exc:
            raise VMBoardError(f"unreadable reply from the board's VM: {line[:200]!r}") from exc
        if not isinstance(reply, dict):
            raise VMBoardError(f"unreadable reply from the board's VM: {line[:200]!r}")
        state = reply.get("state")
        if isinstance(state, str):
            self.state = state
        if console:
            reply["__console"] = console
        return reply

    def _boot_seed(self) -> int:
        """Seed of this boot's random bytes: from the host's os.urandom unless the caller
        fixed a seed (then seed + number of boots, reproducible)."""
        if self._seed is None:
            return int.from_bytes(os.urandom(4), "big")
        return self._seed + len(self.boots)

    def _tx_of(self, reply: dict[str, Any]) -> bytes:
        tx = bytes.fromhex(str(reply.get("tx", "")))
        console = str(reply.get("__console", ""))
        if console and reply.get("usb"):  # print() output shares the USB port
            tx += console.replace("\n", "\r\n").encode()
        return tx

    def _edges_of(self, reply: dict[str, Any], now_ms: int) -> list[Edge]:
        out: list[Edge] = []
        for item in reply.get("edges", []):
            t, pin, level = int(item[0]), _pin(item[1]), int(item[2])
            self._outputs[pin] = level
            out.append((now_ms - (self._sim_ms - t), pin, level))
        return out

    def _save_flash(self) -> None:
        reply = self._call("__sb.files()")
        self._flash = {str(k): bytes.fromhex(str(v)) for k, v in reply.items() if k[:1] == "/"}
