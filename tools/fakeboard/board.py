"""A fake USB MicroPython board (a Raspberry Pi Pico) on a pty, for testing ``amtomat
flash`` and other serial tools without hardware.

``FakeBoard(flash_dir).start()`` opens a pty (``board.port``) and boots a real MicroPython
VM (the npm WebAssembly build) holding the files of ``flash_dir``:

- **REPL** (no ``/main.py``): every byte from the pty goes to the VM's REPL and its output
  comes back, so unmodified mpremote works (raw REPL, soft reset, its fs commands;
  raw-paste mode is declined). Ctrl-D (soft reset) starts a fresh VM with the same files,
  running main.py in the friendly REPL as a board does. ``machine.reset()`` or
  ``machine.soft_reset()`` is a hard reset: the board is off for ``reset_pause_s`` and
  boots again.
- **firmware** (``/main.py`` at boot): main.py is compiled and its imports run, then the
  flashed ``amtfw.runtime.Runtime`` is driven one ``run_once(now)`` per few ms on real
  time with the bytes from the pty, and its bytes go back: the real binary protocol.
  ``maintenance("repl")`` hands the port to the REPL; the firmware's ``reset``, its
  watchdog and a crash (after main.py's one-second Ctrl-C window) reset the board.
- **silent**: with ``silent_after_reset``, from the first hard reset on nothing is
  written to the pty and input is ignored.

The files live in ``flash_dir`` (board path ``/lib/x.mpy`` is ``flash_dir/lib/x.mpy``):
loaded at start, written back at every reset, shortly after changes, and at ``close``.
See docs/fakeboard.md for what differs from a real board.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from tools.closeable import Closeable
from tools.fakeboard import flashdir
from tools.fakeboard.errors import BadOption, BoardStateError, FakeBoardError, VMError
from tools.fakeboard.firmware import FirmwareRun, Next, Step
from tools.fakeboard.flashdir import Snapshot
from tools.fakeboard.identity import (
    DEFAULT_SERIAL,
    PICO_CAPACITY,
    PICO_MACHINE,
    Identity,
    check_capacity,
)
from tools.fakeboard.pattern import glob_regex
from tools.fakeboard.ptyport import PtyPort
from tools.fakeboard.repl import RAW_PROMPT, SOFT_REBOOT, ReplStream
from tools.fakeboard.surroundings import Surroundings
from tools.fakeboard.vm import DEFAULT_HEAP_BYTES, SOFT_RESET, Answer, BoardVM

log = logging.getLogger(__name__)

HOUSEKEEPING_S: Final = 0.2  # REPL: timers and watchdog checked this often
SYNC_S: Final = 0.3  # changed files reach flash_dir this long after the change
JOIN_S: Final = 30.0
MAX_FAILED_BOOTS: Final = 5  # boots in a row the VM fails before the board gives up


class Mode(StrEnum):
    """What has the board's port."""

    OFF = "off"  # not started, closed, or resetting
    REPL = "repl"
    FIRMWARE = "firmware"
    SILENT = "silent"


