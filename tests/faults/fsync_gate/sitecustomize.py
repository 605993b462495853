"""Test fault, never shipped: `os.fsync` blocks while the file named by `$FAULT_FSYNC_GATE` exists.

A test puts this directory on a child process's `PYTHONPATH`; Python imports `sitecustomize` at start-up, before the
product's code, so the host runs its own unchanged code path with a disk flush the test can hold open and let go.
While a flush waits at the gate the file `<gate>.blocked` exists, so the test knows a flush is really in flight.
"""

from __future__ import annotations

import contextlib
import os
import time

_GATE = os.environ.get("FAULT_FSYNC_GATE")

if _GATE:
    _real_fsync = os.fsync
    _gate: str = _GATE

    def _gated_fsync(fd: int) -> None:
        if os.path.exists(_gate):
            marker = _gate + ".blocked"
            with open(marker, "a"):
                pass
            while os.path.exists(_gate):
                time.sleep(0.002)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(marker)
        _real_fsync(fd)

    os.fsync = _gated_fsync
