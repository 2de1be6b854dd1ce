"""The `amtomat` console command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.cli import main
from tools.protocol_vectors import VECTORS_PATH


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert "protocol version 1" in capsys.readouterr().out


def test_decode_through_amtomat(capsys: pytest.CaptureFixture[str]) -> None:
    vector = json.loads(VECTORS_PATH.read_text())[3]
    assert main(["decode", "--key-hex", vector["key_hex"], vector["wire_hex"]]) == 0
    assert json.loads(capsys.readouterr().out) == vector["decoded"]


def test_unknown_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    script = shutil.which("amtomat", path=str(Path(sys.executable).parent))
    assert script is not None, "pip install -e . did not install the amtomat command"
    proc = subprocess.run([script, "version"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("amtomat ")
