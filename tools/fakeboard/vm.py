"""The VM side of a fake USB board, seen from the host: one ``node`` process running
``board_node.mjs`` (the npm MicroPython WebAssembly build), one VM at a time in it.

``load`` starts a fresh VM with the board's files (a reset), ``boot`` makes it the board
(``onboard/_fbboot.py``), ``feed`` hands bytes to its REPL, ``tick`` runs one pass of the
flashed firmware, ``files`` reads the board's files back. Every failure of the VM or of
node is a ``VMError``; after one the VM must be loaded again (or, when ``alive`` is False,
a new ``BoardVM`` started).
"""

from __future__ import annotations

import json
from base64 import b64decode, b64encode
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tools.closeable import Closeable
from tools.fakeboard.errors import VMError
from tools.fakeboard.flashdir import Snapshot
from tools.mpvm import (
    REPO_ROOT,
    MicroPythonError,
    MicroPythonUnavailable,
    NodeMicroPython,
)

DRIVER: Final = Path(__file__).resolve().parent / "board_node.mjs"
ONBOARD_DIR: Final = Path(__file__).resolve().parent / "onboard"
SIM_VM_DIR: Final = REPO_ROOT / "tools" / "sim" / "vm"
DEFAULT_HEAP_BYTES: Final = 1024 * 1024
DEFAULT_TIMEOUT_S: Final = 120.0
"""Longest a single VM call may take (a long-running REPL command) before node is killed."""
SOFT_RESET: Final = 0x100
"""What the REPL answers a Ctrl-D on an empty line (or sys.exit()) with: soft reset."""


def _hidden_files() -> dict[str, str]:
    """The helpers the VM imports from /_sim (name -> base64)."""
    paths = [
        ONBOARD_DIR / "_fbboot.py",
        ONBOARD_DIR / "_fbos.py",
        ONBOARD_DIR / "_fbsys.py",
        SIM_VM_DIR / "machine.py",
        SIM_VM_DIR / "simboard.py",
    ]
    return {p.name: b64encode(p.read_bytes()).decode("ascii") for p in paths}


@dataclass(frozen=True)
class Answer:
    """What one VM call printed and returned.

    out: bytes the VM printed (stdout and stderr, in order). result: the JSON text the
    VM-side code handed back (None if none). reset: "reset" or "soft_reset" when
    ``machine.reset()``/``soft_reset()`` ran. error: the traceback of an exception that
    escaped ("" if none). dirty: a board file changed since the last ``files``.
    """

    out: bytes
    result: str | None
    reset: str | None
    error: str
    dirty: bool

    def json(self) -> Any:
        """result decoded; VMError when there is none."""
        if self.result is None:
            raise VMError(f"the board's VM gave no answer; it printed {self.out[-500:]!r}")
        try:
            return json.loads(self.result)
        except ValueError:
            raise VMError(f"unreadable answer from the board's VM: {self.result[:200]!r}") from None


@dataclass(frozen=True)
class Fed:
    """What the REPL did with bytes fed to it: ``consumed`` of them were taken; it printed
    ``out``; ``ret`` is its return code (SOFT_RESET asks for a soft reset); ``reset`` as in
    Answer."""

    out: bytes
    consumed: int
    ret: int
    reset: str | None
    dirty: bool


class BoardVM(Closeable):
    """One node process holding the board's MicroPython VM; see the module docstring."""

    def __init__(
        self, *, heap_bytes: int = DEFAULT_HEAP_BYTES, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        try:
            self._node = NodeMicroPython(heap_bytes=heap_bytes, timeout=timeout, driver=DRIVER)
        except MicroPythonUnavailable as exc:
            raise VMError(str(exc)) from None
        except MicroPythonError as exc:
            raise VMError(f"the MicroPython VM did not start: {exc}") from None
        info = self._request({"op": "ping"})
        self.version = str(info.get("version", ""))
        self.banner = str(info.get("banner", ""))
        """The VM's own banner line, e.g. "MicroPython v1.29.0-6.g... on 2026-08-25; JS with
        Emscripten"."""
        self._hidden = _hidden_files()

    @property
    def alive(self) -> bool:
        """True while the node process runs."""
        return self._node.alive and not self._node.closed

    def close(self) -> None:
        """Stop node; safe to call twice."""
        self._node.close()

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            reply = self._node.request(request)
        except MicroPythonError as exc:
            raise VMError(f"the board's VM failed during {request['op']!r}: {exc}") from None
        if reply.get("fatal"):
            raise VMError(
                f"the board's VM crashed during {request['op']!r}: {reply.get('error', '')}"
            )
        if not reply.get("ok") and request["op"] != "exec":
            raise VMError(f"the board's VM refused {request['op']!r}: {reply.get('error', '')}")
        return reply

    def load(self, snapshot: Snapshot, *, capacity: int, corrupt: str | None) -> None:
        """A fresh VM holding the board's files (capacity in bytes; corrupt: a regex)."""
        self._request(
            {
                "op": "load",
                "files": {p: b64encode(d).decode("ascii") for p, d in snapshot.files.items()},
                "dirs": sorted(snapshot.dirs),
                "hidden": self._hidden,
                "capacity": capacity,
                "corrupt": corrupt,
            }
        )

    def exec(self, code: str) -> Answer:
        """Run code in the VM's ``__main__``; an escaping exception is in ``error``."""
        reply = self._request({"op": "exec", "code": code})
        result = reply.get("result")
        reset = reply.get("reset")
        return Answer(
            out=b64decode(reply.get("out_b64", "")),
            result=result if isinstance(result, str) else None,
            reset=reset if isinstance(reset, str) else None,
            error="" if reply.get("ok") else str(reply.get("error", "")),
            dirty=bool(reply.get("dirty")),
        )

    def call(self, expression: str) -> Answer:
        """Call a function of the VM-side helper ``_fbboot``; VMError if it raises."""
        answer = self.exec(f"__import__('_fbboot').{expression}")
        if answer.error:
            raise VMError(f"the board's VM-side helper failed: {answer.error}")
        return answer

    def boot(self, cfg: dict[str, Any]) -> Answer:
        """Make the fresh VM the board (``_fbboot.boot``); VMError if that fails."""
        return self.exec(
            f"__import__('sys').path.append('/_sim')\n__import__('_fbboot').boot({cfg!r})"
        )

    def repl_init(self) -> bytes:
        """Start the REPL (friendly mode); what it printed (its banner and prompt)."""
        return b64decode(self._request({"op": "repl_init"}).get("out_b64", ""))

    def feed(self, data: bytes) -> Fed:
        """Bytes to the REPL; see Fed."""
        reply = self._request({"op": "feed", "data_b64": b64encode(data).decode("ascii")})
        reset = reply.get("reset")
        return Fed(
            out=b64decode(reply.get("out_b64", "")),
            consumed=int(reply.get("consumed", len(data))),
            ret=int(reply.get("ret", 0)),
            reset=reset if isinstance(reset, str) else None,
            dirty=bool(reply.get("dirty")),
        )

    def files(self) -> Snapshot:
        """The board's files and folders now."""
        reply = self._request({"op": "files"})
        files = reply.get("files", {})
        dirs = reply.get("dirs", [])
        return Snapshot(
            {str(p): b64decode(d) for p, d in files.items()}, frozenset(str(d) for d in dirs)
        )
