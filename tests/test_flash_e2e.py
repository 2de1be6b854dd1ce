"""``amtomat flash`` end to end: the command as an installer runs it (a process, -vv), against
the fake board (a real MicroPython VM behind a pty, unmodified mpremote on our side).

Real time: waits are generous and nothing asserts durations. Every run's output is checked
for every form of every key seen so far.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.boardconfig import board_json, load
from protocol import session as S
from protocol.messages import BOARD
from tools.mpvm import REPO_ROOT, find_node

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_node() is None, reason="node is not installed"),
]
FakeBoard: Any = pytest.importorskip("tools.fakeboard.board").FakeBoard

DEMO = REPO_ROOT / "examples" / "demo-terminal.toml"
BOARD_ID = "wall-a"
RUN_TIMEOUT_S = 240
KEYS_SEEN: set[bytes] = set()


@dataclass
class Run:
    code: int
    out: str
    err: str
    seconds: float


@dataclass
class Site:
    """A terminal file in a temp folder, its keystore beside it, a shared build cache."""

    root: Path
    config: Path
    cache: Path

    @property
    def keystore(self) -> Path:
        return self.root / "data" / "keys"

    def key(self, name: str = f"{BOARD_ID}.key") -> bytes:
        return (self.keystore / name).read_bytes()


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    root = tmp_path_factory.mktemp("site")
    config = root / "terminal.toml"
    shutil.copy(DEMO, config)
    return Site(root, config, tmp_path_factory.mktemp("cache"))


def _record_keys(site: Site) -> None:
    for path in site.keystore.glob("*.key*"):
        KEYS_SEEN.add(path.read_bytes())


def _assert_no_key(text: str) -> None:
    for key in KEYS_SEEN:
        for form in (key.hex(), key.hex().upper(), base64.b64encode(key).decode(), repr(key)):
            assert form not in text, "a key appeared in the output"


def flash(site: Site, port: str, *args: str, stdin: str = "", board: str = BOARD_ID) -> Run:
    """Run ``amtomat flash -vv`` to its end."""
    t = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.cli",
            "flash",
            "-vv",
            "--config",
            str(site.config),
            "--board",
            board,
            "--port",
            port,
            "--cache",
            str(site.cache),
            *args,
        ],
        cwd=REPO_ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    run = Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t)
    _record_keys(site)
    _assert_no_key(run.out + run.err)
    return run


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Any]:
    """A factory of fresh fake boards, closed after the test."""
    boards: list[Any] = []

    def make(seed: dict[str, bytes] | None = None, **kw: Any) -> Any:
        folder = tmp_path / f"flash{len(boards)}"
        for path, data in (seed or {}).items():
            (folder / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (folder / path.lstrip("/")).write_bytes(data)
        board = FakeBoard(folder, **kw)
        board.start()
        boards.append(board)
        return board

    yield make
    for board in boards:
        board.close()


@dataclass
class Flashed:
    board: Any
    first: Run


@pytest.fixture(scope="session")
def flashed(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flashed]:
    """One board flashed from factory MicroPython; later tests flash it again."""
    board = FakeBoard(tmp_path_factory.mktemp("board") / "flash")
    board.start()
    try:
        yield Flashed(board, flash(site, board.port))
    finally:
        board.close()


def _wanted_config(site: Site) -> bytes:
    return board_json(load(site.config).board(BOARD_ID))


def _board_key_works(port: str, key: bytes, address: int = 1) -> bool | None:
    """True: the board's welcome authenticates with key; False: it does not; None: silence."""
    import serial

    with serial.Serial(port, timeout=0.05, exclusive=True) as ser:
        session = S.Session(
            S.INITIATOR, BOARD, lambda v: ser.write(bytes(v)), os.urandom, key=key, addr=address
        )
        end = time.monotonic() + 20
        session.connect(int(time.monotonic() * 1000) & 0x3FFFFFFF)
        while time.monotonic() < end:
            now = int(time.monotonic() * 1000) & 0x3FFFFFFF
            data = ser.read(max(1, ser.in_waiting))
            if data:
                session.feed(data, now)
            session.poll(now)
            if session.established:
                return True
            if session.last_error.startswith("welcome failed authentication"):
                return False  # (tag errors alone may be frames of the flash's session)
    return None


# ----- the good path ----------------------------------------------------------------------


