"""Drives BoardLinks in lockstep with a Simulator(serve=False): the simulator's clock is the
links' clock, bytes move through sim.write/sim.read, and every callback is recorded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.boardconfig import BoardSpec
from controller.boardlink import BoardEvent, BoardLink, InputReport, LinkState, RequestOutcome
from tools.sim.simulator import Simulator


@dataclass
class Probe:
    """One link and what its callbacks saw."""

    link: BoardLink
    events: list[BoardEvent] = field(default_factory=list)
    states: list[LinkState] = field(default_factory=list)
    inputs: list[InputReport] = field(default_factory=list)
    outcomes: dict[int, list[RequestOutcome]] = field(default_factory=dict)

    def kinds(self, channel: int | None = None, unit: str = "channel") -> list[str]:
        """Event kinds delivered for one unit (and channel)."""
        return [
            e.kind
            for e in self.events
            if e.unit == unit and (channel is None or e.channel == channel)
        ]

    def done(self, outcome: RequestOutcome) -> None:
        self.outcomes.setdefault(outcome.cid, []).append(outcome)


class Rig:
    """Links attached to boards of one simulator; ``sim.tick`` drives them all."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.probes: dict[str, Probe] = {}
        sim.on_tick = self._tick

    def attach(
        self,
        board_id: str,
        key: bytes | None,
        spec: BoardSpec | None = None,
        *,
        on_event: Callable[[BoardEvent], None] | None = None,
        on_state: Callable[[BoardLink], None] | None = None,
        connect_timeout_ms: int = 10000,
        open_port: bool = True,
    ) -> Probe:
        """A fresh link to board_id (its port opened unless open_port is False)."""
        self.detach(board_id)
        self.sim.read(board_id)  # bytes meant for an earlier host

        def write(data: bytes) -> None:
            self.sim.write(board_id, data)

        def record_event(event: BoardEvent) -> None:
            probe.events.append(event)
            if on_event is not None:
                on_event(event)

        def record_state(link: BoardLink) -> None:
            probe.states.append(link.state)
            if on_state is not None:
                on_state(link)

        link = BoardLink(
            spec or self.sim.boards[board_id].spec,
            key,
            write,
            on_event=record_event,
            on_state=record_state,
            on_inputs=lambda link, report: probe.inputs.append(report),
            connect_timeout_ms=connect_timeout_ms,
        )
        probe = Probe(link)
        self.probes[board_id] = probe
        if open_port:
            link.port_opened(self.sim.now)
        return probe

    def detach(self, board_id: str) -> None:
        """Close the link's port and stop driving it."""
        probe = self.probes.pop(board_id, None)
        if probe is not None:
            probe.link.port_closed(self.sim.now, "test detached the link")

    def _tick(self, now: int) -> None:
        for board_id, probe in list(self.probes.items()):
            data = self.sim.read(board_id)
            if data:
                probe.link.feed(data, now)
            probe.link.poll(now)

    def wait(self, cond: Callable[[], bool], limit_ms: int = 10000) -> None:
        """Advance the simulator until cond() holds; AssertionError after limit_ms."""
        end = self.sim.now + limit_ms
        while not cond():
            assert self.sim.now < end, f"not reached within {limit_ms} simulated ms"
            self.sim.tick()

    def ready(self, board_id: str, limit_ms: int = 10000) -> Probe:
        """Wait until the link is READY and its first input report arrived."""
        probe = self.probes[board_id]
        self.wait(lambda: probe.link.state is LinkState.READY and bool(probe.inputs), limit_ms)
        return probe

    def request(self, board_id: str, name: str, args: list[Any], timeout_ms: int = 5000) -> int:
        """Send a request whose outcomes are recorded in the probe."""
        probe = self.probes[board_id]
        return probe.link.request(name, args, self.sim.now, probe.done, timeout_ms)

    def call(
        self, board_id: str, name: str, args: list[Any], limit_ms: int = 10000
    ) -> RequestOutcome:
        """Request and wait for its outcome."""
        probe = self.probes[board_id]
        cid = self.request(board_id, name, args, timeout_ms=limit_ms)
        self.wait(lambda: cid in probe.outcomes, limit_ms + 100)
        (outcome,) = probe.outcomes[cid]
        return outcome

    def pulses(self, board_id: str, channel: int, since: int = 0) -> int:
        """Solenoid on-edges of a channel at or after simulated ms since."""
        name = f"channel {channel} solenoid"
        return sum(
            1 for e in self.sim.output_edges(board_id) if e.name == name and e.on and e.t >= since
        )

    def clear_faults(self) -> None:
        """Every board powered and on a perfect line again."""
        for board_id, board in self.sim.boards.items():
            self.sim.noise(
                board_id,
                "both",
                bit_error=0,
                drop=0,
                duplicate=0,
                delay_ms=0,
                jitter_ms=0,
                cut=False,
            )
            if board.state == "off":
                self.sim.power(board_id, "on")
