"""Errors of ``amtomat flash``: one root, a class per failure, each with its exit status.

Every message says what went wrong and what to do. No message ever carries a key.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_UNSUPPORTED = 4
EXIT_VERIFY = 5
EXIT_NO_ANSWER = 6
EXIT_SELFTEST = 7
EXIT_INTERRUPTED = 130


class FlashError(Exception):
    """Root of every error of ``amtomat flash``; ``value`` is the offending value."""

    exit_status: ClassVar[int] = EXIT_FAILURE

    def __init__(self, message: str, value: object = None) -> None:
        super().__init__(message)
        self.value = value


class ConfigProblem(FlashError):
    """The terminal TOML cannot be read or does not name the board."""

    exit_status = EXIT_USAGE


class NoBoard(FlashError):
    """No board at the port, or none attached at all."""

    exit_status = EXIT_UNREACHABLE


class SeveralBoards(FlashError):
    """More than one MicroPython board is attached and no port was named."""

    exit_status = EXIT_UNREACHABLE


class PortBusy(FlashError):
    """Another program holds the port (usually the daemon)."""

    exit_status = EXIT_UNREACHABLE


class NoAnswer(FlashError):
    """Neither a MicroPython REPL nor the amtomat firmware answered on the port."""

    exit_status = EXIT_UNREACHABLE


class UnknownKey(FlashError):
    """The board runs the amtomat firmware with a key the keystore does not hold."""

    exit_status = EXIT_UNREACHABLE


class HandoverRefused(FlashError):
    """The firmware did not hand its port to the REPL (e.g. a board without a key)."""

    exit_status = EXIT_UNREACHABLE


class NotConfirmed(FlashError):
    """The installer declined, or confirmation was needed without a terminal or --yes."""

    exit_status = EXIT_FAILURE


class UnsupportedMicroPython(FlashError):
    """The board's MicroPython version or .mpy ABI cannot run the firmware."""

    exit_status = EXIT_UNSUPPORTED


class NoSpace(FlashError):
    """The board's file system has too little room; checked before anything is written."""

    exit_status = EXIT_UNSUPPORTED


class BuildError(FlashError):
    """Compiling the firmware with mpy-cross failed."""


class KeystoreProblem(FlashError):
    """A key file is unreadable, has the wrong size or too open permissions."""


class ReplError(FlashError):
    """A command on the board's REPL failed or the link to it broke."""


class BoardReplyError(ReplError):
    """The board printed something a probe did not expect (not a Python literal)."""


class VerifyMismatch(FlashError):
    """A file on the board does not hash to what was written; nothing was reset."""

    exit_status = EXIT_VERIFY


class NoAnswerAfterReset(FlashError):
    """The firmware did not complete a handshake after the reset."""

    exit_status = EXIT_NO_ANSWER


class BoardMismatch(FlashError):
    """After the reset the board answered but does not match the terminal config."""

    exit_status = EXIT_NO_ANSWER


class SelfTestFailed(FlashError):
    """The self-test could not read the board, or a pulsed door was not seen open."""

    exit_status = EXIT_SELFTEST


class Interrupted(FlashError):
    """Ctrl-C or SIGTERM; the message says in which step and that a re-run finishes."""

    exit_status = EXIT_INTERRUPTED


def redact(text: str, secrets: list[bytes]) -> str:
    """text with every hex, base64 or repr form of each secret replaced by ``<key>``."""
    import base64

    out = text
    for secret in secrets:
        if not secret:
            continue
        forms = {
            secret.hex(),
            secret.hex().upper(),
            base64.b64encode(secret).decode(),
            repr(secret)[2:-1],
        }
        for form in sorted(forms, key=len, reverse=True):
            if form:
                out = out.replace(form, "<key>")
    return out
