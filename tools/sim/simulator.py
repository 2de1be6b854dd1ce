"""A simulated terminal: every board runs the real firmware in its own MicroPython VM,
surrounded by a simulated world, reachable over a pty and TCP, on manual or real time.

Per tick and board: bytes from the host (endpoint or ``write``) pass the host→board
line noise, the world's sensor levels and those bytes go into the VM for one pass of
the firmware's main loop, the output edges it reports move the world, and its bytes
pass the board→host line noise to the endpoint and to ``read``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.boardconfig import BoardSpec, Terminal, board_json
from tools.sim.endpoints import BoardEndpoint
from tools.sim.noise import LineNoise
from tools.sim.vmboard import VMBoard
from tools.sim.world import BoardWorld, C, Edge, Pin, WorldError

RUNNING = "running"
OFF = "off"
REPL = "repl"


class SimulatorError(ValueError):
    """A request to the simulator names something that does not exist or cannot be done."""


@dataclass
class SimBoard:
    """One simulated board and everything around it."""

    spec: BoardSpec
    key: bytes | None
    world: BoardWorld
    to_board: LineNoise
    to_host: LineNoise
    endpoint: BoardEndpoint | None = None
    vm: VMBoard | None = None
    state: str = OFF
    boots: list[tuple[int, str]] = field(default_factory=list)  # (sim ms, reset cause)
    host_rx: bytearray = field(default_factory=bytearray)  # for read(), when not serving
    sent_levels: dict[Pin, int] = field(default_factory=dict)

    @property
    def board_id(self) -> str:
        """The board's id from the terminal config."""
        return self.spec.board_id


