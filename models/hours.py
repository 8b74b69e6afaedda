"""Whole UTC hours of a window: what the hourly rollups can answer for it.

A window [a, b) splits into the whole hours [ha, hb), answered by the rollups,
and the partial hours at its edges, [a, ha) and [hb, b), answered by history.
The rollups hold only the hours before their watermark w (models/rollups.py),
so they answer [ha, hw) and history [hw, b), where hw is w clamped to [ha, hb].
The watermark is read before the query, not in it: as constants, the bounds let
the planner skip partitions and pick the time index. A watermark that moves on
meanwhile is harmless, as history holds every reading.
"""

from __future__ import annotations

from datetime import datetime, timedelta

HOUR = timedelta(hours=1)


def ceil_hour_sql(x: str) -> str:
    """SQL for the first whole UTC hour at or after the timestamp expression x."""
    return (f"(date_trunc('hour', {x}, 'UTC') + CASE WHEN date_trunc('hour', {x}, 'UTC') = {x}"
            f" THEN interval '0' ELSE interval '1 hour' END)")


def window_params(a: datetime, b: datetime, rolled_up_until: datetime) -> dict[str, datetime]:
    """The window, its whole hours [ha, hb) (with no whole hour, ha = hb = b), the
    rollup watermark w, and hw, where the rollups' part of the window ends.

    `a` and `b` must be in UTC."""
    ha = a.replace(minute=0, second=0, microsecond=0)
    if ha != a:
        ha += HOUR
    hb = b.replace(minute=0, second=0, microsecond=0)
    if ha >= hb:
        ha = hb = b
    hw = max(ha, min(hb, rolled_up_until))
    return {"a": a, "b": b, "ha": ha, "hb": hb, "w": rolled_up_until, "hw": hw}
