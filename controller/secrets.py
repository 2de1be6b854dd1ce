"""Pickup codes and staff PINs: salted scrypt hashes, constant-time checks, code entry.

The terminal stores only hashes. A county that issues codes sends the hash of each code,
computed exactly like this (any language with scrypt can do it):

1. Normalise the code as the terminal does when a citizen types it: keep the digits 0-9,
   drop spaces and dashes (``"123 456-78"`` becomes ``"12345678"``).
2. ``salt`` = 16 fresh random bytes from a cryptographic generator, one per code.
3. ``digest`` = scrypt(password = the UTF-8 bytes of the normalised code, salt, N = 16384,
   r = 8, p = 1, dkLen = 32) (RFC 7914).
4. The hash is the text ``scrypt$16384$8$1$<salt>$<digest>``: the three cost numbers in
   decimal without leading zeros, salt and digest in standard base64 (RFC 4648 section 4:
   ``A-Z a-z 0-9 + /`` with ``=`` padding, no line breaks).

Other costs are accepted within bounds (see ``parse_hash``): N a power of two from 2^10
to 2^20, r 1..32, p 1..16, N*r at most 2^21 (256 MiB of memory) and N*r*p at most 2^22.
The salt may be 16..64 bytes; the digest is always 32 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from typing import Final

from controller.errors import ControllerError

SCHEME: Final = "scrypt"
DEFAULT_N: Final = 2**14
DEFAULT_R: Final = 8
DEFAULT_P: Final = 1
SALT_BYTES: Final = 16
SALT_RANGE: Final = (16, 64)
DIGEST_BYTES: Final = 32
N_RANGE: Final = (2**10, 2**20)
R_RANGE: Final = (1, 32)
P_RANGE: Final = (1, 16)
MAX_N_TIMES_R: Final = 2**21  # scrypt needs 128*N*r bytes: at most 256 MiB
MAX_WORK: Final = 2**22  # N*r*p: 32 times the default cost
MAX_ENCODED: Final = 400  # characters; a 64-byte salt needs 88 of them
CODE_DIGITS: Final = (6, 12)
MAX_CODE_DIGITS: Final = 32

_NUMBER = re.compile(r"[1-9][0-9]{0,7}")
# What a citizen may type between digits: any whitespace and the dash-like characters.
_SEPARATORS: Final = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2015\u2212")


class SecretFormatError(ControllerError):
    """A hash string (or a cost parameter) is malformed; names the part, never the secret."""


class CodeError(ControllerError, ValueError):
    """A typed code or a code length is unusable; never contains the code itself."""


@dataclass(frozen=True)
class HashParams:
    """The parts of one valid hash string."""

    n: int
    r: int
    p: int
    salt: bytes = field(repr=False)
    digest: bytes = field(repr=False)


def hash_secret(
    secret: str,
    *,
    n: int = DEFAULT_N,
    r: int = DEFAULT_R,
    p: int = DEFAULT_P,
    salt: bytes | None = None,
) -> str:
    """The hash string of ``secret``: ``scrypt$<n>$<r>$<p>$<salt b64>$<digest b64>``.

    A fresh 16-byte salt is drawn unless ``salt`` is given (16..64 bytes). Bad costs or
    salt raise ``SecretFormatError``. Takes tens to hundreds of milliseconds by design.
    """
    _check_costs(n, r, p)
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    elif not isinstance(salt, bytes) or not SALT_RANGE[0] <= len(salt) <= SALT_RANGE[1]:
        size = f"{len(salt)} bytes" if isinstance(salt, bytes) else type(salt).__name__
        raise SecretFormatError(
            f"salt: {size}; use {SALT_RANGE[0]}..{SALT_RANGE[1]} random bytes", size
        )
    digest = _scrypt(secret, salt, n, r, p)
    return "$".join((SCHEME, str(n), str(r), str(p), _b64(salt), _b64(digest)))


def verify_secret(secret: str, encoded: str) -> bool:
    """True when ``secret`` matches the hash string ``encoded`` (constant-time compare).

    A malformed ``encoded`` raises ``SecretFormatError`` naming the wrong part; the check
    happens before any hashing, so a hostile hash cannot demand more than the bounds.
    """
    params = parse_hash(encoded)
    digest = _scrypt(secret, params.salt, params.n, params.r, params.p)
    return hmac.compare_digest(digest, params.digest)


def parse_hash(encoded: str) -> HashParams:
    """The parts of a hash string, validated; ``SecretFormatError`` names the bad part."""
    if not isinstance(encoded, str):
        name = type(encoded).__name__
        raise SecretFormatError(f"hash: a {name}, not text; pass the hash string", name)
    if not encoded:
        raise SecretFormatError("hash: empty; pass the hash string scrypt$...", "")
    if len(encoded) > MAX_ENCODED:
        raise SecretFormatError(
            f"hash: {len(encoded)} characters, more than {MAX_ENCODED}; "
            "pass one hash string as made by hash_secret",
            len(encoded),
        )
    parts = encoded.split("$")
    if len(parts) != 6:
        raise SecretFormatError(
            f"hash: {len(parts)} parts separated by '$', expected 6 "
            "(scrypt$<n>$<r>$<p>$<salt>$<digest>)",
            len(parts),
        )
    scheme, n_text, r_text, p_text, salt_text, digest_text = parts
    if scheme != SCHEME:
        shown = scheme[:16] if scheme.isprintable() else "(unprintable)"
        raise SecretFormatError(
            f"scheme: {shown!r} is not supported; the hash must start with 'scrypt$'", shown
        )
    n = _number("n", n_text)
    r = _number("r", r_text)
    p = _number("p", p_text)
    _check_costs(n, r, p)
    salt = _unb64("salt", salt_text)
    if not SALT_RANGE[0] <= len(salt) <= SALT_RANGE[1]:
        raise SecretFormatError(
            f"salt: {len(salt)} bytes; it must be {SALT_RANGE[0]}..{SALT_RANGE[1]} bytes",
            len(salt),
        )
    digest = _unb64("digest", digest_text)
    if len(digest) != DIGEST_BYTES:
        raise SecretFormatError(
            f"digest: {len(digest)} bytes; scrypt must be run with dkLen = {DIGEST_BYTES}",
            len(digest),
        )
    return HashParams(n, r, p, salt, digest)


def new_code(digits: int) -> str:
    """A fresh random code of ``digits`` decimal digits (6..12), from ``secrets``."""
    lo, hi = CODE_DIGITS
    if isinstance(digits, bool) or not isinstance(digits, int) or not lo <= digits <= hi:
        raise CodeError(f"code length {digits!r}: use a whole number from {lo} to {hi}", digits)
    return "".join(secrets.choice("0123456789") for _ in range(digits))


def normalise_code(text: str) -> str:
    """The digits of a typed code: spaces and dashes dropped, any decimal digit as 0-9.

    Anything else raises ``CodeError`` giving the position, never the text.
    """
    if not isinstance(text, str):
        name = type(text).__name__
        raise CodeError(f"code: a {name}, not text", name)
    out: list[str] = []
    for position, char in enumerate(text, start=1):
        if char.isspace() or char in _SEPARATORS:
            continue
        value = unicodedata.decimal(char, None)
        if value is None:
            raise CodeError(
                f"code: character {position} is not a digit; type only digits "
                "(spaces and dashes are ignored)",
                position,
            )
        out.append(str(value))
        if len(out) > MAX_CODE_DIGITS:
            raise CodeError(
                f"code: more than {MAX_CODE_DIGITS} digits; check the code", MAX_CODE_DIGITS
            )
    if not out:
        raise CodeError("code: no digits; type the code from the letter", 0)
    return "".join(out)


def looks_like_code(text: str) -> bool:
    """True when ``text`` has only digits, spaces and dashes, and at least one digit."""
    digits = 0
    for char in text:
        if unicodedata.decimal(char, None) is not None:
            digits += 1
        elif not (char.isspace() or char in _SEPARATORS):
            return False
    return digits > 0


def _check_costs(n: int, r: int, p: int) -> None:
    """Raise ``SecretFormatError`` unless the scrypt costs are within the bounds."""
    for name, value, (lo, hi) in (("n", n, N_RANGE), ("r", r, R_RANGE), ("p", p, P_RANGE)):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise SecretFormatError(f"{name}: {value!r} is out of range {lo}..{hi}", value)
    if n & (n - 1):
        raise SecretFormatError(f"n: {n} is not a power of two", n)
    if n * r > MAX_N_TIMES_R:
        raise SecretFormatError(
            f"n, r: n*r = {n * r} needs {128 * n * r // 2**20} MiB; at most "
            f"{MAX_N_TIMES_R} (256 MiB) is accepted",
            n * r,
        )
    if n * r * p > MAX_WORK:
        raise SecretFormatError(
            f"n, r, p: n*r*p = {n * r * p} is more work than the limit {MAX_WORK}", n * r * p
        )


def _number(name: str, text: str) -> int:
    """A cost number in plain decimal (no sign, no leading zero, ASCII digits)."""
    if not _NUMBER.fullmatch(text):
        shown = text[:12] if text.isprintable() else "(unprintable)"
        raise SecretFormatError(f"{name}: {shown!r} is not a whole number in plain decimal", shown)
    return int(text)


def _unb64(name: str, text: str) -> bytes:
    """Bytes from canonical standard base64 with padding; else ``SecretFormatError``."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = None
    if raw is None or _b64(raw) != text:
        raise SecretFormatError(
            f"{name}: not standard base64 (A-Z a-z 0-9 + / with '=' padding, no line "
            f"breaks); {len(text)} characters",
            len(text),
        )
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    """scrypt of the UTF-8 secret; memory limit sized to the (already bounded) costs."""
    if not isinstance(secret, str):
        name = type(secret).__name__
        raise SecretFormatError(f"secret: a {name}, not text", name)
    try:
        password = secret.encode("utf-8")
    except UnicodeEncodeError:
        raise SecretFormatError(
            "secret: not valid Unicode text (a lone surrogate); pass the text as typed", None
        ) from None
    maxmem = 128 * r * (n + 2) + 128 * r * p + 2**20
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=DIGEST_BYTES)
