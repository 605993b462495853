"""Quantiles and medians the way every workload reports them."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def quantile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank quantile (p99.9 of fewer than 1,000 samples is the maximum)."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def median(samples: Sequence[float]) -> float:
    """The median, NaN for no samples."""
    return statistics.median(samples) if samples else float("nan")
