"""How long ``amtomat flash`` takes against the fake board: a fresh board (factory
MicroPython: everything copied) and an idempotent re-flash of the same board (the firmware
hands its port over, nothing is copied, reset and self-test), with the time of each step.

Runs the real flow (``FlashRun``) in this process against ``tools.fakeboard.board.FakeBoard``
(a MicroPython VM behind a pty). Prints figures; asserts nothing.
Run: ``.venv/bin/python bench/flash.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.flash.flow import FlashOptions, FlashRun, Summary  # noqa: E402
from tools.flash.progress import Progress  # noqa: E402


def _flash(config: Path, port: str, cache: Path) -> Summary:
    opts = FlashOptions(config=config, board_id="wall-a", port=port, cache_dir=cache)
    run = FlashRun(
        opts, Progress(io.StringIO(), tty=False), ask=lambda q: "q", confirm=lambda q: False
    )
    return run.run()


def _show(name: str, summaries: list[Summary]) -> None:
    totals = [s.timings["total"] for s in summaries]
    print(
        f"{name}: median {statistics.median(totals):.2f} s over {len(totals)} runs "
        f"(min {min(totals):.2f}, max {max(totals):.2f}); files copied: "
        f"{len(summaries[0].copied)}"
    )
    steps = [k for k in summaries[0].timings if k != "total"]
    for step in steps:
        values = [s.timings.get(step, 0.0) for s in summaries]
        print(f"    {step:<10} {statistics.median(values):6.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="boards flashed (default 3)")
    args = parser.parse_args()
    from tools.fakeboard.board import FakeBoard

    fresh: list[Summary] = []
    again: list[Summary] = []
    with tempfile.TemporaryDirectory(prefix="amtomat-bench-flash-") as tmp:
        root = Path(tmp)
        config = root / "terminal.toml"
        shutil.copy(ROOT / "examples" / "demo-terminal.toml", config)
        cache = root / "cache"
        for i in range(args.runs):
            board: Any = FakeBoard(root / f"flash{i}")
            board.start()
            try:
                fresh.append(_flash(config, board.port, cache))
                again.append(_flash(config, board.port, cache))
            finally:
                board.close()
    fw = fresh[0].firmware
    print(f"firmware {fw.fw_version} build {fw.build_hash}: {len(fw.files)} files, {fw.size} bytes")
    _show("fresh flash", fresh)
    _show("idempotent re-flash", again)
    return 0


if __name__ == "__main__":
    sys.exit(main())
