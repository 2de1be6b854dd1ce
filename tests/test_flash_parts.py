"""The pure parts of ``amtomat flash``: port choice, key files, the change plan, the parsers
of what a board prints, progress output and key redaction."""

from __future__ import annotations

import contextlib
import hashlib
import io
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.flash.build import BUILD_PATH, CONFIG_PATH, KEY_PATH, MAIN_PATH
from tools.flash.errors import (
    BoardReplyError,
    KeystoreProblem,
    NoBoard,
    NoSpace,
    SeveralBoards,
    redact,
)
from tools.flash.keys import BoardKeys, write_key
from tools.flash.plan import check_space, make_plan, scanned_paths
from tools.flash.ports import (
    AttachedPort,
    choose_port,
    find_attached,
    format_ports,
    holders,
    known_board,
    list_ports,
    udev_rule,
)
from tools.flash.progress import Progress
from tools.flash.repl import FileHashes, parse_facts, parse_hashes, parse_literal

PICO = AttachedPort("/dev/ttyACM0", 0x2E8A, 0x0005, "e66118604b1f2d2b", "MicroPython", "Board")
ESP = AttachedPort("/dev/ttyUSB0", 0x10C4, 0xEA60, "0001", "Silicon Labs", "CP2102")
MOUSE = AttachedPort("/dev/ttyACM3", 0x046D, 0xC52B, None, "Logitech", "Receiver")


# ----- ports -----------------------------------------------------------------------------


def test_known_usb_ids() -> None:
    assert known_board(0x2E8A, 0x0005) is not None
    assert known_board(0x303A, 0x4001) is not None  # any Espressif product id
    assert known_board(0x2E8A, 0x0003) is None  # the RP2040 boot ROM is no serial port
    assert known_board(None, None) is None
    assert PICO.micropython and ESP.micropython and not MOUSE.micropython
    assert PICO.usb_id == "2E8A:0005" and AttachedPort("/dev/pts/3").usb_id == "-"


def test_listing_comes_from_pyserial_sorted_usb_first() -> None:
    infos = [
        SimpleNamespace(
            device=p.device,
            vid=p.vid,
            pid=p.pid,
            serial_number=p.serial_number,
            manufacturer=p.manufacturer,
            product=p.product,
            description=None,
        )
        for p in (MOUSE, AttachedPort("/dev/ttyS0"), PICO)
    ]
    found = list_ports(lambda: infos)
    assert [p.device for p in found] == ["/dev/ttyACM0", "/dev/ttyACM3", "/dev/ttyS0"]
    table = format_ports(found)
    assert "e66118604b1f2d2b" in table and "2E8A:0005" in table and "Logitech" in table


def test_port_choice_order_and_errors() -> None:
    assert choose_port("/dev/x", "/dev/y", [PICO]) == "/dev/x"
    assert choose_port(None, "/dev/amtomat/wall-a", [PICO, ESP]) == "/dev/amtomat/wall-a"
    assert choose_port(None, "socket://127.0.0.1:9", [PICO, MOUSE]) == PICO.device
    assert choose_port(None, None, [MOUSE, PICO]) == PICO.device
    with pytest.raises(NoBoard, match="no board attached") as no:
        choose_port(None, None, [MOUSE])
    assert "/dev/ttyACM3 (046D:C52B, Receiver)" in str(no.value)
    assert no.value.value == [MOUSE.device]
    with pytest.raises(NoBoard, match="attached: nothing"):
        choose_port(None, None, [])
    with pytest.raises(SeveralBoards, match="--port") as several:
        choose_port(None, None, [PICO, ESP])
    assert "/dev/ttyACM0 (e66118604b1f2d2b)" in str(several.value)


def test_find_attached_follows_symlinks(tmp_path: Path) -> None:
    dev = tmp_path / "ttyACM0"
    dev.touch()
    link = tmp_path / "wall-a"
    link.symlink_to(dev)
    port = AttachedPort(str(dev), 0x2E8A, 5, "abc")
    assert find_attached(str(link), [MOUSE, port]) == port
    assert find_attached(str(tmp_path / "other"), [port]) is None


def test_holders_names_another_process_with_the_file_open(tmp_path: Path) -> None:
    target = tmp_path / "device"
    target.touch()
    code = "import sys,time;f=open(sys.argv[1]);print('open',flush=True);time.sleep(30)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        found = holders(str(target))
        assert [pid for pid, _ in found] == [proc.pid]
        assert "time.sleep(30)" in found[0][1]
    finally:
        proc.kill()
        proc.wait()
    with open(target):
        assert holders(str(target)) == []  # this process itself is left out


