"""Code and PIN hashing (scrypt), code entry, and the hash-secret tool."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.errors import ControllerError
from controller.secrets import (
    CodeError,
    HashParams,
    SecretFormatError,
    hash_secret,
    looks_like_code,
    new_code,
    normalise_code,
    parse_hash,
    verify_secret,
)
from tools.hashsecret import main as hashsecret_main

ROOT = Path(__file__).resolve().parent.parent
FAST = 2**10  # the smallest accepted n keeps property tests quick

# Documented vector: code 12345678, salt bytes 0..15, default costs (checked against Node).
VECTOR = "scrypt$16384$8$1$AAECAwQFBgcICQoLDA0ODw==$hE/XbD9UWmO8hJNoxyJPzlVlZ5dKG8i0wwRJSwraE0g="


def test_round_trip_with_default_costs() -> None:
    encoded = hash_secret("20481632")
    scheme, n, r, p, salt, digest = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
    assert verify_secret("20481632", encoded)
    assert not verify_secret("20481633", encoded)
    assert hash_secret("20481632") != encoded, "a fresh salt every time"


def test_known_vector() -> None:
    assert hash_secret("12345678", salt=bytes(range(16))) == VECTOR
    assert verify_secret("12345678", VECTOR)
    params = parse_hash(VECTOR)
    assert (params.n, params.r, params.p, params.salt) == (16384, 8, 1, bytes(range(16)))
    assert "hE/X" not in repr(params), "salt and digest stay out of reprs"


def test_hash_from_another_language_verifies() -> None:
    """A county's hash made with Node's crypto.scrypt, as the module docstring describes."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = (
        "const c = require('crypto'); const salt = c.randomBytes(16);"
        "const d = c.scryptSync(process.argv[1], salt, 32, {N: 16384, r: 8, p: 1});"
        "console.log(['scrypt', 16384, 8, 1, salt.toString('base64'), d.toString('base64')]"
        ".join('$'));"
    )
    proc = subprocess.run(
        [node, "-e", script, "00420815"], capture_output=True, text=True, timeout=60, check=True
    )
    encoded = proc.stdout.strip()
    assert verify_secret("00420815", encoded)
    assert not verify_secret("00420816", encoded)


def test_equal_length_mismatch_is_false() -> None:
    """Same length, same salt, one digit apart: the digests differ and compare unequal."""
    salt = os.urandom(16)
    encoded = hash_secret("111111", n=FAST, salt=salt)
    for guess in ("111112", "011111", "111110", "11111", "1111111", ""):
        assert verify_secret(guess, encoded) is False
    # a digest of the right length but from another salt does not match either
    other = hash_secret("111111", n=FAST, salt=os.urandom(16)).split("$")[5]
    forged = "$".join([*encoded.split("$")[:5], other])
    assert verify_secret("111111", forged) is False


@pytest.mark.parametrize("index", [0, 1, 15, 30, 31])
def test_digest_differing_in_one_byte_is_false(index: int) -> None:
    """The whole digest is compared, not a prefix or suffix."""
    scheme, n, r, p, salt, digest = hash_secret("8642", n=FAST).split("$")
    raw = bytearray(base64.b64decode(digest))
    raw[index] ^= 0x01
    forged = "$".join([scheme, n, r, p, salt, base64.b64encode(bytes(raw)).decode()])
    assert verify_secret("8642", forged) is False
    assert verify_secret("8642", "$".join([scheme, n, r, p, salt, digest])) is True


def test_hash_agrees_with_hashlib() -> None:
    salt = b"S" * 20
    encoded = hash_secret("pässwörd", n=FAST, r=2, p=3, salt=salt)
    expect = hashlib.scrypt("pässwörd".encode(), salt=salt, n=FAST, r=2, p=3, dklen=32)
    assert encoded.split("$")[5] == base64.b64encode(expect).decode()


@settings(max_examples=40, deadline=None)
@given(secret=st.text(max_size=40), salt=st.binary(min_size=16, max_size=64))
def test_round_trip_property(secret: str, salt: bytes) -> None:
    encoded = hash_secret(secret, n=FAST, r=1, salt=salt)
    assert parse_hash(encoded) == HashParams(FAST, 1, 1, salt, parse_hash(encoded).digest)
    assert verify_secret(secret, encoded)
    assert not verify_secret(secret + "0", encoded)


@settings(max_examples=500, deadline=None)
@given(encoded=st.text(max_size=120))
def test_any_text_is_a_bool_or_a_format_error(encoded: str) -> None:
    try:
        assert isinstance(verify_secret("123456", encoded), bool)
    except SecretFormatError as exc:
        assert "123456" not in str(exc)


