"""``amtomat run``: the daemon as one asyncio process around the terminal controller.

It opens the database, reads the keys, attaches a board link per board and a manager
per port, starts the kiosk bridge, the Pi's GPIO and the systemd notifier, ticks the
controller's deadlines, and shuts everything down in order on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.boardlink import BoardLink, LinkState
from controller.boardport import BoardManager
from controller.config import Config
from controller.errors import ConfigError, ControllerError
from controller.gpio import PiEntrancePins, PiGpio
from controller.keystore import KeystoreError, ensure_key, read_key
from controller.store import Store
from controller.systemd import Notifier
from controller.terminal import TerminalController
from controller.timers import Clock
from county.errors import CountyError, LinkSetupError
from county.link import CountyLink
from host_bridge.errors import KioskError
from host_bridge.server import BridgeServer

log = logging.getLogger(__name__)

EX_CONFIG = 78  # sysexits EX_CONFIG; deploy/amtomat.service does not restart on it

VERSION = "0.1.0"


def features(cfg: Config) -> list[str]:
    """What this terminal can do, for the kiosk's welcome and the county's birth."""
    out = ["pickup", "load", "dropoff", "retrieval", "service"]
    if cfg.entrance.board is not None:
        out.append("entrance")
    if any(b.return_slot is not None for b in cfg.terminal.boards):
        out.append("return_slot")
    return out


def bridge_identity(cfg: Config) -> dict[str, Any]:
    """What the bridge's welcome tells a kiosk about this terminal."""
    return {
        "kiosk_id": cfg.terminal.kiosk_id,
        "site": cfg.terminal.site,
        "sw_version": VERSION,
        "features": features(cfg),
        "compartments": len(cfg.compartments),
    }


def monotonic_ms() -> int:
    """The daemon's deadline clock."""
    return int(time.monotonic() * 1000)


