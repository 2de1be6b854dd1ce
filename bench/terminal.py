"""Controller latency and idle cost, measured on the whole system with the real firmware.

1. Pickup: a kiosk sends ``pickup`` with a valid code over the bridge; how long until the
   compartment's solenoid energises in the simulated world.
2. Entrance: a person swipes a card (the grant contact closes); how long until the strike
   relay energises.
3. Idle: the daemon's CPU and memory with four boards connected, from /proc over 30 s
   with an idle kiosk connected and 30 s without.

For 1 and 2 the simulator (``tools.sim``, every board's firmware in a MicroPython VM) runs
in this process, in a thread, on real time; the daemon is ``amtomat run`` in its own
process; the kiosk client runs in this process's event loop. Request, swipe and output
edges are all stamped with ``time.perf_counter()`` in this process: the edge when the
simulated world takes the VM pass's output changes. For 3, ``amtomat sim`` and
``amtomat run`` are two processes. Prints figures only; exits 1 when a step fails.
Run: ``.venv/bin/python bench/terminal.py`` (part of ``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import os
import platform
import queue
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from controller import config as daemon_config  # noqa: E402
from controller.boardconfig import Terminal, board_json  # noqa: E402
from controller.config import Config  # noqa: E402
from controller.errors import ControllerError  # noqa: E402
from controller.keystore import ensure_key  # noqa: E402
from controller.secrets import hash_secret, verify_secret  # noqa: E402
from host_bridge.client import KioskClient  # noqa: E402
from host_bridge.errors import KioskConnectionError, KioskError  # noqa: E402
from tools.demo import STAFF, Person  # noqa: E402
from tools.mpvm import MicroPythonError  # noqa: E402
from tools.sim.cli import board_keys  # noqa: E402
from tools.sim.control import ControlError  # noqa: E402
from tools.sim.noise import LineNoise  # noqa: E402
from tools.sim.simulator import Simulator, SimulatorError  # noqa: E402
from tools.sim.vmboard import VMBoardError  # noqa: E402
from tools.sim.world import BoardWorld  # noqa: E402

TERMINAL = ROOT / "bench" / "four-boards.toml"
T = TypeVar("T")


class BenchFailed(Exception):
    """A step the benchmark needs did not work; the message says which."""


# what ends the run with exit status 1 and a message (a bug still shows its traceback)
FAILURES = (
    BenchFailed, ControllerError, KioskError, SimulatorError, ControlError, VMBoardError,
    MicroPythonError, OSError,
)  # fmt: skip


# ----- the simulator in this process, stamped in this process's clock ----------------------


@dataclass(frozen=True)
class Stamp:
    """One output change as the world saw it: perf_counter seconds and simulated ms."""

    t: float
    sim_ms: int
    board: str
    what: str  # e.g. "channel 3 solenoid", "entrance strike"
    on: bool


class StampedWorld(BoardWorld):
    """A board's world that reports every output change, stamped when it arrives."""

    def __init__(self, spec_json: bytes, board_id: str, sink: Callable[[Stamp], None]) -> None:
        super().__init__(spec_json)
        self.board_id = board_id
        self.sink = sink

    def _set_output(
        self, i: int, on: int, t: int, record: bool, pin_level: int | None = None
    ) -> None:
        seen = time.perf_counter()
        was = self.out_levels[i]
        super()._set_output(i, on, t, record, pin_level)
        if record and bool(was) != bool(on):
            name = self._output_name(self.outputs[i])
            self.sink(Stamp(seen, t, self.board_id, name, bool(on)))


