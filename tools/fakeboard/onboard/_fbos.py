"""The fake board's ``os``: MicroPython's own, showing the file system a Pico shows.

- Errors carry a Pico's errno numbers (``[Errno 2] ENOENT``); the VM's file system
  raises WASI numbers (44 for ENOENT), which mpremote would misread.
- ``statvfs`` reports the board's flash capacity and use (4096-byte blocks); ``uname``
  its machine and version; ``urandom`` takes bytes from the host.
- The VM's own folders (``/dev``, ``/proc``) are not listed.

``_install`` fills in every other name of the VM's ``os``; ``_fbboot`` then installs the
module as ``sys.modules["os"]`` and wraps ``builtins.open`` with ``_wrap``. Hidden helper
of tools/fakeboard; never a board file.
"""

import os as _os  # the VM's own: sys.modules["os"] is replaced only after this import
from collections import namedtuple as _namedtuple

import _fbjs  # type: ignore[import-not-found]  # registered by board_node.mjs

TYPE_CHECKING = False  # mypy treats this name as true; MicroPython has no typing module
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

# WASI errno (what the VM's file system raises) -> MicroPython's py/mperrno.h (a Pico's)
_ERRNO = {
    2: 13,  # EACCES
    6: 11,  # EAGAIN
    8: 9,  # EBADF
    10: 16,  # EBUSY
    20: 17,  # EEXIST
    22: 27,  # EFBIG
    28: 22,  # EINVAL
    29: 5,  # EIO
    31: 21,  # EISDIR
    33: 24,  # EMFILE
    37: 36,  # ENAMETOOLONG
    41: 23,  # ENFILE
    43: 19,  # ENODEV
    44: 2,  # ENOENT
    48: 12,  # ENOMEM
    51: 28,  # ENOSPC
    54: 20,  # ENOTDIR
    55: 39,  # ENOTEMPTY
    63: 1,  # EPERM
    69: 30,  # EROFS
    75: 18,  # EXDEV
}
_HIDDEN = ("dev", "proc", "_sim")
_BLOCK = 4096

_Uname = _namedtuple(  # type: ignore[name-match]  # the name MicroPython's own carries
    "uname_result", ("sysname", "nodename", "release", "version", "machine")
)


class _UnameResult(_Uname):
    """Prints as MicroPython's own: ``(sysname='rp2', ...)``."""

    def __repr__(self) -> str:
        fields = ("sysname", "nodename", "release", "version", "machine")
        return "(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in fields) + ")"

    __str__ = __repr__


_uname = None  # type: Any


def _pico(exc: OSError) -> OSError:
    """exc with a Pico's errno number (the same exception when there is nothing to map)."""
    args = exc.args
    if len(args) == 1 and isinstance(args[0], int) and args[0] in _ERRNO:
        return OSError(_ERRNO[args[0]])
    return exc


def _wrap(func: "Callable[..., Any]") -> "Callable[..., Any]":
    """func, raising OSErrors with a Pico's errno numbers."""

    def call(*args: "Any", **kwargs: "Any") -> "Any":
        try:
            return func(*args, **kwargs)
        except OSError as exc:
            raise _pico(exc) from None

    return call


def _at_root(path: "str | None") -> bool:
    if not path:
        path = _os.getcwd()
    elif path[:1] != "/":
        path = _os.getcwd() + "/" + path
    return path.replace("/", "") == ""


def listdir(path: "str | None" = None) -> "list[str]":
    args = () if path is None else (path,)
    try:
        names = _os.listdir(*args)
    except OSError as exc:
        raise _pico(exc) from None
    if _at_root(path):
        return [n for n in names if n not in _HIDDEN]
    return list(names)


def ilistdir(path: "str | None" = None) -> "Iterator[tuple[Any, ...]]":
    """(name, type, 0, size) per entry, as a Pico's littlefs gives them."""
    args = () if path is None else (path,)
    try:
        entries = list(_os.ilistdir(*args))  # type: ignore[attr-defined]
    except OSError as exc:
        raise _pico(exc) from None
    root = _at_root(path)
    base = "" if path is None else path.rstrip("/") + "/"
    for entry in entries:
        name, kind = entry[0], entry[1]
        if root and name in _HIDDEN:
            continue
        yield (name, kind, 0, _size(base + name) if kind == 0x8000 else 0)


def _size(path: str) -> int:
    try:
        return int(_os.stat(path)[6])
    except OSError:
        return 0


def stat(path: str) -> "tuple[int, ...]":
    """os.stat with the mode a Pico reports: just the file type (0x8000 or 0x4000)."""
    try:
        st = _os.stat(path)
    except OSError as exc:
        raise _pico(exc) from None
    fields = list(st)  # type: list[Any]
    fields[0] &= 0xF000
    return tuple(fields)


def statvfs(path: str) -> "tuple[int, ...]":
    try:
        _os.stat(path)
    except OSError as exc:
        raise _pico(exc) from None
    total = _fbjs.capacity() // _BLOCK
    free = max(0, total - _fbjs.used() // _BLOCK)
    return (_BLOCK, _BLOCK, total, free, free, 0, 0, 0, 0, 255)


def uname() -> "Any":
    return _uname


def urandom(n: int) -> bytes:
    return bytes.fromhex(_fbjs.urandom(n))


def _install(sysname: str, release: str, version: str, machine: str) -> None:
    """Set uname's fields and take every other name from the VM's os (calls wrapped)."""
    global _uname
    _uname = _UnameResult(sysname, sysname, release, version, machine)
    names = globals()
    for name in dir(_os):
        if name in names or name[:2] == "__":
            continue
        value = getattr(_os, name)
        if callable(value) and not isinstance(value, type):
            value = _wrap(value)
        names[name] = value
