"""`amtomat hash-secret`: print the scrypt hash of a code, PIN or password; nothing else."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TextIO

from controller.errors import ControllerError
from controller.secrets import hash_secret, looks_like_code, normalise_code

MIN_PIN_DIGITS = 4
MAX_SECRET_CHARS = 1024

DESCRIPTION = (
    "Print the hash of a secret for the terminal config or the county's systems. The secret"
    " is asked twice without echo, or read as one line from stdin with --stdin. A secret of"
    " digits (a code or PIN) is hashed as the terminal compares it: spaces and dashes"
    " dropped; it needs at least 4 digits. Only the hash goes to stdout."
)


class SecretInputError(ControllerError):
    """The secret as entered cannot be hashed; the message never contains it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of hash-secret, for its own parser and for the amtomat command line."""
    parser.add_argument(
        "--stdin",
        action="store_true",
        help="read the secret as one line from standard input instead of asking twice",
    )


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Register ``hash-secret`` on the amtomat command line."""
    p = sub.add_parser(
        "hash-secret",
        parents=[common],
        help="print the hash of a code, PIN or password",
        description=DESCRIPTION,
    )
    add_arguments(p)
    p.set_defaults(func=lambda args: run(args.stdin))


def main(
    argv: list[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run hash-secret: 0 with the hash printed, 1 on refused input (reason on stderr)."""
    parser = argparse.ArgumentParser(prog="amtomat hash-secret", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args.stdin, stdin=stdin, stdout=stdout, stderr=stderr)


def run(
    from_stdin: bool,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Read the secret, check it and print its hash; see ``main``."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        raw = _read_stdin(stdin if stdin is not None else sys.stdin) if from_stdin else _ask()
        secret = prepare(raw)
    except SecretInputError as exc:
        print(f"amtomat hash-secret: {exc}", file=err)
        return 1
    except (EOFError, KeyboardInterrupt):
        print("amtomat hash-secret: no secret entered", file=err)
        return 1
    print(hash_secret(secret), file=out)
    return 0


def prepare(raw: str) -> str:
    """The text to hash: a code or PIN (digits, spaces, dashes) as the terminal compares it
    (digits only), anything else as typed.

    Empty input and codes shorter than 4 or longer than 32 digits raise ``SecretInputError``.
    """
    if not raw.strip():
        raise SecretInputError("the secret is empty; enter a code, PIN or password", 0)
    if len(raw) > MAX_SECRET_CHARS:
        raise SecretInputError(
            f"the secret has {len(raw)} characters, more than {MAX_SECRET_CHARS}", len(raw)
        )
    if looks_like_code(raw):
        try:
            digits = normalise_code(raw)
        except ControllerError as exc:
            raise SecretInputError(str(exc), exc.value) from None
        if len(digits) < MIN_PIN_DIGITS:
            raise SecretInputError(
                f"a PIN or code needs at least {MIN_PIN_DIGITS} digits; this one has {len(digits)}",
                len(digits),
            )
        return digits
    return raw


def _read_stdin(stream: TextIO) -> str:
    """One line from ``stream`` without its line ending; more than one line is refused."""
    text = stream.read(MAX_SECRET_CHARS + 3)
    for ending in ("\r\n", "\n"):
        if text.endswith(ending):
            text = text[: -len(ending)]
            break
    if "\n" in text or "\r" in text:
        lines = len(text.splitlines())
        raise SecretInputError(f"stdin has {lines} lines; give one secret on one line", lines)
    return text


def _ask() -> str:
    """The secret typed twice without echo; entries that differ are refused."""
    first = getpass.getpass("Secret: ")
    second = getpass.getpass("Again: ")
    if first != second:
        raise SecretInputError("the two entries differ; nothing was hashed", None)
    return first


if __name__ == "__main__":
    sys.exit(main())
