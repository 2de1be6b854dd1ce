"""The Pi's own GPIO pins through gpiozero: board reset lines, status LED, tamper, entrance.

Timing (reset pulses, strike pulses, LED blinking, input debounce) runs on a
``call_later(delay_s, callback)`` the caller may inject: the daemon passes its event
loop's ``call_later``, tests pass a simulated clock. Without one, timers are threads whose
callbacks go through ``deliver``. gpiozero's own callbacks (from its threads) also go
through ``deliver``, so every state change and every ``on_input`` call happens in the
controller's thread. Call the public methods from that thread too.

Inputs have pull-ups and follow the board convention of the terminal TOML: high is active.
A contact that is closed to ground while idle reads high once it opens (door open,
cabinet opened); a signal that pulls low when active (a push button or the card reader's
grant contact to ground) is listed in ``invert``. Debounce is done here,
not by gpiozero (``bounce_time`` is None): a level is reported once it has been stable
for ``debounce_ms`` (default 50 ms); each edge restarts that wait.
"""

from __future__ import annotations

import enum
import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from controller.errors import ControllerError

log = logging.getLogger(__name__)

FACTORIES: Final = ("none", "mock", "lgpio", "rpigpio", "native")
BCM_RANGE: Final = (0, 27)
RESET_MS_RANGE: Final = (1, 10_000)
STRIKE_MS_RANGE: Final = (1, 60_000)
DEBOUNCE_MS_RANGE: Final = (0, 1000)
INPUT_NAMES: Final = ("tamper", "grant", "door", "exit")

# factory name -> (module, class, fix when the backend module is missing)
_BACKENDS: Final[dict[str, tuple[str, str, str]]] = {
    "lgpio": (
        "gpiozero.pins.lgpio",
        "LGPIOFactory",
        "install it with 'apt install python3-lgpio' (the venv needs "
        "--system-site-packages) or 'pip install lgpio', or choose factory = \"native\"",
    ),
    "rpigpio": (
        "gpiozero.pins.rpigpio",
        "RPiGPIOFactory",
        "install it with 'apt install python3-rpi.gpio' (the venv needs "
        '--system-site-packages), or choose factory = "lgpio" (needed on a Pi 5)',
    ),
    "native": ("gpiozero.pins.native", "NativeFactory", 'choose factory = "lgpio"'),
}


class GpioError(ControllerError):
    """A GPIO factory, pin or call is unusable; names the value and the fix."""


class TimerHandle(Protocol):
    """A pending ``call_later`` callback (asyncio.TimerHandle and threading.Timer fit)."""

    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], None]], TimerHandle]


class LedPattern(enum.Enum):
    """What the status LED shows."""

    OFF = "off"
    OK = "ok"  # steady on
    DEGRADED = "degraded"  # slow blink
    ALARM = "alarm"  # fast blink


# (seconds on, seconds off) of the blinking patterns
BLINK: Final[dict[LedPattern, tuple[float, float]]] = {
    LedPattern.DEGRADED: (0.5, 0.5),
    LedPattern.ALARM: (0.1, 0.1),
}


@dataclass(frozen=True)
class PiEntrancePins:
    """The entrance when wired to the Pi (BCM numbers); ``invert`` names inputs to flip."""

    strike: int
    grant: int
    door: int
    exit: int | None = None
    invert: tuple[str, ...] = ()
    strike_active_high: bool = True


class _OneShot:
    """At most one pending timer; rescheduling or cancelling turns a late firing into a no-op."""

    def __init__(self, call_later: CallLater) -> None:
        self._call_later = call_later
        self._handle: TimerHandle | None = None
        self._generation = 0

    def schedule(self, delay_s: float, action: Callable[[], None]) -> None:
        self.cancel()
        generation = self._generation

        def fire() -> None:
            if generation == self._generation:
                self._handle = None
                action()

        self._handle = self._call_later(delay_s, fire)

    def cancel(self) -> None:
        self._generation += 1
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