def test_udev_rule_names_the_board() -> None:
    assert udev_rule("e661", "wall-a") == (
        'SUBSYSTEM=="tty", ATTRS{serial}=="e661", SYMLINK+="amtomat/wall-a"'
    )


# ----- keys ------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_key_is_generated_and_stored_owner_only_at_commit(tmp_path: Path) -> None:
    keys = BoardKeys(tmp_path / "keys", "wall-a")
    key, generated = keys.choose(rekey=False)
    assert generated and len(key) == 32
    assert not keys.current.exists(), "choose writes nothing"
    keys.commit(key, None)
    assert keys.current.read_bytes() == key
    assert _mode(keys.current) == 0o600 and _mode(keys.keystore) == 0o700
    assert not keys.old.exists()
    assert keys.choose(rekey=False) == (key, False)


def test_rekey_keeps_the_boards_key_as_old_until_proven(tmp_path: Path) -> None:
    keys = BoardKeys(tmp_path, "wall-a")
    k0, _ = keys.choose(False)
    keys.commit(k0, None)
    k1, generated = keys.choose(rekey=True)
    assert generated and k1 != k0
    keys.commit(k1, board_key=k0)
    assert keys.current.read_bytes() == k1 and keys.old.read_bytes() == k0
    assert _mode(keys.old) == 0o600
    assert [name for name, _ in keys.candidates()] == ["wall-a.key", "wall-a.key.old"]
    assert keys.match_hash(hashlib.sha256(k0).hexdigest()) == k0
    assert keys.match_hash(hashlib.sha256(b"x" * 32).hexdigest()) is None
    keys.proven()
    assert not keys.old.exists()
    assert [k for _, k in keys.candidates()] == [k1]


def test_interrupted_rekey_then_plain_run_keeps_the_new_key(tmp_path: Path) -> None:
    keys = BoardKeys(tmp_path, "b")
    k0, _ = keys.choose(False)
    keys.commit(k0, None)
    k1, _ = keys.choose(True)
    keys.commit(k1, board_key=k0)  # ... and the run died before the board got k1
    target, generated = keys.choose(rekey=False)
    assert (target, generated) == (k1, False)
    keys.commit(target, board_key=k0)  # the board proved k0 in the handover
    assert keys.old.read_bytes() == k0 and keys.current.read_bytes() == k1


def test_unusable_key_files_are_refused_with_the_fix(tmp_path: Path) -> None:
    keys = BoardKeys(tmp_path, "b")
    keys.current.write_bytes(b"k" * 32)
    keys.current.chmod(0o644)
    with pytest.raises(KeystoreProblem, match="chmod 600"):
        keys.choose(False)
    keys.current.chmod(0o600)
    keys.current.write_bytes(b"short")
    with pytest.raises(KeystoreProblem, match="32 raw bytes"):
        keys.candidates()
    with pytest.raises(KeystoreProblem, match="32 bytes"):
        write_key(keys.old, b"short")


def test_unwritable_keystore_names_the_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "keys"
    blocker.write_text("a file where the keystore folder should be")
    with pytest.raises(KeystoreProblem, match="writable") as exc:
        write_key(blocker / "b.key", b"k" * 32)
    assert exc.value.value == str(blocker / "b.key")


# ----- the plan ----------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


WANTED = {
    "/lib/amtfw/__init__.mpy": b"A" * 50,
    "/lib/amtfw/app.mpy": b"B" * 7000,
    "/lib/protocol/__init__.mpy": b"C" * 40,
    "/lib/protocol/session.mpy": b"D" * 8000,
    MAIN_PATH: b"import machine\n",
    BUILD_PATH: b"0123456789abcdef\n",
    CONFIG_PATH: b'{"board_id":"wall-a"}',
    KEY_PATH: b"k" * 32,
}


def _have(
    files: dict[str, bytes], dirs: tuple[str, ...] = ("/lib", "/lib/amtfw", "/lib/protocol")
) -> FileHashes:
    out: FileHashes = {d: None for d in dirs}
    out.update({p: (len(d), _sha(d)) for p, d in files.items()})
    return out


def test_fresh_board_gets_everything_main_py_last() -> None:
    plan = make_plan(WANTED, {})
    assert not plan.disarm and plan.remove == []
    assert plan.mkdirs == ["/lib", "/lib/amtfw", "/lib/protocol"]
    assert plan.write_main and MAIN_PATH not in plan.write
    assert plan.write[-3:] == [BUILD_PATH, CONFIG_PATH, KEY_PATH]
    assert set(plan.write) == set(WANTED) - {MAIN_PATH}


