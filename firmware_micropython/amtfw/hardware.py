"""The hardware layer: GPIO pins, MCP23017 expanders and the host port.

Every class takes the ``machine`` module (or the objects built from it) as an argument,
so the simulator and the tests run this code with a fake ``machine``. The logic above
works on logical levels (1 = energised / active); here they become physical levels
through each signal's ``invert`` flag.

Nothing in the loop allocates: expanders are read with one sequential I2C transfer into
a preallocated buffer per pass, OLAT registers and GPIO outputs are written only when a
level changes, and the ports read into the caller's buffer.

Wiring notes: until the config is parsed and the outputs are built, every pin is an
input. A board without a valid config leaves them so, which means each solenoid and relay
driver input needs a pull-down (or a pull-up for an inverted, active-low driver) so that
a floating pin keeps it off. An MCP23017 keeps its output latches across a reset of the
microcontroller (unless its RESET pin is wired to the board), which is why ``Outputs``
rewrites every latch before anything else.
"""

from amtfw.errors import HardwareError
from protocol.compat import const

# MCP23017 registers with IOCON.BANK = 0 (the power-on default): A and B side by side.
IODIRA = const(0x00)
IODIRB = const(0x01)
GPPUA = const(0x0C)
GPPUB = const(0x0D)
GPIOA = const(0x12)
OLATA = const(0x14)
OLATB = const(0x15)
IOCON = const(0x0A)

RX_CHUNK = const(64)  # most bytes one loop pass takes from a port


def parse_expander_pin(spec):
    """(expander index, bit 0..15) of "mcp<N>:<A|B><0-7>"; bit 8..15 is port B."""
    head, port = spec[3:].split(":", 1)
    return int(head), (8 if port[0] == "B" else 0) + int(port[1])


class MCP23017:
    """One MCP23017 16-bit I/O expander; shadows IODIR, GPPU and OLAT."""

    def __init__(self, i2c, address):
        self.i2c = i2c
        self.address = address
        self.iodir = 0xFFFF  # 1 = input (power-on default)
        self.gppu = 0
        self.olat = 0
        self._olat_sent = -1  # unknown: the first flush always writes
        self.gpio = bytearray(2)  # GPIOA, GPIOB as last read
        self._wbuf = bytearray(2)
        self.ok = True  # False once a transfer failed
        self.faults = 0  # failed transfers

    def _write16(self, reg, value):
        buf = self._wbuf
        buf[0] = value & 0xFF
        buf[1] = (value >> 8) & 0xFF
        self.i2c.writeto_mem(self.address, reg, buf)

    def setup(self):
        """Write every shadow register: OLAT first, so an output never glitches on."""
        one = bytearray(1)
        self.i2c.writeto_mem(self.address, IOCON, one)  # BANK=0, SEQOP=0 (sequential)
        self._write16(OLATA, self.olat)
        self._olat_sent = self.olat
        self._write16(GPPUA, self.gppu)
        self._write16(IODIRA, self.iodir)

    def set_bit(self, bit, level):
        """Set output latch bit (0..15) in the shadow; ``flush`` sends it."""
        if level:
            self.olat |= 1 << bit
        else:
            self.olat &= ~(1 << bit)

    def flush(self, force=False):
        """Write OLATA+OLATB when they changed since the last write (or when forced).

        A failed write is retried on the next call; an expander that failed at ``setup``
        (``ok`` False) is left alone.
        """
        if not self.ok or (self.olat == self._olat_sent and not force):
            return
        try:
            self._write16(OLATA, self.olat)
            self._olat_sent = self.olat
        except OSError:
            self.faults += 1

    def read(self):
        """Read GPIOA+GPIOB in one sequential transfer into ``gpio``; keep the old on error."""
        if not self.ok:
            return
        try:
            self.i2c.readfrom_mem_into(self.address, GPIOA, self.gpio)
        except OSError:
            self.faults += 1

    def bit(self, bit):
        """Level of bit 0..15 as last read."""
        return (self.gpio[bit >> 3] >> (bit & 7)) & 1


