"""The runtime: config, key and hardware wired to the board application, one loop pass at
a time. ``main()`` is what the board's main.py runs.

Boot order: read ``/amtomat.json`` and parse it (an invalid or missing file gives the
empty config and an error text) -> outputs built and driven off -> recovery jumper check
-> inputs -> key from ``/amtomat.key`` -> port -> watchdog -> ``BoardApp``.

Two ways back to the REPL on a board without a safe mode (rp2):

- ``recovery_pin`` (pulled up): held low by a jumper at boot, the firmware does not start
  and the REPL keeps the USB port, with no watchdog running.
- ``repl_window_ms`` (USB only; 0 = off, the default) after boot the port is not read and
  Ctrl-C still works; only then is the keyboard interrupt turned off and the watchdog
  started. A host must not send during this window: a 0x03 byte in it stops the
  firmware. That is why it is opt-in, for bench boards without a jumper.

The maintenance command "repl" hands the port to the REPL later: outputs off, keyboard
interrupt back on, and the watchdog (which cannot be stopped on rp2) fed from a timer for
at most 10 minutes, after which it resets the board into the firmware.

Everything that touches hardware comes in as an argument (the ``machine`` module, the
port, the clock), so the simulator runs this very code against a fake ``machine``.
"""

from amtfw import config, hardware, platform
from amtfw.errors import FirmwareError
from protocol.compat import const, ticks_diff

WDT_TIMEOUT_MS = const(5000)  # below the rp2 limit of 8388 ms
RESET_DRAIN_MS = const(50)  # lets the reply to "reset" leave before the reset
RX_CHUNK = hardware.RX_CHUNK


class ReplHandover(FirmwareError):
    """The firmware stops and the REPL gets the port; ``reason`` says why.

    "recovery_pin" (jumper at boot, raised by Runtime()) or "repl" (maintenance command,
    raised by run_once). main() returns quietly on it.
    """

    def __init__(self, reason, message):
        FirmwareError.__init__(self, message, reason)
        self.reason = reason


