"""The terminal controller: compartments, operations, entrance, alarms and the request
API, driven by board events and a clock. It does no I/O of its own: board links are
attached to it, and ``step(now_ms)`` runs its deadlines (the daemon calls it every tick,
tests call it on simulated time).

Front ends reach it through ``call`` (controller.api); a request with a ``request_id``
seen before gets its stored result, so a repeated pickup never opens twice, across
reconnects and restarts. A county operator's origin acts with admin rights and alone may
send the requests of ``COUNTY_REQUESTS``. A code issued here at a load goes to the
``code_listeners`` (the county's SMS gateway), never to notices.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from controller import service, views
from controller.alarms import Alarms
from controller.api import (
    COUNTY_REQUESTS,
    Listener,
    Origin,
    Result,
    Status,
    fail,
    is_county,
    shown,
)
from controller.attempts import AttemptLimiter
from controller.boardlink import (
    BoardEvent,
    BoardLink,
    BoardOffline,
    InputReport,
    LinkState,
    RequestOutcome,
)
from controller.compartments import LED_MODES, Compartment, CState, Door, Led, Wall
from controller.config import Config
from controller.entrance import Entrance
from controller.errors import ControllerError
from controller.loading import start_load
from controller.operations import Operation
from controller.pickup import TERMINAL_KEY, start_pickup
from controller.secrets import hash_secret
from controller.store import Store
from controller.timers import Clock, Timers

log = logging.getLogger(__name__)

EXPIRY_SWEEP_MS: Final = 60_000
HEALTH_CHECK_MS: Final = 2_000
STARTUP_GRACE_MS: Final = 20_000  # a board not ready this long after start raises board_offline
REQUEST_MEMORY_S: Final = 30 * 86400  # request ids are remembered this long
TRANSIENT: Final = frozenset(
    {CState.LOADING, CState.OPENING, CState.OPEN, CState.EMPTIED, CState.HELD_OPEN}
)
# request -> (needs staff, changes something: remembered by request_id)
_REQUESTS: Final[dict[str, tuple[bool, bool]]] = {
    "state": (False, False),
    "compartments": (False, False),
    "staff_login": (False, True),
    "staff_logout": (False, False),
    "load": (True, True),
    "pickup": (False, True),
    "dropoff": (False, True),
    "retrieval_list": (True, False),
    "retrieve": (True, True),
    "service_open": (True, True),
    "entrance_mode": (True, True),
    "set_service": (True, True),
    "assign": (True, True),
    "revoke": (True, True),
    "board_reset": (True, True),
}
_COUNTY_ONLY: Final = frozenset(COUNTY_REQUESTS)
CodeListener = Callable[[dict[str, Any]], None]
_DOOR_KINDS: Final = {"door_open": Door.OPEN, "door_closed": Door.CLOSED}
_FLAP_KINDS: Final = {"flap_open": Door.OPEN, "flap_closed": Door.CLOSED}


class TerminalController:
    """See the module docstring."""

    def __init__(
        self, config: Config, store: Store, clock: Clock | None = None, gpio: Any = None
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock or Clock()
        self.gpio = gpio
        self.timers = Timers()
        self.timers.now_ms = self.clock.now_ms()
        self.started_ms = self.timers.now_ms
        self.links: dict[str, BoardLink] = {}
        self.listeners: list[Listener] = []
        self.code_listeners: list[CodeListener] = []  # locally issued codes (SMS gateway)
        self.operations: dict[int, Operation] = {}
        self.slot_holders: dict[str, int] = {}
        self.items: dict[str, bool | None] = {}
        self.slot_flaps: dict[str, Door] = {}  # "return"/"dropoff": what the flap sensor says
        self.tamper_active = False
        self._ever_ready: set[str] = set()
        self.service_door_open = False
        self.staff = {m.id: m for m in config.staff}
        self.dummy_pin_hash = hash_secret("not-a-pin")
        p, s = config.pickup, config.staff_auth
        self.reference_attempts = AttemptLimiter(
            store, "reference", p.attempts_per_reference, p.window_s, p.lockout_s
        )
        self.terminal_attempts = AttemptLimiter(
            store, "terminal", p.attempts_per_terminal, p.window_s, p.lockout_s
        )
        self.staff_attempts = AttemptLimiter(store, "staff", s.attempts, s.lockout_s, s.lockout_s)
        self.alarms = Alarms(store, self.notify)
        specs = [(c.label, c.board, c.channel, c.size) for c in config.compartments]
        with_led = [c.label for c in config.compartments if self._wired(c.board, c.channel, "led")]
        self.wall = Wall(store, specs, with_led)
        self.wall.listeners.append(self._compartment_changed)
        self.entrance = Entrance(self)
        self._recover()
        self._sweep_expiry()
        self._check_health()

    # ----- start-up --------------------------------------------------------------------

    def _recover(self) -> None:
        """After a crash: in-flight commands and operations become unknown, never repeated."""
        for row, board, name, op in self.store.commands_in_flight():
            self.store.command_ended(row, "unknown", "daemon restarted before the reply")
            with self.store.tx():
                self.store.audit("system", "command_unknown", board, command=name, op=op)
        rows = self.store.db.execute(
            "SELECT op, kind, compartment FROM operations WHERE ended_utc IS NULL"
        ).fetchall()
        for op, kind, label in rows:
            with self.store.tx():
                self.store.db.execute(
                    "UPDATE operations SET ended_utc=?, outcome='unknown', "
                    "detail='daemon restarted during the operation' WHERE op=?",
                    (self.store.utc(), op),
                )
                self.store.db.execute(
                    "UPDATE assignments SET status='unknown', ended_utc=? "
                    "WHERE compartment=? AND status='loading'",
                    (self.store.utc(), label),
                )
                self.store.audit("system", f"{kind}_unknown", label or kind, op=op)
            log.warning("operation %d (%s) was in flight at restart: outcome unknown", op, kind)
        for c in self.wall.by_label.values():
            if c.state in TRANSIENT:
                self.wall.set_state(c, CState.UNKNOWN, "system", "daemon restarted mid-operation")
                self.alarms.raise_(
                    "outcome_unknown", c.label, "daemon restarted during an operation: check it"
                )

    def attach(self, link: BoardLink) -> None:
        """A board link whose callbacks lead here (on_event, on_state, on_inputs)."""
        self.links[link.board_id] = link

    # ----- time ------------------------------------------------------------------------

    def step(self, now_ms: int) -> None:
        """Run every deadline due at now_ms."""
        self.timers.run_due(now_ms)

    def _sweep_expiry(self) -> None:
        try:
            service.expire_due(self)
            self.store.forget_requests(self.store.utc() - REQUEST_MEMORY_S)
        finally:
            self.timers.after(EXPIRY_SWEEP_MS, self._sweep_expiry, "expiry sweep")

    def _check_health(self) -> None:
        """Alarms for boards that never got ready, and lockouts that have ended."""
        try:
            started = self.timers.now_ms - self.started_ms >= STARTUP_GRACE_MS
            for link in self.links.values():
                if link.state in (LinkState.READY, LinkState.MISMATCH):
                    continue
                if link.failures > 0 or started:
                    self.alarms.raise_("board_offline", link.board_id, link.last_error or None)
            if self.terminal_attempts.locked_until(TERMINAL_KEY) is None:
                self.alarms.clear("code_lockout", "terminal", why="lockout ended")
            for name, subject in list(self.alarms.active):
                if name == "staff_lockout" and self.staff_attempts.locked_until(subject) is None:
                    self.alarms.clear(name, subject, why="lockout ended")
        finally:
            self.timers.after(HEALTH_CHECK_MS, self._check_health, "health check")

    # ----- notices ---------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Receive every notice; returns the unsubscribe."""
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener) if listener in self.listeners else None

    def notify(self, name: str, fields: dict[str, Any]) -> None:
        """Tell every listener; one that raises is logged and does not stop the others."""
        for listener in list(self.listeners):
            try:
                listener(name, fields)
            except Exception:
                log.exception("listener failed on %s", name)

    def _compartment_changed(self, c: Compartment, old: CState, why: str) -> None:
        self.notify(
            "compartment",
            {
                "compartment": c.label,
                "state": c.state.value,
                "door": c.door.value,
                "led": c.led.value,
            },
        )

    def announce_terminal(self) -> None:
        """Push the terminal summary."""
        self.notify("terminal", self.terminal_fields())

    def terminal_fields(self) -> dict[str, Any]:
        """Entrance mode and board readiness: the ``terminal`` notice's fields."""
        ready = sum(1 for link in self.links.values() if link.state == LinkState.READY)
        return {
            "entrance": self.entrance.mode.value,
            "boards_ready": ready,
            "boards": len(self.config.terminal.boards),
        }

    # ----- board commands --------------------------------------------------------------

    def command(
        self,
        board: str,
        name: str,
        args: list[Any],
        op: int | None,
        done: Callable[[RequestOutcome], None],
    ) -> int:
        """Send a board request, recorded before it leaves; raises ControllerError
        (BoardOffline, ...) when it cannot be sent."""
        link = self.links.get(board)
        if link is None:
            raise BoardOffline(f"board {board} is not attached", board)
        link.check_ready(name)  # a request the link refuses up front leaves no row
        row = self.store.command_sent(board, name, {"args": args}, op)

        def answered(result: RequestOutcome) -> None:
            status = (
                "unknown"
                if result.outcome.name == "UNKNOWN"
                else ("done" if result.ok else "refused")
            )
            self.store.command_ended(
                row, status, {"status": result.status, "reason": result.reason}
            )
            done(result)

        try:
            return link.request(name, args, self.timers.now_ms, answered)
        except ControllerError as exc:
            self.store.command_ended(row, "not_sent", str(exc))
            raise

    def set_led(self, c: Compartment, mode: int, op: int | None) -> None:
        """Set a compartment's LED when it has one (``c.led`` follows once the board
        confirmed it); failures are only logged."""
        if not self._has(c, "led"):
            return

        def answered(result: RequestOutcome) -> None:
            if result.ok and mode in LED_MODES:
                self.wall.set_led(c, LED_MODES[mode])

        try:
            self.command(c.board, "led", [c.channel, mode], op, answered)
        except ControllerError as exc:
            log.info("LED of %s not set: %s", c.label, exc)

    def _has(self, c: Compartment, signal: str) -> bool:
        return self._wired(c.board, c.channel, signal)

    def _wired(self, board: str, channel: int, signal: str) -> bool:
        spec = self.config.terminal.board(board)
        for ch in spec.channels:
            if ch.channel == channel:
                return getattr(ch, signal) is not None
        return False

    def slot_board(self, unit: str) -> str | None:
        """The board with the return or drop-off slot, or None."""
        key = "return_slot" if unit == "return" else "dropoff_slot"
        for spec in self.config.terminal.boards:
            if getattr(spec, key) is not None:
                return spec.board_id
        return None

    # ----- checks ----------------------------------------------------------------------

    def interlock(self, c: Compartment | None, pickup: bool = False) -> Result | None:
        """A refusal when a configured interlock forbids opening now, else None."""
        locks = self.config.interlocks
        if locks.tamper_blocks_all and self.tamper_active:
            return fail(Status.INTERLOCK, "the cabinet tamper switch is active")
        if c is not None and locks.service_door_blocks_compartments and self.service_door_open:
            return fail(Status.INTERLOCK, "the service door is open")
        if pickup and locks.lockdown_blocks_pickup and self.entrance.mode.value == "lockdown":
            return fail(Status.LOCKDOWN, "the terminal is in lockdown")
        return None

    def refuse_opening(self, c: Compartment, pickup: bool = False) -> Result | None:
        """Why c cannot be opened now (board, service state, interlocks), or None."""
        link = self.links.get(c.board)
        if link is None or link.state != LinkState.READY:
            state = link.state.value if link is not None else "not attached"
            return fail(Status.BOARD_OFFLINE, f"board {c.board} of {c.label} is {state}")
        out = (CState.OUT_OF_SERVICE, CState.JAMMED, CState.UNKNOWN, CState.FORCED)
        if pickup and c.state in out:
            return fail(Status.OUT_OF_SERVICE, f"compartment {c.label} is {c.state.value}")
        return self.interlock(c, pickup)

    def item_present(self, c: Compartment) -> bool | None:
        """What the item sensor says, or None without one (or not yet known)."""
        return self.items.get(c.label)

    def resting_state(self, c: Compartment) -> CState:
        """EMPTY, LOADED or EXPIRED from the compartment's open assignment."""
        row = self.store.db.execute(
            "SELECT status FROM assignments WHERE compartment=? AND status IN ('active', "
            "'expired') ORDER BY id DESC LIMIT 1",
            (c.label,),
        ).fetchone()
        if row is None:
            return CState.EMPTY
        return CState.LOADED if row[0] == "active" else CState.EXPIRED

    def count_pickup(self, assignment: int) -> None:
        """Counters of a completed pickup (inside the caller's transaction)."""
        row = self.store.db.execute(
            "SELECT loaded_utc FROM assignments WHERE id=?", (assignment,)
        ).fetchone()
        utc = self.store.utc()
        self.store.bump("pickups")
        if row is not None:
            self.store.bump("dwell_seconds", int(utc - float(row[0])))
        when = dt.datetime.fromtimestamp(utc, dt.UTC)
        if not self.config.office_hours.is_open(when):
            self.store.bump("pickups_outside_office_hours")

    # ----- board events ----------------------------------------------------------------

    def on_board_event(self, ev: BoardEvent) -> None:
        """A board event: stored once (across restarts too), then acted on."""
        with self.store.tx():
            fresh = self.store.record_event(
                ev.board_id, ev.boot_id, ev.eid, ev.kind, ev.unit, ev.channel, ev.value, ev.t_ms
            )
        if not fresh:
            return
        if ev.unit == "channel" and ev.channel is not None:
            self._channel_event(ev)
        elif ev.unit in ("return", "dropoff"):
            if ev.kind == "deposit":
                self._deposit(ev.unit)
            elif ev.kind in _FLAP_KINDS:
                self.slot_flaps[ev.unit] = _FLAP_KINDS[ev.kind]
        elif ev.unit == "entrance":
            self._entrance_event(ev.kind)
        elif ev.unit == "tamper":
            self._tamper(ev.kind == "tamper_on")
        elif ev.unit == "service" and ev.kind in _DOOR_KINDS:
            self._service_door(ev.kind == "door_open")
        elif ev.unit == "board":
            self._board_event(ev)

    def _channel_event(self, ev: BoardEvent) -> None:
        assert ev.channel is not None
        c = self.wall.at(ev.board_id, ev.channel)
        if c is None:
            return
        if ev.kind in ("item_present", "item_absent"):
            self.items[c.label] = ev.kind == "item_present"
        elif ev.kind in _DOOR_KINDS:
            self._door(c, _DOOR_KINDS[ev.kind], live=True)

    def _door(self, c: Compartment, door: Door, live: bool) -> None:
        was = c.door
        if not self.wall.set_door(c, door):
            return
        op = self.operations.get(c.busy_op) if c.busy_op is not None else None
        if op is not None:
            op.on_door(c, door)
            return
        if c.state == CState.UNKNOWN:
            return  # its operation's outcome is unknown: a door opening is expected, not forced
        if door == Door.OPEN and (live or was == Door.CLOSED) and c.state != CState.FORCED:
            if c.state in TRANSIENT:
                self.wall.set_state(c, CState.UNKNOWN, "system", "door opened, no operation")
            self.wall.set_state(c, CState.FORCED, "system", "door opened without a pulse")
            self.alarms.raise_("forced_open", c.label, "compartment door opened without a pulse")
        elif door == Door.CLOSED:
            self.alarms.clear("forced_open", c.label, why="door closed")

    def _deposit(self, unit: str) -> None:
        holder = self.slot_holders.get(unit)
        op = self.operations.get(holder) if holder is not None else None
        if op is not None:
            op.on_deposit(unit)
            return
        with self.store.tx():
            self.store.audit("system", "unexpected_deposit", unit)
            self.store.bump(f"{unit}_unexpected_deposits")

    def _entrance_event(self, kind: str) -> None:
        if kind == "grant":
            self.entrance.on_grant()
        elif kind == "exit_pressed":
            self.entrance.on_exit()
        elif kind in _DOOR_KINDS:
            self.entrance.on_door(_DOOR_KINDS[kind])

    def _tamper(self, active: bool) -> None:
        self.tamper_active = active
        if active:
            self.alarms.raise_("tamper", "cabinet", "cabinet tamper switch open")
        else:
            self.alarms.clear("tamper", "cabinet", why="tamper switch closed")

    def _service_door(self, is_open: bool) -> None:
        if is_open == self.service_door_open:
            return
        self.service_door_open = is_open
        with self.store.tx():
            self.store.audit("system", "service_door", "cabinet", open=is_open)

    def _board_event(self, ev: BoardEvent) -> None:
        with self.store.tx():
            self.store.audit("system", f"board_{ev.kind}", ev.board_id, value=ev.value)
        if ev.kind == "safe_state":  # every output off, LEDs too
            for c in self.wall.by_label.values():
                if c.board == ev.board_id:
                    self.wall.set_led(c, Led.OFF)
        if ev.kind == "overflow":
            log.warning("board %s lost %s events (its ring overflowed)", ev.board_id, ev.value)
            with self.store.tx():
                self.store.bump("board_events_lost", ev.value or 0)

    def on_pi_input(self, name: str, active: bool) -> None:
        """An input on the Pi's own GPIO: tamper, or the entrance when wired to the Pi."""
        if name == "tamper":
            self._tamper(active)
        elif name == "grant" and active:
            self.entrance.on_grant()
        elif name == "exit" and active:
            self.entrance.on_exit()
        elif name == "door":
            self.entrance.on_door(Door.OPEN if active else Door.CLOSED)

    def on_link_state(self, link: BoardLink) -> None:
        """A board link changed state: alarms for boards that are not ready."""
        if link.state == LinkState.READY:
            self.alarms.clear("board_offline", link.board_id, why="ready")
            self.alarms.clear("board_mismatch", link.board_id, why="ready")
        elif link.state == LinkState.MISMATCH:
            self.alarms.raise_("board_mismatch", link.board_id, link.last_error)
        elif (link.board_id in self._ever_ready or link.failures > 0) and (
            "board_mismatch",
            link.board_id,
        ) not in self.alarms.active:
            # not at start-up: only a board that was ready, or failed to connect in time
            self.alarms.raise_("board_offline", link.board_id, link.last_error or None)
        if link.state == LinkState.READY:
            self._ever_ready.add(link.board_id)
        self.announce_terminal()

    def on_inputs(self, link: BoardLink, report: InputReport) -> None:
        """A fresh reading of every input (and LED) after a (re)connect."""
        for channel, is_open in report.doors.items():
            c = self.wall.at(link.board_id, channel)
            if c is not None:
                self.items[c.label] = report.items.get(channel)
                mode = report.leds.get(channel)
                self.wall.set_led(c, Led.NONE if mode is None else LED_MODES.get(mode, Led.OFF))
                self._door(c, Door.OPEN if is_open else Door.CLOSED, live=False)
        units = report.units
        for unit in ("return", "dropoff"):
            if "flap" in units.get(unit, {}):
                self.slot_flaps[unit] = Door.OPEN if units[unit]["flap"] else Door.CLOSED
        if "entrance" in units and "door" in units["entrance"]:
            self.entrance.on_door(Door.OPEN if units["entrance"]["door"] else Door.CLOSED)
        if "tamper" in units:
            self._tamper(bool(next(iter(units["tamper"].values()), 0)))
        if "service" in units:
            self._service_door(bool(next(iter(units["service"].values()), 0)))

    # ----- requests --------------------------------------------------------------------

    def call(
        self, request: str, args: Mapping[str, Any], origin: Origin, request_id: str | None = None
    ) -> Result:
        """Carry out a request (controller.api); never raises."""
        spec = _REQUESTS.get(request)
        if spec is None:
            return fail(Status.UNKNOWN_MESSAGE, f"unknown request {shown(request)}")
        needs_staff, remembered = spec
        county = is_county(origin)
        if request in _COUNTY_ONLY and not county:
            return fail(Status.FORBIDDEN, f"{request} is for county operators only")
        if remembered and request_id is not None:
            seen = self.store.request_result(request_id, request)
            if seen is not None:
                status, reason, data = seen
                return Result(Status(status), reason, data)
        saved = origin.staff
        if needs_staff:
            refusal = service.require_staff(self, origin)
            if refusal is not None:
                return refusal
        if county:
            origin.staff = origin.name  # the actor of whatever this request audits
        try:
            result = self._dispatch(request, args, origin)
        except Exception:
            log.exception("request %s failed", request)
            result = fail(Status.INTERNAL, f"internal error while handling {request} (logged)")
        finally:
            if county:
                origin.staff = saved
        if remembered and request_id is not None:
            data = dict(result.data) if result.data else None
            if data is not None and "code" in data:
                data["code"] = None  # a locally issued code leaves once, never stored
            with self.store.tx():
                self.store.remember_request(request_id, request, result.status, result.reason, data)
        return result

    def _dispatch(self, request: str, args: Mapping[str, Any], origin: Origin) -> Result:
        actor = origin.staff or origin.name
        if request == "state":
            return views.state_reply(self)
        if request == "compartments":
            return views.compartments_reply(self)
        if request == "staff_login":
            return service.staff_login(self, args, origin)
        if request == "staff_logout":
            return service.staff_logout(self, origin)
        if request == "load":
            return start_load(self, args, actor)
        if request == "pickup":
            return start_pickup(self, args, origin.name)
        if request == "dropoff":
            return service.start_dropoff(self, origin)
        if request == "retrieval_list":
            return service.retrieval_list(self)
        if request == "retrieve":
            return service.start_retrieve(self, args, origin)
        if request == "service_open":
            return service.start_service_open(self, args, origin)
        if request == "set_service":
            return service.set_service(self, args, origin)
        if request == "assign":
            return service.assign(self, args, actor)
        if request == "revoke":
            return service.revoke(self, args, actor)
        if request == "board_reset":
            return service.board_reset(self, args, actor)
        return self.entrance.set_mode(args.get("mode"), actor)