class StampedLine(LineNoise):
    """One direction of a board's serial line that notes when bytes were put on it."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.pushes: list[tuple[float, int]] = []  # (perf_counter, simulated ms)

    def push(self, data: bytes, now_ms: int) -> None:
        """Note the time, then put the bytes on the line."""
        if data:
            self.pushes.append((time.perf_counter(), now_ms))
        super().push(data, now_ms)


class SimThread:
    """The simulator on real time in a thread (serve=True: pty and socket:// per board).
    Actions run in that thread between two ticks; output edges wake the event loop."""

    def __init__(self, terminal: Terminal, keys: dict[str, bytes | None], tick_ms: int) -> None:
        self.sim = Simulator(terminal, keys, serve=True, tick_ms=tick_ms)
        self.stamps: list[Stamp] = []
        self.to_board: dict[str, StampedLine] = {}
        self.to_host: dict[str, StampedLine] = {}
        for board in self.sim.boards.values():
            bid = board.board_id
            board.world = StampedWorld(board_json(board.spec), bid, self._stamped)
            board.to_board = self.to_board[bid] = StampedLine(board.to_board.seed)
            board.to_host = self.to_host[bid] = StampedLine(board.to_host.seed)
        self.sim.on_tick = self._ticked
        self.busy_s: list[float] = []  # wall time of each tick (every board's VM pass)
        self.lag_s = 0.0  # the most the simulated clock fell behind the wall clock since mark()
        self.lag_now_s = 0.0
        self._lag_base_s = 0.0
        self.error: BaseException | None = None
        self._actions: queue.Queue[Callable[[], None]] = queue.Queue()
        self._stop = False
        self._tick_began = 0.0
        self._wall0 = 0.0
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="simulator", daemon=True)

    def start(self) -> None:
        """Boot every board's VM, then tick in the thread."""
        self.sim.start()
        self._thread.start()

    def close(self) -> None:
        """Stop ticking and close every VM and endpoint."""
        self._stop = True
        if self._thread.ident is not None:
            self._thread.join(30)
        self.sim.close()

    def urls(self) -> dict[str, str]:
        """Every board's socket:// URL."""
        return {b["board"]: str(b["url"]) for b in self.sim.boards_info()}

    def _run(self) -> None:
        self._wall0 = time.perf_counter() - self.sim.now / 1000
        try:
            self.sim.run_realtime(lambda: not self._stop, self._poll)
        except BaseException as exc:  # reported to the waiting side
            self.error = exc
            self._loop.call_soon_threadsafe(self._changed.set)

    def _poll(self, seconds: float) -> None:
        """Run queued actions while waiting out the time until the next tick."""
        end = time.perf_counter() + seconds
        while True:
            left = end - time.perf_counter()
            try:
                action = self._actions.get(timeout=left) if left > 0 else self._actions.get_nowait()
            except queue.Empty:
                break
            action()
        self._tick_began = time.perf_counter()

    def _ticked(self, now: int) -> None:
        t = time.perf_counter()
        self.busy_s.append(t - self._tick_began)
        self.lag_now_s = (t - self._wall0) - now / 1000
        self.lag_s = max(self.lag_s, self.lag_now_s - self._lag_base_s)

    def mark(self) -> None:
        """Start the tick statistics afresh (e.g. after the boot and the handshakes)."""
        self.busy_s = []
        self.lag_s = 0.0
        self._lag_base_s = self.lag_now_s

    def _stamped(self, stamp: Stamp) -> None:
        self.stamps.append(stamp)
        self._loop.call_soon_threadsafe(self._changed.set)

    async def do(self, action: Callable[[Simulator], T]) -> tuple[float, T]:
        """Run action in the simulator's thread; (perf_counter just before it, result)."""
        future: asyncio.Future[tuple[float, T]] = self._loop.create_future()

        def run() -> None:
            t = time.perf_counter()
            try:
                result = (t, action(self.sim))
            except Exception as exc:
                self._loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                self._loop.call_soon_threadsafe(_settle, future, result, None)

        self._actions.put(run)
        return await asyncio.wait_for(future, 30)

    async def edge(self, board: str, what: str, on: bool, after: float, timeout: float) -> Stamp:
        """The first change of an output to on, stamped after ``after``."""
        end = time.monotonic() + timeout
        while True:
            self._changed.clear()
            if self.error is not None:
                raise BenchFailed(f"the simulator stopped: {self.error!r}")
            first = bisect.bisect_right(self.stamps, after, key=lambda s: s.t)
            found = [
                s for s in self.stamps[first:] if s.board == board and s.what == what and s.on == on
            ]
            if found:
                return found[0]
            left = end - time.monotonic()
            if left <= 0:
                state = "on" if on else "off"
                raise BenchFailed(f"{board} {what} did not switch {state} within {timeout} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def until_sim_ms(self, ms: int) -> None:
        """Wait until the simulated clock has reached ms."""
        while self.sim.now < ms:
            if self.error is not None:
                raise BenchFailed(f"the simulator stopped: {self.error!r}")
            await asyncio.sleep(0.005)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def last_push(line: StampedLine, before: float) -> float:
    """perf_counter of the last bytes put on the line at or before ``before``."""
    i = bisect.bisect_right(line.pushes, before, key=lambda p: p[0])
    return line.pushes[i - 1][0] if i else float("nan")


# ----- the daemon as its own process ----------------------------------------------------------


def daemon_toml(source: Path, urls: dict[str, str], bridge: Path, out: Path) -> Config:
    """A copy of the terminal file at ``out`` with each board's port set to its simulator
    URL and the bridge on a Unix socket; data paths resolve inside out's folder."""
    text = source.read_text()

    def port(m: re.Match[str]) -> str:
        url = urls.get(m.group(1))
        if url is None:
            raise BenchFailed(f"the simulator has no board {m.group(1)!r}")
        return f'{m.group(0)}\nport = "{url}"'

    text = re.sub(r'^board_id = "([a-z0-9-]+)".*$', port, text, flags=re.M)
    text, n = re.subn(r"^listen = .*$", f'listen = ["unix:{bridge}"]', text, flags=re.M)
    if n != 1:
        raise BenchFailed(f"{source}: expected one bridge `listen` line, found {n}")
    out.write_text(text)
    cfg = daemon_config.load(out)
    ports = {b.board_id: b.port for b in cfg.terminal.boards}
    if ports != urls:
        raise BenchFailed(f"{out}: board ports {ports} are not the simulator's {urls}")
    return cfg


@contextlib.contextmanager
def process(cmd: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess with its output in log; SIGTERM (then SIGKILL) on exit."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def amtomat(*args: str) -> list[str]:
    """The ``amtomat`` command line with this Python."""
    return [sys.executable, "-m", "tools.cli", *args]


def tail(log: Path, lines: int = 15) -> str:
    """The last lines of a log, for an error message."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


async def kiosk_session(
    url: str, key: bytes, daemon: subprocess.Popen[bytes], log: Path
) -> KioskClient:
    """A kiosk client once the daemon's bridge answers and every board is ready."""
    end = time.monotonic() + 120
    kiosk: KioskClient | None = None
    while kiosk is None:
        if daemon.poll() is not None:
            raise BenchFailed(f"amtomat run exited {daemon.returncode}:\n{tail(log)}")
        try:
            kiosk = await KioskClient.connect(url, key, peer="bench", timeout_s=2)
        except KioskConnectionError:
            if time.monotonic() > end:
                raise BenchFailed(f"no bridge session on {url}:\n{tail(log)}") from None
            await asyncio.sleep(0.2)
    while True:
        state = await kiosk.state()
        if state.ok and state.data and state.data["boards_ready"] == state.data["boards"]:
            return kiosk
        if time.monotonic() > end:
            await kiosk.close()
            raise BenchFailed(f"boards not ready: {state.data}:\n{tail(log)}")
        await asyncio.sleep(0.2)


class Progress:
    """Every progress step the kiosk has been told of, by operation."""

    def __init__(self, kiosk: KioskClient) -> None:
        self.steps: set[tuple[int, str]] = set()
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._collect(kiosk))

    async def _collect(self, kiosk: KioskClient) -> None:
        async for notice in kiosk.notices():
            if notice.name == "progress":
                self.steps.add((notice.fields["op"], notice.fields["step"]))
                self.changed.set()

    async def reached(self, op: int, step: str, timeout: float = 30) -> None:
        """Wait for op's step; BenchFailed naming both when it does not come."""
        end = time.monotonic() + timeout
        while (op, step) not in self.steps:
            self.changed.clear()
            left = end - time.monotonic()
            if left <= 0:
                raise BenchFailed(f"operation {op} never reached {step}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)


def expect(result: Any, what: str) -> dict[str, Any]:
    """The reply's data; BenchFailed with its status and reason when it failed."""
    if not result.ok:
        raise BenchFailed(f"{what}: {result.status.name} {result.reason}")
    return dict(result.data or {})


# ----- 1. pickup -> solenoid, 2. grant -> strike ---------------------------------------------


@dataclass
class Sample:
    """One measured request, perf_counter seconds."""

    start: float  # request sent or card swiped
    edge: float  # output energised in the world
    reply: float = float("nan")  # pickup reply at the kiosk
    state_rtt: float = float("nan")  # a ``state`` request just before: bridge round trip (s)
    board_out: float = float("nan")  # grant event put on the line by the board
    board_in: float = float("nan")  # the command's bytes taken in by the simulated board

    @property
    def total_ms(self) -> float:
        """Start to edge in ms."""
        return (self.edge - self.start) * 1000


async def person_closes(
    sim: SimThread, cfg: Config, label: str, item: bool | None, progress: Progress, op: int
) -> None:
    """Once the terminal saw the door open: the item goes in or out (if the compartment has
    a sensor), then the door is closed."""
    spec = next(c for c in cfg.compartments if c.label == label)
    await progress.reached(op, "door_open")

    def close(s: Simulator) -> None:
        if item is not None and spec.channel in s.boards[spec.board].world.items:
            s.item(spec.board, spec.channel, item)
        s.door(spec.board, spec.channel, False)

    await sim.do(close)


async def load_all(
    kiosk: KioskClient, sim: SimThread, cfg: Config, progress: Progress, tag: str
) -> dict[str, tuple[str, str]]:
    """Staff load a document into every compartment: label -> (reference, code)."""
    expect(await kiosk.staff_login(*STAFF), "staff login")
    loaded = {}
    for c in cfg.compartments:
        reference = f"BENCH-{tag}-{c.label}"
        data = expect(await kiosk.load(reference=reference, compartment=c.label), f"load {c.label}")
        await person_closes(sim, cfg, c.label, True, progress, data["op"])
        done = await kiosk.wait_done(data["op"], 30)
        if done.fields["outcome"] != "completed":
            raise BenchFailed(f"load {c.label} ended {done.fields}")
        loaded[c.label] = (reference, data["code"])
    await kiosk.staff_logout()
    return loaded


async def bench_pickups(
    kiosk: KioskClient, sim: SimThread, cfg: Config, progress: Progress, n: int
) -> list[Sample]:
    """n pickups spread over every compartment, in rounds: load all, pick up all."""
    samples: list[Sample] = []
    rng = random.Random(4)
    while len(samples) < n:
        loaded = await load_all(kiosk, sim, cfg, progress, str(len(samples)))
        order = list(loaded)
        rng.shuffle(order)
        for label in order[: n - len(samples)]:
            reference, code = loaded[label]
            spec = next(c for c in cfg.compartments if c.label == label)
            t0 = time.perf_counter()
            expect(await kiosk.state(), "state")
            rtt = time.perf_counter() - t0
            t0 = time.perf_counter()
            result = await kiosk.pickup(reference=reference, code=code)
            t_reply = time.perf_counter()
            op = expect(result, f"pickup {label}")["op"]
            what = f"channel {spec.channel} solenoid"
            edge = await sim.edge(spec.board, what, True, t0, 30)
            await person_closes(sim, cfg, label, False, progress, op)
            done = await kiosk.wait_done(op, 30)
            if done.fields["outcome"] != "completed":
                raise BenchFailed(f"pickup {label} ended {done.fields}")
            board_in = last_push(sim.to_board[spec.board], edge.t)
            samples.append(Sample(t0, edge.t, reply=t_reply, state_rtt=rtt, board_in=board_in))
    return samples


async def bench_grants(sim: SimThread, cfg: Config, n: int) -> list[Sample]:
    """n card swipes; after each, the person opens the door (the board ends the strike
    early) and closes it again."""
    board = cfg.entrance.board
    if board is None or board == "pi":
        raise BenchFailed(f"the terminal's entrance must be on a board, not {board!r}")
    debounce = cfg.terminal.board(board).debounce_ms

    def swipe(s: Simulator) -> int:
        s.swipe()
        return s.now

    def close(s: Simulator) -> int:
        s.entrance_door(False)
        return s.now

    samples = []
    for _ in range(n):
        t0, swiped_at = await sim.do(swipe)
        edge = await sim.edge(board, "entrance strike", True, t0, 30)
        await sim.do(lambda s: s.entrance_door(True))
        await sim.edge(board, "entrance strike", False, edge.t, 30)
        _, closed_at = await sim.do(close)
        # the grant event leaves in the first pass after the debounce
        pushes = sim.to_host[board].pushes
        first = swiped_at + debounce
        out = next((t for t, ms in pushes if t > t0 and ms >= first), float("nan"))
        board_in = last_push(sim.to_board[board], edge.t)
        samples.append(Sample(t0, edge.t, board_out=out, board_in=board_in))
        await sim.until_sim_ms(closed_at + 400)  # door closed and grant contact settled
    return samples


def pct(values: list[float], p: int) -> float:
    """The p-th percentile (inclusive method)."""
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def spread(values: list[float]) -> str:
    """p50, p99 and max of values in ms."""
    return f"p50 {pct(values, 50):7.1f}   p99 {pct(values, 99):7.1f}   max {max(values):7.1f} ms"


def median_ms(pairs: list[tuple[float, float]]) -> float:
    """Median of (b - a) in ms over the pairs where both are known."""
    return statistics.median((b - a) * 1000 for a, b in pairs if a == a and b == b)


def print_latency(pickups: list[Sample], grants: list[Sample], sim: SimThread) -> None:
    """The latency figures and where the time goes."""
    print(f"\n1. Pickup request (kiosk, valid code) -> solenoid energised, {len(pickups)} pickups")
    print(f"  request -> solenoid          {spread([s.total_ms for s in pickups])}")
    print(f"  request -> pickup reply      {spread([(s.reply - s.start) * 1000 for s in pickups])}")
    print(f"  (state request round trip   {spread([s.state_rtt * 1000 for s in pickups])})")
    print("  medians of the legs:")
    reply_ms = median_ms([(s.start, s.reply) for s in pickups])
    in_ms = median_ms([(s.reply, s.board_in) for s in pickups])
    pass_ms = median_ms([(s.board_in, s.edge) for s in pickups])
    print(f"    request -> reply at the kiosk (bridge, code check, SQLite)  {reply_ms:7.1f} ms")
    print(f"    reply -> pulse taken in by a tick (board link, simulator)   {in_ms:7.1f} ms")
    print(f"    pulse taken in -> solenoid edge (that tick's VM passes)     {pass_ms:7.1f} ms")
    print(f"\n2. Card grant (swipe) -> strike relay energised, {len(grants)} grants")
    print(f"  swipe -> strike              {spread([s.total_ms for s in grants])}")
    print("  medians of the legs:")
    out_ms = median_ms([(s.start, s.board_out) for s in grants])
    host_ms = median_ms([(s.board_out, s.board_in) for s in grants])
    pass_ms = median_ms([(s.board_in, s.edge) for s in grants])
    print(f"    swipe -> grant event sent by the board (tick, debounce)     {out_ms:7.1f} ms")
    print(f"    event sent -> strike taken in by a tick (daemon, link, sim) {host_ms:7.1f} ms")
    print(f"    strike taken in -> strike edge (that tick's VM passes)      {pass_ms:7.1f} ms")
    busy = [b * 1000 for b in sim.busy_s]
    print(
        f"\nsimulator during 1 and 2 (loads included): tick {sim.sim.tick_ms} ms; one tick "
        f"({len(sim.sim.boards)} VM passes) took p50 {pct(busy, 50):.2f}, p99 {pct(busy, 99):.2f}, "
        f"max {max(busy):.2f} ms over {len(busy)} ticks; the simulated clock fell behind the "
        f"wall clock by up to {sim.lag_s * 1000:.0f} ms"
    )


async def latency(args: argparse.Namespace, tmp: Path) -> None:
    """Parts 1 and 2."""
    terminal_cfg = daemon_config.load(args.terminal)
    keys = board_keys(terminal_cfg.terminal, tmp / "data" / "keys")
    sim = SimThread(terminal_cfg.terminal, dict(keys), args.tick_ms)
    try:
        sim.start()
        bridge = tmp / "bridge.sock"
        cfg = daemon_toml(args.terminal, sim.urls(), bridge, tmp / "daemon.toml")
        key = ensure_key(cfg.bridge.key_file)
        log = tmp / "daemon-latency.log"
        with process(amtomat("run", "--config", str(tmp / "daemon.toml")), log) as daemon:
            kiosk = await kiosk_session(f"unix:{bridge}", key, daemon, log)
            try:
                progress = Progress(kiosk)
                sim.mark()
                pickups = await bench_pickups(kiosk, sim, cfg, progress, args.pickups)
                grants = await bench_grants(sim, cfg, args.grants)
                state = expect(await kiosk.state(), "state")
                if state["alarms"]:
                    raise BenchFailed(f"alarms after the run: {state['alarms']}")
                progress.task.cancel()
            finally:
                await kiosk.close()
            if daemon.poll() is not None:
                raise BenchFailed(f"amtomat run exited {daemon.returncode}:\n{tail(log)}")
    finally:
        sim.close()
    print_latency(pickups, grants, sim)


# ----- 3. idle daemon --------------------------------------------------------------------------


@dataclass
class Usage:
    """CPU and memory of one process over a window."""

    cpu_s: float = 0.0
    wall_s: float = 0.0
    rss_kb: list[int] = field(default_factory=list)
    hwm_kb: int = 0
    wakeups: int = 0  # voluntary context switches of the main thread (the event loop)


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process in seconds, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_kb(pid: int, name: str) -> int:
    """A figure of /proc/PID/status: VmRSS, VmHWM (kB), voluntary_ctxt_switches."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise BenchFailed(f"/proc/{pid}/status has no {name}")


async def watch(pid: int, seconds: float) -> Usage:
    """Sample the process once a second for seconds."""
    usage = Usage()
    cpu0, wall0 = proc_cpu_s(pid), time.monotonic()
    switches0 = proc_kb(pid, "voluntary_ctxt_switches")
    while time.monotonic() - wall0 < seconds:
        await asyncio.sleep(1)
        usage.rss_kb.append(proc_kb(pid, "VmRSS"))
    usage.cpu_s = proc_cpu_s(pid) - cpu0
    usage.wall_s = time.monotonic() - wall0
    usage.hwm_kb = proc_kb(pid, "VmHWM")
    usage.wakeups = proc_kb(pid, "voluntary_ctxt_switches") - switches0
    return usage


def print_usage(label: str, u: Usage) -> None:
    """One line of CPU and memory figures."""
    mib = [k / 1024 for k in u.rss_kb]
    print(
        f"  {label:<26} CPU {u.cpu_s / u.wall_s * 100:5.2f} % of one core "
        f"({u.cpu_s:.2f} s in {u.wall_s:.1f} s); VmRSS {min(mib):.1f}-{max(mib):.1f} MiB, "
        f"VmHWM {u.hwm_kb / 1024:.1f} MiB; {u.wakeups / u.wall_s:.0f} wake-ups/s"
    )


async def idle(args: argparse.Namespace, tmp: Path) -> None:
    """Part 3: amtomat sim and amtomat run as processes, the daemon watched from /proc."""
    control = tmp / "sim.sock"
    cmd = amtomat(
        "sim", "--config", str(args.terminal), "--keystore", str(tmp / "data" / "keys"),
        "--control", str(control), "--tick-ms", str(args.tick_ms),
    )  # fmt: skip
    sim_log, log = tmp / "sim.log", tmp / "daemon-idle.log"
    with process(cmd, sim_log) as sim_proc:
        end = time.monotonic() + 120
        while "control" not in sim_log.read_text(errors="replace"):
            if sim_proc.poll() is not None or time.monotonic() > end:
                raise BenchFailed(f"amtomat sim did not start:\n{tail(sim_log)}")
            await asyncio.sleep(0.2)
        urls = Person(control).board_urls()
        bridge = tmp / "bridge-idle.sock"
        cfg = daemon_toml(args.terminal, urls, bridge, tmp / "daemon.toml")
        key = ensure_key(cfg.bridge.key_file)
        with process(amtomat("run", "--config", str(tmp / "daemon.toml")), log) as daemon:
            kiosk = await kiosk_session(f"unix:{bridge}", key, daemon, log)
            try:
                with_kiosk = await watch(daemon.pid, args.idle_s)
            finally:
                await kiosk.close()
            await asyncio.sleep(2)
            alone = await watch(daemon.pid, args.idle_s)
            if daemon.poll() is not None or sim_proc.poll() is not None:
                raise BenchFailed(f"a process exited during the window:\n{tail(log)}")
    n = len(cfg.terminal.boards)
    print(f"\n3. Daemon (amtomat run) idle, {n} boards ready, amtomat sim in another process")
    print_usage(f"{n} boards, kiosk connected", with_kiosk)
    print_usage(f"{n} boards, no kiosk", alone)


# ----- main ---------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def header(args: argparse.Namespace) -> None:
    """The machine, the versions and the settings."""
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    cfg = daemon_config.load(args.terminal)
    print("amtomat controller benchmark (real firmware in MicroPython VMs, simulated world)")
    print(
        f"host: Python {platform.python_version()}, {platform.machine()}, CPU: {cpu_model()}, "
        f"{os.cpu_count()} cores, node {node.stdout.strip()}; load average "
        f"{Path('/proc/loadavg').read_text().split()[0]} at start"
    )
    boards = ", ".join(f"{b.board_id} ({len(b.channels)})" for b in cfg.terminal.boards)
    shown = args.terminal.relative_to(ROOT) if args.terminal.is_relative_to(ROOT) else args.terminal
    print(
        f"terminal: {shown}: {len(cfg.compartments)} compartments on "
        f"boards {boards}; daemon tick {cfg.daemon.tick_ms} ms; simulator tick {args.tick_ms} ms"
    )
    code = "12345678"
    encoded = hash_secret(code)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        verify_secret(code, encoded)
        times.append((time.perf_counter() - t) * 1000)
    print(
        f"one code check (scrypt {encoded.split('$')[1]}/{encoded.split('$')[2]}/"
        f"{encoded.split('$')[3]}) in this process: median {statistics.median(times):.1f} ms of 5"
    )


async def run(args: argparse.Namespace) -> int:
    """The three parts in a scratch folder; 0 when all of them worked, else 1."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="amtomat-bench-") as name:
        tmp = Path(name)
        try:
            header(args)
            if not args.skip_latency:
                await latency(args, tmp)
            if args.idle_s > 0:
                await idle(args, tmp)
        except FAILURES as exc:
            print(f"bench/terminal.py: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    load = Path("/proc/loadavg").read_text().split()[0]
    took = time.perf_counter() - started
    print(f"\ntotal benchmark time {took:.0f} s; load average {load} at the end")
    return 0


def main() -> int:
    """Entry point; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--terminal", type=Path, default=TERMINAL, help="terminal TOML (4 boards)")
    p.add_argument("--pickups", type=int, default=120, help="pickups to time (default 120)")
    p.add_argument("--grants", type=int, default=120, help="card grants to time (default 120)")
    p.add_argument("--idle-s", type=float, default=30, help="each idle window in s (0: skip)")
    p.add_argument("--tick-ms", type=int, default=5, help="simulator tick (as amtomat sim)")
    p.add_argument("--skip-latency", action="store_true", help="only the idle figures")
    args = p.parse_args()
    for name in ("pickups", "grants"):
        if getattr(args, name) < 2:
            p.error(f"--{name} must be at least 2, got {getattr(args, name)}")
    if args.idle_s != 0 and not 2 <= args.idle_s <= 3600:
        p.error(f"--idle-s must be 0 or 2..3600, got {args.idle_s}")
    if not 1 <= args.tick_ms <= 50:
        p.error(f"--tick-ms must be 1..50, got {args.tick_ms}")
    if not args.terminal.is_file():
        p.error(f"--terminal {args.terminal}: no such file")
    args.terminal = args.terminal.resolve()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