def test_fresh_board_is_flashed_verified_reset_and_self_tested(
    flashed: Flashed, site: Site
) -> None:
    run, board = flashed.first, flashed.board
    assert run.code == 0, run.err
    out = run.out
    assert "MicroPython REPL answered" in out
    assert "copy /lib/amtfw/runtime.mpy" in out and "copy /main.py" in out
    assert "files verified by sha256" in out
    assert "handshake ok: board wall-a" in out
    assert "channel 1 (A01): door closed [GPIO 1]" in out
    assert "channel 12 (A12): door closed [GPIO 28]" in out
    assert "entrance: door closed [mcp0:B3]" in out
    assert "board wall-a is flashed and answers" in out
    assert "new key, stored in the keystore and on the board" in out
    assert 'SYMLINK+="amtomat/wall-a"' in out
    key = site.key()
    assert len(key) == 32
    assert os.stat(site.keystore / "wall-a.key").st_mode & 0o777 == 0o600
    assert os.stat(site.keystore).st_mode & 0o777 == 0o700
    assert not (site.keystore / "wall-a.key.old").exists()
    files = board.files()
    assert files["/amtomat.key"] == key
    assert files["/amtomat.json"] == _wanted_config(site)
    assert files["/main.py"] == (REPO_ROOT / "firmware_micropython" / "main.py").read_bytes()
    assert {p for p in files if p.startswith("/lib/amtfw/")} >= {
        "/lib/amtfw/runtime.mpy",
        "/lib/amtfw/app.mpy",
    }
    assert not [p for p in files if p.endswith(".tmp")]
    build = files["/amtfw_build.txt"].decode().strip()
    assert f"build {build}" in out
    assert board.resets >= 1


def test_reflash_is_idempotent_through_the_maintenance_handover(
    flashed: Flashed, site: Site
) -> None:
    before = flashed.board.files()
    key = site.key()
    run = flash(site, flashed.board.port)
    assert run.code == 0, run.err
    assert "handed its port to the REPL (maintenance)" in run.out
    assert "nothing to copy" in run.out
    assert "0 copied, 0 removed" in run.out
    assert "kept (the board already had it)" in run.out
    assert site.key() == key
    assert flashed.board.files() == before


def test_rekey_changes_the_key_and_the_old_one_stops_working(flashed: Flashed, site: Site) -> None:
    old = site.key()
    run = flash(site, flashed.board.port, "--rekey")
    assert run.code == 0, run.err
    assert "new key, stored in the keystore and on the board" in run.out
    new = site.key()
    assert new != old and len(new) == 32
    assert os.stat(site.keystore / "wall-a.key").st_mode & 0o777 == 0o600
    assert not (site.keystore / "wall-a.key.old").exists()
    assert flashed.board.files()["/amtomat.key"] == new
    assert _board_key_works(flashed.board.port, old) is False
    assert _board_key_works(flashed.board.port, new) is True


def test_pulse_asks_per_channel_and_reports_the_door(flashed: Flashed, site: Site) -> None:
    run = flash(site, flashed.board.port, "--pulse", stdin="y\nn\nq\n")
    assert run.code == 0, run.err + run.out
    assert "pulse channel 1 (A01)? [y/n/q]" in run.out
    assert "channel 1 (A01): pulse sent (300 ms)" in run.out
    assert "channel 1 (A01): door seen open" in run.out
    assert "channel 2 (A02): skipped" in run.out
    assert "pulses stopped" in run.out