@dataclass
class Daemon:
    """Everything the daemon runs; ``start`` builds it, ``stop`` takes it down."""

    config: Config
    clock: Clock = field(default_factory=lambda: Clock(now_ms=monotonic_ms))
    store: Store | None = None
    ctl: TerminalController | None = None
    managers: list[BoardManager] = field(default_factory=list)
    bridge: BridgeServer | None = None
    gpio: PiGpio | None = None
    county: CountyLink | None = None
    notifier: Notifier = field(default_factory=Notifier.from_env)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        """Open, attach and listen; ControllerError (e.g. ConfigError) names the problem."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        self.store = Store(cfg.daemon.database, utc=self.clock.utc)
        self.gpio = _gpio(cfg, loop, self._on_pi_input)
        self.ctl = TerminalController(cfg, self.store, self.clock, self.gpio)
        self.ctl.subscribe(self._on_notice)
        by_port: dict[str, list[BoardLink]] = defaultdict(list)
        writers: dict[str, Callable[[bytes], None]] = {}
        for i, spec in enumerate(cfg.terminal.boards):
            if spec.port is None:
                raise ConfigError(
                    f"boards[{i}].port",
                    None,
                    "is missing",
                    'add the board\'s serial port, e.g. port = "/dev/serial/by-id/..." '
                    'or port = "socket://127.0.0.1:7001" for the simulator',
                )
            key = read_key(cfg.daemon.keystore / f"{spec.board_id}.key")
            port = spec.port

            def write(data: bytes, port: str = port) -> None:
                writers[port](data)

            link = BoardLink(
                spec,
                key,
                write,
                on_event=self.ctl.on_board_event,
                on_state=self._on_link_state,
                on_inputs=self.ctl.on_inputs,
            )
            self.ctl.attach(link)
            by_port[port].append(link)
        hard_reset = self.gpio.hard_reset if self.gpio is not None else None
        for port, links in by_port.items():
            manager = BoardManager(port, links, now=self.clock.now_ms, hard_reset=hard_reset)
            writers[port] = manager.write
            self.managers.append(manager)
        bridge_key = None
        if cfg.bridge.require_key:
            bridge_key = ensure_key(cfg.bridge.key_file)
        self.bridge = BridgeServer(
            self.ctl, [e.url for e in cfg.bridge.listen], bridge_key, bridge_identity(cfg),
            now=self.clock.now_ms,
        )  # fmt: skip
        await self.bridge.start()
        if cfg.mqtt.enabled:
            managers = self.managers
            self.county = CountyLink(
                self.ctl, cfg.mqtt, version=VERSION, features=features(cfg),
                port_counters=lambda: {m.url: m.counters() for m in managers},
            )  # fmt: skip
            await self.county.start()
        for manager in self.managers:
            self.tasks.append(asyncio.create_task(manager.run(), name=f"port {manager.url}"))
        self.tasks.append(asyncio.create_task(self._tick(), name="tick"))
        self.notifier.ready(f"{len(cfg.terminal.boards)} boards, bridge on {self.bridge.bound}")
        log.info(
            "amtomat %s running: terminal %s, %d boards, %d compartments, bridge %s",
            VERSION, cfg.terminal.kiosk_id, len(cfg.terminal.boards), len(cfg.compartments),
            ", ".join(self.bridge.bound),
        )  # fmt: skip

    def _on_link_state(self, link: BoardLink) -> None:
        assert self.ctl is not None
        if self.stopping.is_set():
            return  # ports closing at shutdown are not board faults
        self.ctl.on_link_state(link)
        self._show_status()

    def _on_notice(self, name: str, fields: dict[str, Any]) -> None:
        if name == "alarm" and not self.stopping.is_set():
            self._show_status()

    def _on_pi_input(self, name: str, active: bool) -> None:
        assert self.ctl is not None
        self.ctl.on_pi_input(name, active)

    def _show_status(self) -> None:
        if self.ctl is None:
            return
        ready = sum(1 for link in self.ctl.links.values() if link.state == LinkState.READY)
        total = len(self.ctl.links)
        status = "alarm" if self.ctl.alarms.active else ("ok" if ready == total else "degraded")
        if self.gpio is not None:
            self.gpio.set_status(status)
        self.notifier.status(f"{ready}/{total} boards ready, {len(self.ctl.alarms.active)} alarms")

    async def _tick(self) -> None:
        assert self.ctl is not None
        interval = self.config.daemon.tick_ms / 1000
        watchdog = self.notifier.watchdog_interval_s
        last_pet = 0.0
        while not self.stopping.is_set():
            self.ctl.step(self.clock.now_ms())
            now = time.monotonic()
            if watchdog is not None and now - last_pet >= watchdog:
                self.notifier.watchdog()
                last_pet = now
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        """Shut down in order: bridge, ports, tasks, GPIO, database."""
        self.stopping.set()
        self.notifier.stopping()
        if self.county is not None:
            await self.county.stop("daemon stopping")
        if self.bridge is not None:
            await self.bridge.close()
        for manager in self.managers:
            manager.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.gpio is not None:
            self.gpio.close()
        if self.store is not None:
            self.store.close()
        log.info("amtomat stopped")


def _gpio(
    cfg: Config, loop: asyncio.AbstractEventLoop, on_input: Callable[[str, bool], None]
) -> PiGpio | None:
    g = cfg.gpio
    if g.factory == "none":
        return None
    reset_lines = {
        b.board_id: b.reset_gpio for b in cfg.terminal.boards if b.reset_gpio is not None
    }
    entrance = None
    if g.entrance is not None:
        e = g.entrance
        entrance = PiEntrancePins(strike=e.strike, grant=e.grant, door=e.door, exit=e.exit)
    return PiGpio(
        g.factory,
        reset_lines=reset_lines,
        status_led=g.status_led,
        tamper=g.tamper,
        tamper_active_high=g.tamper_active_high,
        entrance=entrance,
        deliver=lambda action: _discard(loop.call_soon_threadsafe(action)),
        call_later=loop.call_later,
        on_input=on_input,
    )


def _discard(value: object) -> None:
    """Drop a return value (a callback's signature wants None)."""


async def serve(config: Config, ready: Callable[[Daemon], object] | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status."""
    daemon = Daemon(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stopping.set)
    try:
        await daemon.start()
    except (ConfigError, KeystoreError, LinkSetupError) as exc:
        log.error("cannot start: %s", exc)
        await daemon.stop()
        return EX_CONFIG  # systemd does not restart on it: a person must fix the file
    except (ControllerError, KioskError, CountyError, OSError) as exc:
        log.error("cannot start: %s", exc)
        await daemon.stop()
        return 2
    if ready is not None:
        ready(daemon)
    await daemon.stopping.wait()
    await daemon.stop()
    return 0