class Runtime:
    """One board: boots in the constructor, then ``run_once(now)`` per loop pass.

    machine: the ``machine`` module (or the simulator's fake). port: an object with
    ``start()``, ``readinto(buf) -> int``, ``write(mv)``, ``release()``; None builds the
    one the config names. now: ``time.ticks_ms()`` at boot. root: prefix of every file
    path (tests). seed: used only on ports without os.urandom (simulation). app_class:
    stands in for amtfw.app.BoardApp (tests). sleep_ms: blocking sleep (the simulator
    passes one that returns at once). port_name: sys.platform override (watchdog clamp).
    """

    def __init__(
        self,
        machine,
        port=None,
        now=None,
        root="",
        seed=None,
        app_class=None,
        sleep_ms=None,
        port_name=None,
        wdt_timeout_ms=WDT_TIMEOUT_MS,
    ):
        self.machine = machine
        self.root = root
        self.sleep_ms = sleep_ms if sleep_ms is not None else platform.sleep_ms
        self.port_name = port_name
        self.wdt_timeout_ms = wdt_timeout_ms
        self.wdt = None
        self.feeder = None
        self.linked = False  # port started (keyboard interrupt off) and read
        self.stopped = None  # why the firmware stopped, once it did
        errors = []

        # 1. config
        raw = platform.read_config_file(root + config.CONFIG_PATH)
        if raw is None:
            cfg = config.empty()
            errors.append("config: %s is missing; the board is not configured" % config.CONFIG_PATH)
        else:
            try:
                cfg = config.parse(raw)
            except config.ConfigError as exc:
                cfg = config.empty()
                errors.append(str(exc))
        self.cfg = cfg

        # 2. outputs off, before anything else
        try:
            expanders = hardware.build_expanders(cfg, machine)
            self.outputs = hardware.Outputs(cfg, machine, expanders)
        except (ValueError, OSError) as exc:  # a pin this port does not have
            expanders = self._unconfigured("outputs", exc, errors)
        try:
            self._boot(machine, port, now, raw, expanders, errors, seed, app_class)
        except BaseException:
            self.outputs.all_off()
            raise

    def _boot(self, machine, port, now, raw, expanders, errors, seed, app_class):
        cfg = self.cfg
        root = self.root
        errors.extend(self.outputs.errors)

        # 3. recovery jumper: firmware does not start, REPL keeps the port, no watchdog
        if cfg.recovery_pin is not None:
            pin = machine.Pin(cfg.recovery_pin, machine.Pin.IN, machine.Pin.PULL_UP)
            if pin.value() == 0:
                self.stopped = "recovery_pin"
                raise ReplHandover(
                    "recovery_pin",
                    "recovery pin %d is held low: firmware not started, the REPL has the port"
                    % cfg.recovery_pin,
                )

        # 4. inputs
        try:
            self.inputs = hardware.Inputs(cfg, machine, expanders)
        except (ValueError, OSError) as exc:
            self.outputs.all_off()
            expanders = self._unconfigured("inputs", exc, errors)
            cfg = self.cfg
            self.inputs = hardware.Inputs(cfg, machine, expanders)
        errors.extend(self.inputs.errors)

        # 5. key: missing = unprovisioned
        key = platform.read_config_file(root + config.KEY_PATH)
        self.key_error = None
        if key is not None and len(key) != config.KEY_LEN:
            self.key_error = "key: %s has %d bytes, not %d; the board runs unprovisioned" % (
                config.KEY_PATH,
                len(key),
                config.KEY_LEN,
            )
            errors.append(self.key_error)
            key = None
        self.provisioned = key is not None

        # 6. port (started after the REPL window)
        self.port = port if port is not None else hardware.open_port(cfg, machine)
        self._rx = bytearray(RX_CHUNK)
        self._rx_mv = memoryview(self._rx)

        # 7. identity for the handshake
        self.random = platform.make_random(seed)
        crash = platform.take_crash(root)
        self.info = {
            "fw_hash": platform.build_hash(root),
            "config_hash": config.config_hash(raw) if raw is not None else "none",
            "config_error": "; ".join(errors) if errors else None,
            "reset_reason": "crash" if crash is not None else platform.reset_reason(machine),
            "boot_id": int.from_bytes(self.random(4), "big") & 0x3FFFFFFF,
            "crash": crash,
            "unique_id": platform.unique_id(machine),
        }

        # 8. the application
        if app_class is None:
            from amtfw.app import BoardApp

            app_class = BoardApp
        self.app = app_class(cfg, self.info, key, self.port.write, self.random)

        # 9. REPL window, then port + watchdog
        self.boot_ms = now if now is not None else platform.ticks_ms()
        self.window_ms = cfg.repl_window_ms
        if self.window_ms <= 0:
            self._link()

    def _unconfigured(self, what, exc, errors):
        """A config whose pins the hardware refuses: run as if there were no config (no
        outputs, no inputs), and say why at the handshake instead of crashing at every
        boot. Returns the (empty) expander list."""
        errors.append("%s: %s; the board runs without a config" % (what, exc))
        self.cfg = config.empty()
        self.outputs = hardware.Outputs(self.cfg, self.machine, [])
        return []

    def _link(self):
        """End of the REPL window: keyboard interrupt off, port read, watchdog on."""
        self.port.start()
        self.linked = True
        self.wdt = platform.Watchdog(self.machine, self.wdt_timeout_ms, self.port_name)

    def run_once(self, now):
        """One loop pass: inputs, bytes in, step, outputs, watchdog, then the app's action.

        Allocates nothing while no bytes arrive. Raises ReplHandover after "repl";
        machine.reset() does not return on a board after "reset".
        """
        app = self.app
        self.inputs.read(app.inputs)
        if self.linked:
            n = self.port.readinto(self._rx)
            if n:
                app.feed(self._rx_mv[:n], now)
        elif ticks_diff(now, self.boot_ms) >= self.window_ms:
            self._link()
        app.step(now)
        self.outputs.write(app.outputs)
        wdt = self.wdt
        if wdt is not None:
            wdt.feed()
        if app.action is not None:
            self._act(app.action)

    def _act(self, action):
        self.outputs.all_off()
        if action == "reset":
            self.stopped = "reset"
            self.sleep_ms(RESET_DRAIN_MS)
            self.machine.reset()
            return
        if action == "repl":
            self.stop_for_repl()
            raise ReplHandover("repl", "maintenance command: the REPL has the port")
        raise FirmwareError("unknown action %r from the app" % action, action)

    def stop_for_repl(self):
        """Outputs off, port released; the watchdog, if running, fed for 10 minutes."""
        self.stopped = "repl"
        self.outputs.all_off()
        self.port.release()
        self.linked = False
        if self.wdt is not None and self.feeder is None:
            self.feeder = platform.WatchdogFeeder(self.machine, self.wdt)

    def write_file(self, path, data):
        """Replace a file (path below ``root``) atomically, feeding the watchdog around it."""
        wdt = self.wdt
        platform.write_atomic(self.root + path, data, wdt.feed if wdt is not None else None)

    def shutdown(self):
        """Outputs off (after a crash or an interrupt); False when that failed too."""
        try:
            self.outputs.all_off()
        except Exception:
            return False
        return True


def main():
    """The board's superloop; returns when the REPL gets the port.

    A crash propagates to main.py, which records it and resets the board; outputs are
    turned off on the way out in every case (crash, Ctrl-C in the REPL window, handover).
    """
    import time

    import machine

    rt = None
    try:
        rt = Runtime(machine)
        ticks = time.ticks_ms
        run = rt.run_once
        while True:
            run(ticks())
    except ReplHandover as exc:
        print("amtfw: %s" % exc)
    finally:
        if rt is not None:
            rt.shutdown()
