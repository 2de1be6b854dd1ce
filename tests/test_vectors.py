"""docs/protocol-vectors.json stays in step with the code and with `python -m protocol decode`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from protocol.__main__ import main as protocol_main
from tools import protocol_vectors

VECTORS: list[dict[str, Any]] = json.loads(protocol_vectors.VECTORS_PATH.read_text())
ROOT = Path(__file__).resolve().parent.parent


def test_file_is_what_the_code_generates() -> None:
    assert protocol_vectors.VECTORS_PATH.read_text() == protocol_vectors.render(), (
        "stale vectors: run python -m tools.protocol_vectors --write"
    )


def test_vectors_cover_every_kind_of_frame() -> None:
    valid = [v for v in VECTORS if v["decoded"] is not None]
    assert len(valid) >= 12
    kinds = {v["decoded"]["message"]["kind"] for v in valid if v["decoded"]["message"]}
    assert {"session", "request", "reply", "event"} <= kinds
    names = {v["decoded"]["message"]["name"] for v in valid if v["decoded"]["message"]}
    assert {"hello", "welcome", "heartbeat", "refuse", "pulse", "reply", "event"} <= names
    assert any(v["decoded"]["message"] is None for v in valid), "an ACK-only frame"
    assert any("auth" in v["decoded"]["flags"] for v in valid)
    assert any(v["decoded"]["check"] == "crc ok" for v in valid)
    assert all(v["wire_hex"].endswith("00") for v in VECTORS)


def run_decode(capsys: pytest.CaptureFixture[str], vector: dict[str, Any]) -> tuple[int, str, str]:
    args = ["decode", vector["wire_hex"]]
    if vector["key_hex"]:
        args[1:1] = ["--key-hex", vector["key_hex"]]
    status = protocol_main(args)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_decode_prints_exactly_the_recorded_json(
    capsys: pytest.CaptureFixture[str], vector: dict[str, Any]
) -> None:
    status, out, err = run_decode(capsys, vector)
    if vector["decoded"] is None:
        assert status == 1
        assert out == ""
        assert vector["error"] in err and len(err.strip().splitlines()) == 1
    else:
        assert status == 0, err
        assert json.loads(out) == vector["decoded"]
        assert len(out.strip().splitlines()) == 1


def test_the_board_key_alone_follows_a_captured_handshake(
    capsys: pytest.CaptureFixture[str],
) -> None:
    by_name = {v["name"]: v for v in VECTORS}
    names = ["hello", "welcome_authenticated", "heartbeat_key_confirmation", "request_pulse"]
    board_key = by_name["welcome_authenticated"]["board_key_hex"]
    status = protocol_main(
        ["decode", "--board-key-hex", board_key, *(by_name[n]["wire_hex"] for n in names)]
    )
    out, err = capsys.readouterr()
    assert status == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [x["check"] for x in lines] == ["crc ok", "tag ok", "tag ok", "tag ok"]


def test_without_a_key_authenticated_frames_are_shown_but_not_verified(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pulse = next(v for v in VECTORS if v["name"] == "request_pulse")
    assert protocol_main(["decode", pulse["wire_hex"]]) == 0
    assert json.loads(capsys.readouterr().out)["check"] == "tag not verified (no key given)"


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["decode"], 2, "no frame given"),
        (["decode", "--key-hex"], 2, "needs a value"),
        (["decode", "--key-hex", "abcd", "00"], 2, "must be 32 bytes"),
        (["decode", "--frobnicate", "00"], 2, "unknown option --frobnicate"),
        (["decode", "xyz"], 1, "not hex"),
        (["decode", "0201"], 1, "shorter than 9"),
        (["decode", "0a0102030405060708090000"], 1, "protocol version 0"),
        (["decode", "05010203"], 1, "not a COBS frame"),
        (["frob"], 2, "unknown command"),
    ],
)
def test_bad_arguments_and_frames_get_a_one_line_reason(
    capsys: pytest.CaptureFixture[str], args: list[str], status: int, message: str
) -> None:
    assert protocol_main(args) == status
    assert message in capsys.readouterr().err


def test_keys_given_on_the_command_line_are_never_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    forged = next(v for v in VECTORS if v["name"] == "forged_tag")
    protocol_main(["decode", "--key-hex", forged["key_hex"], forged["wire_hex"]])
    out, err = capsys.readouterr()
    assert forged["key_hex"] not in out + err


def test_python_dash_m_protocol_decode_as_a_real_process() -> None:
    vector = next(v for v in VECTORS if v["name"] == "reply_ok")
    proc = subprocess.run(
        [sys.executable, "-m", "protocol", "decode", "--key-hex", vector["key_hex"],
         vector["wire_hex"]],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == vector["decoded"]


def test_selftest_command_passes() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "protocol", "selftest"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "selftest passed" in proc.stdout
