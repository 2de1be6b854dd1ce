"""After the reset: the handshake with the real host stack (``BoardLink`` + ``BoardManager``,
as the daemon runs them), then the self-test: diagnostics, every input by its name from the
TOML, and with ``--pulse`` one channel at a time after the installer said yes.

"Pulse sent" (the board's reply) and "door seen open" (a door_open event) are reported
separately, as everywhere in amtomat.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from controller.boardconfig import BoardSpec, Pin, Sensor
from controller.boardlink import BoardEvent, BoardLink, InputReport, LinkState, RequestOutcome
from controller.boardport import BoardManager, monotonic_ms
from tools.flash.errors import BoardMismatch, NoAnswerAfterReset, SelfTestFailed
from tools.flash.progress import Progress

REQUEST_TIMEOUT_S: Final = 5.0
DOOR_WAIT_S: Final = 2.0
UNIT_KEYS: Final = {
    "return": "return_slot",
    "dropoff": "dropoff_slot",
    "entrance": "entrance",
    "tamper": "tamper",
    "service": "service_door",
}
_WORDS: Final = {
    "door": ("closed", "open"),
    "item": ("absent", "present"),
    "flap": ("closed", "open"),
    "deposit": ("clear", "interrupted"),
    "grant": ("off", "on"),
    "exit": ("released", "pressed"),
    "tamper": ("closed", "open"),
    "solenoid": ("off", "on"),
    "strike": ("off", "on"),
}
_LED: Final = ("off", "on", "blink")


@dataclass
class PulseResult:
    """One channel's pulse: granted ms (None: not sent), and whether the door opened."""

    channel: int
    granted_ms: int | None
    door_seen_open: bool
    problem: str | None = None


