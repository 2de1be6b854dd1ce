"""``amtomat wall``: the live view of the compartment wall, through the daemon's kiosk
bridge (on the Pi) or the county's MQTT broker (remote). docs/wall.md describes it."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tools.wall.errors import WallError

if TYPE_CHECKING:
    from tools.wall.live import Feeder, Screen

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1  # cannot start, or the source refused the credentials
EXIT_USAGE: Final = 2  # argparse
EXIT_INCOMPLETE: Final = 3  # --once: no complete picture within --timeout (frame printed)
EXIT_INTERRUPTED: Final = 130  # Ctrl-C while --once waits
BRIDGE_STALE_S: Final = 10.0
MQTT_STALE_S: Final = 180.0  # three times the terminal's default metrics period
MQTT_ONLY: Final = ("username", "password_file", "cafile", "cert", "keyfile", "no_tls")

EPILOG = """\
Sources: on the Pi, --config TERMINAL.toml connects to the running daemon's kiosk bridge
with its pairing key (readable by the daemon's user: sudo -u amtomat amtomat wall ...).
Remotely, --mqtt HOST[:PORT] --kiosk ID with an operator account watches the terminal's
retained MQTT topics (TLS by default, port 8883).

exit status: 0 ended by Ctrl-C or SIGTERM, or --once showed a complete picture;
1 cannot start (config, key, password or TLS file, refused login);
2 bad arguments; 3 --once got no complete picture within --timeout (the frame is still
printed); 130 Ctrl-C while --once waits.
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``wall``."""
    p = sub.add_parser(
        "wall",
        parents=[common],
        help="live view of the compartment wall",
        description="A live view of the compartment wall: every compartment with its "
        "state, door and LED, grouped by board, plus entrance, slots, boards and alarms.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    terminal = p.add_argument_group("the terminal")
    terminal.add_argument(
        "--config",
        type=Path,
        metavar="TOML",
        help="the terminal's TOML: its boards and channels, and (without --mqtt) the "
        "bridge endpoint and pairing key",
    )
    src = p.add_argument_group("the kiosk bridge (on the Pi)")
    src.add_argument(
        "--bridge", metavar="URL", help="bridge endpoint instead of the config's: tcp://HOST:PORT"
    )
    src.add_argument(
        "--key-file", type=Path, metavar="PATH", help="pairing key file instead of the config's"
    )
    mq = p.add_argument_group("MQTT (remote, an operator account)")
    mq.add_argument("--mqtt", metavar="HOST[:PORT]", help="the county's broker")
    mq.add_argument("--kiosk", metavar="ID", help="the terminal's kiosk_id (default: --config's)")
    mq.add_argument("--username", metavar="NAME", help="broker account")
    mq.add_argument(
        "--password-file", type=Path, metavar="PATH", help="file with the password (chmod 600)"
    )
    mq.add_argument("--cafile", type=Path, metavar="PATH", help="the county's CA certificate")
    mq.add_argument("--cert", type=Path, metavar="PATH", help="client certificate (port 8884)")
    mq.add_argument("--keyfile", type=Path, metavar="PATH", help="its private key")
    mq.add_argument("--no-tls", action="store_true", help="plain MQTT (test brokers only)")
    view = p.add_argument_group("the view")
    view.add_argument(
        "--columns", type=_positive_int, metavar="N", help="cells per row (default: fit)"
    )
    view.add_argument(
        "--width", type=_positive_int, metavar="N", help="frame width (default: the terminal's)"
    )
    view.add_argument("--no-color", action="store_true", help="letters only, no ANSI colours")
    view.add_argument(
        "--once", action="store_true", help="print one frame once the state arrived, then exit"
    )
    view.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        metavar="S",
        help="--once: wait at most this long for the state (default 10)",
    )
    view.add_argument(
        "--stale",
        type=_positive_float,
        metavar="S",
        help=f"say 'no update' after this long without one (default {BRIDGE_STALE_S:g} "
        f"over the bridge, {MQTT_STALE_S:g} over MQTT)",
    )
    view.add_argument(
        "--refresh",
        type=_positive_float,
        default=2.0,
        metavar="S",
        help="bridge: read the whole state again this often (default 2)",
    )
    p.set_defaults(func=_run, wall_parser=p)


def _check(args: argparse.Namespace) -> None:
    """Combinations argparse cannot check: parser.error (exit 2) names the option."""
    parser: argparse.ArgumentParser = args.wall_parser
    if args.mqtt is None:
        if args.config is None and args.bridge is None:
            parser.error(
                "say where the data comes from: --config TOML (on the Pi), --bridge URL, "
                "or --mqtt HOST --kiosk ID"
            )
        given = [f"--{n.replace('_', '-')}" for n in MQTT_ONLY if getattr(args, n)]
        if args.kiosk is not None:
            given.insert(0, "--kiosk")
        if given:
            parser.error(f"{', '.join(given)} only go with --mqtt")
        return
    if args.bridge is not None or args.key_file is not None:
        parser.error("--bridge and --key-file are for the kiosk bridge, not with --mqtt")
    if args.kiosk is None and args.config is None:
        parser.error("--mqtt needs --kiosk ID (or --config TOML for its kiosk_id)")


def _run(args: argparse.Namespace) -> int:
    _check(args)
    try:
        return _main(args)
    except WallError as exc:
        print(f"amtomat wall: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:  # Ctrl-C while --once waits
        return EXIT_INTERRUPTED


def _main(args: argparse.Namespace) -> int:
    from tools.wall.bridge_source import BridgeSource
    from tools.wall.live import Feeder, Screen, first_picture
    from tools.wall.model import SourceKind, WallModel
    from tools.wall.mqtt_source import MqttSource
    from tools.wall.render import freshness, render
    from tools.wall.targets import bridge_key, config_layout, connect_url, load_config, mqtt_target

    cfg = load_config(args.config) if args.config is not None else None
    source: BridgeSource | MqttSource
    if args.mqtt is not None:
        kiosk = args.kiosk if args.kiosk is not None else cfg.terminal.kiosk_id if cfg else ""
        target = mqtt_target(
            args.mqtt,
            kiosk,
            username=args.username,
            password_file=args.password_file,
            tls=not args.no_tls,
            cafile=args.cafile,
            certfile=args.cert,
            keyfile=args.keyfile,
        )
        source, kind, stale = MqttSource(target), SourceKind.MQTT, MQTT_STALE_S
    else:
        if args.bridge is not None:
            url = args.bridge
        else:
            assert cfg is not None  # _check: --config or --bridge
            url = connect_url(cfg.bridge.listen)
        key = bridge_key(cfg, args.key_file)
        source = BridgeSource(url, key, refresh_s=args.refresh)
        kind, stale = SourceKind.BRIDGE, BRIDGE_STALE_S
    stale = args.stale or stale
    model = WallModel(kind, source.description)
    if cfg is not None:
        model.apply("config", config_layout(cfg), time.time())
    feeder = Feeder(model, source)
    tty = sys.stdout.isatty()
    color = (
        not args.no_color
        and tty
        and not os.environ.get("NO_COLOR")
        and os.environ.get("TERM") != "dumb"
    )

    def size() -> tuple[int, int]:
        """(width, height) now: a tty's own size (it follows resizes), else COLUMNS
        or 80 columns."""
        try:
            terminal = os.get_terminal_size(sys.stdout.fileno()) if tty else None
        except OSError:
            terminal = None
        if terminal is None:
            terminal = shutil.get_terminal_size()
        return args.width or terminal.columns, terminal.lines

    def frame(now: float, width: int) -> list[str]:
        return render(model, now, width=width, columns=args.columns, color=color, stale_s=stale)

    if args.once:
        complete = asyncio.run(first_picture(feeder, args.timeout))
        print("\n".join(frame(time.time(), size()[0])))
        if complete:
            return EXIT_OK
        why = freshness(model, time.time(), stale)[0]
        print(
            f"amtomat wall: no complete picture within {args.timeout:g} s ({why})",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    return asyncio.run(_live(feeder, Screen(sys.stdout, tty), frame, size, stale))


async def _live(
    feeder: Feeder,
    screen: Screen,
    frame: Callable[[float, int], list[str]],
    size: Callable[[], tuple[int, int]],
    stale: float,
) -> int:
    """The live view until Ctrl-C or SIGTERM (exit 0); the screen is restored either way."""
    from tools.wall.live import live

    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    assert me is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, me.cancel)
    try:
        await live(feeder, screen, frame, size, stale_s=stale)
    except asyncio.CancelledError:
        return EXIT_OK
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return EXIT_OK