def build_expanders(cfg, machine):
    """One MCP23017 per configured expander, sharing one I2C object per bus."""
    buses = {}
    out = []
    for e in cfg.expanders:
        bus = buses.get(e["i2c"])
        if bus is None:
            bus = machine.I2C(
                e["i2c"], sda=machine.Pin(e["sda"]), scl=machine.Pin(e["scl"]), freq=e["freq"]
            )
            buses[e["i2c"]] = bus
        out.append(MCP23017(bus, e["address"]))
    return out


def _setup(expander, errors):
    """Configure an expander; one that does not answer is marked and named in errors."""
    try:
        expander.setup()
    except OSError as exc:
        expander.ok = False
        expander.faults += 1
        errors.append(
            "expander at 0x%02x does not answer (%s); its pins are not used"
            % (expander.address, exc)
        )


class _Signals:
    """Index -> (GPIO pin object or expander bit) for one direction of the config."""

    def __init__(self, entries, expanders):
        n = len(entries)
        self.n = n
        self.pins = [None] * n  # machine.Pin or None
        self.exp = bytearray(n)  # expander index, when pins[i] is None
        self.bit = bytearray(n)
        self.inv = bytearray(n)
        self.expanders = expanders
        used = []
        for i in range(n):
            pin, invert, _role, _unit, _channel = entries[i]
            self.inv[i] = 1 if invert else 0
            if isinstance(pin, str):
                e, b = parse_expander_pin(pin)
                self.exp[i] = e
                self.bit[i] = b
                if e not in used:
                    used.append(e)
        used.sort()
        self.used = [expanders[e] for e in used]  # expanders this direction touches


class Outputs:
    """Every output of ``cfg.outputs`` by index; built with all of them off.

    ``write(levels)`` takes logical levels (1 = on), applies ``invert`` and touches a pin
    only when its level changes. ``errors`` lists expanders that did not answer at boot.
    """

    def __init__(self, cfg, machine, expanders=None):
        if expanders is None:
            expanders = build_expanders(cfg, machine)
        self.errors = []
        s = _Signals(cfg.outputs, expanders)
        self._s = s
        self.phys = bytearray(s.n)  # physical level last written
        # GPIO first: value= sets the level before the pin turns into an output.
        for i in range(s.n):
            pin = cfg.outputs[i][0]
            off = s.inv[i]
            self.phys[i] = off
            if isinstance(pin, str):
                x = expanders[s.exp[i]]
                x.iodir &= ~(1 << s.bit[i])
                x.set_bit(s.bit[i], off)
            else:
                s.pins[i] = machine.Pin(pin, machine.Pin.OUT, value=off)
        # Every expander, used for outputs or not: its latches may still drive a pin.
        for x in expanders:
            _setup(x, self.errors)

    def __len__(self):
        return self._s.n

    def write(self, levels):
        """Apply logical levels (a bytearray as long as cfg.outputs); only changes."""
        s = self._s
        phys = self.phys
        for i in range(s.n):
            p = (1 if levels[i] else 0) ^ s.inv[i]
            if p != phys[i]:
                phys[i] = p
                pin = s.pins[i]
                if pin is None:
                    s.expanders[s.exp[i]].set_bit(s.bit[i], p)
                else:
                    pin.value(p)
        used = s.used
        for j in range(len(used)):
            used[j].flush()

    def all_off(self):
        """Every output off now, every pin and latch written whatever the cache says."""
        s = self._s
        for i in range(s.n):
            p = s.inv[i]
            self.phys[i] = p
            pin = s.pins[i]
            if pin is None:
                s.expanders[s.exp[i]].set_bit(s.bit[i], p)
            else:
                pin.value(p)
        for x in s.used:
            x.flush(True)


