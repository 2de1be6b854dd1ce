"""``amtomat boards``, ``status`` and ``test-channel`` against the real daemon: ``amtomat run``
as a process against ``amtomat sim`` (the real firmware in MicroPython VMs), its bridge on a
Unix socket, the commands run in-process as an administrator would type them; and what
they say when the daemon, its key or its endpoint is not there.

These run on the wall clock (separate processes cannot share a simulated one); they wait
for conditions with generous limits and never assert durations.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tools.cli import main
from tools.mpvm import REPO_ROOT, find_node
from tools.sim.control import ControlClient

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_node() is None, reason="node is not installed"),
]

DEMO = REPO_ROOT / "examples" / "demo-terminal.toml"
AMTOMAT = [sys.executable, "-m", "tools.cli"]
PIN = "246810"  # the demo file's PIN of staff "mueller"
LIMIT_S = 60.0


def wait_for(cond: Callable[[], object], what: str, limit_s: float = LIMIT_S) -> None:
    end = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < end, f"{what}: not within {limit_s} s"
        time.sleep(0.1)


@dataclass
class Live:
    """A running simulator and daemon, and the terminal TOML that describes them."""

    tmp: Path
    config: Path
    sim: ControlClient
    daemon: subprocess.Popen[bytes]

    def door_open(self, board: str, channel: int) -> bool:
        world = self.sim.call("state")["boards"][board]["world"]
        return bool(world["doors"][str(channel)]["open"])

    def variant(self, name: str, old: str, new: str) -> Path:
        """A copy of the TOML with one text replaced (same folder: same database, keys)."""
        text = self.config.read_text()
        assert old in text, old
        path = self.tmp / name
        path.write_text(text.replace(old, new))
        return path


def _terminal_file(tmp: Path, sim: ControlClient) -> Path:
    text = DEMO.read_text()
    for board in sim.call("boards"):
        text = text.replace(
            f'board_id = "{board["board"]}"',
            f'board_id = "{board["board"]}"\nport = "{board["url"]}"',
        )
    text = text.replace('"tcp://127.0.0.1:7010"', f'"unix:{tmp / "bridge.sock"}"')
    text = text.replace("door_open_s = 8 ", "door_open_s = 2 ")
    path = tmp / "terminal.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("diag")
    control = tmp / "sim.sock"
    sim_proc = subprocess.Popen(
        [*AMTOMAT, "sim", "--config", str(DEMO), "--keystore", str(tmp / "data" / "keys"),
         "--control", str(control), "--tick-ms", "5"],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    daemon: subprocess.Popen[bytes] | None = None
    try:
        wait_for(control.exists, "the simulator's control socket")
        sim = ControlClient(str(control))
        config = _terminal_file(tmp, sim)
        with (tmp / "daemon.log").open("wb") as log:
            daemon = subprocess.Popen(
                [*AMTOMAT, "run", "--config", str(config)], cwd=REPO_ROOT, stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for((tmp / "bridge.sock").exists, "the daemon's bridge socket")
        yield Live(tmp, config, sim, daemon)
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
        sim_proc.send_signal(signal.SIGTERM)
        sim_proc.wait(30)


def run(capsys: pytest.CaptureFixture[str], *argv: str, stdin: str = "") -> tuple[int, str, str]:
    """One command in-process: (exit status, stdout, stderr)."""
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        status = main(list(argv))
    finally:
        sys.stdin = saved
    out, err = capsys.readouterr()
    return status, out, err


def boards_json(live: Live, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    status, out, err = run(capsys, "boards", "--json", "--config", str(live.config))
    assert status in (0, 3), err
    return status, json.loads(out)


# ----- boards and status -----------------------------------------------------------------


def test_boards_show_firmware_uptime_and_both_ends_counters(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    def diagnosed() -> bool:
        status, doc = boards_json(live, capsys)
        return status == 0 and all(b["uptime_s"] is not None for b in doc["boards"])

    wait_for(diagnosed, "both boards ready with their diagnostics")
    _, doc = boards_json(live, capsys)
    assert doc["kiosk_id"] == "demo-01"
    a, b = doc["boards"]
    assert (a["board"], a["address"], b["board"], b["address"]) == ("wall-a", 1, "wall-b", 2)
    assert a["port"].startswith("socket://127.0.0.1:") and a["provisioned"] is True
    assert a["reset_reason"] == "power" and isinstance(a["boot_id"], int)
    assert a["link"]["frames_in"] > 0 and a["board_link"]["frames_in"] > 0
    assert a["link"]["srtt_ms"] is not None and a["events"]["lost"] == 0
    status, out, _ = run(capsys, "boards", "--config", str(live.config))
    assert status == 0
    assert out.startswith("terminal demo-01: 2/2 boards ready")
    block = out.split("board wall-b")[0]
    assert re.search(r"\n  link +ready\n", block) and re.search(r"\n  last error +-\n", block)
    assert re.search(rf"\n  firmware +{re.escape(a['firmware'])} \(build dev\)\n", block)
    assert re.search(rf"\n  boot id +{a['boot_id']}\n", block)
    assert re.search(r"\n  uptime +\d+ (s|min)", block)
    assert re.search(r"\n  frames in +\d+ +\d+\n", block)
    assert re.search(r"\n  RTT \(smoothed\) +\d+ ms +\d+ ms\n", block)
    for secret in (live.tmp / "data" / "keys").iterdir():
        assert secret.read_bytes().hex() not in out + json.dumps(doc)


def test_status_is_0_when_all_is_well_and_3_with_an_alarm(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(live.config)
    status, out, _ = run(capsys, "status", "--config", config)
    assert status == 0, out
    assert re.search(r"^boards +2/2 ready$", out, re.M)
    assert re.search(r"^entrance +normal, door closed$", out, re.M)
    assert re.search(
        r"^slots +return idle \(flap closed\); dropoff idle \(flap closed\)$", out, re.M
    )
    assert re.search(r"^alarms +none$", out, re.M) and re.search(r"^verdict +all well$", out, re.M)
    assert re.search(r"^B01 +S +empty +closed +off +yes +-$", out, re.M)
    assert re.search(r"^A01 +S +empty +closed +none +yes +-$", out, re.M)
    live.sim.call("door wall-a 5 open")  # nobody pulsed it: forced
    wait_for(lambda: run(capsys, "status", "--config", config)[0] == 3, "the alarm")
    status, out, _ = run(capsys, "status", "--config", config)
    assert re.search(r"^verdict +NEEDS ATTENTION$", out, re.M)
    assert re.search(
        r"^  forced_open +A05 +\d+ (s|min \d+ s) +compartment door opened without a pulse$",
        out,
        re.M,
    )
    assert re.search(r"^A05 +S +forced +open +none +yes +- +<$", out, re.M)
    status, out, _ = run(capsys, "status", "--json", "--config", config)
    doc = json.loads(out)
    assert status == 3 and doc["identity"]["kiosk_id"] == "demo-01"
    (alarm,) = doc["state"]["alarms"]
    assert alarm["alarm"] == "forced_open" and alarm["raised_utc"] <= doc["state"]["utc"]
    live.sim.call("door wall-a 5 close")
    wait_for(lambda: run(capsys, "status", "--config", config)[0] == 0, "the alarm cleared")


# ----- test-channel ----------------------------------------------------------------------


def test_channel_reports_pulse_door_open_door_closed(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    result: list[int] = []
    argv = ["test-channel", "A03", "--staff", "mueller", "--pin-stdin", "--yes",
            "--config", str(live.config)]  # fmt: skip
    saved = sys.stdin
    sys.stdin = io.StringIO(PIN + "\n")
    try:
        worker = threading.Thread(target=lambda: result.append(main(argv)))
        worker.start()
        wait_for(lambda: live.door_open("wall-a", 3), "the door of A03 opening")
        time.sleep(0.5)  # the installer looks inside
        live.sim.call("door wall-a 3 close")
        worker.join(LIMIT_S)
    finally:
        sys.stdin = saved
    out, err = capsys.readouterr()
    assert result == [0], out + err
    lines = out.splitlines()
    assert re.fullmatch(r"operation \d+: service open of A03 \(wall-a, channel 3\)", lines[0])
    assert lines[1:] == [
        "pulse sent to wall-a channel 3",
        "door seen open",
        "close the door of A03 to finish (waiting 300 s)",
        "door closed",
        "outcome: completed (the channel works)",
    ]
    assert PIN not in out + err


def test_channel_by_board_and_channel_reports_a_jam(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    live.sim.call("jam wall-a 4 on")
    try:
        status, out, _ = run(
            capsys, "test-channel", "--board", "wall-a", "--channel", "4", "--staff", "mueller",
            "--pin-stdin", "--yes", "--config", str(live.config), stdin=PIN + "\n",
        )  # fmt: skip
    finally:
        live.sim.call("jam wall-a 4 off")
    assert status == 1
    assert "service open of A04 (wall-a, channel 4)" in out
    assert out.splitlines()[1:] == [
        "pulse sent to wall-a channel 4",
        "door not seen open in time: the daemon pulsed once more",
        "door not seen open after the retry",
        "outcome: jammed: the door did not open",
    ]


def test_channel_refusals_show_the_daemons_reason(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(live.config)
    base = ["test-channel", "A06", "--staff", "mueller", "--pin-stdin", "--config", config]
    status, out, err = run(capsys, *base, "--yes", stdin="000000\n")
    assert status == 1 and "000000" not in out + err
    assert err.startswith("amtomat test-channel: staff login of mueller refused (wrong_code)")
    live.sim.call("service-door open")

    def service_door_open() -> bool:
        _, out, _ = run(capsys, "log", "--config", config, "--kind", "service_door", "--json")
        entries = json.loads(out)["entries"]
        return bool(entries) and entries[-1]["detail"]["open"] is True

    wait_for(service_door_open, "the daemon seeing the service door open")
    status, out, err = run(capsys, *base, "--yes", stdin=PIN + "\n")
    live.sim.call("service-door close")
    assert status == 1 and out == ""
    assert err == (
        "amtomat test-channel: the daemon refused to open A06 (wall-a, channel 6) "
        "(interlock): the service door is open\n"
    )
    status, out, err = run(capsys, *base, stdin=f"{PIN}\nn\n")  # the installer says no
    assert status == 1
    assert out == (
        "pulse the solenoid of A06 (wall-a, channel 6)? It is empty, door closed. [y/N] "
        "not confirmed: nothing was pulsed\n"
    )
    assert not live.door_open("wall-a", 6)


def test_the_pin_prompt_does_not_echo(live: Live) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command on a terminal of its own
        os.chdir(REPO_ROOT)
        os.execv(sys.executable, [*AMTOMAT, "test-channel", "A08", "--staff", "mueller",
                                  "--config", str(live.config)])  # fmt: skip
    seen = b""

    def read_until(marker: bytes) -> None:
        nonlocal seen
        end = time.monotonic() + LIMIT_S
        while marker not in seen:
            assert time.monotonic() < end, f"waiting for {marker!r} in {seen!r}"
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(fd, 1024)
                except OSError:
                    break

    try:
        read_until(b"PIN of mueller: ")
        os.write(fd, PIN.encode() + b"\n")
        read_until(b"[y/N] ")
        os.write(fd, b"n\n")
        read_until(b"nothing was pulsed")
        _, code = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(code) == 1
    assert PIN.encode() not in seen


def test_a_board_offline_shows_in_boards_status_and_test_channel(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(live.config)
    live.sim.call("power wall-b cut")
    try:
        wait_for(lambda: boards_json(live, capsys)[0] == 3, "wall-b not ready")
        _, doc = boards_json(live, capsys)
        b = doc["boards"][1]
        assert b["board"] == "wall-b" and b["state"] == "connecting" and b["error"]
        assert b["uptime_s"] is None  # the figures of a board that is gone are not shown
        status, out, _ = run(capsys, "status", "--config", config)
        assert status == 3 and re.search(r"^boards +1/2 ready \(not ready: wall-b", out, re.M)
        status, out, err = run(
            capsys, "test-channel", "B01", "--staff", "mueller", "--pin-stdin", "--yes",
            "--config", config, stdin=PIN + "\n",
        )  # fmt: skip
        assert status == 1
        assert "(board_offline): board wall-b of B01 is connecting" in err
    finally:
        live.sim.call("power wall-b on")
    wait_for(lambda: boards_json(live, capsys)[0] == 0, "wall-b ready again")


def test_the_log_of_the_running_daemon_holds_the_tests_and_no_pin(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "log", "--config", str(live.config), "--all", "--json")
    doc = json.loads(out)
    assert status == 0 and doc["chain"]["intact"] is True
    reasons = [e["detail"].get("reason") for e in doc["entries"] if e["subject"] == "A03"]
    assert "test-channel by mueller" in reasons
    assert PIN not in out and "000000" not in out
    journal = (live.tmp / "daemon.log").read_text()
    assert "amtomat-test-channel" in journal  # the daemon logged the sessions, not the PINs
    assert PIN not in journal and "000000" not in journal


# ----- without a daemon, key or endpoint -------------------------------------------------


def test_no_daemon_no_key_no_endpoint_each_has_its_exit_status(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = f'"unix:{live.tmp / "bridge.sock"}"'
    gone = live.variant("gone.toml", sock, f'"unix:{live.tmp / "nobody.sock"}"')
    status, out, err = run(capsys, "status", "--config", str(gone))
    assert status == 69 and out == ""
    assert err.startswith(f"amtomat status: nothing listens at unix:{live.tmp / 'nobody.sock'}")
    port = live.variant("tcp.toml", sock, '"tcp://127.0.0.1:9"')  # nobody listens on discard
    status, _, err = run(capsys, "boards", "--config", str(port))
    assert status == 69 and "tcp://127.0.0.1:9" in err
    pty_only = live.variant("pty.toml", sock, f'"pty:{live.tmp / "kiosk-line"}"')
    status, _, err = run(capsys, "boards", "--config", str(pty_only))
    assert status == 78 and "bridge.listen has no tcp:// or unix: endpoint" in err
    open_key = live.tmp / "open.key"
    open_key.write_bytes(os.urandom(32))
    open_key.chmod(0o644)
    for name, key_file, expected in [
        ("open.toml", open_key, "permissions 644 let others read the key"),
        ("missing.toml", live.tmp / "missing.key", f"no pairing key at {live.tmp / 'missing.key'}"),
    ]:
        path = live.variant(
            name, "require_key = true", f'key_file = "{key_file}"\nrequire_key = true'
        )
        status, _, err = run(capsys, "status", "--config", str(path))
        assert status == 77 and expected in err
    wrong_key = live.tmp / "wrong.key"
    wrong_key.write_bytes(os.urandom(32))
    wrong_key.chmod(0o600)
    path = live.variant(
        "wrong.toml", "require_key = true", f'key_file = "{wrong_key}"\nrequire_key = true'
    )
    status, _, err = run(capsys, "boards", "--config", str(path))
    assert status == 77 and "the bridge refused the pairing key" in err
    assert wrong_key.read_bytes().hex() not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["A03", "--board", "wall-a"], "name the compartment, or --board and --channel, not both"),
        ([], "name a compartment, or give both --board and --channel"),
        (["Z9"], "no compartment 'Z9' in the terminal config"),
        (["--board", "wall-c", "--channel", "1"], "no compartment on board 'wall-c' channel 1"),
        (["A03", "--staff", "nobody"], "--staff 'nobody' is not a staff id of this terminal"),
    ],
)
def test_bad_test_channel_arguments_exit_2(
    live: Live, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    staff = [] if "--staff" in argv else ["--staff", "mueller"]
    status, out, err = run(
        capsys, "test-channel", *argv, *staff, "--pin-stdin", "--config", str(live.config),
        stdin=PIN + "\n",
    )  # fmt: skip
    assert status == 2 and out == "" and err.startswith(f"amtomat test-channel: {message}")


def test_an_empty_pin_and_malformed_options(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(
        capsys, "test-channel", "A03", "--staff", "mueller", "--pin-stdin", "--config",
        str(live.config), stdin="\n",
    )  # fmt: skip
    assert status == 2 and "the PIN must be 1 to 64 printable characters (got 0" in err
    for argv in (
        ["test-channel", "A03", "--staff", "mueller", "--channel", "x"],
        ["test-channel", "A03"],
        ["boards", "--timeout", "0"],
        ["status", "--timeout", "soon"],
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert "error: " in capsys.readouterr().err
