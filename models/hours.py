"""Whole UTC hours of a window: what the hourly rollups can answer for it.

A window [a, b) splits into the whole hours [ha, hb), answered by the rollups,
and the partial hours at its edges, [a, ha) and [hb, b), answered by history.
The rollups hold only the hours before their watermark (models/rollups.py), so
they answer [ha, hw) and history [hw, b), where hw is the watermark clamped to
[ha, hb].
"""

from __future__ import annotations

from datetime import datetime, timedelta

HOUR = timedelta(hours=1)


# A CTE `mark` for queries with the window_params: the watermark (`until`) and hw.
MARK = """mark AS (
    SELECT rolled_up_until AS until,
           greatest(CAST(:ha AS timestamptz), least(CAST(:hb AS timestamptz), rolled_up_until)) AS hw
    FROM rollup_watermark)"""


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
