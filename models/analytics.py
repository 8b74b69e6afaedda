"""Per-vehicle analytics, answered from indexed history and its hourly rollups.

AC is counted through the links valid at each reading's time: every link of a
meter that has ever fed this vehicle becomes a span [since, next link's since),
and only the meter readings inside both a span of this vehicle and the window
are summed. Totals take the window's whole hours from the hourly rollups and
the partial hours from history; series take every bucket from history. Each
read is a range scan of a (device, time) primary key: no part of history is
scanned whole, and only the daily partitions inside the window are read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from models.db import read_connection
from models.hours import MARK, ceil_hour_sql, window_params

# The vehicle's AC readings in the window: those of every span [since, next since)
# of a meter link to this vehicle, clipped to the window. The constant window
# bounds repeat what the span bounds imply so the planner can skip the
# partitions outside the window.
VEHICLE_AC_READINGS = """
    (SELECT meter_id, vehicle_id, since,
            lead(since) OVER (PARTITION BY meter_id ORDER BY since) AS until
     FROM meter_links
     WHERE meter_id IN (SELECT meter_id FROM meter_links WHERE vehicle_id = :vehicle_id)) s
    JOIN meter_readings r
      ON r.meter_id = s.meter_id
     AND r.ts >= greatest(s.since, :from_ts) AND r.ts < least(s.until, :to_ts)
     AND r.ts >= :from_ts AND r.ts < :to_ts
    WHERE s.vehicle_id = :vehicle_id
"""

VEHICLE_DC_READINGS = """
    vehicle_readings WHERE vehicle_id = :vehicle_id AND ts >= :from_ts AND ts < :to_ts
"""

# A vehicle is known once it has sent a reading (it has live state) or has a meter linked.
KNOWN_VEHICLE = """
    (EXISTS (SELECT 1 FROM live_vehicles WHERE vehicle_id = :vehicle_id)
     OR EXISTS (SELECT 1 FROM meter_links WHERE vehicle_id = :vehicle_id))