class FakeBoard(Closeable):
    """A pty that behaves like a Pico running MicroPython; see the module docstring.

    serial_number: 16 hex digits, what ``machine.unique_id()`` says. micropython ("1.19.1")
    and mpy (``sys.implementation._mpy``): what the board claims (None: the VM's own,
    1.29.0 and 0x306). machine_name: ``sys.implementation._machine`` and
    ``os.uname().machine``. capacity: flash bytes; ``os.statvfs`` agrees and writes beyond
    it raise OSError 28 (ENOSPC). corrupt: fnmatch pattern of board paths; such a file gets
    one byte flipped when it is closed after writing. silent_after_reset: the board never
    answers after its next hard reset. door_follows_pulse: in firmware mode a pulsed
    channel's door reads open for about 2 s.
    """

    def __init__(
        self,
        flash_dir: Path | str,
        *,
        serial_number: str = DEFAULT_SERIAL,
        micropython: str | None = None,
        mpy: int | None = None,
        machine_name: str = PICO_MACHINE,
        capacity: int = PICO_CAPACITY,
        corrupt: str | None = None,
        silent_after_reset: bool = False,
        door_follows_pulse: bool = True,
        platform: str = "rp2",
        reset_pause_s: float = 0.5,
        heap_bytes: int = DEFAULT_HEAP_BYTES,
    ) -> None:
        self.identity = Identity(serial_number, micropython, mpy, machine_name, platform)
        check_capacity(capacity)
        if not isinstance(reset_pause_s, int | float) or not 0 <= reset_pause_s <= 60:
            raise BadOption(f"reset_pause_s must be 0..60, got {reset_pause_s!r}", reset_pause_s)
        self.flash_dir = Path(flash_dir)
        self.serial_number = self.identity.serial_number.lower()
        self.capacity = capacity
        self.corrupt = corrupt
        self._corrupt_regex = glob_regex(corrupt) if corrupt is not None else None
        self.silent_after_reset = silent_after_reset
        self.door_follows_pulse = door_follows_pulse
        self.reset_pause_s = float(reset_pause_s)
        self.heap_bytes = heap_bytes
        self.port = ""
        """The pty slave path, e.g. /dev/pts/7 (set by start)."""
        self.mode = Mode.OFF
        self.resets = 0
        """Hard resets so far."""
        self.boots: list[str] = []
        """Reset cause of every boot: power, watchdog (machine.reset, the firmware's reset,
        its watchdog, a crash), soft."""
        self.failure: str | None = None
        """Why the board stopped working (its loop ended), or None."""
        self.timings: dict[str, float] = {}
        """Seconds the last VM start ("vm_start") and boot ("boot") took."""
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._closed = False
        self._vm: BoardVM | None = None
        self._pty: PtyPort | None = None
        self._wake_r = self._wake_w = -1
        self._saved = Snapshot()  # what flash_dir holds
        self._files = Snapshot()  # the board's files as last read from the VM
        self._dirty_at: float | None = None
        self._repl: ReplStream | None = None
        self._surroundings: Surroundings | None = None
        self._firmware: FirmwareRun | None = None  # while the firmware has the port
        self._boot_t = 0.0  # monotonic time of the last hard boot: board ms count from it
        self._next_housekeeping = 0.0
        self._off_until = 0.0
        self._off_cause = "power"
        self._wdt: tuple[int, int] | None = None  # (timeout, last feed) of the running watchdog
        self._safe_boot = False  # the VM crashed while booting the firmware: REPL only, once
        self._failed_boots = 0

    def _cfg(self, cause: str, firmware: bool, now: int) -> dict[str, Any]:
        """The argument of ``_fbboot.boot``: identity, reset cause, board time, inputs."""
        assert self._vm is not None
        cfg = self.identity.boot_config(self._vm.version, self._vm.banner)
        levels = self._surroundings.changed_levels(now) if self._surroundings else {}
        seed = int.from_bytes(os.urandom(4), "big")
        cfg.update(reset_cause=cause, now=now, firmware=firmware, seed=seed, levels=levels)
        return cfg

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Open the pty and boot: the firmware if /main.py exists, else the REPL banner.

        FlashDirError for an unusable flash_dir; VMError when no VM can run here (node or
        node_modules missing); BoardStateError when called twice.
        """
        if self._started:
            raise BoardStateError("the fake board was started already", self.port)
        self._started = True
        self._saved = self._files = flashdir.load(self.flash_dir)
        self._pty = PtyPort()
        self.port = self._pty.path
        self._wake_r, self._wake_w = os.pipe()
        try:
            t = time.monotonic()
            self._vm = BoardVM(heap_bytes=self.heap_bytes)
            self.timings["vm_start"] = time.monotonic() - t
            with self._lock:
                try:
                    self._hard_boot("power")
                except VMError as exc:
                    if self._vm is None:
                        raise
                    self._vm_failed(exc)  # e.g. flashed code that crashes the VM: a reset
        except BaseException:
            self._shutdown()
            raise
        self._thread = threading.Thread(target=self._loop, name=f"fakeboard {self.port}")
        self._thread.daemon = True
        self._thread.start()

    def files(self) -> dict[str, bytes]:
        """The board's files now (board path -> contents); also saved into flash_dir."""
        with self._lock:
            if self._vm_usable():
                self._sync()
            return dict(self._files.files)

    def wait(self, mode: str, timeout: float = 30.0) -> bool:
        """Wait (real time) until the board is in mode; False after timeout."""
        end = time.monotonic() + timeout
        while self.mode != mode:
            if time.monotonic() >= end or self.failure is not None:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """Save the files into flash_dir, stop the VM, close the pty; safe to call twice."""
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        self._stop.set()
        self._wake()
        thread = self._thread
        if thread is not None:
            thread.join(JOIN_S)
            if thread.is_alive() and self._vm is not None:
                log.warning("fake board %s: its VM does not answer; stopping it", self.port)
                self._vm.close()
                thread.join(JOIN_S)
        with self._lock:
            if self._vm_usable():
                try:
                    self._sync()
                except FakeBoardError as exc:
                    log.error("fake board %s: files not read back at close: %s", self.port, exc)
            self._save()
            self._shutdown()

    def _shutdown(self) -> None:
        self.mode = Mode.OFF
        if self._vm is not None:
            self._vm.close()
        if self._pty is not None:
            self._pty.close()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1

    @property
    def _tty(self) -> PtyPort:
        assert self._pty is not None, "start() first"
        return self._pty

    def _wake(self) -> None:
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    # -- files ----------------------------------------------------------------------------

    def _vm_usable(self) -> bool:
        return self._vm is not None and self._vm.alive and self.mode in (Mode.REPL, Mode.FIRMWARE)

    def _sync(self) -> None:
        """Read the board's files from the VM and save what changed."""
        assert self._vm is not None
        self._files = self._vm.files()
        self._dirty_at = None
        self._save()

    def _save(self) -> None:
        if self._files == self._saved:
            return
        try:
            flashdir.save(self.flash_dir, self._files, self._saved)
        except FakeBoardError as exc:
            log.error("fake board %s: %s", self.port, exc)
            return
        self._saved = self._files

    def _note_dirty(self, dirty: bool) -> None:
        if dirty and self._dirty_at is None:
            self._dirty_at = time.monotonic()

    # -- boots and resets -----------------------------------------------------------------

    def _now_ms(self) -> int:
        return int((time.monotonic() - self._boot_t) * 1000)

    def _hard_boot(self, cause: str) -> None:
        self._boot_t = time.monotonic()
        self._wdt = None
        self._boot(cause)

    def _boot(self, cause: str, raw: bool = False) -> None:
        """A fresh VM with the board's files; firmware or REPL as a board decides."""
        vm = self._vm
        if vm is None or not vm.alive:
            vm = self._vm = BoardVM(heap_bytes=self.heap_bytes)
        t = time.monotonic()
        self.mode = Mode.OFF  # until the new VM holds the files: never read back before
        self.boots.append(cause)
        self._firmware = None
        files = self._files
        self._surroundings = Surroundings(files.files.get("/amtomat.json"), self.door_follows_pulse)
        firmware = not raw and not self._safe_boot and "/main.py" in files.files
        self._safe_boot = False
        cfg = self._cfg(cause, firmware, self._now_ms())
        repl = self._repl = ReplStream(vm.banner.encode(), cfg["banner"].split(b"\r\n")[0])
        try:
            vm.load(files, capacity=self.capacity, corrupt=self._corrupt_regex)
            answer = vm.boot(cfg)
            if answer.error:
                raise VMError(f"the board's VM-side boot failed: {answer.error}")
            self._tty.write(repl.output(answer.out))
            state = answer.json()
        except VMError:
            if firmware:
                self._safe_boot = True  # else a crash loop: the next boot stays in the REPL
            raise
        self.timings["boot"] = time.monotonic() - t
        self._failed_boots = 0
        report = state.get("firmware") if isinstance(state, dict) else None
        if isinstance(report, dict):
            self.mode = Mode.FIRMWARE
            self._firmware = FirmwareRun(
                vm,
                self._surroundings,
                files.files.get("/main.py", b""),
                write=self._tty.write,
                console=self._console,
                on_answer=self._on_answer,
            )
            log.info("fake board %s: firmware booted (%s)", self.port, cause)
            self._follow(self._firmware.report(report, b""))
            return
        self.mode = Mode.REPL
        if raw:
            vm.repl_init()
            vm.feed(b"\x01")
            repl.restart(raw=True)
            self._tty.write(RAW_PROMPT)
        else:
            out = vm.repl_init()
            repl.restart(raw=False)
            self._tty.write(repl.output(out))
        self._next_housekeeping = time.monotonic() + HOUSEKEEPING_S
        log.info("fake board %s: REPL (%s)", self.port, cause)

    def _soft_reset(self) -> None:
        """Ctrl-D or sys.exit() at the REPL: same files, fresh VM, same REPL kind."""
        assert self._repl is not None
        raw = self._repl.raw
        self._housekeeping()  # the watchdog's last feed, which the next VM no longer sees
        if self.mode is not Mode.REPL:
            return  # it had starved: a hard reset instead
        self._sync()
        self._tty.write(SOFT_REBOOT)
        self._boot("soft", raw=raw)

    def _hard_reset(self, cause: str) -> None:
        """The microcontroller resets: files saved, the port goes quiet, then a boot."""
        if self._vm_usable():
            try:
                self._sync()
            except VMError as exc:
                log.warning("fake board %s: files not read back before reset: %s", self.port, exc)
        self.resets += 1
        self._wdt = None
        self._firmware = None
        log.info("fake board %s: hard reset (%s)", self.port, cause)
        if self.silent_after_reset:
            self.mode = Mode.SILENT
            if self._vm is not None:
                self._vm.close()
            return
        self.mode = Mode.OFF
        self._off_cause = cause
        self._off_until = time.monotonic() + self.reset_pause_s

    def _vm_failed(self, exc: VMError) -> None:
        """The VM crashed or hung: the board resets (with the files read back last)."""
        log.error("fake board %s: %s", self.port, exc)
        self._failed_boots += 1
        if self._failed_boots >= MAX_FAILED_BOOTS:
            raise VMError(f"the board's VM failed {self._failed_boots} times in a row: {exc}")
        vm = self._vm
        if vm is not None and vm.alive and self.mode in (Mode.REPL, Mode.FIRMWARE):
            with contextlib.suppress(VMError):
                self._files = vm.files()  # the file system lives outside the crashed VM
        if vm is not None and not vm.alive:
            self._vm = None
        self.mode = Mode.OFF  # no read-back from a broken VM in _hard_reset
        self._hard_reset("watchdog")

    # -- the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._wait_and_step()
        except Exception as exc:
            log.exception("fake board %s: stopped", self.port)
            self.failure = f"{type(exc).__name__}: {exc}"
            self.mode = Mode.OFF

    def _timeout(self) -> float:
        now = time.monotonic()
        deadlines = [now + 1.0]
        if self.mode is Mode.FIRMWARE and self._firmware is not None:
            deadlines.append(self._firmware.deadline())
        elif self.mode is Mode.REPL:
            deadlines.append(self._next_housekeeping)
        elif self.mode is Mode.OFF:
            deadlines.append(self._off_until)
        if self._dirty_at is not None:
            deadlines.append(self._dirty_at + SYNC_S)
        return max(0.0, min(deadlines) - now)

    def _wait_and_step(self) -> None:
        pty = self._tty
        writers = [pty.fileno()] if pty.pending else []
        readable, writable, _ = select.select(
            [pty.fileno(), self._wake_r], writers, [], self._timeout()
        )
        if self._wake_r in readable:
            with contextlib.suppress(OSError):
                os.read(self._wake_r, 64)
        if writable:
            pty.flush()
        data = pty.read() if pty.fileno() in readable else b""
        if self._stop.is_set():
            return
        with self._lock:
            try:
                self._step(data)
            except VMError as exc:
                self._vm_failed(exc)

    def _step(self, data: bytes) -> None:
        now = time.monotonic()
        mode = self.mode
        if mode is Mode.OFF:
            if now >= self._off_until:
                self._tty.discard_input()
                self._hard_boot(self._off_cause)
            return
        if mode is Mode.SILENT:
            return
        if mode is Mode.REPL:
            if data:
                self._repl_input(data)
            if self.mode is Mode.REPL and now >= self._next_housekeeping:
                self._housekeeping()
        elif mode is Mode.FIRMWARE:
            self._firmware_step(data)
        if (
            self._dirty_at is not None
            and time.monotonic() >= self._dirty_at + SYNC_S
            and self._vm_usable()
        ):
            self._sync()

    # -- REPL -----------------------------------------------------------------------------

    def _repl_input(self, data: bytes) -> None:
        assert self._repl is not None
        for to_vm, piece in self._repl.split_input(data):
            if self._firmware is not None:  # a soft reset started main.py
                self._firmware.receive(piece)
            elif self.mode is not Mode.REPL:
                return  # reset: the rest is lost
            elif not to_vm:
                self._tty.write(piece)
            else:
                self._feed(piece)

    def _feed(self, data: bytes) -> None:
        assert self._vm is not None and self._repl is not None
        while data and self.mode is Mode.REPL:
            fed = self._vm.feed(data)
            self._note_dirty(fed.dirty)
            self._tty.write(self._repl.output(fed.out))
            data = data[fed.consumed :]
            if fed.reset is not None:
                self._hard_reset("soft" if fed.reset == "soft_reset" else "watchdog")
                return
            if fed.ret == SOFT_RESET:
                self._soft_reset()
        if data and self._firmware is not None:
            self._firmware.receive(data)

    def _housekeeping(self) -> None:
        """Timers (the watchdog feeder after a maintenance handover) and the watchdog,
        which a soft reset does not stop: a board whose feeder is gone resets."""
        assert self._vm is not None
        now = self._now_ms()
        self._next_housekeeping = time.monotonic() + HOUSEKEEPING_S
        answer = self._vm.call(f"housekeeping({now})")
        self._note_dirty(answer.dirty)
        if answer.out and self._repl is not None:
            self._tty.write(self._repl.output(answer.out))
        wdt = answer.json()
        if isinstance(wdt, list):
            self._wdt = (int(wdt[0]), int(wdt[1]))
            if not wdt[2]:
                self._hard_reset("watchdog")
        elif self._wdt is not None and now - self._wdt[1] > self._wdt[0]:
            self._hard_reset("watchdog")

    # -- firmware -------------------------------------------------------------------------

    def _firmware_step(self, data: bytes) -> None:
        assert self._firmware is not None
        self._follow(self._firmware.step(data, self._now_ms()))

    def _follow(self, step: Step) -> None:
        if step.next is Next.REPL:
            self._to_repl(step.text)
        elif step.next is Next.RESET:
            self._hard_reset("watchdog")

    def _on_answer(self, answer: Answer) -> None:
        self._note_dirty(answer.dirty)

    def _console(self, text: bytes) -> bytes:
        return self._repl.output(text) if self._repl is not None else text

    def _to_repl(self, text: bytes) -> None:
        """The firmware stopped; the REPL of the same VM gets the port."""
        assert self._vm is not None and self._repl is not None
        self._firmware = None
        banner_out = self._vm.repl_init()
        self._repl.restart(raw=False)
        self.mode = Mode.REPL
        if text:  # else the firmware printed why and the banner itself
            self._tty.write(text + self._repl.output(banner_out))
        self._housekeeping()
        log.info("fake board %s: the REPL has the port", self.port)

    def __repr__(self) -> str:
        return f"FakeBoard({str(self.flash_dir)!r}, port={self.port!r}, mode={self.mode.value})"
