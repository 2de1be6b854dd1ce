"""The steps of ``amtomat flash``: config, port, REPL (directly or by handover), probe, build,
compare, copy, config and key, verify, reset, handshake and self-test, summary.

``FlashRun.step`` says where the run is; ``_enter`` is the one place that changes it, so an
interruption can say what state the board is in.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from controller import config as daemon_config
from controller.boardconfig import BoardSpec, board_json
from controller.errors import ControllerError
from tools.flash import ports
from tools.flash.build import (
    CONFIG_PATH,
    KEY_PATH,
    MAIN_PATH,
    Abi,
    Firmware,
    build,
    check_supported,
)
from tools.flash.errors import (
    ConfigProblem,
    FlashError,
    Interrupted,
    NotConfirmed,
    UnsupportedMicroPython,
    VerifyMismatch,
)
from tools.flash.handover import Reached, Route, keep_watchdog_fed, reach_repl
from tools.flash.keys import BoardKeys, other_keys
from tools.flash.plan import Plan, check_space, make_plan, scanned_paths
from tools.flash.progress import Progress, human_size
from tools.flash.repl import BoardFacts, BoardRepl, FileHashes
from tools.flash.selftest import SelfTestReport, run_selftest

log = logging.getLogger(__name__)

DEFAULT_CONFIG: Final = Path("/etc/amtomat/terminal.toml")
ANSWER_TIMEOUT_S: Final = 20.0


class Step(enum.Enum):
    """Where a run is; the value reads after "while"."""

    CONFIG = "reading the terminal config"
    PORT = "opening the port"
    REACH = "reaching the board's REPL"
    PROBE = "probing the board"
    BUILD = "building the firmware"
    COMPARE = "comparing the board's files"
    COPY = "copying files"
    VERIFY = "verifying the files"
    RESET = "resetting the board"
    SELFTEST = "waiting for the handshake and self-test"
    DONE = "done"


_AFTER: Final = {
    Step.COPY: "the copy is incomplete and the board has no /main.py, so it boots to the "
    "MicroPython REPL (outputs off) until a run finishes",
    Step.VERIFY: "the files are written but not verified and the board has no /main.py, so "
    "it boots to the MicroPython REPL (outputs off) until a run finishes",
    Step.RESET: "the board is written and verified",
    Step.SELFTEST: "the board is flashed; only the self-test did not finish",
}


@dataclass(frozen=True)
class FlashOptions:
    """What the command line asked for."""

    config: Path
    board_id: str
    port: str | None = None
    keystore: Path | None = None
    rekey: bool = False
    pulse: bool = False
    yes: bool = False
    answer_timeout_s: float = ANSWER_TIMEOUT_S
    cache_dir: Path | None = None


@dataclass
class Summary:
    """The outcome of a run that reached the self-test."""

    board_id: str
    port: str
    route: Route
    firmware: Firmware
    facts: BoardFacts
    abi: Abi
    serial_number: str | None
    copied: list[str]
    removed: list[str]
    key: str  # "kept" (the board had it), "written" (the keystore's), "new" (generated)
    selftest: SelfTestReport
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        """What the self-test found wrong."""
        return self.selftest.problems


class FlashRun:
    """One ``amtomat flash`` of one board; ``run()`` returns the Summary or raises."""

    def __init__(
        self,
        opts: FlashOptions,
        progress: Progress,
        *,
        ask: Callable[[str], str],
        confirm: Callable[[str], bool],
        list_ports: Callable[[], list[ports.AttachedPort]] = ports.list_ports,
    ) -> None:
        self.opts = opts
        self.progress = progress
        self.ask = ask
        self.confirm = confirm
        self.list_ports = list_ports
        self.step = Step.CONFIG
        self.timings: dict[str, float] = {}
        self._t0 = time.monotonic()
        self._step_started = self._t0
        self._repl: BoardRepl | None = None
        self._armed = True  # the board has a /main.py: it boots the (old) firmware
        self._handed_over = False  # the firmware gave its port to the REPL
        self._touched = False  # something on the board was changed

    def _enter(self, step: Step) -> None:
        """The one place that changes ``step``; times the step that ends."""
        now = time.monotonic()
        self.timings[self.step.name.lower()] = now - self._step_started
        self._step_started = now
        self.step = step
        log.info("flash: %s", step.value)

    def run(self) -> Summary:
        """Flash and self-test the board; FlashError (Interrupted on Ctrl-C or SIGTERM).

        A board that handed over its port and was not changed is reset into its firmware
        when the run fails or is interrupted, so the daemon finds it as it was."""
        try:
            return self._run()
        except KeyboardInterrupt:
            restored = self._restore()
            text = self._interrupted_text() + (restored and f" ({restored})")
            raise Interrupted(text, self.step.value) from None
        except FlashError as exc:
            restored = self._restore()
            if restored:
                exc.args = (f"{exc} ({restored})",)
            raise
        finally:
            if self._repl is not None:
                self._repl.close()
                self._repl = None

    def _restore(self) -> str:
        """Reset an unchanged board back into the firmware it handed over from; says so."""
        repl = self._repl
        if repl is None or not self._handed_over or self._touched:
            return ""
        try:
            if not repl.enter_raw(1.0):  # Ctrl-C ends a command cut off by the interruption
                return ""
        except FlashError:
            return ""
        repl.reset()
        repl.close(leave_raw=False)
        self._repl = None
        return "nothing was written; the board was reset into its firmware"

    def _interrupted_text(self) -> str:
        state = _AFTER.get(self.step)
        if state is None:
            state = "nothing was changed on the board"
        if self.step is Step.COPY and self._armed:
            state = (
                "only its config or key was being replaced, each file atomically; the board "
                "keeps its firmware"
            )
        elif self.step is Step.VERIFY and self._armed:
            state = "the files are written, but their last check did not finish"
        return f"interrupted while {self.step.value}: {state}. Run amtomat flash again to finish"

    # ----- the steps --------------------------------------------------------------------

    def _run(self) -> Summary:
        opts = self.opts
        p = self.progress
        cfg, spec = self._load_config()
        keystore = opts.keystore if opts.keystore is not None else cfg.daemon.keystore
        keys = BoardKeys(keystore, spec.board_id)
        labels = {c.channel: c.label for c in cfg.compartments if c.board == spec.board_id}

        self._enter(Step.PORT)
        attached = self.list_ports()
        port = ports.choose_port(opts.port, spec.port, attached)
        p.step(f"board {spec.board_id}: opening {port}")
        repl = BoardRepl.open(port)
        self._repl = repl

        self._enter(Step.REACH)
        others = [b for b in cfg.terminal.boards if b.board_id != spec.board_id]
        addresses = list(dict.fromkeys([spec.address, *(b.address for b in others)]))
        candidates = keys.candidates() + other_keys(keystore, others)
        for _, key in candidates:
            repl.keep_secret(key)
        reached = reach_repl(
            repl,
            board_id=spec.board_id,
            addresses=addresses,
            candidates=candidates,
            recovery_pin=spec.recovery_pin,
            keystore=str(keystore),
            confirm_other_board=lambda seen: self.confirm(
                f"the board on {port} is configured as {seen!r}; flash it as {spec.board_id!r}?"
            ),
        )
        if reached.route is Route.HANDOVER:
            self._handed_over = True
            p.note("the amtomat firmware handed its port to the REPL (maintenance)")
        else:
            p.note("MicroPython REPL answered")

        self._enter(Step.PROBE)
        facts = repl.probe()
        abi = Abi.from_sys_mpy(facts.mpy)
        p.step(
            f"MicroPython {facts.version_text} on {facts.platform} ({facts.machine}), {abi}, "
            f"{human_size(max(facts.free, 0))} free"
        )
        warning = check_supported(facts.version, abi)
        if warning:
            p.warn(warning)
        if not (facts.sha256 and facts.base64):
            raise UnsupportedMicroPython(
                "the board's MicroPython lacks hashlib.sha256 or binascii.a2b_base64, which "
                "flashing and the firmware need: install the board's standard MicroPython "
                "release",
                facts.version_text,
            )
        if reached.route is Route.REPL and facts.firmware_loaded:
            keep_watchdog_fed(repl)
            p.note("the firmware was stopped with Ctrl-C: its watchdog is fed until the reset")

        self._enter(Step.BUILD)
        fw = build(abi, opts.cache_dir)
        p.step(
            f"firmware {fw.fw_version} build {fw.build_hash}: {len(fw.files)} files, "
            f"{human_size(fw.size)}" + (f", -march={fw.march}" if fw.march else "")
        )

        self._enter(Step.COMPARE)
        have = repl.hashes(scanned_paths())
        self._armed = have.get(MAIN_PATH) is not None
        self._check_foreign(repl, have, spec, reached, port)
        board_key = reached.key or keys.match_hash(_entry_sha(have, KEY_PATH))
        target, generated = keys.choose(opts.rekey)
        repl.keep_secret(target)
        wanted = dict(fw.files)
        wanted[CONFIG_PATH] = board_json(spec)
        wanted[KEY_PATH] = target
        plan = make_plan(wanted, have)
        check_space(plan, have, facts.free, facts.block_size, port)
        if plan.changes:
            n = len(plan.write) + plan.write_main
            p.step(
                f"{n} file{'' if n == 1 else 's'} to write ({human_size(plan.bytes_to_write())}), "
                f"{len(plan.remove)} to remove"
            )
        else:
            p.step("the board already holds this firmware, config and key: nothing to copy")

        self._enter(Step.COPY)
        self._apply(repl, plan, keys, target, board_key)

        self._enter(Step.VERIFY)
        self._verify(repl, plan, wanted)
        p.note(f"all {len(wanted)} files verified by sha256")

        self._enter(Step.RESET)
        p.step("resetting the board")
        repl.reset()
        repl.close(leave_raw=False)
        self._repl = None

        self._enter(Step.SELFTEST)
        p.step(f"waiting for the handshake on {port}")
        report = run_selftest(
            port,
            spec,
            target,
            build_hash=fw.build_hash,
            answer_timeout_s=opts.answer_timeout_s,
            labels=labels,
            pulse_ms=cfg.daemon.pulse_ms if opts.pulse else None,
            ask=self.ask,
            progress=p,
        )
        keys.proven()
        self._enter(Step.DONE)
        self.timings["total"] = time.monotonic() - self._t0
        found = ports.find_attached(port, attached)
        return Summary(
            board_id=spec.board_id,
            port=port,
            route=reached.route,
            firmware=fw,
            facts=facts,
            abi=abi,
            serial_number=found.serial_number if found else None,
            copied=plan.write + ([MAIN_PATH] if plan.write_main else []),
            removed=plan.remove,
            key="new" if generated else ("kept" if target == board_key else "written"),
            selftest=report,
            timings=dict(self.timings),
        )

    def _load_config(self) -> tuple[daemon_config.Config, BoardSpec]:
        path = self.opts.config
        try:
            cfg = daemon_config.load(path)
        except ControllerError as exc:
            raise ConfigProblem(f"{exc}", getattr(exc, "value", None)) from None
        try:
            spec = cfg.terminal.board(self.opts.board_id)
        except KeyError:
            known = ", ".join(b.board_id for b in cfg.terminal.boards) or "none"
            raise ConfigProblem(
                f"{path}: there is no board {self.opts.board_id!r}; its boards are: {known}",
                self.opts.board_id,
            ) from None
        return cfg, spec

    def _check_foreign(
        self, repl: BoardRepl, have: FileHashes, spec: BoardSpec, reached: Reached, port: str
    ) -> None:
        """Ask before replacing another program, or a board configured as another board."""
        if have.get(CONFIG_PATH) is None:
            if have.get(MAIN_PATH) is not None and not self.confirm(
                f"the board on {port} runs another program (/main.py, no /amtomat.json); "
                "replace it?"
            ):
                raise NotConfirmed(
                    f"the board on {port} runs another program (its /main.py is not ours); "
                    "nothing was changed. Confirm with --yes to replace it",
                    port,
                )
            return
        if reached.route is Route.HANDOVER:
            return  # the welcome's board id was checked already
        seen = _configured_board_id(repl)
        if (
            seen is not None
            and seen != spec.board_id
            and not self.confirm(
                f"the board on {port} is configured as {seen!r}; flash it as {spec.board_id!r}?"
            )
        ):
            raise NotConfirmed(
                f"the board on {port} is configured as {seen!r}, not {spec.board_id!r}; "
                "nothing was changed. Check which board is plugged in, or confirm with --yes",
                seen,
            )

    def _apply(
        self, repl: BoardRepl, plan: Plan, keys: BoardKeys, target: bytes, board_key: bytes | None
    ) -> None:
        p = self.progress
        self._touched = plan.changes
        if plan.disarm:
            repl.remove([MAIN_PATH])
            self._armed = False
            p.note("removed /main.py: the board boots to the REPL until the copy is complete")
        if plan.remove:
            repl.remove(plan.remove)
            p.note(f"removed {len(plan.remove)} stale files: {', '.join(plan.remove)}")
        for folder in plan.mkdirs:
            repl.mkdir(folder)
        if not plan.write:
            return
        total = sum(len(plan.wanted[path]) for path in plan.write)
        bar = p.bar("copy", total, len(plan.write))
        for path in plan.write:
            data = plan.wanted[path]
            if path == KEY_PATH:
                keys.commit(target, board_key)
            bar.item(path, len(data))
            repl.write_file(path, data, progress=bar.update, secret=path == KEY_PATH)
        bar.finish()

    def _verify(self, repl: BoardRepl, plan: Plan, wanted: dict[str, bytes]) -> None:
        check = [path for path in wanted if path != MAIN_PATH or not plan.write_main]
        _compare(repl.hashes(scanned_paths()), {path: wanted[path] for path in check})
        if plan.write_main:
            data = wanted[MAIN_PATH]
            bar = self.progress.bar("copy", len(data), 1)
            bar.item(MAIN_PATH, len(data))
            repl.write_file(MAIN_PATH, data, progress=bar.update)
            self._armed = True
            bar.finish()
            _compare(repl.hashes([MAIN_PATH]), {MAIN_PATH: data})


def _entry_sha(have: FileHashes, path: str) -> str | None:
    entry = have.get(path)
    return entry[1] if entry is not None else None


def _compare(found: FileHashes, wanted: dict[str, bytes]) -> None:
    for path in sorted(wanted):
        want = hashlib.sha256(wanted[path]).hexdigest()
        got = _entry_sha(found, path)
        if got == want:
            continue
        if path == KEY_PATH:
            detail = "differs from the key written" if got else "is missing"
        elif got is None:
            detail = "is missing"
        else:
            detail = f"has sha256 {got[:16]}..., {want[:16]}... was written"
        raise VerifyMismatch(
            f"verification failed: {path} on the board {detail}. Nothing was reset; run "
            "amtomat flash again (it rewrites only what differs). If this repeats, the "
            "board's flash may be failing: try another board",
            path,
        )


def _configured_board_id(repl: BoardRepl) -> str | None:
    """The board id in the board's /amtomat.json, None when it is unreadable."""
    try:
        out = repl.exec(f"print(open({CONFIG_PATH!r}).read())")
        value = json.loads(out.strip() or "null")
    except (FlashError, ValueError):
        return None
    board_id = value.get("board_id") if isinstance(value, dict) else None
    return board_id if isinstance(board_id, str) else None