def _b64_or_junk() -> st.SearchStrategy[str]:
    return st.one_of(
        st.binary(max_size=70).map(lambda b: base64.b64encode(b).decode()),
        st.binary(max_size=70).map(lambda b: base64.b64encode(b).decode().rstrip("=")),
        st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode()),
        st.text(max_size=50),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scheme=st.sampled_from(["scrypt", "SCRYPT", "bcrypt", "", "scrypt "]),
    n=st.sampled_from(["1024", "2048", "1000", "01024", "+1024", "", "1024 ", "x", "2097152"]),
    r=st.sampled_from(["1", "8", "0", "33", "-1", "1.0", "\u0661"]),
    p=st.sampled_from(["1", "2", "0", "17", "99999999999"]),
    salt=_b64_or_junk(),
    digest=_b64_or_junk(),
    extra=st.sampled_from(["", "$", "$x"]),
)
def test_near_valid_hashes_are_a_bool_or_a_format_error(
    scheme: str, n: str, r: str, p: str, salt: str, digest: str, extra: str
) -> None:
    encoded = "$".join([scheme, n, r, p, salt, digest]) + extra
    try:
        result = verify_secret("secret-pin-4711", encoded)
    except SecretFormatError as exc:
        assert "4711" not in str(exc)
    else:
        assert result is False


@pytest.mark.parametrize(
    ("encoded", "part"),
    [
        ("", "hash: empty"),
        ("scrypt$16384$8$1$AAAA", "5 parts"),
        ("argon2$16384$8$1$" + "A" * 24 + "$" + "A" * 44, "scheme: 'argon2'"),
        ("scrypt$16385$8$1$AAECAwQFBgcICQoLDA0ODw==$" + "A" * 43 + "=", "power of two"),
        ("scrypt$512$8$1$AAECAwQFBgcICQoLDA0ODw==$" + "A" * 43 + "=", "n: 512 is out of range"),
        ("scrypt$2097152$1$1$AAECAwQFBgcICQoLDA0ODw==$" + "A" * 43 + "=", "n: 2097152"),
        ("scrypt$1024$33$1$AAECAwQFBgcICQoLDA0ODw==$" + "A" * 43 + "=", "r: 33"),
        ("scrypt$1024$8$17$AAECAwQFBgcICQoLDA0ODw==$" + "A" * 43 + "=", "p: 17"),
        ("scrypt$1048576$32$1$AAECAwQFBgcICQoLDA0ODw==$" + "A" * 43 + "=", "n, r: "),
        ("scrypt$262144$8$16$AAECAwQFBgcICQoLDA0ODw==$" + "A" * 43 + "=", "n, r, p: "),
        ("scrypt$01024$8$1$AAECAwQFBgcICQoLDA0ODw==$" + "A" * 43 + "=", "n: '01024'"),
        ("scrypt$1024$8$1$AAECAwQFBgcICQoLDA0ODw$" + "A" * 43 + "=", "salt: not standard"),
        ("scrypt$1024$8$1$AAECAwQFBgcICQoLDA0ODx==$" + "A" * 43 + "=", "salt: not standard"),
        ("scrypt$1024$8$1$AAECAwQFBgcICQoLDA0O$" + "A" * 43 + "=", "salt: 15 bytes"),
        ("scrypt$1024$8$1$AAECAwQFBgcICQoLDA0ODw==$" + "A" * 44, "digest: 33 bytes"),
        ("scrypt$1024$8$1$AAECAwQFBgcICQoLDA0ODw==$" + "A" * 42 + "-=", "digest: not standard"),
        ("scrypt$1024$8$1$AAECAwQFBgcICQoLDA0ODw==$" + "A" * 400, "more than 400"),
    ],
)
def test_malformed_hash_names_the_part(encoded: str, part: str) -> None:
    with pytest.raises(SecretFormatError) as info:
        verify_secret("7654321", encoded)
    assert part in str(info.value)
    assert "7654321" not in str(info.value)
    assert isinstance(info.value, ControllerError)


def test_non_text_hash_and_secret_are_format_errors() -> None:
    with pytest.raises(SecretFormatError, match="bytes"):
        parse_hash(VECTOR.encode())  # type: ignore[arg-type]
    with pytest.raises(SecretFormatError, match="secret: a int"):
        verify_secret(12345678, VECTOR)  # type: ignore[arg-type]
    with pytest.raises(SecretFormatError, match="lone surrogate"):
        verify_secret("1234\udc00", VECTOR)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 1000}, "n: 1000"),
        ({"n": 2**21}, "out of range"),
        ({"r": 0}, "r: 0"),
        ({"p": 17}, "p: 17"),
        ({"n": True}, "n: True"),
        ({"salt": b"short"}, "salt: 5 bytes"),
        ({"salt": "A" * 16}, "salt: str"),
    ],
)
def test_hash_secret_bounds(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(SecretFormatError, match=match):
        hash_secret("1234", **kwargs)  # type: ignore[arg-type]


def test_bounds_are_inclusive() -> None:
    assert verify_secret("9", hash_secret("9", n=2**10, r=1, p=16, salt=b"s" * 64))
    assert parse_hash(hash_secret("9", n=2**10, r=32, p=1)).r == 32


def test_new_code() -> None:
    codes = {new_code(6) for _ in range(200)}
    assert all(len(c) == 6 and c.isascii() and c.isdigit() for c in codes)
    assert len(codes) > 190, "random, not repeating"
    assert len(new_code(12)) == 12
    assert {c for code in codes for c in code} == set("0123456789")
    for bad in (5, 13, 0, True, "8", 6.0):
        with pytest.raises(CodeError, match=repr(bad)):
            new_code(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("typed", "digits"),
    [
        ("123456", "123456"),
        (" 123 456 ", "123456"),
        ("123-456-78", "12345678"),
        ("12\u2013 34\u00a056", "123456"),  # en dash, no-break space
        ("\uff11\uff12\uff13\u0664", "1234"),  # full-width and Arabic-Indic digits
    ],
)
def test_normalise_code(typed: str, digits: str) -> None:
    assert normalise_code(typed) == digits


@pytest.mark.parametrize(
    ("typed", "match"),
    [
        ("123a56", "character 4 is not a digit"),
        ("12.3456", "character 3 is not a digit"),
        ("1²3456", "character 2 is not a digit"),  # a superscript is no decimal digit
        ("", "no digits"),
        (" - ", "no digits"),
        ("1" * 33, "more than 32 digits"),
    ],
)
def test_normalise_code_refuses_without_echoing(typed: str, match: str) -> None:
    with pytest.raises(CodeError, match=match) as info:
        normalise_code(typed)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ControllerError)
    if len(typed) > 3:
        assert typed not in str(info.value) and typed[:4] not in str(info.value)