@dataclass
class _Input:
    """One debounced input: its device, polarity and the level last reported."""

    name: str
    device: Any
    inverted: bool
    reported: bool
    debounce: _OneShot

    def read(self) -> bool:
        # pull-up: gpiozero's is_active is True while the pin is low
        high = not self.device.is_active
        return high != self.inverted


class PiGpio:
    """The Pi's GPIO: hard-reset lines per board, status LED, tamper and entrance pins."""

    def __init__(
        self,
        factory: str,
        *,
        reset_lines: Mapping[str, int],
        status_led: int | None,
        tamper: int | None,
        tamper_active_high: bool,
        entrance: PiEntrancePins | None,
        deliver: Callable[[Callable[[], None]], None],
        on_input: Callable[[str, bool], None],
        debounce_ms: int = 50,
        call_later: CallLater | None = None,
    ) -> None:
        """Claim the pins; bad factory names, pins or missing backends raise ``GpioError``.

        With factory ``"none"`` nothing is claimed and every method does nothing.
        """
        if factory not in FACTORIES:
            raise GpioError(
                f"GPIO factory {factory!r} is unknown; choose one of: {', '.join(FACTORIES)}",
                factory,
            )
        _check_range("debounce_ms", debounce_ms, DEBOUNCE_MS_RANGE)
        self.factory_name = factory
        self._deliver = deliver
        self._on_input = on_input
        self._debounce_s = debounce_ms / 1000
        self._call_later = call_later if call_later is not None else self._thread_timer
        self._closed = False
        self._pin_factory: Any = None
        self._devices: list[Any] = []
        self._resets: dict[str, tuple[Any, _OneShot]] = {}
        self._led: Any = None
        self._pattern = LedPattern.OFF
        self._led_timer = _OneShot(self._call_later)
        self._strike: Any = None
        self._strike_timer = _OneShot(self._call_later)
        self._inputs: dict[str, _Input] = {}
        roles = _roles(reset_lines, status_led, tamper, entrance)
        if factory == "none":
            if roles:
                log.warning(
                    "GPIO factory 'none': ignoring the Pi pins configured for %s",
                    ", ".join(sorted(roles)),
                )
            return
        self._pin_factory = _make_factory(factory)
        try:
            self._claim(reset_lines, status_led, tamper, tamper_active_high, entrance, roles)
        except BaseException:
            self.close()
            raise

    @property
    def pin_factory(self) -> Any:
        """The gpiozero pin factory in use (None for ``"none"``); tests drive mock pins."""
        return self._pin_factory

    def has_reset(self, board_id: str) -> bool:
        """True when ``board_id`` has a reset line this object can drive."""
        return board_id in self._resets

    def hard_reset(self, board_id: str, ms: int = 200) -> None:
        """Hold the board's RUN line low for ``ms``, then release it (returns at once).

        A board without a reset line (or factory ``"none"``) is logged, not raised.
        """
        _check_range("ms", ms, RESET_MS_RANGE)
        if self._closed:
            return
        line = self._resets.get(board_id)
        if line is None:
            why = "GPIO factory 'none'" if self.factory_name == "none" else "no reset_gpio"
            log.warning("cannot hard-reset board %r: no reset line available (%s)", board_id, why)
            return
        device, timer = line
        log.info("hard reset of board %r: RUN low for %d ms", board_id, ms)
        device.on()
        timer.schedule(ms / 1000, device.off)

    def set_status(self, status: str) -> None:
        """Show ``status`` on the LED: "ok" on, "degraded" slow blink, "alarm" fast, "off"."""
        try:
            pattern = LedPattern(status)
        except ValueError:
            choices = ", ".join(p.value for p in LedPattern)
            raise GpioError(
                f"status {status!r} is unknown; use one of: {choices}", status
            ) from None
        if self._closed or pattern is self._pattern:
            return
        self._pattern = pattern
        self._led_timer.cancel()
        if self._led is None:
            return
        if pattern is LedPattern.OFF:
            self._led.off()
        else:
            self._led_step(True)

    @property
    def status(self) -> str:
        """The status the LED shows now."""
        return self._pattern.value

    def strike(self, ms: int) -> None:
        """Energise the Pi-wired entrance strike for ``ms`` (a new call restarts the time)."""
        _check_range("ms", ms, STRIKE_MS_RANGE)
        if self._closed or self.factory_name == "none":
            return
        if self._strike is None:
            raise GpioError(
                "the entrance strike is not wired to the Pi; configure the entrance pins "
                "or pulse the strike through its board",
                None,
            )
        self._strike.on()
        self._strike_timer.schedule(ms / 1000, self._strike.off)

    def release_strike(self) -> None:
        """De-energise the strike now (the door was opened); harmless when not active."""
        self._strike_timer.cancel()
        if self._strike is not None and not self._closed:
            self._strike.off()

    def inputs(self) -> dict[str, bool]:
        """The debounced level of every configured input by name (True = active)."""
        return {name: i.reported for name, i in self._inputs.items()}

    def close(self) -> None:
        """Outputs to their safe state (strike off, RUN released, LED off), pins released."""
        if self._closed:
            return
        self._closed = True
        for timer in (self._led_timer, self._strike_timer):
            timer.cancel()
        for _device, timer in self._resets.values():
            timer.cancel()
        for i in self._inputs.values():
            i.debounce.cancel()
        for device in reversed(self._devices):
            try:
                if hasattr(device, "off"):
                    device.off()
                device.close()
            except Exception as exc:  # a failing pin must not keep the others claimed
                log.warning("closing GPIO device %r failed: %s", device, exc)
        self._devices.clear()
        if self._pin_factory is not None:
            try:
                self._pin_factory.close()
            except Exception as exc:
                log.warning("closing GPIO factory %r failed: %s", self.factory_name, exc)

    def _claim(
        self,
        reset_lines: Mapping[str, int],
        status_led: int | None,
        tamper: int | None,
        tamper_active_high: bool,
        entrance: PiEntrancePins | None,
        roles: dict[str, int],
    ) -> None:
        """Create every gpiozero device on this object's factory."""
        from gpiozero import LED, DigitalInputDevice, DigitalOutputDevice

        def make(role: str, cls: Any, **kwargs: Any) -> Any:
            pin = roles[role]
            try:
                device = cls(pin, pin_factory=self._pin_factory, **kwargs)
            except Exception as exc:
                raise GpioError(f"{role}: cannot use BCM {pin}: {exc}", pin) from exc
            self._devices.append(device)
            return device

        for board_id in reset_lines:
            # RUN is pulled low to reset: idle drives high, active drives low
            device = make(
                f"reset_lines[{board_id}]",
                DigitalOutputDevice,
                active_high=False,
                initial_value=False,
            )
            self._resets[board_id] = (device, _OneShot(self._call_later))
        if status_led is not None:
            self._led = make("status_led", LED, active_high=True, initial_value=False)
        inputs: list[tuple[str, bool]] = []
        if tamper is not None:
            inputs.append(("tamper", not tamper_active_high))
        if entrance is not None:
            self._strike = make(
                "entrance.strike",
                DigitalOutputDevice,
                active_high=entrance.strike_active_high,
                initial_value=False,
            )
            for name in ("grant", "door", "exit"):
                if f"entrance.{name}" in roles:
                    inputs.append((name, name in entrance.invert))
        for name, inverted in inputs:
            role = name if name == "tamper" else f"entrance.{name}"
            device = make(role, DigitalInputDevice, pull_up=True, bounce_time=None)
            entry = _Input(name, device, inverted, False, _OneShot(self._call_later))
            entry.reported = entry.read()
            self._inputs[name] = entry
            edge = self._edge_callback(name)
            device.when_activated = edge
            device.when_deactivated = edge

    def _edge_callback(self, name: str) -> Callable[[], None]:
        """A gpiozero callback (any thread) that hands the edge to the controller thread."""

        def edge() -> None:
            self._deliver(lambda: self._edge(name))

        return edge

    def _edge(self, name: str) -> None:
        """An edge in the controller thread: (re)start the stability wait."""
        entry = self._inputs.get(name)
        if entry is None or self._closed:
            return
        entry.debounce.schedule(self._debounce_s, lambda: self._settled(entry))

    def _settled(self, entry: _Input) -> None:
        """No edge for the debounce time: report the level if it changed."""
        if self._closed:
            return
        level = entry.read()
        if level == entry.reported:
            return
        entry.reported = level
        self._on_input(entry.name, level)

    def _led_step(self, on: bool) -> None:
        """Set the LED for the current pattern and schedule the next blink phase."""
        if self._closed or self._led is None:
            return
        if on:
            self._led.on()
        else:
            self._led.off()
        timing = BLINK.get(self._pattern)
        if timing is not None:
            self._led_timer.schedule(timing[0] if on else timing[1], lambda: self._led_step(not on))

    def _thread_timer(self, delay_s: float, callback: Callable[[], None]) -> TimerHandle:
        """Default ``call_later``: a daemon thread timer whose callback goes via deliver."""
        timer = threading.Timer(delay_s, self._deliver, args=(callback,))
        timer.daemon = True
        timer.start()
        return timer


