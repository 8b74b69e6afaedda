"""The two statistics the bench reports: nearest-rank percentiles, and medians of runs."""

from __future__ import annotations

import statistics


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median_of(runs: list[dict], key: str):
    """The median of a value over runs (None where no run has it); of a yes/no, the majority."""
    values = [r[key] for r in runs if r.get(key) is not None]
    if not values:
        return None
    if isinstance(values[0], bool):
        return sum(values) * 2 > len(values)
    return statistics.median(values)
