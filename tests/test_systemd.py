"""sd_notify over real AF_UNIX datagram sockets, and the shipped systemd unit."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import socket
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.systemd import MAX_STATUS_CHARS, Notifier

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "amtomat.service"


def _bind(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(10)
    return sock


@pytest.fixture
def path_socket() -> Iterator[tuple[str, socket.socket]]:
    # AF_UNIX paths are limited to ~107 bytes: pytest's tmp_path can be longer.
    path = f"/tmp/amtomat-notify-{uuid.uuid4().hex[:12]}.sock"
    sock = _bind(path)
    yield path, sock
    sock.close()
    os.unlink(path)


def test_messages_arrive_on_a_path_socket(path_socket: tuple[str, socket.socket]) -> None:
    path, sock = path_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    notifier.ready("2 boards up")
    assert sock.recv(4096) == b"READY=1\nSTATUS=2 boards up"
    notifier.ready()
    assert sock.recv(4096) == b"READY=1"
    notifier.status("board wall-b\nREADY=1 down")
    assert sock.recv(4096) == b"STATUS=board wall-b READY=1 down", "one line, no injection"
    notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    notifier.status("x" * 5000)
    assert sock.recv(8192) == b"STATUS=" + b"x" * MAX_STATUS_CHARS
    notifier.close()


def test_messages_arrive_on_an_abstract_socket() -> None:
    name = f"amtomat-notify-{uuid.uuid4().hex}"
    sock = _bind(b"\0" + name.encode())
    try:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        notifier.ready("up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"
        notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    notifier.ready("x")
    notifier.status("x")
    notifier.watchdog()
    notifier.stopping()


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"}
    assert Notifier.from_env(env).watchdog_interval_s == 15.0
    mine = {**env, "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_env(mine).watchdog_interval_s == 15.0
    other = {**env, "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier.from_env(other).watchdog_interval_s is None, "the watchdog is not ours"
    assert Notifier.from_env(other, pid=os.getpid() + 1).watchdog_interval_s == 15.0


@pytest.mark.parametrize("usec", ["0", "-5", "30s", "٣٠", "1e6"])
def test_bad_watchdog_usec_is_ignored_and_logged(
    usec: str, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": usec})
    assert notifier.watchdog_interval_s is None
    assert repr(usec) in caplog.text


@pytest.mark.parametrize("value", ["relative/path", "@", "vsock:2:1234"])
def test_bad_notify_socket_is_ignored_and_logged(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": value})
    assert not notifier.enabled
    notifier.ready()
    assert repr(value) in caplog.text


def test_send_errors_are_logged_once_and_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = f"/tmp/amtomat-notify-{uuid.uuid4().hex[:12]}.sock"
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})  # nobody listens there
    caplog.set_level("WARNING", logger="controller.systemd")
    for _ in range(5):
        notifier.watchdog()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and path in warnings[0].getMessage()
    sock = _bind(path)  # systemd comes back: sending works again
    try:
        notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        sock.close()
        os.unlink(path)


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_is_a_notify_service_with_watchdog() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "30"
    assert service["Restart"] == "on-failure"
    assert service["User"] == "amtomat" and service["Group"] == "amtomat"
    assert set(service["SupplementaryGroups"].split()) == {"dialout", "gpio"}
    assert service["StateDirectory"] == "amtomat"
    assert service["ProtectSystem"] == "strict"
    assert "/var/lib/amtomat" in service["ReadWritePaths"].split()
    assert service.get("PrivateDevices", "no") == "no", "the serial and GPIO devices are needed"


def test_unit_execstart_is_our_console_script() -> None:
    argv = shlex.split(_unit()["Service"]["ExecStart"])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(argv[0]).name in scripts
    assert argv[0].startswith("/opt/amtomat/.venv/bin/")
    assert argv[1:] == ["run", "--config", "/etc/amtomat/terminal.toml"]


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """systemd's own parser reports no unknown key or bad value in the unit."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    exec_start = _unit()["Service"]["ExecStart"]
    # verify checks that the binary exists: point it at one that does.
    text = UNIT.read_text().replace(shlex.split(exec_start)[0], "/bin/true")
    unit = tmp_path / "amtomat.service"
    unit.write_text(text)
    proc = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120, check=False
    )
    complaints = [line for line in proc.stderr.splitlines() if "amtomat.service" in line]
    assert proc.returncode == 0 and complaints == [], proc.stderr
