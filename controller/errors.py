"""Exception root of the controller; every error carries the offending value in ``value``."""

from __future__ import annotations


class ControllerError(Exception):
    """Root of every error raised by ``controller``."""

    def __init__(self, message: str, value: object = None) -> None:
        super().__init__(message)
        self.value = value


class ConfigError(ControllerError):
    """The terminal config is invalid; names the dotted key, the bad value and the fix.

    ``str()`` reads ``key: problem; fix``; ``source`` names the file. A TOML syntax error
    has ``line`` and ``column`` set and reads ``source, line L, column C: problem; fix``.
    """

    def __init__(
        self,
        key: str,
        value: object,
        problem: str,
        fix: str,
        *,
        source: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.key = key
        self.problem = problem
        self.fix = fix
        self.source = source
        self.line = line
        self.column = column
        if line is not None:
            where = f"{source or '<string>'}, line {line}"
            where += f", column {column}" if column is not None else ""
            where += f", {key}" if key else ""
        else:
            where = key or (source or "<string>")
        super().__init__(f"{where}: {problem}; {fix}", value)
