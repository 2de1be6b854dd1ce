"""The broker credentials on disk: the password file and the TLS files, checked before the
link starts. Errors name the file and the fix, never a secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from controller.mqttconfig import MqttSettings
from county.errors import LinkSetupError

MAX_PASSWORD: Final = 256
_READ_LIMIT: Final = 4096  # bytes read from a password file: a real one is far shorter


def read_password(path: Path) -> str:
    """The password: the file's one line without its line ending, 1..256 characters.
    The file must be owner-only (``chmod 600``)."""
    _require_owner_only(path, "password file")
    try:
        with open(path, "rb") as f:
            raw = f.read(_READ_LIMIT + 1)
    except OSError as exc:
        raise LinkSetupError(
            f"password file {path}: cannot read it ({_why(exc)}); "
            "make it readable by the daemon's user",
            str(path),
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LinkSetupError(
            f"password file {path}: is not UTF-8 text; write the password as one line",
            str(path),
        ) from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise LinkSetupError(
            f"password file {path}: is empty; write the broker password as one line",
            str(path),
        )
    if "\n" in text or "\r" in text:
        raise LinkSetupError(
            f"password file {path}: has more than one line; write only the password, on one line",
            str(path),
        )
    if len(text) > MAX_PASSWORD:
        raise LinkSetupError(
            f"password file {path}: the password is longer than {MAX_PASSWORD} characters; "
            "use a shorter one",
            str(path),
        )
    return text


def check_tls_files(settings: MqttSettings) -> None:
    """The CA, certificate and key files of ``settings`` exist and are readable; the key
    file is owner-only. Nothing to check with ``tls = false``."""
    if not settings.tls:
        return
    for what, path in (("ca_file", settings.ca_file), ("cert_file", settings.cert_file)):
        if path is not None:
            _require_readable(path, f"mqtt.{what}")
    if settings.key_file is not None:
        _require_owner_only(settings.key_file, "mqtt.key_file")
        _require_readable(settings.key_file, "mqtt.key_file")


def _require_owner_only(path: Path, what: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise LinkSetupError(
            f"{what} {path}: does not exist; create it (owner-only: chmod 600 {path})",
            str(path),
        ) from None
    except OSError as exc:
        raise LinkSetupError(
            f"{what} {path}: cannot read it ({_why(exc)}); make it readable by the daemon's user",
            str(path),
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise LinkSetupError(f"{what} {path}: is not a file; point it at a file", str(path))
    if st.st_mode & 0o077:
        raise LinkSetupError(
            f"{what} {path}: is readable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run chmod 600 {path}",
            str(path),
        )


def _require_readable(path: Path, what: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except FileNotFoundError:
        raise LinkSetupError(
            f"{what} {path}: does not exist; copy the file there or fix the path",
            str(path),
        ) from None
    except IsADirectoryError:
        raise LinkSetupError(
            f"{what} {path}: is not a file; point it at a file", str(path)
        ) from None
    except OSError as exc:
        raise LinkSetupError(
            f"{what} {path}: cannot read it ({_why(exc)}); make it readable by the daemon's user",
            str(path),
        ) from None


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
