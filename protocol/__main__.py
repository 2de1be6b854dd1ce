"""Command line: ``python -m protocol decode [--key-hex K] [--board-key-hex K] HEX...`` and
``python -m protocol selftest``.

decode prints one JSON line per frame; a frame that fails its check gets a one-line
reason on stderr and the exit status is 1. Keys are read but never printed.
"""

import json
import sys

from protocol.errors import ProtocolError

USAGE = """usage: python -m protocol decode [--key-hex KEY] [--board-key-hex KEY] HEX...
       python -m protocol selftest

decode   decode captured frames (hex, with or without the trailing 00; spaces and colons
         allowed inside one argument) to one JSON line each.
         --key-hex        the 32-byte session key, to verify authenticated frames
         --board-key-hex  the board key: a captured hello and welcome among the frames
                          give the nonces, and the session key is derived from them
selftest run a handshake, requests and events between two in-process peers over a lossy
         link and print what happened"""


def _parse_hex(text: str, what: str) -> bytes:
    cleaned = text.replace(" ", "").replace(":", "").replace("-", "")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise ProtocolError("%s is not hex: %r" % (what, text[:40]), text) from None


def _key(text: str, option: str) -> bytes:
    key = _parse_hex(text, option)
    if len(key) != 32:
        raise ProtocolError(
            "%s must be 32 bytes (64 hex digits), got %d bytes" % (option, len(key))
        )
    return key


def decode_main(args: "list[str]") -> int:
    """Run the decode command; returns the exit status."""
    from protocol.inspect import Inspector

    session_key = None
    board_key = None
    frames = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--key-hex", "--board-key-hex"):
            if i + 1 >= len(args):
                print("error: %s needs a value" % a, file=sys.stderr)
                return 2
            try:
                if a == "--key-hex":
                    session_key = _key(args[i + 1], a)
                else:
                    board_key = _key(args[i + 1], a)
            except ProtocolError as exc:
                print("error: %s" % exc, file=sys.stderr)
                return 2
            i += 2
            continue
        if a.startswith("-"):
            print("error: unknown option %s\n%s" % (a, USAGE), file=sys.stderr)
            return 2
        frames.append(a)
        i += 1
    if not frames:
        print("error: no frame given\n%s" % USAGE, file=sys.stderr)
        return 2
    inspector = Inspector(session_key=session_key, board_key=board_key)
    status = 0
    for n, text in enumerate(frames, 1):
        try:
            wire = _parse_hex(text, "the frame")
            print(json.dumps(inspector.describe(wire)))
        except ProtocolError as exc:
            print("frame %d: %s" % (n, exc), file=sys.stderr)
            status = 1
    return status


def main(argv: "list[str] | None" = None) -> int:
    """Dispatch a command; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    if args[0] == "decode":
        return decode_main(args[1:])
    if args[0] == "selftest":
        from protocol.selftest import run

        return run()
    print("error: unknown command %r\n%s" % (args[0], USAGE), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