def _make_factory(name: str) -> Any:
    """A new pin factory of ``name``; the backend module is imported only here."""
    if name == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    module_name, class_name, fix = _BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or module_name
        raise GpioError(
            f"GPIO factory {name!r} needs the Python module {missing!r}, which is not "
            f"installed; {fix}",
            name,
        ) from exc
    try:
        return getattr(module, class_name)()
    except Exception as exc:
        raise GpioError(
            f"GPIO factory {name!r} cannot open the Pi's GPIO ({exc}); run on a Raspberry "
            'Pi as a member of group gpio, or choose factory = "none" on other machines',
            name,
        ) from exc


def _roles(
    reset_lines: Mapping[str, int],
    status_led: int | None,
    tamper: int | None,
    entrance: PiEntrancePins | None,
) -> dict[str, int]:
    """Every configured pin by role, checked: BCM range, one role per pin."""
    roles: dict[str, int] = {}
    for board_id, pin in reset_lines.items():
        if not isinstance(board_id, str) or not board_id:
            raise GpioError(f"reset_lines: board id {board_id!r} is not a name", board_id)
        roles[f"reset_lines[{board_id}]"] = pin
    if status_led is not None:
        roles["status_led"] = status_led
    if tamper is not None:
        roles["tamper"] = tamper
    if entrance is not None:
        roles["entrance.strike"] = entrance.strike
        roles["entrance.grant"] = entrance.grant
        roles["entrance.door"] = entrance.door
        if entrance.exit is not None:
            roles["entrance.exit"] = entrance.exit
        for name in entrance.invert:
            if name not in ("grant", "door", "exit") or f"entrance.{name}" not in roles:
                raise GpioError(
                    f"entrance.invert: {name!r} is not a configured entrance input; "
                    "name grant, door or exit",
                    name,
                )
    owner: dict[int, str] = {}
    for role, pin in roles.items():
        _check_range(role, pin, BCM_RANGE, unit="a BCM GPIO number")
        if pin in owner:
            raise GpioError(
                f"{role}: BCM {pin} is already used by {owner[pin]}; give each role its own pin",
                pin,
            )
        owner[pin] = role
    return roles


def _check_range(
    name: str, value: object, bounds: tuple[int, int], unit: str = "a whole number"
) -> None:
    """Raise ``GpioError`` unless ``value`` is an int within ``bounds``."""
    lo, hi = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise GpioError(f"{name}: {value!r} is not {unit} from {lo} to {hi}", value)