"""

# The window's totals: its whole UTC hours from the hourly rollups (24 rows a
# day per device instead of 1,440), the partial hours from history. For AC each
# link span, clipped to the window, splits the same way: whole hours [hs, he)
# from meter_hourly, and [s, hs) and [he, e) from meter_readings, each an index
# range. Whole hours of the window are [ha, hb) (models/hours.py). Only the
# hours before the rollup watermark w are rolled up (models/rollups.py): the
# rollups serve [ha, hw) and history the rest (`mark`, models/hours.py).
PERFORMANCE = text(
    f"""
    WITH {MARK}, spans AS (
        SELECT meter_id, s, e, {ceil_hour_sql('s')} AS hs,
               least(date_trunc('hour', e, 'UTC'), (SELECT w FROM mark)) AS he
        FROM (SELECT meter_id, vehicle_id, greatest(since, :a) AS s,
                     least(lead(since) OVER (PARTITION BY meter_id ORDER BY since), :b) AS e
              FROM meter_links
              WHERE meter_id IN (SELECT meter_id FROM meter_links WHERE vehicle_id = :vehicle_id)) l
        WHERE vehicle_id = :vehicle_id AND s < e
    ), ac AS (
        SELECT coalesce(sum(kwh), 0) AS kwh, coalesce(sum(n), 0) AS n FROM (
            SELECT r.kwh_consumed_ac AS kwh, r.readings AS n
            FROM spans JOIN meter_hourly r
              ON r.meter_id = spans.meter_id AND r.hour >= spans.hs AND r.hour < spans.he
            UNION ALL
            SELECT m.kwh_consumed_ac, 1
            FROM spans JOIN meter_readings m
              ON m.meter_id = spans.meter_id AND m.ts >= spans.s AND m.ts < least(spans.hs, spans.e)
             AND m.ts >= :a AND m.ts < :b
            UNION ALL
            SELECT m.kwh_consumed_ac, 1
            FROM spans JOIN meter_readings m
              ON m.meter_id = spans.meter_id AND m.ts >= greatest(spans.he, spans.hs) AND m.ts < spans.e
             AND m.ts >= :a AND m.ts < :b
        ) parts
    ), dc AS (
        SELECT coalesce(sum(kwh), 0) AS kwh, coalesce(sum(n), 0) AS n,
               sum(temp_sum) / nullif(sum(n), 0) AS temp FROM (
            SELECT kwh_delivered_dc AS kwh, readings AS n, battery_temp_sum AS temp_sum
            FROM vehicle_hourly
            WHERE vehicle_id = :vehicle_id AND hour >= :ha AND hour < (SELECT hw FROM mark)
            UNION ALL
            SELECT kwh_delivered_dc, 1, battery_temp FROM vehicle_readings
            WHERE vehicle_id = :vehicle_id AND ts >= :a AND ts < :ha
            UNION ALL
            SELECT kwh_delivered_dc, 1, battery_temp FROM vehicle_readings
            WHERE vehicle_id = :vehicle_id AND ts >= (SELECT hw FROM mark) AND ts >= :ha AND ts < :b
        ) parts
    )
    SELECT ac.kwh, ac.n, dc.kwh, dc.n, dc.temp, {KNOWN_VEHICLE}
    FROM ac, dc
    """
)

# Buckets are aligned to UTC midnight (date_bin's origin), every one in the
# window listed, empty ones included, so a chart needs no gap filling.
SERIES = text(
    f"""
    WITH buckets AS (
        SELECT generate_series(date_bin(:bucket, :from_ts, :origin), :to_ts - interval '1 microsecond',
                               :bucket) AS t
    ), ac AS (
        SELECT date_bin(:bucket, r.ts, :origin) AS t, sum(r.kwh_consumed_ac) AS kwh, count(*) AS n
        FROM {VEHICLE_AC_READINGS}
        GROUP BY 1
    ), dc AS (
        SELECT date_bin(:bucket, ts, :origin) AS t, sum(kwh_delivered_dc) AS kwh, count(*) AS n,
               avg(battery_temp) AS temp
        FROM {VEHICLE_DC_READINGS}
        GROUP BY 1
    )
    SELECT buckets.t, coalesce(ac.kwh, 0), coalesce(ac.n, 0), coalesce(dc.kwh, 0),
           coalesce(dc.n, 0), dc.temp
    FROM buckets LEFT JOIN ac USING (t) LEFT JOIN dc USING (t)
    ORDER BY buckets.t
    """
)
BUCKET_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


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

    @property
    def efficiency(self) -> float | None:
        """DC delivered per AC consumed; None when no AC was consumed."""
        return ratio(self.dc_kwh, self.ac_kwh)


def vehicle_performance(
    engine: Engine, vehicle_id: str, from_ts: datetime, to_ts: datetime
) -> Performance | None:
    """Energy totals of the window [from_ts, to_ts); None for an unknown vehicle."""
    params = {"vehicle_id": vehicle_id, **window_params(from_ts.astimezone(UTC), to_ts.astimezone(UTC))}
    with read_connection(engine) as conn:
        ac, ac_n, dc, dc_n, temp, known = conn.execute(PERFORMANCE, params).one()
    if not known:
        return None
    return Performance(float(ac), float(dc), ac_n, dc_n, temp)


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


def vehicle_series(
    engine: Engine, vehicle_id: str, from_ts: datetime, to_ts: datetime, bucket: timedelta
) -> list[Bucket]:
    """The window's figures per time bucket, oldest first."""
    params = {"vehicle_id": vehicle_id, "from_ts": from_ts, "to_ts": to_ts, "bucket": bucket,
              "origin": BUCKET_ORIGIN}
    with read_connection(engine) as conn:
        return [Bucket(*row) for row in conn.execute(SERIES, params)]


def vehicle_known(engine: Engine, vehicle_id: str) -> bool:
    with read_connection(engine) as conn:
        return conn.execute(text(f"SELECT {KNOWN_VEHICLE}"), {"vehicle_id": vehicle_id}).scalar_one()
