"""Exception root of the firmware; every error carries the offending value."""


class FirmwareError(Exception):
    """Root of every error raised by ``amtfw``."""

    def __init__(self, message, value=None):
        super().__init__(message)
        self.value = value


class ConfigError(FirmwareError):
    """The board config file is missing or invalid; the message names key and value."""


class HardwareError(FirmwareError):
    """A pin, expander or port cannot be set up or used."""