class Inputs:
    """Every input of ``cfg.inputs`` by index: GPIO with pull-up or an expander bit."""

    def __init__(self, cfg, machine, expanders=None):
        if expanders is None:
            expanders = build_expanders(cfg, machine)
        self.errors = []
        s = _Signals(cfg.inputs, expanders)
        self._s = s
        for i in range(s.n):
            pin = cfg.inputs[i][0]
            if isinstance(pin, str):
                x = expanders[s.exp[i]]
                x.iodir |= 1 << s.bit[i]
                x.gppu |= 1 << s.bit[i]
            else:
                s.pins[i] = machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP)
        for x in s.used:
            if x.ok:
                _setup(x, self.errors)
            if not x.ok:  # its inputs keep the idle level of a pulled-up contact
                x.gpio[0] = x.gppu & 0xFF
                x.gpio[1] = (x.gppu >> 8) & 0xFF

    def __len__(self):
        return self._s.n

    def read(self, levels):
        """Fill levels (a bytearray as long as cfg.inputs) with logical levels, 1 = active."""
        s = self._s
        used = s.used
        for j in range(len(used)):
            used[j].read()
        for i in range(s.n):
            pin = s.pins[i]
            if pin is None:
                p = s.expanders[s.exp[i]].bit(s.bit[i])
            else:
                p = pin.value()
            levels[i] = p ^ s.inv[i]


# -- host ports: readinto(buf) -> int (non-blocking), write(mv), start(), release() ----


class UsbPort:
    """USB-CDC through sys.stdin/stdout, binary-safe once started.

    On rp2, ``sys.stdin.buffer.read(n)`` blocks until n bytes arrive, so each byte is
    polled for with ``ipoll(0)`` and taken with ``readinto`` into a 1-byte buffer.
    ``start()`` turns the keyboard interrupt off (a 0x03 byte would otherwise raise
    KeyboardInterrupt and flush the input); ``release()`` turns it back on for the REPL.
    The arguments replace sys.stdin.buffer, sys.stdout.buffer, the registered poll
    object and micropython.kbd_intr in tests.
    """

    def __init__(self, stream=None, out=None, poller=None, kbd_intr=None):
        import sys

        if stream is None:
            stream = sys.stdin.buffer
        if out is None:
            out = sys.stdout.buffer
        if poller is None:
            import select

            poller = select.poll()
            poller.register(sys.stdin, select.POLLIN)
        if kbd_intr is None:
            import micropython

            kbd_intr = micropython.kbd_intr
        self._in = stream
        self._out = out
        self._poll = poller
        self._kbd_intr = kbd_intr
        self._one = bytearray(1)
        self.started = False

    def start(self):
        self._kbd_intr(-1)
        self.started = True

    def _ready(self):
        for _obj, flags in self._poll.ipoll(0):
            return flags & 1  # POLLIN
        return 0

    def readinto(self, buf):
        """Bytes waiting now, up to len(buf); never blocks; 0 when there are none."""
        n = 0
        size = len(buf)
        one = self._one
        while n < size and self._ready():
            if not self._in.readinto(one):
                break
            buf[n] = one[0]
            n += 1
        return n

    def write(self, data):
        self._out.write(data)

    def release(self):
        """Hand the port back to the REPL: Ctrl-C works again."""
        self._kbd_intr(3)
        self.started = False


class Rs485Port:
    """A half-duplex RS-485 line on a UART; DE is high exactly while sending."""

    def __init__(self, machine, uart, tx, rx, de, baud):
        self._de = machine.Pin(de, machine.Pin.OUT, value=0)
        try:
            self._uart = machine.UART(
                uart,
                baudrate=baud,
                tx=machine.Pin(tx),
                rx=machine.Pin(rx),
                timeout=0,
                rxbuf=512,
            )
        except (ValueError, OSError) as exc:
            raise HardwareError("link: cannot open UART %d: %s" % (uart, exc), uart) from None
        self.started = False

    def start(self):
        self.started = True

    def readinto(self, buf):
        """Bytes waiting now, up to len(buf); never blocks; 0 when there are none."""
        uart = self._uart
        waiting = uart.any()
        if not waiting:
            return 0
        n = uart.readinto(buf, min(waiting, len(buf)))
        return n or 0

    def write(self, data):
        de = self._de
        de.value(1)
        try:
            self._uart.write(data)
            self._uart.flush()  # returns once the last stop bit has left
        finally:
            de.value(0)

    def release(self):
        self._de.value(0)
        self.started = False


def open_port(cfg, machine):
    """The host port the config names: USB-CDC, or RS-485 on a UART."""
    link = cfg.link
    if link.get("type") == "rs485":
        return Rs485Port(machine, link["uart"], link["tx"], link["rx"], link["de"], link["baud"])
    return UsbPort()