def test_identical_board_needs_nothing() -> None:
    plan = make_plan(WANTED, _have(WANTED))
    assert not plan.changes and plan.bytes_to_write() == 0
    # the scan does not list /lib itself: the files below it show it is there
    assert not make_plan(WANTED, _have(WANTED, ("/lib/amtfw", "/lib/protocol"))).changes


def test_changed_code_disarms_main_py_first_and_removes_stale_files() -> None:
    have = dict(WANTED)
    have["/lib/amtfw/app.mpy"] = b"old"
    have["/lib/amtfw/gone.mpy"] = b"stale"
    have["/amtfw/app.py"] = b"shadowing copy"
    have["/amtomat.json.tmp"] = b"half"
    have["/lib/other/lib.mpy"] = b"not ours"
    plan = make_plan(WANTED, _have(have, ("/lib", "/lib/amtfw", "/lib/protocol", "/amtfw")))
    assert plan.disarm and plan.write_main
    assert plan.write == ["/lib/amtfw/app.mpy"]
    assert plan.remove == ["/amtfw/app.py", "/amtomat.json.tmp", "/lib/amtfw/gone.mpy", "/amtfw"]


def test_key_only_change_keeps_main_py() -> None:
    have = dict(WANTED)
    have[KEY_PATH] = b"o" * 32
    plan = make_plan(WANTED, _have(have))
    assert not plan.disarm and not plan.write_main and plan.write == [KEY_PATH]


@settings(max_examples=150)
@given(
    st.dictionaries(
        st.sampled_from([*WANTED, "/lib/amtfw/x.mpy", "/amtfw/y.py", "/main.py.tmp", "/boot.py"]),
        st.binary(max_size=20),
    ),
    st.booleans(),
)
def test_applying_the_plan_gives_exactly_the_wanted_files(
    present: dict[str, bytes], dirs_there: bool
) -> None:
    dirs = ("/lib", "/lib/amtfw", "/lib/protocol", "/amtfw") if dirs_there else ()
    have = _have(present, dirs)
    plan = make_plan(WANTED, have)
    board = {p: d for p, d in present.items()}
    if plan.disarm:
        assert MAIN_PATH in board
        board.pop(MAIN_PATH)
    for p in plan.remove:
        board.pop(p, None)
    for p in plan.write:
        board[p] = WANTED[p]
    if plan.write_main:
        board[MAIN_PATH] = WANTED[MAIN_PATH]
    ours = {p: d for p, d in board.items() if p != "/boot.py"}
    assert ours == WANTED
    assert board.get("/boot.py") == present.get("/boot.py")  # not ours: untouched


def test_space_is_checked_before_anything_is_written() -> None:
    plan = make_plan(WANTED, {})
    need = check_space(plan, {}, free=1_000_000, block=4096, port="/dev/x")
    assert need > sum(map(len, WANTED.values()))
    with pytest.raises(NoSpace, match=r"has 20\.0 KB free, the firmware needs") as exc:
        check_space(plan, {}, free=20480, block=4096, port="/dev/x")
    assert exc.value.value == 20480 and "/dev/x" in str(exc.value)
    # replacing files frees their old blocks
    have = _have({p: b"x" * len(d) for p, d in WANTED.items()})
    again = make_plan(WANTED, have)
    assert check_space(again, have, free=40960, block=4096, port="/dev/x") <= 40960


def test_scanned_paths_cover_our_folders_and_top_files() -> None:
    paths = scanned_paths()
    for p in ("/lib/amtfw", "/lib/protocol", "/amtfw", MAIN_PATH, KEY_PATH, KEY_PATH + ".tmp"):
        assert p in paths


# ----- what boards print ---------------------------------------------------------------------

FACTS = {
    "version": (1, 29, 0),
    "mpy": 0x306 | 4 << 10,
    "machine": "Raspberry Pi Pico with RP2040",
    "platform": "rp2",
    "uid": "e66118604b1f2d2b",
    "free": 1_400_000,
    "total": 1_441_792,
    "bsize": 4096,
    "fw_loaded": False,
    "b64": 1,
    "sha256": 1,
}


def test_probe_output_parses() -> None:
    facts = parse_facts(f"noise\r\n{FACTS!r}\r\n")
    assert facts.version_text == "1.29.0" and facts.unique_id == "e66118604b1f2d2b"
    assert facts.base64 and facts.sha256 and not facts.firmware_loaded


