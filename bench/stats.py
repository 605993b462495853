"""Quantiles and medians the way every workload reports them."""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from typing import Any


def quantile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank quantile (p99.9 of fewer than 1,000 samples is the maximum)."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def median(samples: Sequence[float]) -> float:
    """The median, NaN for no samples."""
    return statistics.median(samples) if samples else float("nan")


def round_report(rows: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """What a per-area benchmark returns: the load average now, every round's row, and each column's median."""
    return {
        "load_average": os.getloadavg(),
        "rounds": list(rows),
        "median": {key: median([row[key] for row in rows]) for key in rows[0]},
    }