def _interrupt(site: Site, port: str, sig: signal.Signals, after: str) -> tuple[int, str, str]:
    """Start ``amtomat flash``; send sig once an output line holds after."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.cli",
            "flash",
            "--config",
            str(site.config),
            "--board",
            BOARD_ID,
            "--port",
            port,
            "--cache",
            str(site.cache),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if after in line:
            proc.send_signal(sig)
            break
    out, err = proc.communicate(timeout=60)
    return proc.returncode, "".join(seen) + out, err


def test_interrupted_copy_is_finished_by_the_next_run(site: Site, fresh: Any) -> None:
    board = fresh()
    code, out, err = _interrupt(site, board.port, signal.SIGTERM, ") [3/")
    assert code == 130, out + err
    assert "amtomat flash: interrupted while copying files" in err
    assert "Run amtomat flash again to finish" in err
    files = board.files()
    assert "/main.py" not in files and "/amtomat.key" not in files
    code, out, err = _interrupt(site, board.port, signal.SIGKILL, ") [2/")
    assert code == -signal.SIGKILL, out + err
    assert "/main.py" not in board.files()
    run = flash(site, board.port)
    assert run.code == 0, run.err
    assert "board wall-a is flashed and answers" in run.out
    files = board.files()
    assert files["/amtomat.key"] == site.key()
    assert files["/amtomat.json"] == _wanted_config(site)
    assert not [p for p in files if p.endswith(".tmp")]


def test_interrupted_after_the_handover_the_board_is_reset_into_its_firmware(
    flashed: Flashed, site: Site
) -> None:
    resets = flashed.board.resets
    code, out, err = _interrupt(site, flashed.board.port, signal.SIGTERM, "handed its port")
    assert code == 130, out + err
    assert "interrupted while" in err
    assert "nothing was written; the board was reset into its firmware" in err
    assert flashed.board.resets == resets + 1
    assert flashed.board.wait("firmware", 30)


def test_another_program_is_replaced_only_with_yes(site: Site, fresh: Any) -> None:
    other = b"print('the previous owner's program')\n"
    board = fresh(seed={"/main.py": other})
    run = flash(site, board.port)
    assert run.code == 1, run.err
    assert "runs another program (its /main.py is not ours); nothing was changed" in run.err
    assert board.files() == {"/main.py": other}
    run = flash(site, board.port, "--yes")
    assert run.code == 0, run.err
    assert board.files()["/main.py"] != other


def test_list_tells_what_runs_on_a_board(flashed: Flashed, fresh: Any) -> None:
    from tools.flash.listing import describe_port

    assert (
        describe_port(fresh().port) == "MicroPython 1.29.0 on rp2, mpy v6.3, arch none: supported"
    )
    old = describe_port(fresh(micropython="1.20.0").port)
    assert old.startswith("MicroPython 1.20.0 on rp2, mpy v6.3, arch none: NOT supported")
    assert "firmware" in describe_port(flashed.board.port)
    assert flashed.board.mode == "firmware"


# ----- errors ------------------------------------------------------------------------------


def test_no_board_at_the_port(site: Site) -> None:
    run = flash(site, "/dev/amtomat-does-not-exist")
    assert run.code == 3
    assert "amtomat flash: no board at /dev/amtomat-does-not-exist: no such device" in run.err


def test_list_with_nothing_attached(site: Site) -> None:
    from tools.flash.ports import list_ports

    if any(p.micropython for p in list_ports()):
        pytest.skip("a MicroPython board is attached to this machine")
    proc = subprocess.run(
        [sys.executable, "-m", "tools.cli", "flash", "--list"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    assert "amtomat flash: no board attached" in proc.stderr


def test_usage_errors_exit_2(site: Site) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.cli", "flash", "--config", str(site.config)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--board ID is required" in proc.stderr
    run = flash(site, "/dev/null", board="wall-z")
    assert run.code == 2 and "there is no board 'wall-z'; its boards are: wall-a, wall-b" in run.err


def test_board_configured_as_another_board_is_left_alone(flashed: Flashed, site: Site) -> None:
    """Flashing wall-b onto the board that is wall-a: its key (another board's) opens the
    session at wall-a's address, the welcome says wall-a, and nobody confirmed."""
    before = flashed.board.files()
    run = flash(site, flashed.board.port, board="wall-b")
    assert run.code == 1, run.err
    assert "is configured as 'wall-a', not 'wall-b'; nothing was changed" in run.err
    assert flashed.board.files() == before
    assert flashed.board.mode == "firmware"


def test_port_busy_names_the_holder(flashed: Flashed, site: Site) -> None:
    code = (
        "import serial,sys,time\n"
        "s=serial.Serial(sys.argv[1],exclusive=True)\n"
        "print('held',flush=True)\n"
        "time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, flashed.board.port], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        run = flash(site, flashed.board.port)
    finally:
        holder.kill()
        holder.wait()
    assert run.code == 3
    assert f"port {flashed.board.port} is busy" in run.err
    assert f"pid {holder.pid}" in run.err
    assert "systemctl stop amtomat" in run.err


def test_wrong_micropython_version_is_refused_before_writing(site: Site, fresh: Any) -> None:
    board = fresh(micropython="1.20.0")
    run = flash(site, board.port)
    assert run.code == 4, run.err
    assert "MicroPython 1.20.0; amtomat needs 1.23.0 or newer" in run.err
    assert board.files() == {}


def test_wrong_mpy_abi_is_refused_before_writing(site: Site, fresh: Any) -> None:
    board = fresh(mpy=0x305)  # a MicroPython that loads .mpy v5
    run = flash(site, board.port)
    assert run.code == 4, run.err
    assert ".mpy v5 files" in run.err
    assert board.files() == {}


def test_no_space_is_refused_before_writing(site: Site, fresh: Any) -> None:
    board = fresh(capacity=48 * 1024)
    run = flash(site, board.port)
    assert run.code == 4, run.err
    assert "free, the firmware needs" in run.err and "nothing was written" in run.err
    assert board.files() == {}


def test_verification_mismatch_names_the_file_and_resets_nothing(site: Site, fresh: Any) -> None:
    board = fresh(corrupt="/lib/amtfw/app.mpy*")  # written as app.mpy.tmp, then renamed
    run = flash(site, board.port)
    assert run.code == 5, run.err
    assert "verification failed: /lib/amtfw/app.mpy on the board has sha256" in run.err
    assert "Nothing was reset" in run.err
    assert board.resets == 0
    assert "/main.py" not in board.files()


def test_board_silent_after_reset(site: Site, fresh: Any) -> None:
    board = fresh(silent_after_reset=True)
    run = flash(site, board.port, "--answer-timeout", "3")
    assert run.code == 6, run.err
    assert "board wall-a not answering after reset" in run.err
    assert board.resets == 1
    files = board.files()
    assert hashlib.sha256(files["/amtomat.key"]).digest() == hashlib.sha256(site.key()).digest()
