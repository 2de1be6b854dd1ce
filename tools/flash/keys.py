"""The board's key in the daemon's keystore: ``<keystore>/<board_id>.key``, 32 raw bytes,
0600 in a 0700 folder, the format of ``controller.keystore``.

Interruption at any point must leave a board that the next run can reach: before a new key
goes to the board, the key the board still holds is kept as ``<board_id>.key.old``, and
the handover tries both. Only after the board has proven the new key in a handshake is the
old one removed. Keys are never printed, logged or put into an error message.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from controller.boardconfig import BoardSpec
from controller.keystore import KeystoreError, read_key
from protocol.crypto import KEY_LEN
from tools.flash.errors import KeystoreProblem


@dataclass(frozen=True)
class BoardKeys:
    """The key files of one board."""

    keystore: Path
    board_id: str

    @property
    def current(self) -> Path:
        """``<board_id>.key``: the key the daemon uses."""
        return self.keystore / f"{self.board_id}.key"

    @property
    def old(self) -> Path:
        """``<board_id>.key.old``: the key the board may still hold during a re-key."""
        return self.keystore / f"{self.board_id}.key.old"

    def read(self, path: Path) -> bytes | None:
        """The key in path (None when absent); KeystoreProblem when it is unusable."""
        try:
            return read_key(path)
        except KeystoreError as exc:
            raise KeystoreProblem(str(exc), str(path)) from None

    def candidates(self) -> list[tuple[str, bytes]]:
        """(file name, key) of the keys the board may hold: current first, then old."""
        out: list[tuple[str, bytes]] = []
        for path in (self.current, self.old):
            key = self.read(path)
            if key is not None and all(key != k for _, k in out):
                out.append((path.name, key))
        return out

    def match_hash(self, sha256_hex: str | None) -> bytes | None:
        """The candidate whose sha256 is sha256_hex (the board's key file), else None."""
        if sha256_hex is None:
            return None
        for _, key in self.candidates():
            if hashlib.sha256(key).hexdigest() == sha256_hex:
                return key
        return None

    def choose(self, rekey: bool) -> tuple[bytes, bool]:
        """(key the board gets, whether it is newly generated): the keystore's current key,
        or a new one when there is none or rekey. Nothing is written yet."""
        current = self.read(self.current)
        if rekey or current is None:
            return secrets.token_bytes(KEY_LEN), True
        return current, False

    def commit(self, target: bytes, board_key: bytes | None) -> None:
        """Store target as the current key, right before it goes to the board. The key the
        board holds now (board_key) is kept as ``.key.old`` first, so an interrupted run
        can still reach the board."""
        current = self.read(self.current)
        if board_key is not None and board_key != target:
            write_key(self.old, board_key)
        if target != current:
            write_key(self.current, target)

    def proven(self) -> None:
        """The board answered with the current key: the old key is no longer needed."""
        with contextlib.suppress(FileNotFoundError):
            self.old.unlink()


def other_keys(keystore: Path, boards: Iterable[BoardSpec]) -> list[tuple[str, bytes]]:
    """(file name, key) of the other boards' current keys: a board moved from another place
    in the wall still holds its old key. Unusable files are left out."""
    out: list[tuple[str, bytes]] = []
    for board in boards:
        try:
            key = BoardKeys(keystore, board.board_id).read(keystore / f"{board.board_id}.key")
        except KeystoreProblem:
            continue
        if key is not None:
            out.append((f"{board.board_id}.key", key))
    return out


def write_key(path: Path, key: bytes) -> None:
    """Replace path with key atomically: 0600 file in a 0700 folder, synced to disk."""
    if len(key) != KEY_LEN:
        raise KeystoreProblem(f"a key has {KEY_LEN} bytes, got {len(key)}", len(key))
    folder = path.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = folder / f".{path.name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise KeystoreProblem(
            f"{path}: cannot write the key ({exc.strerror or exc}); check that the keystore "
            f"folder {folder} is writable by this user (sudo -u amtomat, or --keystore DIR)",
            str(path),
        ) from None
