"""The board's raw REPL through mpremote's ``SerialTransport``: open (exclusive), enter the
raw REPL, run small scripts, read facts and file hashes, write files atomically, reset.

mpremote is used as a library. Always with a serial timeout: on a pty mpremote reads with
``serial.read(1)``, which without one would block for ever. No soft reset is ever sent:
after the firmware's maintenance handover a timer feeds the watchdog, and a soft reset would
stop that timer and let the watchdog reset the board in the middle of a copy.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import io
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import serial
from mpremote.transport import TransportError  # type: ignore[import-untyped]
from mpremote.transport_serial import SerialTransport  # type: ignore[import-untyped]

from tools.flash.errors import (
    BoardReplyError,
    NoBoard,
    PortBusy,
    ReplError,
    redact,
)
from tools.flash.ports import holders

log = logging.getLogger(__name__)

RAW_BANNER: Final = b"raw REPL; CTRL-B to exit\r\n"
CHUNK: Final = 2048  # raw bytes per write command (base64 in the command: about 2.7 KB)
READ_TIMEOUT_S: Final = 2.0  # serial read timeout while commands run
EXEC_TIMEOUT_S: Final = 20.0  # longest silence within one command's output

_PROBE: Final = """\
import sys,os,gc
def _p():
 i=sys.implementation
 r={'version':tuple(i.version[:3]),'mpy':getattr(i,'_mpy',0),
  'machine':getattr(i,'_machine',''),'platform':sys.platform,'uid':'',
  'free':-1,'total':-1,'bsize':4096,'fw_loaded':'amtfw.runtime' in sys.modules,
  'b64':0,'sha256':0}
 try:
  import machine,binascii
  r['uid']=binascii.hexlify(machine.unique_id()).decode()
 except Exception:
  pass
 try:
  s=os.statvfs('/')
  b=s[1] or s[0]
  r['bsize']=b;r['free']=b*s[4];r['total']=b*s[2]
 except Exception:
  pass
 try:
  from binascii import a2b_base64
  r['b64']=1
 except ImportError:
  pass
 try:
  import hashlib
  hashlib.sha256(b'')
  r['sha256']=1
 except Exception:
  pass
 return r
gc.collect()
print(repr(_p()))
del _p
"""

_MANIFEST: Final = """\
import os,hashlib,binascii
def _m(ps):
 r={}
 b=bytearray(512)
 v=memoryview(b)
 def w(p):
  try:
   st=os.stat(p)
  except OSError:
   return
  if st[0]&0x4000:
   r[p]=None
   for e in os.ilistdir(p):
    w(p+'/'+e[0])
   return
  h=hashlib.sha256()
  with open(p,'rb') as f:
   while 1:
    n=f.readinto(b)
    if not n:
     break
    h.update(v[:n])
  r[p]=(st[6],binascii.hexlify(h.digest()).decode())
 for p in ps:
  w(p)
 print(repr(r))