@dataclass
class SelfTestReport:
    """What the self-test found."""

    identity: dict[str, Any]
    diagnostics: dict[str, Any]
    inputs: InputReport
    lines: list[str]
    pulses: list[PulseResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def pin_name(pin: Pin | None) -> str:
    """``GPIO 5`` or ``mcp0:B3``."""
    if pin is None:
        return "-"
    return f"GPIO {pin}" if isinstance(pin, int) else str(pin)


def channel_name(channel: int, labels: dict[int, str]) -> str:
    """``channel 3 (A03)``, or ``channel 3`` without a label."""
    return f"channel {channel}" + (f" ({labels[channel]})" if channel in labels else "")


def describe_inputs(
    spec: BoardSpec, report: InputReport, labels: dict[int, str]
) -> tuple[list[str], list[str]]:
    """(one line per channel and unit, problems) naming every input as the TOML does."""
    lines: list[str] = []
    problems: list[str] = []
    for ch in spec.channels:
        name = channel_name(ch.channel, labels)
        if ch.channel not in report.doors:
            problems.append(f"{name}: the board reports no such channel")
            continue
        parts = [f"door {_word('door', report.doors[ch.channel])} [{pin_name(ch.door)}]"]
        if ch.item is not None:
            item = report.items.get(ch.channel)
            shown = "no sensor" if item is None else _word("item", item)
            parts.append(f"item {shown} [{pin_name(ch.item)}]")
        if ch.led is not None:
            mode = report.leds.get(ch.channel)
            parts.append(f"LED {'-' if mode is None else _LED[mode]} [{pin_name(ch.led)}]")
        if report.energised.get(ch.channel):
            parts.append("solenoid ON")
        lines.append(f"{name}: " + ", ".join(parts))
    for unit_name, key in UNIT_KEYS.items():
        unit = getattr(spec, key)
        if unit is None:
            continue
        signals = report.units.get(unit_name)
        if signals is None:
            problems.append(f"{key}: configured, but the board reports no {unit_name} unit")
            continue
        parts = []
        for signal, level in sorted(signals.items()):
            pin = unit.pin if isinstance(unit, Sensor) else getattr(unit, signal, None)
            parts.append(f"{signal} {_word(signal, bool(level))} [{pin_name(pin)}]")
        lines.append(f"{key}: " + ", ".join(parts))
    if report.safe_reason:
        lines.append(f"safe state: {report.safe_reason}")
    return lines, problems


def _word(signal: str, level: bool) -> str:
    words = _WORDS.get(signal, ("0", "1"))
    return words[1] if level else words[0]


def describe_diagnostics(diag: dict[str, Any]) -> str:
    """One line: firmware, build, uptime, reset reason, free heap."""
    uptime = diag.get("uptime_ms")
    shown = f"{uptime / 1000:.1f} s" if isinstance(uptime, int) else "?"
    text = (
        f"firmware {diag.get('fw_version')} build {diag.get('fw_hash')}, up {shown}, "
        f"reset reason {diag.get('reset_reason')}, free heap {diag.get('mem_free')} bytes"
    )
    if diag.get("crash"):
        text += f", last crash: {diag['crash']}"
    return text


class _Host:
    """One BoardLink on a BoardManager, driven inside an asyncio loop."""

    def __init__(self, url: str, spec: BoardSpec, key: bytes) -> None:
        self.events: list[BoardEvent] = []
        self.link = BoardLink(spec, key, self._write, on_event=self.events.append)
        self.manager = BoardManager(
            url, [self.link], now=monotonic_ms, backoff_min_s=0.2, backoff_max_s=1.0
        )
        self.task: asyncio.Task[None] | None = None

    def _write(self, data: bytes) -> None:
        self.manager.write(data)

    async def start(self) -> None:
        self.task = asyncio.ensure_future(self.manager.run())

    async def wait_for(self, cond: Callable[[], bool], seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while not cond() and loop.time() < end:
            await asyncio.sleep(0.02)
        return cond()

    async def request(self, name: str, args: list[Any]) -> RequestOutcome:
        fut: asyncio.Future[RequestOutcome] = asyncio.get_running_loop().create_future()

        def done(outcome: RequestOutcome) -> None:
            if not fut.done():
                fut.set_result(outcome)

        self.link.request(name, args, monotonic_ms(), done, int(REQUEST_TIMEOUT_S * 1000))
        return await fut

    async def stop(self) -> None:
        self.manager.close()
        if self.task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, 5)


async def _selftest(
    url: str,
    spec: BoardSpec,
    key: bytes,
    *,
    build_hash: str,
    answer_timeout_s: float,
    labels: dict[int, str],
    pulse_ms: int | None,
    ask: Callable[[str], str],
    progress: Progress,
) -> SelfTestReport:
    host = _Host(url, spec, key)
    await host.start()
    try:
        link = host.link
        ready = await host.wait_for(
            lambda: link.state in (LinkState.READY, LinkState.MISMATCH), answer_timeout_s
        )
        if not ready:
            if link.state is LinkState.CONNECTING:
                why = "the port is open, but no welcome came"
                if link.last_error not in ("", "port not opened yet"):
                    why += f": {link.last_error}"
            else:
                why = f"the port did not open: {link.last_error}"
            jumper = (
                f"that the recovery jumper (GPIO {spec.recovery_pin} to GND) is off, "
                if spec.recovery_pin is not None
                else ""
            )
            raise NoAnswerAfterReset(
                f"board {spec.board_id} not answering after reset: no handshake on {url} "
                f"within {answer_timeout_s:g} s ({why}). Check {jumper}that the "
                "board is still plugged in and its LED shows it running, then run amtomat "
                "flash again; if it keeps failing, look for a crash with: mpremote connect "
                f"{url} repl",
                url,
            )
        if link.state is LinkState.MISMATCH:
            raise BoardMismatch(
                f"board {spec.board_id} answered after the reset but does not match the "
                f"terminal config: {link.last_error}",
                link.last_error,
            )
        identity = dict(link.identity)
        if identity.get("fw_hash") != build_hash:
            raise BoardMismatch(
                f"board {spec.board_id} reports firmware build {identity.get('fw_hash')!r}, "
                f"but build {build_hash} was written; run amtomat flash again",
                identity.get("fw_hash"),
            )
        progress.note(
            f"handshake ok: board {identity.get('board_id')}, firmware "
            f"{identity.get('fw_version')} build {identity.get('fw_hash')}, "
            f"{identity.get('channels')} channels"
        )
        diag = await host.request("diagnostics", [])
        if not diag.ok or not isinstance(diag.data, dict):
            raise SelfTestFailed(
                f"board {spec.board_id} did not answer diagnostics ({diag.reason})", diag.reason
            )
        progress.note(describe_diagnostics(diag.data))
        await host.wait_for(lambda: link.last_inputs is not None, REQUEST_TIMEOUT_S)
        if link.last_inputs is None:
            raise SelfTestFailed(
                f"board {spec.board_id} did not report its inputs; run amtomat flash again",
                spec.board_id,
            )
        inputs = link.last_inputs
        lines, problems = describe_inputs(spec, inputs, labels)
        progress.step(f"inputs of {spec.board_id}")
        for line in lines:
            progress.note(line)
        report = SelfTestReport(identity, diag.data, inputs, lines, problems=problems)
        if pulse_ms is not None:
            await _pulses(host, spec, labels, pulse_ms, ask, progress, report)
        return report
    finally:
        await host.stop()


async def _pulses(
    host: _Host,
    spec: BoardSpec,
    labels: dict[int, str],
    pulse_ms: int,
    ask: Callable[[str], str],
    progress: Progress,
    report: SelfTestReport,
) -> None:
    progress.step("pulses, channel by channel (y = pulse, n = skip, q = stop)")
    for ch in spec.channels:
        c = ch.channel
        name = channel_name(c, labels)
        answer = (await _in_thread(ask, f"pulse {name}? [y/n/q] ")).strip().lower()
        if answer.startswith("q"):
            progress.note("pulses stopped")
            return
        if not answer.startswith("y"):
            progress.note(f"{name}: skipped")
            continue
        was_open = bool(host.link.last_inputs and host.link.last_inputs.doors.get(c))
        seen = len(host.events)
        outcome = await host.request("pulse", [c, pulse_ms])
        if not outcome.ok:
            problem = f"{name}: pulse refused ({outcome.reason})"
            progress.note(problem)
            report.problems.append(problem)
            report.pulses.append(PulseResult(c, None, False, problem))
            continue
        granted = outcome.data.get("ms") if isinstance(outcome.data, dict) else None
        progress.note(f"{name}: pulse sent ({granted} ms)")

        def door_opened(start: int = seen, channel: int = c) -> bool:
            return any(
                e.kind == "door_open" and e.unit == "channel" and e.channel == channel
                for e in host.events[start:]
            )

        opened = await host.wait_for(door_opened, DOOR_WAIT_S)
        result = PulseResult(c, granted if isinstance(granted, int) else None, opened)
        if opened:
            progress.note(f"{name}: door seen open; close it again")
        elif was_open:
            result.problem = f"{name}: the door was already open, so no opening could be seen"
            progress.note(result.problem)
        else:
            result.problem = (
                f"{name}: door NOT seen open within {DOOR_WAIT_S:g} s; check the solenoid, its "
                f"driver and the door contact [{pin_name(ch.door)}]"
            )
            progress.note(result.problem)
            report.problems.append(result.problem)
        report.pulses.append(result)


async def _in_thread(ask: Callable[[str], str], question: str) -> str:
    """ask(question) in a daemon thread while the loop keeps the link alive; unlike
    asyncio.to_thread, an interrupted run does not wait at exit for a pending answer."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[str] = loop.create_future()

    def work() -> None:
        answer: str | None = None
        error: BaseException | None = None
        try:
            answer = ask(question)
        except BaseException as exc:  # handed to the loop, raised by the await below
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: the run was interrupted
            loop.call_soon_threadsafe(_settle, fut, answer, error)

    threading.Thread(target=work, name="flash-ask", daemon=True).start()
    return await fut


def _settle(fut: asyncio.Future[str], answer: str | None, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(answer or "")


def run_selftest(
    url: str,
    spec: BoardSpec,
    key: bytes,
    *,
    build_hash: str,
    answer_timeout_s: float,
    labels: dict[int, str],
    pulse_ms: int | None,
    ask: Callable[[str], str],
    progress: Progress,
) -> SelfTestReport:
    """Handshake (READY: id, config hash and key match), diagnostics, inputs, pulses.

    NoAnswerAfterReset, BoardMismatch or SelfTestFailed; a door not seen open is listed in
    ``problems``.
    """
    return asyncio.run(
        _selftest(
            url,
            spec,
            key,
            build_hash=build_hash,
            answer_timeout_s=answer_timeout_s,
            labels=labels,
            pulse_ms=pulse_ms,
            ask=ask,
            progress=progress,
        )
    )
