"""The `amtomat` command: one entry point, a subcommand per tool, each a thin main(argv)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from protocol import PROTOCOL_VERSION

VERSION = "0.1.0"


def _common() -> argparse.ArgumentParser:
    """Options every subcommand shares."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for frame traces)"
    )
    return common


def _decode(args: argparse.Namespace) -> int:
    from protocol.__main__ import decode_main

    argv: list[str] = []
    if args.key_hex:
        argv += ["--key-hex", args.key_hex]
    if args.board_key_hex:
        argv += ["--board-key-hex", args.board_key_hex]
    return decode_main(argv + args.frames)


def _selftest(args: argparse.Namespace) -> int:
    from protocol.selftest import run

    return run()


def _version(args: argparse.Namespace) -> int:
    print(f"amtomat {VERSION}, protocol version {PROTOCOL_VERSION}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full command line, for main() and for the docs."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog="amtomat", description="Amt-O-Mat control layer tools", parents=[common]
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser(
        "decode",
        parents=[common],
        help="decode captured protocol frames",
        description="Decode captured frames to one JSON line each.",
    )
    p.add_argument("--key-hex", metavar="KEY", help="32-byte session key (64 hex digits)")
    p.add_argument(
        "--board-key-hex", metavar="KEY", help="32-byte board key: follow a captured hello/welcome"
    )
    p.add_argument("frames", nargs="+", metavar="HEX", help="one frame as on the wire")
    p.set_defaults(func=_decode)
    p = sub.add_parser(
        "selftest", parents=[common], help="run the protocol over a simulated faulty link"
    )
    p.set_defaults(func=_selftest)
    from tools.sim.cli import add_parser as add_sim

    add_sim(sub, common)
    from tools.daemoncli import add_parsers as add_daemon
    from tools.demo import add_parser as add_demo
    from tools.diag.cli import add_parsers as add_diag
    from tools.fakeboard.cli import add_parser as add_fakeboard
    from tools.flash.cli import add_parser as add_flash
    from tools.hashsecret import add_parser as add_hash_secret
    from tools.udev import add_parser as add_udev
    from tools.wall.cli import add_parser as add_wall

    add_daemon(sub, common)
    add_demo(sub, common)
    add_hash_secret(sub, common)
    add_flash(sub, common)
    add_diag(sub, common)
    add_wall(sub, common)
    add_udev(sub, common)
    add_fakeboard(sub, common)
    p = sub.add_parser("version", parents=[common], help="print versions")
    p.set_defaults(func=_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns its exit status (2 for usage errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