class Simulator:
    """A terminal of simulated boards; see the module docstring.

    ``keys`` maps board ids to their 32-byte keys (None: unprovisioned). With ``serve``
    each board gets a pty and a TCP port; without, hosts use ``write``/``read``.
    """

    def __init__(
        self,
        terminal: Terminal,
        keys: Mapping[str, bytes | None],
        *,
        serve: bool = False,
        tick_ms: int = 2,
        seed: int = 1,
        heap_bytes: int | None = None,
    ) -> None:
        if not 1 <= tick_ms <= 50:
            raise SimulatorError(f"tick_ms must be 1..50, got {tick_ms}")
        self.terminal = terminal
        self.tick_ms = tick_ms
        self.now = 0
        self._heap_bytes = heap_bytes
        self.seed = seed
        self.boards: dict[str, SimBoard] = {}
        for i, spec in enumerate(terminal.boards):
            world = BoardWorld(board_json(spec))
            board = SimBoard(
                spec=spec,
                key=keys.get(spec.board_id),
                world=world,
                to_board=LineNoise(seed * 1000 + 2 * i),
                to_host=LineNoise(seed * 1000 + 2 * i + 1),
            )
            if serve:
                board.endpoint = BoardEndpoint(spec.board_id)
            self.boards[spec.board_id] = board
        self.on_tick: Callable[[int], object] | None = None

    # ----- life cycle ---------------------------------------------------------------

    def start(self) -> None:
        """Power every board on."""
        for board in self.boards.values():
            self._power_on(board, "power")

    def close(self) -> None:
        """Stop every VM and close every endpoint."""
        for board in self.boards.values():
            if board.vm is not None:
                board.vm.close()
                board.vm = None
            if board.endpoint is not None:
                board.endpoint.close()

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _power_on(self, board: SimBoard, cause: str) -> None:
        """Power returns (cause "power") or the board boots again after a reset."""
        vm = board.vm
        if vm is None:
            vm = board.vm = VMBoard(
                board_json(board.spec),
                board.key,
                reset_cause=cause,
                heap_bytes=self._heap_bytes,
                seed=self.seed * 1000 + list(self.boards).index(board.board_id),
                now_ms=self.now,
            )
        elif vm.state == "off":
            vm.power_on(cause)
        else:
            vm.reboot(cause)
        board.state = RUNNING
        board.sent_levels = {}
        board.boots.append((self.now, cause))

    def _power_off(self, board: SimBoard) -> None:
        if board.vm is not None and board.state != OFF:
            edges = board.vm.power_cut()
            board.world.apply_edges([(self.now, e[1], e[2]) for e in edges])
        board.state = OFF
        board.world.reset_outputs(self.now)

    # ----- time ---------------------------------------------------------------------

    def advance(self, ms: int) -> dict[str, int]:
        """Run ms of simulated time in ticks of tick_ms; returns the new time."""
        if not 0 <= ms <= 3_600_000:
            raise SimulatorError(f"ms must be 0..3600000, got {ms}")
        end = self.now + ms
        while self.now < end:
            self.tick()
        return {"now": self.now}

    def tick(self) -> None:
        """One tick of every board."""
        self.now += self.tick_ms
        for board in self.boards.values():
            self._tick_board(board, self.now)
        if self.on_tick is not None:
            self.on_tick(self.now)

    def run_realtime(self, keep_going: Callable[[], bool], poll: Callable[[float], object]) -> None:
        """Tick in step with the wall clock while keep_going(); poll(seconds) waits for
        other work (e.g. the control server) between ticks."""
        start = time.monotonic() - self.now / 1000
        while keep_going():
            due = start + (self.now + self.tick_ms) / 1000
            wait = due - time.monotonic()
            if wait > 0:
                poll(wait)
            else:
                poll(0)
            self.tick()

    def _tick_board(self, board: SimBoard, now: int) -> None:
        if board.endpoint is not None:
            incoming = board.endpoint.poll(0)
            if incoming:
                board.to_board.push(incoming, now)
        rx = board.to_board.pull(now)
        board.world.step(now)
        vm = board.vm
        if board.state == RUNNING and vm is not None:
            levels = board.world.pin_levels()
            changed = {p: v for p, v in levels.items() if board.sent_levels.get(p) != v}
            board.sent_levels = levels
            result = vm.tick(now, rx, changed)  # VMBoard wraps the board's clock itself
            board.world.apply_edges(result.edges)
            if result.tx:
                board.to_host.push(result.tx, now)
            if result.action in ("reset", "crash"):
                self._power_on(board, "soft")  # a crash leaves its file: reason "crash"
            elif result.action in ("repl", "interrupt") or result.state == "repl":
                board.state = REPL
            elif not result.wdt_ok:
                self._power_on(board, "watchdog")
        out = board.to_host.pull(now)
        if out:
            if board.endpoint is not None:
                board.endpoint.write(out)
            else:
                board.host_rx += out

    # ----- hosts in this process ----------------------------------------------------

    def write(self, board_id: str, data: bytes) -> None:
        """Bytes from a host to a board, as if written to its serial port."""
        self._board(board_id).to_board.push(data, self.now)

    def read(self, board_id: str) -> bytes:
        """Bytes the board sent since the last read (simulators without ``serve``)."""
        board = self._board(board_id)
        out = bytes(board.host_rx)
        board.host_rx.clear()
        return out

    # ----- look-ups -----------------------------------------------------------------

    def _board(self, board_id: str) -> SimBoard:
        board = self.boards.get(board_id)
        if board is None:
            raise SimulatorError(f"no board {board_id!r}; boards: {', '.join(self.boards)}")
        return board

    def _unit_board(self, unit: int, what: str) -> SimBoard:
        for board in self.boards.values():
            if board.world.has_unit(unit):
                return board
        raise SimulatorError(f"this terminal has no {what}")

    def _world(self, board_id: str) -> BoardWorld:
        return self._board(board_id).world

    # ----- control API (verbs of tools.sim.control.SIM_COMMANDS) --------------------

    def boards_info(self) -> list[dict[str, Any]]:
        """Every board with its endpoint, state, boots and key status (never the key)."""
        out = []
        for board in self.boards.values():
            ep = board.endpoint
            out.append(
                {
                    "board": board.board_id,
                    "address": board.spec.address,
                    "state": board.state,
                    "pty": ep.pty_path if ep is not None else None,
                    "url": ep.url if ep is not None else None,
                    "provisioned": board.key is not None,
                    "boots": [{"t": t, "cause": c} for t, c in board.boots],
                }
            )
        return out

    def state(self) -> dict[str, Any]:
        """Time, and every board's state and world."""
        return {
            "now": self.now,
            "boards": {
                b.board_id: {"state": b.state, "world": b.world.state()}
                for b in self.boards.values()
            },
        }

    def door(self, board: str, channel: int, open: bool) -> dict[str, Any]:
        """A person opens or closes a compartment door."""
        return self._guard(lambda: self._world(board).set_door(channel, open))

    def item(self, board: str, channel: int, present: bool) -> dict[str, Any]:
        """A person puts an item in or takes it out."""
        return self._guard(lambda: self._world(board).set_item(channel, present))

    def deposit(self, unit: str = "return") -> dict[str, Any]:
        """A person deposits a document into the return or drop-off slot."""
        if unit not in ("return", "dropoff"):
            raise SimulatorError(f"unit must be return or dropoff, got {unit!r}")
        u = C.U_RETURN if unit == "return" else C.U_DROPOFF
        return self._guard(lambda: self._unit_board(u, f"{unit} slot").world.deposit(unit))

    def swipe(self) -> dict[str, Any]:
        """A bank card is swiped at the entrance reader (grant)."""
        return self._guard(lambda: self._entrance().world.swipe())

    def press_exit(self) -> dict[str, Any]:
        """The exit button is pressed."""
        return self._guard(lambda: self._entrance().world.press_exit())

    def entrance_door(self, open: bool) -> dict[str, Any]:
        """A person opens or closes the entrance door."""
        return self._guard(lambda: self._entrance().world.set_entrance_door(open))

    def tamper(self, active: bool) -> dict[str, Any]:
        """The tamper switch trips or is restored."""
        return self._guard(lambda: self._unit_board(C.U_TAMPER, "tamper").world.set_tamper(active))

    def service_door(self, open: bool) -> dict[str, Any]:
        """The service door opens or closes."""
        board = self._unit_board(C.U_SERVICE, "service door")
        return self._guard(lambda: board.world.set_service_door(open))

    def jam(self, board: str, channel: int, on: bool) -> dict[str, Any]:
        """A compartment door jams (stays shut when pulsed) or frees."""
        return self._guard(lambda: self._world(board).set_jam(channel, on))

    def stick(self, board: str, input: str, level: int) -> dict[str, Any]:
        """A sensor sticks at a logical level."""
        return self._guard(lambda: self._world(board).stick(input, level))

    def unstick(self, board: str, input: str) -> dict[str, Any]:
        """A stuck sensor follows the world again."""
        return self._guard(lambda: self._world(board).unstick(input))

    def bounce(self, board: str, input: str, count: int = 5, ms: int = 2) -> dict[str, Any]:
        """A sensor chatters count times, ms each."""
        return self._guard(lambda: self._world(board).bounce(input, count, ms))

    def power(self, board: str, action: str) -> dict[str, Any]:
        """cut: power lost (every output off); on: power returns; reboot: both; reset: the
        hard-reset line is pulled."""
        b = self._board(board)
        if action == "cut":
            self._power_off(b)
        elif action == "on":
            if b.state == OFF:
                self._power_on(b, "power")
        elif action == "reboot":
            self._power_off(b)
            self._power_on(b, "power")
        elif action == "reset":
            if b.state == OFF:
                raise SimulatorError(f"board {board} is off: power it on")
            self._power_on(b, "hard")  # the Pi pulls the board's RUN line
        else:
            raise SimulatorError(f"power action must be cut, on or reboot, got {action!r}")
        return {"board": board, "state": b.state}

    def noise(self, board: str, direction: str = "both", **settings: Any) -> dict[str, Any]:
        """Line faults on one or both directions of a board's serial line."""
        b = self._board(board)
        lines = {"in": [b.to_board], "out": [b.to_host], "both": [b.to_board, b.to_host]}
        if direction not in lines:
            raise SimulatorError(f"dir must be both, in or out, got {direction!r}")
        result: dict[str, Any] = {}
        for name, line in zip(("in", "out"), (b.to_board, b.to_host), strict=True):
            if line in lines[direction]:
                result[name] = line.configure(**settings)
        return result

    def cut_link(self, board: str, on: bool) -> dict[str, Any]:
        """Cut (or restore) the serial line both ways."""
        return self.noise(board, "both", cut=on)

    def edges(self, board: str, since: int = 0) -> list[dict[str, Any]]:
        """Every output edge of a board at or after since (simulated ms)."""
        return [
            {"t": e.t, "pin": e.pin, "level": e.level, "output": e.name, "on": e.on}
            for e in self._world(board).edges
            if e.t >= since
        ]

    def output_edges(self, board: str) -> list[Edge]:
        """Output edges as objects, for Python users."""
        return list(self._world(board).edges)

    def _entrance(self) -> SimBoard:
        return self._unit_board(C.U_ENTRANCE, "entrance")

    @staticmethod
    def _guard(action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return action()
        except WorldError as exc:
            raise SimulatorError(str(exc)) from None
