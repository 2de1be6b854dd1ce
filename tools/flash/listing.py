"""``amtomat flash --list``: what runs on an attached board, read through its REPL."""

from __future__ import annotations

from tools.flash.build import Abi, check_supported
from tools.flash.errors import FlashError
from tools.flash.repl import BoardRepl

LIST_WAIT_S = 1.0


def describe_port(device: str) -> str:
    """One line: MicroPython version and ABI and whether amtomat supports it, or why the
    board could not be asked."""
    try:
        repl = BoardRepl.open(device)
    except FlashError as exc:
        return str(exc)
    try:
        if not repl.enter_raw(LIST_WAIT_S):
            return (
                "no MicroPython REPL answered: the amtomat firmware (or another program) "
                "holds the port; amtomat flash --board ID reaches it"
            )
        facts = repl.probe()
        abi = Abi.from_sys_mpy(facts.mpy)
        head = f"MicroPython {facts.version_text} on {facts.platform}, {abi}"
        try:
            warning = check_supported(facts.version, abi)
        except FlashError as exc:
            return f"{head}: NOT supported: {exc}"
        return f"{head}: supported" + (f" ({warning})" if warning else "")
    except FlashError as exc:
        return str(exc)
    finally:
        repl.close()
