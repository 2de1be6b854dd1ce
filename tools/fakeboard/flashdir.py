"""The board's flash file system kept in a host folder: board path ``/lib/x.mpy`` is
``<flash_dir>/lib/x.mpy``. ``load`` reads the folder (missing or empty = a factory-fresh
board), ``save`` writes what changed since the last save, each file atomically."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Final

from tools.fakeboard.errors import FlashDirError

RESERVED: Final = frozenset({"dev", "proc", "_sim"})
"""Top-level names the VM keeps for itself; a board cannot have files there."""
TMP_SUFFIX: Final = ".fakeboard-tmp"
"""Suffix of a file being replaced in the flash folder; such files are never board files."""


@dataclass(frozen=True)
class Snapshot:
    """The board's files (board path -> contents) and folders (board paths, "/" left out)."""

    files: dict[str, bytes] = field(default_factory=dict)
    dirs: frozenset[str] = frozenset()


def check_board_path(path: str) -> list[str]:
    """The components of an absolute board path; FlashDirError naming a bad one."""
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        raise FlashDirError(f"not an absolute board path: {path!r}", path)
    parts = path.split("/")[1:]
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise FlashDirError(f"not a usable board path: {path!r}", path)
    if parts[0] in RESERVED:
        raise FlashDirError(
            f"board path {path!r} starts with {parts[0]!r}, a name the fake board's VM keeps "
            f"for itself ({', '.join(sorted(RESERVED))}); rename it",
            path,
        )
    return parts


def _board_path(root: Path, host: Path) -> str:
    rel = host.relative_to(root).as_posix()
    try:
        os.fsencode(rel).decode("utf-8")
    except UnicodeDecodeError:
        raise FlashDirError(
            f"{host}: the name is not UTF-8, which a MicroPython file system cannot hold", host
        ) from None
    path = "/" + rel
    check_board_path(path)
    return path


def load(root: Path) -> Snapshot:
    """Every file and folder below root as board paths; FlashDirError naming what cannot be
    a board file (a symlink, a device, a reserved or non-UTF-8 name)."""
    if not root.exists():
        return Snapshot()
    if not root.is_dir():
        raise FlashDirError(f"flash folder {root} exists and is not a folder", str(root))
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in sorted(dirnames):
            host = here / name
            if host.is_symlink():
                raise FlashDirError(f"{host} is a symlink; a board has none: remove it", host)
            dirs.add(_board_path(root, host))
        for name in sorted(filenames):
            host = here / name
            if name.endswith(TMP_SUFFIX):
                continue  # left over from an interrupted save
            if host.is_symlink() or not host.is_file():
                raise FlashDirError(
                    f"{host} is not a regular file (a symlink or a device); remove it", host
                )
            try:
                data = host.read_bytes()
            except OSError as exc:
                raise FlashDirError(f"cannot read {host}: {exc.strerror}", host) from None
            files[_board_path(root, host)] = data
    return Snapshot(files, frozenset(dirs))


def _host(root: Path, path: str) -> Path:
    return root.joinpath(*check_board_path(path))


def save(root: Path, new: Snapshot, old: Snapshot | None = None) -> None:
    """Make root hold exactly new, touching only what differs from old (None: compare with
    what is there). Files are replaced atomically; FlashDirError when the host refuses."""
    if old is None:
        old = load(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for path in sorted(set(old.files) - set(new.files)):
            with contextlib.suppress(FileNotFoundError):
                _host(root, path).unlink()
        for path in sorted(old.dirs - new.dirs, key=lambda p: -p.count("/")):
            host = _host(root, path)
            if host.is_dir():
                for leftover in host.glob("*" + TMP_SUFFIX):
                    leftover.unlink()
                with contextlib.suppress(FileNotFoundError):
                    host.rmdir()
        for path in sorted(new.dirs, key=lambda p: p.count("/")):
            _host(root, path).mkdir(parents=True, exist_ok=True)
        for path, data in sorted(new.files.items()):
            if old.files.get(path) == data and _host(root, path).is_file():
                continue
            host = _host(root, path)
            host.parent.mkdir(parents=True, exist_ok=True)
            tmp = host.with_name(host.name + TMP_SUFFIX)
            tmp.write_bytes(data)
            os.replace(tmp, host)
    except OSError as exc:
        where = exc.filename if exc.filename is not None else root
        raise FlashDirError(
            f"cannot save the board's files into {root}: {exc.strerror} ({where})", str(where)
        ) from None


def parents(path: str) -> list[str]:
    """The folders above a board path, outermost first ("/" left out)."""
    pure = PurePosixPath(path)
    return [str(p) for p in reversed(pure.parents) if str(p) != "/"]