@pytest.mark.parametrize(
    ("field", "value"), [("version", ()), ("mpy", "6"), ("fw_loaded", 1), ("free", None)]
)
def test_probe_output_with_a_bad_field_names_it(field: str, value: object) -> None:
    with pytest.raises(BoardReplyError, match=field):
        parse_facts(repr({**FACTS, field: value}))


@given(st.text(max_size=300))
def test_board_output_parsers_fail_only_with_board_reply_errors(text: str) -> None:
    for parse in (parse_facts, parse_hashes):
        with contextlib.suppress(BoardReplyError):
            parse(text)


hashes = st.dictionaries(
    st.text(max_size=10).map(lambda s: "/" + s),
    st.none() | st.tuples(st.integers(0, 10**7), st.binary(min_size=1, max_size=8).map(_sha)),
)


@given(hashes)
def test_file_hashes_round_trip(data: dict[str, tuple[int, str] | None]) -> None:
    assert parse_hashes(repr(data)) == data


@pytest.mark.parametrize(
    "bad",
    [
        "[1, 2]",
        "{'lib': None}",
        "{'/a': (1, 'xyz')}",
        "{'/a': (-1, '" + "0" * 64 + "')}",
        "{'/a': (True, '" + "0" * 64 + "')}",
    ],
)
def test_bad_file_lists_are_refused(bad: str) -> None:
    with pytest.raises(BoardReplyError):
        parse_hashes(bad)


def test_literal_parser_takes_the_last_line() -> None:
    assert parse_literal("MPY: soft reboot\r\n42\r\n", "x") == 42
    with pytest.raises(BoardReplyError, match="printed nothing"):
        parse_literal(" \r\n", "probe")


# ----- progress and redaction ----------------------------------------------------------------


def test_plain_progress_prints_one_line_per_item() -> None:
    out = io.StringIO()
    p = Progress(out, tty=False)
    p.step("copying")
    bar = p.bar("copy", 3000, 2)
    bar.item("/lib/a.mpy", 1000)
    bar.update(1000)
    bar.item("/lib/b.mpy", 2000)
    bar.update(2000)
    bar.finish()
    lines = out.getvalue().splitlines()
    assert lines == [
        "==> copying",
        "    copy 2 files, 2.9 KB",
        "    copy /lib/a.mpy (1000 B) [1/2]",
        "    copy /lib/b.mpy (2.0 KB) [2/2]",
    ]


def test_tty_progress_draws_a_bar_that_ends_full() -> None:
    out = io.StringIO()
    bar = Progress(out, tty=True).bar("copy", 2048, 1)
    bar.item("/lib/a.mpy", 2048)
    bar.update(1024)
    bar.update(2048)
    bar.finish()
    text = out.getvalue()
    assert "\r" in text and " 50%" in text and "100%" in text and text.endswith("\n")


@given(st.binary(min_size=32, max_size=32), st.text(max_size=40), st.text(max_size=40))
def test_redact_removes_every_form_of_a_key(key: bytes, before: str, after: str) -> None:
    import base64

    for form in (key.hex(), base64.b64encode(key).decode(), repr(key)[2:-1]):
        text = redact(before + form + after, [key])
        assert key.hex() not in text and base64.b64encode(key).decode() not in text


def test_exit_status_table_of_the_docs_matches_the_errors() -> None:
    import re

    from tools.flash.errors import FlashError

    doc = (Path(__file__).resolve().parent.parent / "docs" / "flash.md").read_text()
    section = doc.split("## Exit status", 1)[1].split("\n## ", 1)[0]
    documented = {int(n) for n in re.findall(r"^\| (\d+) \|", section, re.M)}
    classes: list[type[FlashError]] = [FlashError]
    for cls in classes:
        classes.extend(cls.__subclasses__())
    assert documented == {0} | {cls.exit_status for cls in classes}


def test_a_port_that_is_no_serial_device_is_named(tmp_path: Path) -> None:
    from tools.flash.repl import BoardRepl

    not_a_tty = tmp_path / "ttyACM0"
    not_a_tty.write_text("")
    with pytest.raises(NoBoard, match=f"cannot open {not_a_tty}: not a serial device"):
        BoardRepl.open(str(not_a_tty))
    with pytest.raises(NoBoard, match="no such device"):
        BoardRepl.open(str(tmp_path / "ttyACM9"))
