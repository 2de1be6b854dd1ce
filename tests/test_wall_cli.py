"""``amtomat wall`` as installers run it: bad arguments exit 2 with argparse's message,
setup problems exit 1 naming the file or value (never a key or password), ``--once``
prints one frame; against the real daemon process and the simulator (`amtomat run`,
`amtomat sim`) the live view follows a door and says when the daemon is gone; on a tty
it uses the alternate screen, follows a resize and restores the screen on SIGTERM.

Real processes run on the wall clock: waits are on conditions with generous limits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import termios
import threading
from pathlib import Path

import pytest
from test_daemon_process import (  # noqa: F401  (sim is a fixture)
    AMTOMAT,
    DEMO,
    DaemonProcess,
    _free_port,
    _terminal_file,
    _wait,
    sim,
)
from test_wall_render import cells

from tools.cli import main
from tools.mpvm import REPO_ROOT
from tools.sim.control import ControlClient
from tools.wall.live import ENTER, LEAVE

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def wall(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AMTOMAT, "wall", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )


# ----- arguments and setup ---------------------------------------------------------------

USAGE = [
    ([], "say where the data comes from"),
    (["--kiosk", "demo-01", "--bridge", "tcp://127.0.0.1:1"], "--kiosk only go with --mqtt"),
    (["--config", "x.toml", "--no-tls"], "--no-tls only go with --mqtt"),
    (["--mqtt", "broker"], "--mqtt needs --kiosk"),
    (["--mqtt", "broker", "--kiosk", "k1", "--bridge", "tcp://h:1"], "not with --mqtt"),
    (["--config", "x.toml", "--columns", "0"], "'0' is not a whole number"),
    (["--config", "x.toml", "--timeout", "soon"], "'soon' is not a positive number"),
]


@pytest.mark.parametrize(("argv", "says"), USAGE)
def test_bad_arguments_exit_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["wall", *argv])
    assert info.value.code == 2
    assert says in capsys.readouterr().err


def demo_copy(tmp_path: Path, old: str = "", new: str = "") -> Path:
    path = tmp_path / "terminal.toml"
    path.write_text(DEMO.read_text().replace(old, new))
    return path


def test_setup_problems_exit_1_naming_the_file_or_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2-very-secret\n")
    secret.chmod(0o644)
    pty_only = demo_copy(tmp_path, '["tcp://127.0.0.1:7010"]', f'["pty:{tmp_path}/kiosk"]')
    cases = [
        (["--config", str(tmp_path / "missing.toml")], "missing.toml"),
        (["--config", str(pty_only)], "has no tcp:// or unix: endpoint"),
        (["--config", str(DEMO), "--key-file", str(tmp_path / "none.key")], "does not exist"),
        (["--mqtt", "bad host", "--kiosk", "demo-01"], "'bad host' is not HOST"),
        (["--mqtt", "broker", "--kiosk", "demo-01/#"], "'demo-01/#' is not a terminal id"),
        (["--mqtt", "b", "--kiosk", "k1", "--password-file", str(secret)], "chmod 600"),
        (["--mqtt", "b", "--kiosk", "k1", "--cert", str(secret)], "go together"),
        (["--bridge", "tcp://nowhere"], "tcp://nowhere"),
    ]
    for argv, says in cases:
        assert main(["wall", *argv]) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("amtomat wall: ") and says in err, (argv, err)
        assert "hunter2" not in err


def test_once_without_a_daemon_prints_the_frame_and_exits_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"tcp://127.0.0.1:{_free_port()}"
    code = main(["wall", "--bridge", url, "--once", "--timeout", "10", "--width", "90"])
    out, err = capsys.readouterr()
    assert code == 3
    assert "amtomat wall: no complete picture within 10 s" in err
    header = " ".join(out.splitlines()[1:3])
    assert f"source: bridge {url}" in header and "daemon not reachable, retrying" in header
    assert "no compartments known yet" in out and "\x1b" not in out  # not a tty: no colour


# ----- against the real daemon ---------------------------------------------------------


class Reader:
    """Collects a child's output on a thread."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.data = b""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self.data += chunk

    def text(self) -> str:
        with self._lock:
            return self.data.decode("utf-8", "replace")

    def frames(self) -> list[str]:
        return self.text().split("\n\n")

    def join(self) -> None:
        self._thread.join(30)


