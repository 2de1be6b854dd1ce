"""Under pytest the MicroPython test modules import the firmware as `amtfw` and the
fake hardware as `machine`, as they do inside the VMs."""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
for _path in (
    _ROOT / "firmware_micropython",
    _ROOT / "tools" / "sim" / "vm",
    Path(__file__).parent,
):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