@given(
    st.lists(
        st.tuples(st.sampled_from("0123456789"), st.sampled_from(["", " ", "-", " - ", "\t"])),
        min_size=1,
        max_size=20,
    )
)
def test_normalise_code_keeps_exactly_the_digits(pieces: list[tuple[str, str]]) -> None:
    typed = "".join(d + sep for d, sep in pieces)
    assert normalise_code(typed) == "".join(d for d, _ in pieces)


@given(st.text(max_size=40))
def test_normalise_code_any_text(typed: str) -> None:
    try:
        digits = normalise_code(typed)
    except CodeError:
        return
    assert digits.isascii() and digits.isdigit() and 1 <= len(digits) <= 32


# --- amtomat hash-secret ------------------------------------------------------------------


def run_tool(stdin: str, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = hashsecret_main(["--stdin", *argv], stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_tool_prints_only_the_hash() -> None:
    code, out, err = run_tool("4711\n")
    assert code == 0 and err == ""
    assert out.count("\n") == 1 and out.startswith("scrypt$16384$8$1$")
    assert verify_secret("4711", out.strip())
    assert "4711" not in out


def test_tool_hashes_a_typed_code_as_the_terminal_compares_it() -> None:
    code, out, _ = run_tool("123 456-78\r\n")
    assert code == 0 and verify_secret("12345678", out.strip())


def test_looks_like_code() -> None:
    assert looks_like_code("1234") and looks_like_code(" 12-34 ") and looks_like_code("\u0661")
    assert not looks_like_code("") and not looks_like_code(" - ")
    assert not looks_like_code("1234a") and not looks_like_code("12.34")


def test_tool_hashes_a_password_as_typed() -> None:
    code, out, _ = run_tool("Correct Horse 9")
    assert code == 0 and verify_secret("Correct Horse 9", out.strip())


@pytest.mark.parametrize(
    ("stdin", "match"),
    [
        ("", "empty"),
        ("\n", "empty"),
        ("   \n", "empty"),
        ("123\n", "at least 4 digits"),
        ("12-3\n", "at least 4 digits"),
        ("4711\n4712\n", "2 lines"),
        ("1234 " * 9, "more than 32 digits"),
        ("x" * 2000, "more than 1024"),
    ],
)
def test_tool_refuses_bad_input(stdin: str, match: str) -> None:
    code, out, err = run_tool(stdin)
    assert code == 1 and out == ""
    assert match in err
    if stdin.strip() and len(stdin) < 20:
        assert stdin.strip().splitlines()[0] not in err


def _pty_session(answers: list[str]) -> tuple[int, str]:
    """Run the tool on a real terminal, answering each prompt; (exit status, screen)."""
    pid, fd = pty.fork()
    if pid == 0:  # child: the pty is its controlling terminal, as for a person at a shell
        try:
            os.chdir(ROOT)
            os.execv(sys.executable, [sys.executable, "-m", "tools.hashsecret"])
        finally:
            os._exit(127)
    screen = b""
    pending = list(answers)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
            # getpass turns echo off and flushes input before it writes its prompt, so
            # answer only once the screen ends with the prompt itself.
            if pending and screen.endswith((b"Secret: ", b"Again: ")):
                os.write(fd, pending.pop(0).encode() + b"\n")
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), screen.decode(errors="replace")


def test_tool_asks_twice_without_echo() -> None:
    code, screen = _pty_session(["2468", "2468"])
    assert code == 0, screen
    assert "Secret:" in screen and "Again:" in screen
    assert "2468" not in screen, "the secret is not echoed"
    line = next(ln for ln in screen.splitlines() if ln.startswith("scrypt$"))
    assert verify_secret("2468", line.strip())


def test_tool_refuses_entries_that_differ() -> None:
    code, screen = _pty_session(["2468", "2469"])
    assert code == 1
    assert "differ" in screen and "scrypt$" not in screen
