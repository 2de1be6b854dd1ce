"""The diagnostics commands' errors and exit statuses (docs/diagnostics.md, "Exit statuses").

Every error carries the offending value (``.value``) and the exit status its command
ends with (``.exit_status``); its message says what went wrong and what to do.
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # the check failed: hash chain broken, channel test not passed
EXIT_USAGE: Final = 2  # bad arguments (argparse's own status)
EXIT_ATTENTION: Final = 3  # status: active alarms, or boards not ready
EXIT_NO_DATABASE: Final = 66  # sysexits EX_NOINPUT: the database cannot be read
EXIT_DAEMON: Final = 69  # sysexits EX_UNAVAILABLE: the daemon is not running or not answering
EXIT_KEY: Final = 77  # sysexits EX_NOPERM: the pairing key is unreadable or refused
EXIT_CONFIG: Final = 78  # sysexits EX_CONFIG: the terminal TOML is invalid or has no endpoint


class DiagError(Exception):
    """Root of the diagnostics errors: a message, the offending value, an exit status."""

    exit_status: int = EXIT_FAILED

    def __init__(self, message: str, value: object = None) -> None:
        super().__init__(message)
        self.value = value


class UsageError(DiagError):
    """An argument or filter value is malformed; the message names it."""

    exit_status = EXIT_USAGE


class ConfigUnreadable(DiagError):
    """The terminal TOML is missing or invalid."""

    exit_status = EXIT_CONFIG


class NoLocalEndpoint(DiagError):
    """``bridge.listen`` has no endpoint this machine can connect to (tcp or unix)."""

    exit_status = EXIT_CONFIG


class KeyUnreadable(DiagError):
    """The bridge's pairing key cannot be read, or the bridge refused it."""

    exit_status = EXIT_KEY


class DaemonUnavailable(DiagError):
    """Nothing answers at the bridge endpoint, or no session came up in time."""

    exit_status = EXIT_DAEMON


class DatabaseUnreadable(DiagError):
    """The SQLite database cannot be opened read-only or is not the daemon's."""

    exit_status = EXIT_NO_DATABASE


class Refused(DiagError):
    """The daemon refused a request; the message carries its status and reason."""

    exit_status = EXIT_FAILED
