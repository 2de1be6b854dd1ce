"""PiGpio on gpiozero's MockFactory: reset pulses, LED patterns, strike, debounced inputs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controller.errors import ControllerError
from controller.gpio import GpioError, PiEntrancePins, PiGpio, TimerHandle

ROOT = Path(__file__).resolve().parent.parent

RESET_A, RESET_B, LED, TAMPER = 17, 27, 18, 4
EXIT = 19
ENTRANCE = PiEntrancePins(strike=5, grant=6, door=13, exit=EXIT, invert=("grant", "exit"))


@dataclass
class _Timer:
    due: float
    seq: int
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class SimClock:
    """A simulated clock for ``call_later``: time moves only in ``advance``."""

    now: float = 0.0
    timers: list[_Timer] = field(default_factory=list)
    _seq: int = 0

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        self._seq += 1
        timer = _Timer(self.now + delay, self._seq, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            live = [t for t in self.timers if not t.cancelled and t.due <= end + 1e-9]
            if not live:
                break
            first = min(live, key=lambda t: (t.due, t.seq))
            self.timers.remove(first)
            self.now = max(self.now, first.due)
            first.callback()
        self.now = end
        self.timers = [t for t in self.timers if not t.cancelled]


@dataclass
class Rig:
    """A PiGpio on a mock factory with a simulated clock and a queue standing in for the loop."""

    gpio: PiGpio
    clock: SimClock
    queue: list[Callable[[], None]]
    reports: list[tuple[str, bool]]

    def pin(self, bcm: int) -> Any:
        return self.gpio.pin_factory.pin(bcm)

    def run_queue(self) -> None:
        while self.queue:
            self.queue.pop(0)()

    def advance(self, seconds: float) -> None:
        """Move time in the controller thread: run delivered callbacks, then timers."""
        self.run_queue()
        self.clock.advance(seconds)
        self.run_queue()


def make_rig(**overrides: Any) -> Rig:
    clock = SimClock()
    queue: list[Callable[[], None]] = []
    reports: list[tuple[str, bool]] = []
    kwargs: dict[str, Any] = {
        "reset_lines": {"wall-a": RESET_A, "wall-b": RESET_B},
        "status_led": LED,
        "tamper": TAMPER,
        "tamper_active_high": True,
        "entrance": ENTRANCE,
        "deliver": queue.append,
        "on_input": lambda name, active: reports.append((name, active)),
        "call_later": clock.call_later,
    }
    kwargs.update(overrides)
    factory = kwargs.pop("factory", "mock")
    gpio = PiGpio(factory, **kwargs)
    return Rig(gpio, clock, queue, reports)


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = make_rig()
    yield r
    r.gpio.close()


def levels(pin: Any) -> list[bool]:
    return [s.state for s in pin.states]


def test_reset_line_idles_high_goes_low_for_the_pulse_then_high(rig: Rig) -> None:
    run = rig.pin(RESET_A)
    assert run.function == "output" and run.state is True
    run.clear_states()
    rig.gpio.hard_reset("wall-a", 200)
    assert run.state is False
    rig.advance(0.199)
    assert run.state is False
    rig.advance(0.002)
    assert run.state is True
    assert levels(run) == [True, False, True]
    assert rig.pin(RESET_B).state is True, "only the named board is reset"


def test_reset_again_during_a_pulse_extends_it(rig: Rig) -> None:
    run = rig.pin(RESET_B)
    run.clear_states()
    rig.gpio.hard_reset("wall-b", 100)
    rig.advance(0.05)
    rig.gpio.hard_reset("wall-b", 100)
    rig.advance(0.08)
    assert run.state is False
    rig.advance(0.03)
    assert levels(run) == [True, False, True]


def test_reset_of_a_board_without_line_is_logged(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    assert rig.gpio.has_reset("wall-a") and not rig.gpio.has_reset("wall-z")
    rig.gpio.hard_reset("wall-z")
    assert "cannot hard-reset board 'wall-z'" in caplog.text


@pytest.mark.parametrize("ms", [0, -5, 10_001, 2.5, True, "200"])
def test_reset_with_bad_duration_is_refused(rig: Rig, ms: Any) -> None:
    with pytest.raises(GpioError) as info:
        rig.gpio.hard_reset("wall-a", ms)
    assert repr(ms) in str(info.value) and info.value.value == ms
    assert rig.pin(RESET_A).state is True


def test_status_led_patterns(rig: Rig) -> None:
    led = rig.pin(LED)
    assert led.state is False
    rig.gpio.set_status("ok")
    assert led.state is True
    rig.advance(5)
    assert led.state is True, "ok is steady on"

    led.clear_states()
    rig.gpio.set_status("degraded")  # slow: 0.5 s on, 0.5 s off
    rig.advance(0.45)
    assert led.state is True
    rig.advance(0.1)
    assert led.state is False
    rig.advance(0.5)
    assert led.state is True
    rig.advance(2.9)
    slow = len(led.states)

    led.clear_states()
    rig.gpio.set_status("alarm")  # fast: 0.1 s on, 0.1 s off
    rig.advance(3)
    fast = len(led.states)
    assert fast > 2 * slow, (slow, fast)

    rig.gpio.set_status("off")
    assert led.state is False
    led.clear_states()
    rig.advance(3)
    assert levels(led) == [False], "off stays off: no blink timer left behind"
    assert rig.gpio.status == "off"


def test_same_status_again_keeps_the_blink_phase(rig: Rig) -> None:
    led = rig.pin(LED)
    rig.gpio.set_status("degraded")
    rig.advance(0.4)
    rig.gpio.set_status("degraded")
    rig.advance(0.2)
    assert led.state is False


def test_unknown_status_names_the_value(rig: Rig) -> None:
    with pytest.raises(GpioError, match="'blinky'") as info:
        rig.gpio.set_status("blinky")
    assert info.value.value == "blinky"


def test_strike_on_then_off_after_its_time(rig: Rig) -> None:
    strike = rig.pin(ENTRANCE.strike)
    strike.clear_states()
    rig.gpio.strike(5000)
    assert strike.state is True
    rig.advance(4.99)
    assert strike.state is True
    rig.advance(0.02)
    assert levels(strike) == [False, True, False]


def test_strike_released_early_and_late_timer_is_harmless(rig: Rig) -> None:
    strike = rig.pin(ENTRANCE.strike)
    rig.gpio.strike(5000)
    rig.advance(1)
    rig.gpio.release_strike()
    assert strike.state is False
    strike.clear_states()
    rig.gpio.strike(300)
    rig.advance(4.5)  # the first strike's 5 s would end here; the second ended at 1.3 s
    assert levels(strike) == [False, True, False]


def test_strike_active_low_relay() -> None:
    r = make_rig(entrance=PiEntrancePins(strike=5, grant=6, door=13, strike_active_high=False))
    try:
        strike = r.pin(5)
        assert strike.state is True
        r.gpio.strike(100)
        assert strike.state is False
        r.advance(0.2)
        assert strike.state is True
    finally:
        r.gpio.close()


def test_strike_without_pi_entrance_is_an_error() -> None:
    r = make_rig(entrance=None)
    try:
        with pytest.raises(GpioError, match="not wired to the Pi"):
            r.gpio.strike(100)
        r.gpio.release_strike()
    finally:
        r.gpio.close()


def test_tamper_goes_through_deliver_after_debounce(rig: Rig) -> None:
    tamper = rig.pin(TAMPER)
    tamper.drive_low()  # cabinet shut: the normally-closed switch pulls to ground
    assert rig.reports == [] and rig.queue, "gpiozero's callback only queues work"
    rig.advance(0.06)
    assert rig.reports == [("tamper", False)]
    tamper.drive_high()  # cabinet opened
    rig.advance(0.049)
    assert rig.reports == [("tamper", False)], "not yet stable for 50 ms"
    rig.advance(0.002)
    assert rig.reports == [("tamper", False), ("tamper", True)]
    assert rig.gpio.inputs()["tamper"] is True


def test_bounce_is_filtered(rig: Rig) -> None:
    door = rig.pin(ENTRANCE.door)  # not inverted: high = door open
    door.drive_low()
    rig.advance(0.1)
    rig.reports.clear()
    for _ in range(5):
        door.drive_high()
        rig.advance(0.01)
        door.drive_low()
        rig.advance(0.01)
    rig.advance(0.1)
    assert rig.reports == [], "a bouncing contact that ends where it began reports nothing"
    door.drive_high()
    rig.advance(0.02)
    door.drive_low()
    rig.advance(0.02)
    door.drive_high()
    rig.advance(0.1)
    assert rig.reports == [("door", True)]


def test_inverted_inputs_and_initial_levels(rig: Rig) -> None:
    # Mock pins idle at their pull-up: high. Inverted inputs (grant, exit) read inactive.
    assert rig.gpio.inputs() == {"tamper": True, "grant": False, "door": True, "exit": False}
    rig.pin(ENTRANCE.grant).drive_low()
    rig.advance(0.1)
    assert rig.reports == [("grant", True)]
    rig.pin(EXIT).drive_low()
    rig.pin(EXIT).drive_high()
    rig.advance(0.1)
    assert rig.reports == [("grant", True)]


def test_tamper_active_low() -> None:
    r = make_rig(tamper_active_high=False)
    try:
        assert r.gpio.inputs()["tamper"] is False
        r.pin(TAMPER).drive_low()
        r.advance(0.1)
        assert r.reports == [("tamper", True)]
    finally:
        r.gpio.close()


def test_close_leaves_outputs_safe_and_stops_reports(rig: Rig) -> None:
    rig.gpio.strike(5000)
    rig.gpio.hard_reset("wall-a", 1000)
    rig.gpio.set_status("alarm")
    rig.pin(TAMPER).drive_low()
    rig.gpio.close()
    rig.advance(2)
    assert rig.reports == []
    assert rig.pin(ENTRANCE.strike).state is False
    assert rig.pin(LED).state is False
    assert rig.pin(RESET_A).function == "input", "RUN released to high-Z"
    rig.gpio.close()


def test_real_timers_deliver_through_the_callback() -> None:
    """Without call_later, thread timers hand their work to ``deliver``."""
    delivered: list[str] = []

    def deliver(callback: Callable[[], None]) -> None:
        delivered.append("x")
        callback()

    gpio = PiGpio(
        "mock",
        reset_lines={"wall-a": RESET_A},
        status_led=None,
        tamper=None,
        tamper_active_high=True,
        entrance=None,
        deliver=deliver,
        on_input=lambda name, active: None,
    )
    try:
        run = gpio.pin_factory.pin(RESET_A)
        gpio.hard_reset("wall-a", 20)
        deadline = time.monotonic() + 10
        while run.state is False and time.monotonic() < deadline:
            time.sleep(0.01)
        assert run.state is True and delivered
    finally:
        gpio.close()


def test_factory_none_is_a_no_op(caplog: pytest.LogCaptureFixture) -> None:
    r = make_rig(factory="none")
    assert r.gpio.pin_factory is None
    r.gpio.set_status("alarm")
    r.gpio.strike(100)
    r.gpio.release_strike()
    assert r.gpio.inputs() == {}
    r.gpio.hard_reset("wall-a")
    assert "no reset line available" in caplog.text
    r.advance(1)
    assert r.clock.timers == [] and r.reports == []
    r.gpio.close()


def test_unknown_factory_is_refused() -> None:
    with pytest.raises(GpioError, match=r"'pigpiod'.*choose one of: none, mock") as info:
        make_rig(factory="pigpiod")
    assert isinstance(info.value, ControllerError) and info.value.value == "pigpiod"


@pytest.mark.parametrize(
    ("factory", "module", "fix"),
    [("lgpio", "lgpio", "apt install python3-lgpio"), ("rpigpio", "RPi", "python3-rpi.gpio")],
)
def test_missing_backend_names_module_and_fix(
    monkeypatch: pytest.MonkeyPatch, factory: str, module: str, fix: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # None: "import halted", as when absent
    monkeypatch.delitem(sys.modules, f"gpiozero.pins.{factory}", raising=False)
    with pytest.raises(GpioError) as info:
        make_rig(factory=factory)
    message = str(info.value)
    assert f"{factory!r}" in message and f"{module!r}" in message and fix in message
    assert "choose factory =" in message


def test_lgpio_as_installed_here_is_missing() -> None:
    """lgpio is not installed on development machines: the plain error path, no patching."""
    if importlib.util.find_spec("lgpio") is not None:
        pytest.skip("lgpio is installed here")
    with pytest.raises(GpioError, match="python3-lgpio"):
        make_rig(factory="lgpio")


def test_mock_and_none_import_no_hardware_backend(tmp_path: Path) -> None:
    """Importable stand-ins for RPi and lgpio exist, yet mock/none never import them."""
    (tmp_path / "lgpio.py").write_text("raise SystemExit('lgpio was imported')\n")
    (tmp_path / "RPi").mkdir()
    (tmp_path / "RPi" / "__init__.py").write_text("raise SystemExit('RPi was imported')\n")
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(tmp_path)!r}, {str(ROOT)!r}]
        import importlib.util
        assert importlib.util.find_spec("lgpio") and importlib.util.find_spec("RPi")
        from controller.gpio import PiEntrancePins, PiGpio
        for factory in ("mock", "none"):
            g = PiGpio(factory, reset_lines={{"a": 17}}, status_led=18, tamper=4,
                       tamper_active_high=True,
                       entrance=PiEntrancePins(strike=5, grant=6, door=13),
                       deliver=lambda f: f(), on_input=lambda n, a: None)
            g.close()
        bad = [m for m in sys.modules if m.split(".")[0] in ("RPi", "lgpio")
               or m in ("gpiozero.pins.lgpio", "gpiozero.pins.rpigpio")]
        print("imported:", bad)
        sys.exit(1 if bad else 0)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("overrides", "match", "value"),
    [
        ({"status_led": RESET_A}, "status_led: BCM 17 is already used by reset_lines", RESET_A),
        ({"tamper": 28}, "tamper: 28 is not a BCM GPIO number from 0 to 27", 28),
        ({"tamper": "4"}, "tamper: '4' is not a BCM GPIO number", "4"),
        ({"reset_lines": {"wall-a": -1}}, r"reset_lines\[wall-a\]: -1", -1),
        (
            {"entrance": PiEntrancePins(strike=5, grant=6, door=13, invert=("exit",))},
            "entrance.invert: 'exit' is not a configured entrance input",
            "exit",
        ),
        (
            {"entrance": PiEntrancePins(strike=TAMPER, grant=6, door=13)},
            "BCM 4 is already used by",
            TAMPER,
        ),
        ({"debounce_ms": 5000}, "debounce_ms: 5000", 5000),
    ],
)
def test_bad_pins_name_role_and_value(overrides: dict[str, Any], match: str, value: Any) -> None:
    with pytest.raises(GpioError, match=match) as info:
        make_rig(**overrides)
    assert info.value.value == value


def test_bad_pins_are_refused_with_factory_none_too() -> None:
    with pytest.raises(GpioError, match="already used"):
        make_rig(factory="none", status_led=TAMPER)
