"""Whole UTC hours of a window: what the hourly rollups can answer for it.

A window [a, b) splits into the whole hours [ha, hb), answered by the rollups,
and the partial hours at its edges, [a, ha) and [hb, b), answered by history.
The rollups hold only the hours before their watermark w (models/rollups.py),
so they answer [ha, hw) and history [hw, b), where hw is w clamped to [ha, hb].
Fleet-wide queries read the watermark first (`rolled_up_params`): as constants,
the bounds let the planner skip partitions and pick the time index. A
watermark that moves on meanwhile is harmless, as history holds every reading.
A per-vehicle query reads it in the query itself (MARK), saving a round trip:
its reads are index ranges of one device either way.
"""

from __future__ import annotations

from datetime import datetime, timedelta

HOUR = timedelta(hours=1)


def ceil_hour_sql(x: str) -> str:
    """SQL for the first whole UTC hour at or after the timestamp expression x."""
    return (f"(date_trunc('hour', {x}, 'UTC') + CASE WHEN date_trunc('hour', {x}, 'UTC') = {x}"
            f" THEN interval '0' ELSE interval '1 hour' END)")


def window_params(a: datetime, b: datetime) -> dict[str, datetime]:
    """The window and its whole hours [ha, hb); with no whole hour, ha = hb = b.

    `a` and `b` must be in UTC."""
    ha = a.replace(minute=0, second=0, microsecond=0)
    if ha != a:
        ha += HOUR
    hb = b.replace(minute=0, second=0, microsecond=0)
    if ha >= hb:
        ha = hb = b
    return {"a": a, "b": b, "ha": ha, "hb": hb}


def rolled_up_params(window: dict[str, datetime], rolled_up_until: datetime) -> dict[str, datetime]:
    """The window_params with the watermark w and hw, where the rollups' part ends."""
    hw = max(window["ha"], min(window["hb"], rolled_up_until))
    return {**window, "w": rolled_up_until, "hw": hw}


# The same w and hw, read by the query itself: a CTE `mark` for queries with window_params.
MARK = """mark AS (
    SELECT rolled_up_until AS w,
           greatest(CAST(:ha AS timestamptz), least(CAST(:hb AS timestamptz), rolled_up_until)) AS hw
    FROM rollup_watermark)"""
