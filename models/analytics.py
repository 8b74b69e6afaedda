"""Per-vehicle analytics: a vehicle's totals over a window, and its series per
time bucket, both from the composed figures (models/figures.py): whole days
from daily rollups, whole hours from hourly ones, the edges from history, each
read through a (device, time) primary key range, only in the partitions of the
window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, text

from models.db import execute_prepared, read_connection
from models.figures import BUCKET_ORIGIN, reads_history, vehicle_figures_sql, window_state
from models.windows import DAY, HOUR, Finest, WindowSplit, split_window

# A vehicle is known once it has sent a reading (it has live state) or has a meter linked.
KNOWN_VEHICLE = """
    (EXISTS (SELECT 1 FROM live_vehicles WHERE vehicle_id = :vehicle_id)
     OR EXISTS (SELECT 1 FROM meter_links WHERE vehicle_id = :vehicle_id))
"""

# By `relinked` and whether the window's edges are read from history
# (models/figures.py): (False, False), whole hours and days, is planned once per
# connection and used for every window, since it holds no partition of history
# (the server's generic plan of a prepared statement, chosen after five calls);
# planning the composed query took 2.2 ms of a 3 ms call.
VARIANTS = ((False, False), (False, True), (True, False), (True, True))

# One row always, also for a vehicle without readings in the window.
PERFORMANCE = {(relinked, history): text(vehicle_figures_sql(True, False, relinked, history) + f"""
    SELECT coalesce(f.ac_kwh, 0), coalesce(f.meter_readings, 0), coalesce(f.dc_kwh, 0),
           coalesce(f.vehicle_readings, 0), f.avg_temp, {KNOWN_VEHICLE}
    FROM (SELECT 1) one LEFT JOIN figures f ON true
""") for relinked, history in VARIANTS}

# Every bucket of the window is listed (aligned to UTC midnight, date_bin's
# origin), empty ones included, so a chart needs no gap filling.
SERIES = {(relinked, history): text(vehicle_figures_sql(True, True, relinked, history) + """,
    buckets AS (
        SELECT generate_series(date_bin(:bucket, :start, :origin), :end - interval '1 microsecond',
                               :bucket) AS t
    )
    SELECT buckets.t, coalesce(f.ac_kwh, 0), coalesce(f.meter_readings, 0), coalesce(f.dc_kwh, 0),
           coalesce(f.vehicle_readings, 0), f.avg_temp
    FROM buckets LEFT JOIN figures f USING (t)
    ORDER BY buckets.t
""") for relinked, history in VARIANTS}


def ratio(dc: float, ac: float) -> float | None:
    """DC per AC: None when no AC was consumed, or when the ratio is beyond a
    double (a vanishing AC), which JSON could not carry."""
    if not ac:
        return None
    value = dc / ac
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Performance:
    ac_kwh: float
    dc_kwh: float
    meter_readings: int
    vehicle_readings: int
    avg_battery_temp: float | None
    window: WindowSplit  # its start and end: the window answered

    @property
    def efficiency(self) -> float | None:
        """DC delivered per AC consumed; None when no AC was consumed."""
        return ratio(self.dc_kwh, self.ac_kwh)


def vehicle_performance(
    engine: Engine, vehicle_id: str, from_ts: datetime, to_ts: datetime
) -> Performance | None:
    """Energy totals of the window [from_ts, to_ts); None for an unknown vehicle.

    Two statements, each its own snapshot: rollups the watermark moves past
    meanwhile are complete, and hourly ones stop being read an hour before
    they are deleted (models/roll_up.py), so the split stays valid."""
    with read_connection(engine) as conn:
        marks, relinked = window_state(conn, from_ts, to_ts, vehicle_id)
        split = split_window(from_ts, to_ts, marks)
        statement = PERFORMANCE[relinked, reads_history(split)]
        ac, ac_n, dc, dc_n, temp, known = execute_prepared(
            conn, statement, {"vehicle_id": vehicle_id, **split.params()}).fetchone()
    if not known:
        return None
    return Performance(float(ac), float(dc), ac_n, dc_n, temp, split)


@dataclass(frozen=True)
class Bucket:
    start: datetime
    ac_kwh: float
    meter_readings: int
    dc_kwh: float
    vehicle_readings: int
    avg_battery_temp: float | None

    @property
    def efficiency(self) -> float | None:
        return ratio(self.dc_kwh, self.ac_kwh)


def _finest(bucket: timedelta) -> Finest:
    """The coarsest rollup a bucket can be summed from."""
    if bucket % DAY == timedelta(0):
        return Finest.DAY
    return Finest.HOUR if bucket % HOUR == timedelta(0) else Finest.NONE


def vehicle_series(
    engine: Engine, vehicle_id: str, from_ts: datetime, to_ts: datetime, bucket: timedelta
) -> tuple[list[Bucket], WindowSplit]:
    """The window's figures per time bucket, oldest first, and the window answered."""
    with read_connection(engine) as conn:
        marks, relinked = window_state(conn, from_ts, to_ts, vehicle_id)
        split = split_window(from_ts, to_ts, marks, _finest(bucket))
        params = {"vehicle_id": vehicle_id, "bucket": bucket, "origin": BUCKET_ORIGIN,
                  **split.params()}
        statement = SERIES[relinked, reads_history(split)]
        return [Bucket(*row) for row in execute_prepared(conn, statement, params)], split


def bucket_count(from_ts: datetime, to_ts: datetime, bucket: timedelta) -> int:
    """How many buckets a series of [from_ts, to_ts) lists: from the one holding
    from_ts to the one holding the window's last instant."""
    first = from_ts - (from_ts - BUCKET_ORIGIN) % bucket
    return -(-(to_ts - first) // bucket)


def vehicle_known(engine: Engine, vehicle_id: str) -> bool:
    with read_connection(engine) as conn:
        return conn.execute(text(f"SELECT {KNOWN_VEHICLE}"), {"vehicle_id": vehicle_id}).scalar_one()
