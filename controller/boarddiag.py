"""A board's ``diagnostics`` reply, parsed, and the per-board detail of the ``state`` reply.

The board link fetches the diagnostics after every connect and then every minute
(``controller.boardlink``); ``board_detail`` joins them with the welcome's identity and the
host's own session counters for ``amtomat boards`` and the kiosk. Nothing here holds or
shows key material.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from controller.boardtypes import ReportError

if TYPE_CHECKING:
    from controller.boardlink import BoardLink

LINK_COUNTERS: Final = (
    "frames_in",
    "frames_out",
    "crc_errors",
    "tag_errors",
    "replays",
    "retransmits",
    "link_downs",
    "malformed",
    "srtt_ms",
)
"""The link counters both sides report, in the order of the firmware's ``link`` list."""

EVENT_COUNTERS: Final = ("last_id", "held", "lost", "bad_acks")
"""The firmware's ``events`` list: last event id, events held, events lost, bad acks."""

_TEXT: Final = ("fw_version", "fw_hash", "board_id", "reset_reason")
_NUMBERS: Final = ("uptime_ms", "pulses", "commands", "refused", "safe_entries", "steps")
_SIGNED: Final = ("mem_free", "mem_alloc")  # -1: the port cannot tell
CRASH_MAX: Final = 200  # characters of a crash note kept (what the firmware sends)


@dataclass(frozen=True)
class BoardDiagnostics:
    """One ``diagnostics`` reply and the host's monotonic ms when it arrived."""

    received_ms: int
    fw_version: str
    fw_hash: str
    board_id: str
    reset_reason: str
    uptime_ms: int
    boot_id: int | None
    crash: str | None
    mem_free: int
    mem_alloc: int
    pulses: int
    commands: int
    refused: int
    safe_entries: int
    steps: int
    events: dict[str, int]
    link: dict[str, int | None]  # srtt_ms None until the board measured one


def _int(value: object, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ReportError(
            f"diagnostics reply: {key} must be an integer >= {minimum}, got {value!r}", value
        )
    return value


def _counters(data: dict[Any, Any], key: str, names: tuple[str, ...]) -> list[int]:
    value = data.get(key)
    if not isinstance(value, list) or len(value) != len(names):
        raise ReportError(
            f"diagnostics reply: {key} must be a list of {len(names)} integers "
            f"({', '.join(names)}), got {value!r}",
            value,
        )
    return [_int(v, f"{key}.{name}", -1) for v, name in zip(value, names, strict=True)]


def parse_diagnostics(data: object, received_ms: int) -> BoardDiagnostics:
    """The reply's data as BoardDiagnostics; ReportError naming the first bad value."""
    if not isinstance(data, dict):
        raise ReportError(f"diagnostics reply: data must be a map, got {data!r}", data)
    text: dict[str, str] = {}
    for key in _TEXT:
        value = data.get(key)
        if not isinstance(value, str):
            raise ReportError(f"diagnostics reply: {key} must be text, got {value!r}", value)
        text[key] = value
    numbers = {key: _int(data.get(key), key, 0) for key in _NUMBERS}
    signed = {key: _int(data.get(key), key, -1) for key in _SIGNED}
    boot = data.get("boot_id")
    if boot is not None:
        boot = _int(boot, "boot_id", 0)
    crash = data.get("crash")
    if crash is not None and not isinstance(crash, str):
        raise ReportError(f"diagnostics reply: crash must be text or null, got {crash!r}", crash)
    events = _counters(data, "events", EVENT_COUNTERS)
    link = _counters(data, "link", LINK_COUNTERS)
    return BoardDiagnostics(
        received_ms=received_ms,
        fw_version=text["fw_version"],
        fw_hash=text["fw_hash"],
        board_id=text["board_id"],
        reset_reason=text["reset_reason"],
        uptime_ms=numbers["uptime_ms"],
        boot_id=boot,
        crash=crash[:CRASH_MAX] if crash is not None else None,
        mem_free=signed["mem_free"],
        mem_alloc=signed["mem_alloc"],
        pulses=numbers["pulses"],
        commands=numbers["commands"],
        refused=numbers["refused"],
        safe_entries=numbers["safe_entries"],
        steps=numbers["steps"],
        events=dict(zip(EVENT_COUNTERS, events, strict=True)),
        link={
            k: (None if k == "srtt_ms" and v < 0 else v)
            for k, v in zip(LINK_COUNTERS, link, strict=True)
        },
    )


def _known(value: object) -> Any:
    """A welcome field as it may appear in a reply: text, int, bool or None."""
    return value if isinstance(value, str | int | bool) else None


def board_detail(link: BoardLink, now_ms: int) -> dict[str, Any]:
    """One entry of ``state.boards_detail``: identity (welcome, else the last diagnostics),
    uptime, the host's and the board's link counters and the board's event counters."""
    diag = link.diagnostics
    ident = link.identity
    counters = link.counters()
    host_link: dict[str, int | None] = {k: int(counters.get(k, 0)) for k in LINK_COUNTERS}
    if host_link["srtt_ms"] is not None and host_link["srtt_ms"] < 0:
        host_link["srtt_ms"] = None

    def pick(welcome_key: str, diag_value: Any) -> Any:
        value = _known(ident.get(welcome_key))
        return value if value is not None else diag_value

    age_ms = None if diag is None else max(0, now_ms - diag.received_ms)
    uptime_s: float | None = None
    live = link.state.value in ("ready", "mismatch")
    if diag is not None and age_ms is not None and live and diag.boot_id == link.boot_id:
        uptime_s = round((diag.uptime_ms + age_ms) / 1000, 1)
    return {
        "board": link.board_id,
        "state": link.state.value,
        "error": link.last_error or None,
        "address": link.spec.address,
        "port": link.spec.port,
        "firmware": pick("fw_version", diag.fw_version if diag else None),
        "fw_hash": pick("fw_hash", diag.fw_hash if diag else None),
        "boot_id": link.boot_id if link.boot_id is not None else (diag.boot_id if diag else None),
        "reset_reason": pick("reset_reason", diag.reset_reason if diag else None),
        "provisioned": _known(ident.get("provisioned")),
        "uptime_s": uptime_s,
        "diagnostics_age_s": None if age_ms is None else round(age_ms / 1000, 1),
        "link": host_link,
        "board_link": dict(diag.link) if diag is not None else None,
        "events": dict(diag.events) if diag is not None else None,
        "board_stats": None
        if diag is None
        else {
            "pulses": diag.pulses,
            "commands": diag.commands,
            "refused": diag.refused,
            "safe_entries": diag.safe_entries,
            "mem_free": diag.mem_free,
            "mem_alloc": diag.mem_alloc,
            "crash": diag.crash,
        },
        "connects": int(counters.get("connects", 0)),
        "failures": link.failures,
    }