_m(%r)
del _m
"""

_STATVFS: Final = """\
import os
s=os.statvfs('/')
print((s[1] or s[0])*s[4])
"""


@dataclass(frozen=True)
class BoardFacts:
    """What the probe found on the board."""

    version: tuple[int, ...]
    mpy: int
    machine: str
    platform: str
    unique_id: str
    free: int
    total: int
    block_size: int
    firmware_loaded: bool
    base64: bool
    sha256: bool

    @property
    def version_text(self) -> str:
        """``1.29.0``."""
        return ".".join(str(v) for v in self.version)


FileHashes = dict[str, tuple[int, str] | None]
"""Board path -> (size, sha256 hex), or None for a folder."""


def parse_literal(text: str, what: str) -> Any:
    """The Python literal a board script printed (last non-empty line); BoardReplyError
    naming what was expected and what came instead."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        raise BoardReplyError(f"the board printed nothing for the {what}", text)
    try:
        return ast.literal_eval(lines[-1].strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise BoardReplyError(
            f"the board's answer to the {what} is not a Python literal: {lines[-1][:120]!r}",
            text,
        ) from None


def parse_facts(text: str) -> BoardFacts:
    """BoardFacts from the probe's output; BoardReplyError naming a bad field."""
    data = parse_literal(text, "probe")
    if not isinstance(data, dict):
        raise BoardReplyError(f"the probe printed {data!r}, not a dict", data)

    def field(name: str, kind: type | tuple[type, ...]) -> Any:
        value = data.get(name)
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise BoardReplyError(f"the probe's {name} is {value!r}", value)
        return value

    version = field("version", tuple)
    if not version or not all(isinstance(v, int) and not isinstance(v, bool) for v in version):
        raise BoardReplyError(f"the probe's version is {version!r}", version)
    return BoardFacts(
        version=version,
        mpy=field("mpy", int),
        machine=field("machine", str),
        platform=field("platform", str),
        unique_id=field("uid", str),
        free=field("free", int),
        total=field("total", int),
        block_size=max(1, field("bsize", int)),
        firmware_loaded=field("fw_loaded", bool),
        base64=bool(field("b64", int)),
        sha256=bool(field("sha256", int)),
    )


def parse_hashes(text: str) -> FileHashes:
    """The manifest script's output; BoardReplyError naming a bad entry."""
    data = parse_literal(text, "file list")
    if not isinstance(data, dict):
        raise BoardReplyError(f"the file list is {data!r}, not a dict", data)
    out: FileHashes = {}
    for path, entry in data.items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise BoardReplyError(f"the file list names {path!r}, not a board path", path)
        if entry is None:
            out[path] = None
            continue
        if (
            not isinstance(entry, tuple)
            or len(entry) != 2
            or not isinstance(entry[0], int)
            or isinstance(entry[0], bool)
            or entry[0] < 0
            or not isinstance(entry[1], str)
            or len(entry[1]) != 64
            or any(c not in "0123456789abcdef" for c in entry[1])
        ):
            raise BoardReplyError(f"the file list has {entry!r} for {path}", entry)
        out[path] = (entry[0], entry[1])
    return out


class BoardRepl:
    """One open port to a MicroPython board; see the module docstring."""

    def __init__(self, port: str, transport: Any) -> None:
        self.port = port
        self.transport = transport
        self.in_raw = False
        self._secrets: list[bytes] = []

    @classmethod
    def open(cls, port: str, read_timeout: float = READ_TIMEOUT_S) -> BoardRepl:
        """Open port exclusively; NoBoard or PortBusy saying why and what to do."""
        if not port.startswith(("socket://", "rfc2217://")) and not os.path.exists(port):
            raise NoBoard(
                f"no board at {port}: no such device. Check the cable, or list the attached "
                "boards with amtomat flash --list",
                port,
            )
        try:
            with _quiet():
                transport = SerialTransport(port, timeout=read_timeout, exclusive=True)
        except (TransportError, OSError) as exc:
            raise _open_error(port, exc) from None
        return cls(port, transport)

    @property
    def serial(self) -> Any:
        """The pyserial port under the transport."""
        return self.transport.serial

    def keep_secret(self, secret: bytes) -> None:
        """Redact secret from every message this object makes from now on."""
        self._secrets.append(secret)

    # ----- the raw REPL ---------------------------------------------------------------

    def enter_raw(self, wait_s: float) -> bool:
        """Interrupt whatever runs and enter the raw REPL; False when no banner came
        within wait_s (the firmware holds the port, or nothing answers)."""
        ser = self.serial
        old = ser.timeout
        ser.timeout = min(0.1, wait_s)
        try:
            ser.write(b"\r\x03\x03")
            time.sleep(0.05)
            ser.reset_input_buffer()
            ser.write(b"\r\x01")
            data = self.transport.read_until(1, RAW_BANNER, timeout=wait_s, timeout_overall=wait_s)
        except (OSError, serial.SerialException) as exc:
            raise ReplError(
                f"{self.port}: the port failed ({exc}); is the board still plugged in?"
            ) from None
        finally:
            ser.timeout = old
        ok = bytes(data).endswith(RAW_BANNER)
        self.in_raw = ok
        self.transport.in_raw_repl = ok
        return ok

    def exec(self, code: str, *, timeout: float = EXEC_TIMEOUT_S, secret: bool = False) -> str:
        """Run code in the raw REPL; its output as text. ReplError with the board's error."""
        if not self.in_raw:
            raise ReplError(f"{self.port}: not in the raw REPL", self.port)
        if not secret:
            log.debug("board exec: %s", code if len(code) < 200 else code[:200] + "...")
        try:
            with _quiet():
                out, err = self.transport.exec_raw(code, timeout=timeout)
        except TransportError as exc:
            self.in_raw = False
            raise ReplError(
                f"{self.port}: the board stopped answering its REPL "
                f"({self._clean(str(exc))}); unplug and replug it, then run amtomat flash again",
                self.port,
            ) from None
        except (OSError, serial.SerialException) as exc:
            self.in_raw = False
            raise ReplError(
                f"{self.port}: the port failed ({self._clean(str(exc))}); is the board still "
                "plugged in? Run amtomat flash again",
                self.port,
            ) from None
        if err:
            text = self._clean(bytes(err).decode("utf-8", "replace").strip())
            last = text.splitlines()[-1] if text else "an error"
            raise ReplError(f"{self.port}: the board reported {last}", last)
        return bytes(out).decode("utf-8", "replace")

    def _clean(self, text: str) -> str:
        return redact(text, self._secrets)

    # ----- board scripts --------------------------------------------------------------

    def probe(self) -> BoardFacts:
        """MicroPython version, .mpy ABI, platform, unique id, free space."""
        return parse_facts(self.exec(_PROBE))

    def free_bytes(self) -> int:
        """Free bytes of the root file system."""
        value = parse_literal(self.exec(_STATVFS), "free space")
        if not isinstance(value, int) or isinstance(value, bool):
            raise BoardReplyError(f"the board reports free space {value!r}", value)
        return value

    def hashes(self, paths: list[str]) -> FileHashes:
        """Size and sha256 of every file at or below paths (missing ones left out)."""
        return parse_hashes(self.exec(_MANIFEST % (paths,), timeout=60.0))

    def mkdir(self, path: str) -> None:
        """Create a folder (its parent must exist)."""
        self.exec(f"import os\ntry:\n os.mkdir({path!r})\nexcept OSError:\n pass")

    def remove(self, paths: list[str]) -> None:
        """Remove files and (empty) folders, in the given order."""
        if not paths:
            return
        self.exec(
            "import os\n"
            f"for p in {paths!r}:\n"
            " try:\n  os.remove(p)\n except OSError:\n"
            "  try:\n   os.rmdir(p)\n  except OSError:\n   pass"
        )

    def write_file(
        self,
        path: str,
        data: bytes,
        *,
        progress: Callable[[int], None] | None = None,
        secret: bool = False,
        tmp_suffix: str = ".tmp",
    ) -> None:
        """Write data to ``path + tmp_suffix`` and rename it over path, so a reset at any
        moment leaves the old or the new file. secret: nothing of data is ever logged."""
        if secret:
            self.keep_secret(data)
        tmp = path + tmp_suffix
        self.exec(f"f=open({tmp!r},'wb')\nw=f.write\nfrom binascii import a2b_base64 as d")
        for i in range(0, len(data), CHUNK):
            part = base64.b64encode(data[i : i + CHUNK]).decode("ascii")
            self.exec(f"w(d(b'{part}'))", secret=True)
            if progress is not None:
                progress(min(i + CHUNK, len(data)))
        if not data and progress is not None:
            progress(0)
        self.exec(
            "f.close()\ndel f,w,d\nimport os\n"
            f"try:\n os.rename({tmp!r},{path!r})\n"
            f"except OSError:\n os.remove({path!r})\n os.rename({tmp!r},{path!r})"
        )

    def reset(self) -> None:
        """machine.reset() without waiting for an answer (the board is gone at once)."""
        with contextlib.suppress(TransportError, OSError, serial.SerialException), _quiet():
            self.transport.exec_raw_no_follow("import machine\nmachine.reset()")
            self.serial.flush()
        self.in_raw = False

    def close(self, leave_raw: bool = True) -> None:
        """Leave the raw REPL (back to the friendly one) and release the port."""
        with contextlib.suppress(Exception), _quiet():
            if leave_raw and self.in_raw:
                self.transport.exit_raw_repl()
            self.transport.close()
        self.in_raw = False


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """mpremote prints raw board output on some failures: keep it off our stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _open_error(port: str, exc: BaseException) -> Exception:
    """NoBoard or PortBusy for a port that did not open, with the reason the OS gave."""
    from controller.boardport import os_reason

    try:
        probe = serial.Serial(port, exclusive=True, timeout=0)
    except (serial.SerialException, OSError, ValueError) as err:
        reason = os_reason(err)
        if reason.startswith("busy") or "lock" in str(err).lower():
            return _busy(port)
        return NoBoard(f"cannot open {port}: {reason}", port)
    else:
        probe.close()
    return ReplError(f"{port}: mpremote could not open the port ({exc}); try again", port)


def _busy(port: str) -> PortBusy:
    found = holders(port)
    who = "; held by " + ", ".join(f"pid {pid} ({cmd})" for pid, cmd in found) if found else ""
    return PortBusy(
        f"port {port} is busy: another program has it open{who}. Stop the daemon with "
        "sudo systemctl stop amtomat (and close any serial terminal on it), then run "
        "amtomat flash again",
        port,
    )
