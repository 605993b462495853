"""CPU time of another process (or one of its threads) from Linux's `/proc`: what the per-area benchmarks compare.

Benchmarks on a shared machine compare CPU seconds rather than wall time where they can; every tool reads them the
same way from here (fields 14 and 15 of `stat`, user + system, in clock ticks).
"""

from __future__ import annotations

import os
from pathlib import Path


def _stat_cpu(path: str) -> float:
    try:
        fields = Path(path).read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0.0 where there is no /proc)."""
    return _stat_cpu(f"/proc/{pid}/stat")


def thread_cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds of one thread of `pid` (its main thread by default) so far."""
    return _stat_cpu(f"/proc/{pid}/task/{pid if tid is None else tid}/stat")