def test_against_the_daemon_once_live_and_gone(tmp_path: Path, sim: ControlClient) -> None:  # noqa: F811
    port = _free_port()
    config = _terminal_file(tmp_path, sim, port)
    daemon = DaemonProcess(config, port)
    try:
        once = wall("--config", str(config), "--once", "--timeout", "60", "--width", "100")
        assert once.returncode == 0, once.stdout + once.stderr
        frame = once.stdout.splitlines()
        shown = cells(frame)
        assert set(shown) == {f"A{i:02d}" for i in range(1, 13)} | {
            f"B{i:02d}" for i in range(1, 9)
        }
        assert "boards: 2/2 ready" in once.stdout and "| live |" in once.stdout

        other = tmp_path / "other.key"
        other.write_bytes(bytes(range(32)))
        other.chmod(0o600)
        wrong = wall("--config", str(config), "--key-file", str(other), "--once")
        assert wrong.returncode == 1 and "wrong pairing key" in wrong.stderr
        assert bytes(range(32)).hex() not in wrong.stderr

        proc = subprocess.Popen(
            [*AMTOMAT, "wall", "--config", str(config), "--width", "100", "--refresh", "1"],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        out = Reader(proc.stdout.fileno())
        try:
            _wait(lambda: "| live |" in out.text(), 60, "a live frame")
            sim.call("door wall-a 5 open")
            _wait(lambda: "A05 [F] FORCED" in out.text(), 60, "the forced door in a frame")
            last = [f for f in out.frames() if "A05 [F] FORCED" in f][-1]
            assert cells(last.splitlines())["A05"][1] == "door open"
            daemon.proc.send_signal(signal.SIGKILL)
            daemon.proc.wait(20)
            _wait(lambda: "daemon not reachable, retrying" in out.text(), 60, "the daemon gone")
            assert "\x1b" not in out.text()  # a pipe gets no escape codes
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(20)
            out.join()
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.send_signal(signal.SIGTERM)
            daemon.proc.wait(30)


# ----- on a terminal ---------------------------------------------------------------------


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def grid_width(screen: str) -> int:
    """The widest grid line of the last full frame drawn in screen."""
    frames = screen.split("\x1b[H")
    last = ANSI.sub("", frames[-2] if len(frames) > 2 else frames[-1])
    return max((len(line) for line in last.splitlines() if line.startswith("+")), default=0)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_on_a_tty_the_screen_is_restored_and_resizes_are_followed(
    tmp_path: Path, stop: signal.Signals
) -> None:
    config = demo_copy(tmp_path)  # the layout; its bridge is not running
    master, slave = pty.openpty()
    set_size(slave, 60, 120)
    key = tmp_path / "k.key"
    key.write_bytes(bytes(32))
    key.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(TERM="xterm-256color", COLUMNS="80")  # COLUMNS: the tty's own size wins
    proc = subprocess.Popen(
        [*AMTOMAT, "wall", "--config", str(config), "--key-file", str(key),
         "--bridge", f"tcp://127.0.0.1:{_free_port()}"],
        cwd=REPO_ROOT, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        env=env,
    )  # fmt: skip
    os.close(slave)
    out = Reader(master)
    try:
        _wait(lambda: out.text().count("amtomat wall") >= 2, 60, "frames on the tty")
        assert out.text().startswith(ENTER)
        assert "\x1b[1mamtomat wall\x1b[0m" in out.text()  # coloured on a terminal
        assert 100 < grid_width(out.text()) <= 120
        set_size(master, 60, 60)
        proc.send_signal(signal.SIGWINCH)
        _wait(lambda: 0 < grid_width(out.text()) <= 60, 60, "a frame for the narrower window")
        proc.send_signal(stop)
        assert proc.wait(30) == 0
        out.join()
        assert out.text().endswith(LEAVE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(20)
        with contextlib.suppress(OSError):
            os.close(master)
