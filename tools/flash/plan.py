"""What to change on the board, from the files wanted and the hashes found there: pure logic.

Order, so that an interruption at any point leaves a board the next run can finish: when
code changes, ``/main.py`` goes first (the board then boots to the REPL, outputs off, no
watchdog); stale files of ours go next; then library files, config and key (each written to
a temporary name and renamed); ``/main.py`` comes back last, after everything else verified.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

from tools.flash.build import (
    BUILD_PATH,
    CONFIG_PATH,
    KEY_PATH,
    LIB,
    MAIN_PATH,
    OUR_DIRS,
    SHADOW_DIRS,
    TMP_SUFFIX,
)
from tools.flash.errors import NoSpace
from tools.flash.progress import human_size
from tools.flash.repl import FileHashes

TOP_FILES: Final = (MAIN_PATH, BUILD_PATH, CONFIG_PATH, KEY_PATH)
SPACE_MARGIN_BLOCKS: Final = 2  # plus two per folder made: littlefs metadata pairs


def scanned_paths() -> list[str]:
    """Every board path the hash scan looks at."""
    return [
        *OUR_DIRS,
        *SHADOW_DIRS,
        *TOP_FILES,
        *(p + TMP_SUFFIX for p in TOP_FILES),
    ]


@dataclass
class Plan:
    """The changes, in the order they are made."""

    disarm: bool  # remove /main.py before anything else
    remove: list[str]  # stale files, then folders (deepest first)
    mkdirs: list[str]
    write: list[str]  # library files, build file, config, key; never /main.py
    write_main: bool
    wanted: dict[str, bytes] = field(repr=False)

    @property
    def changes(self) -> bool:
        """Anything at all to do on the board."""
        return bool(self.disarm or self.remove or self.mkdirs or self.write or self.write_main)

    def bytes_to_write(self) -> int:
        """Bytes of every file written, /main.py included."""
        paths = self.write + ([MAIN_PATH] if self.write_main else [])
        return sum(len(self.wanted[p]) for p in paths)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ours(path: str) -> bool:
    return any(path == d or path.startswith(d + "/") for d in (*OUR_DIRS, *SHADOW_DIRS))


def make_plan(wanted: dict[str, bytes], have: FileHashes) -> Plan:
    """The plan that turns have into wanted; wanted holds every file of ours by path."""
    differs = [p for p in sorted(wanted) if _entry_sha(have, p) != _sha(wanted[p])]
    stale_files = sorted(
        p
        for p, entry in have.items()
        if entry is not None and p not in wanted and (_ours(p) or p.endswith(TMP_SUFFIX))
    )
    wanted_dirs = {LIB, *OUR_DIRS}
    for p in wanted:
        parent = p.rsplit("/", 1)[0]
        while parent and parent not in wanted_dirs:
            wanted_dirs.add(parent)
            parent = parent.rsplit("/", 1)[0]
    stale_dirs = sorted(
        (p for p, entry in have.items() if entry is None and _ours(p) and p not in wanted_dirs),
        key=lambda p: (-p.count("/"), p),
    )
    code_changes = any(
        p.startswith(LIB + "/") or p in (MAIN_PATH, BUILD_PATH) for p in differs
    ) or any(_ours(p) for p in stale_files + stale_dirs)
    disarm = code_changes and have.get(MAIN_PATH) is not None
    mkdirs = sorted((d for d in wanted_dirs if not _is_dir(have, d)), key=len)
    write = [p for p in differs if p != MAIN_PATH]
    # library first, then build file, config and key
    order = {BUILD_PATH: 1, CONFIG_PATH: 2, KEY_PATH: 3}
    write.sort(key=lambda p: (order.get(p, 0), p))
    write_main = MAIN_PATH in wanted and (MAIN_PATH in differs or disarm)
    return Plan(disarm, stale_files + stale_dirs, mkdirs, write, write_main, wanted)


def _is_dir(have: FileHashes, path: str) -> bool:
    """path is a folder on the board: listed as one, or something lies below it."""
    if path in have:
        return have[path] is None
    return any(p.startswith(path + "/") for p in have)


def _entry_sha(have: FileHashes, path: str) -> str | None:
    entry = have.get(path)
    return entry[1] if entry is not None else None


def _blocks(size: int, block: int) -> int:
    return max(1, (size + block - 1) // block)  # a small file may be inline: 1 is safe


def check_space(plan: Plan, have: FileHashes, free: int, block: int, port: str) -> int:
    """The bytes the plan needs beyond what it frees; NoSpace before anything is written."""
    block = max(block, 1)
    paths = plan.write + ([MAIN_PATH] if plan.write_main else [])
    new_blocks = sum(_blocks(len(plan.wanted[p]), block) for p in paths)
    freed = 0
    for p in [*plan.remove, *paths, *([MAIN_PATH] if plan.disarm else [])]:
        entry = have.get(p)
        if entry is not None:
            freed += _blocks(entry[0], block)
    peak = max((_blocks(len(plan.wanted[p]), block) for p in paths), default=0)
    margin = SPACE_MARGIN_BLOCKS + 2 * len(plan.mkdirs)
    need = (new_blocks - freed + peak + margin) * block
    if need > free:
        raise NoSpace(
            f"the board has {human_size(max(free, 0))} free, the firmware needs "
            f"{human_size(need)} (nothing was written). Remove other files from the board "
            f"(mpremote connect {port} fs ls /), or erase it with flash_nuke.uf2 and install "
            "MicroPython again",
            free,
        )
    return need
