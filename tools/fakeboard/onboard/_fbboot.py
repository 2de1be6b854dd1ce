"""VM side of a fake USB board: makes a fresh MicroPython VM look like the board it plays,
boots the flashed firmware, and runs its loop one pass per call from the host.

The host (``tools.fakeboard.vm``) loads this from the hidden folder ``/_sim`` next to the
fake ``machine`` and ``simboard`` (``tools/sim/vm``) and calls, with one exec each:

- ``boot(cfg)``: installs ``machine`` (the fake, with the board's unique id and reset
  cause, its ``reset()`` reported to the host), ``sys`` (version, .mpy ABI, machine,
  platform) and ``os`` (a Pico's errno numbers, capacity, uname); then, when
  ``cfg["firmware"]``, does what main.py does at power-on: compiles ``/main.py``, runs
  its import statements, and boots ``amtfw.runtime.Runtime`` through ``simboard`` with a
  buffer port in place of USB. A failure prints its traceback as an uncaught error in
  main.py would, and the board stays in the REPL. Removes ``/_sim`` at the end.
- ``tick(now, rx, levels)``: one main-loop pass (``simboard.tick``).
- ``housekeeping(now)``: timers due by now (the watchdog feeder while the REPL has the
  port) and the watchdog's state.

Each passes its answer to the host as one JSON text through ``_fbjs.result``.
"""

import builtins
import io
import json
import os
import sys

import _fbjs  # type: ignore[import-not-found]  # registered by board_node.mjs

TYPE_CHECKING = False  # mypy treats this name as true; MicroPython has no typing module
if TYPE_CHECKING:
    from typing import Any

HIDDEN = "/_sim"
MARK = "@@SIMBOARD@@"  # simboard's reply lines start with it

machine = None  # type: Any
simboard = None  # type: Any


def _install_sys(cfg: "dict[str, Any]") -> None:
    from collections import namedtuple

    import _fbsys  # type: ignore[import-not-found]

    real = sys
    for name in dir(real):
        if name[:2] != "__":
            setattr(_fbsys, name, getattr(real, name))

    def delegate(name: str) -> "Any":
        return getattr(real, name)

    fields = ("name", "version", "_machine", "_mpy", "_build")
    # MicroPython's namedtuple takes the leading underscores CPython's refuses
    base = namedtuple("base", ("name", "version", "_machine", "_mpy", "_build"))  # type: ignore[misc]

    class Implementation(base):
        def __repr__(self) -> str:
            return "(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in fields) + ")"

        __str__ = __repr__

    _fbsys.__getattr__ = delegate
    _fbsys.implementation = Implementation(
        "micropython", tuple(cfg["version"]), cfg["machine"], cfg["mpy"], cfg["build"]
    )
    _fbsys.platform = cfg["platform"]
    _fbsys.version = f"3.4.0; MicroPython v{cfg['release']} on {cfg['date']}"
    _fbsys.__name__ = "sys"
    del _fbsys.__file__
    real.modules["sys"] = _fbsys
    del real.modules["_fbsys"]


def _install_os(cfg: "dict[str, Any]") -> None:
    import _fbos  # type: ignore[import-not-found]

    _fbos._install(
        cfg["platform"],
        cfg["release"],
        f"v{cfg['release']} on {cfg['date']}",
        cfg["machine"],
    )
    _fbos.__name__ = "os"
    del _fbos.__file__
    sys.modules["os"] = _fbos
    del sys.modules["_fbos"]
    builtins.open = _fbos._wrap(builtins.open)


def _remove_hidden() -> None:
    if HIDDEN in sys.path:
        sys.path.remove(HIDDEN)
    try:
        names = os.listdir(HIDDEN)
    except OSError:
        return
    for name in names:
        os.remove(HIDDEN + "/" + name)
    os.rmdir(HIDDEN)


def _print_traceback(exc: BaseException) -> None:
    """As MicroPython prints an uncaught error, without this module's frames."""
    buf = io.StringIO()
    sys.print_exception(exc, buf)  # type: ignore[attr-defined]
    text = buf.getvalue()
    lines = [line for line in text.split("\n") if HIDDEN + "/" not in line]
    print("\n".join(lines), end="")


def _check_main() -> None:
    """What main.py needs at power-on: it compiles, and each of its imports works."""
    with open("/main.py") as f:
        src = f.read()
    compile(src, "main.py", "exec")
    lines = src.split("\n")
    for i in range(len(lines)):
        stmt = lines[i].strip()
        if stmt[:7] == "import " or stmt[:5] == "from ":
            try:
                code = compile("\n" * i + stmt, "main.py", "exec")
            except SyntaxError:
                continue  # one line of a longer statement; main.py compiled as a whole
            exec(code, {"__name__": "__main__"})


def _record_crash(exc: BaseException) -> None:
    """main.py's except clause: the crash file for the next boot (when it can)."""
    try:
        from amtfw.platform import record_crash

        record_crash(exc)
    except Exception:
        pass


def _boot_firmware(cfg: "dict[str, Any]") -> str:
    """JSON of the firmware's first report, or of ``{"repl": why}`` after a failure."""
    global simboard
    try:
        _check_main()
        import simboard as sb  # type: ignore[import-not-found]
    except Exception as exc:
        _print_traceback(exc)
        _record_crash(exc)
        return json.dumps({"repl": f"main.py: {type(exc).__name__}: {exc}"})
    simboard = sb
    sb.REPL_BANNER = cfg["banner"]
    line = str(sb.boot(cfg["reset_cause"], cfg["seed"], cfg["now"], cfg["levels"], None))
    return '{"firmware": ' + line[len(MARK) :] + "}"


def boot(cfg: "dict[str, Any]") -> None:
    """Make this VM the board described by cfg; see the module docstring."""
    global machine
    if HIDDEN not in sys.path:
        sys.path.append(HIDDEN)
    import machine as fake_machine  # type: ignore[import-not-found]

    machine = fake_machine
    fake_machine.UNIQUE_ID = cfg["unique_id"]
    fake_machine.sim_reset_state(fake_machine.RESET_CAUSES[cfg["reset_cause"]], now=cfg["now"])
    fake_machine.on_reset = _fbjs.reset
    _install_sys(cfg)
    _install_os(cfg)
    try:
        answer = _boot_firmware(cfg) if cfg["firmware"] else '{"repl": null}'
    finally:
        _remove_hidden()
    _fbjs.result(answer)


def tick(now: int, rx: bytes, levels: "dict[Any, int]") -> None:
    """One main-loop pass of the firmware at board time now (ms since the hard reset)."""
    _fbjs.result(simboard.tick(now, rx, levels)[len(MARK) :])


def housekeeping(now: int) -> None:
    """Timers due by now; answers the watchdog as [timeout, last feed, ok] or null."""
    machine.sim_advance(now)
    wdt = machine.sim.wdt
    if wdt is None:
        _fbjs.result("null")
    else:
        _fbjs.result(f"[{wdt.timeout}, {wdt.last}, {1 if wdt.ok(now) else 0}]")
