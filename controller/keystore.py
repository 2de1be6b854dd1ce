"""Board and kiosk keys on disk: one file of 32 raw bytes per key, owner-only (0600).

Keys are read or generated here and nowhere else; they are never printed or logged.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from controller.errors import ControllerError
from protocol.crypto import KEY_LEN


class KeystoreError(ControllerError):
    """A key file is unreadable, has the wrong size or too open permissions."""


def read_key(path: Path) -> bytes | None:
    """The key in path, or None when the file does not exist."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeystoreError(f"{path}: cannot read the key ({exc.strerror})", str(path)) from exc
    if mode & 0o077:
        raise KeystoreError(
            f"{path}: permissions {mode:o} let others read the key; run chmod 600 {path}", mode
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeystoreError(f"{path}: cannot read the key ({exc.strerror})", str(path)) from exc
    if len(data) != KEY_LEN:
        raise KeystoreError(
            f"{path}: a key has {KEY_LEN} raw bytes, this file has {len(data)}; restore it "
            "from the backup, or write a new key and provision the board (amtomat flash) "
            "or pair the kiosk again",
            len(data),
        )
    return data


def ensure_key(path: Path) -> bytes:
    """The key in path, generated (0600, in a 0700 folder) when there is none."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_LEN))
    key = read_key(path)
    assert key is not None
    return key
