"""The per-vehicle performance aggregation, answered from indexed history.

AC is counted through the links valid at each reading's time: every link of a
meter that has ever fed this vehicle becomes a span [since, next link's since),
and only the meter readings inside both a span of this vehicle and the window
are summed. Each span is one range scan of the (meter_id, ts) primary key, and
DC is one range scan of (vehicle_id, ts): no part of history is scanned whole,
and only the daily partitions inside the window are read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

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

PERFORMANCE = text(
    f"""
    WITH ac AS (
        SELECT coalesce(sum(r.kwh_consumed_ac), 0) AS kwh, count(*) AS n
        FROM {VEHICLE_AC_READINGS}
    ), dc AS (
        SELECT coalesce(sum(kwh_delivered_dc), 0) AS kwh, count(*) AS n,
               avg(battery_temp) AS temp
        FROM {VEHICLE_DC_READINGS}
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
    params = {"vehicle_id": vehicle_id, "from_ts": from_ts, "to_ts": to_ts}
    with engine.connect() as conn:
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
    with engine.connect() as conn:
        return [Bucket(*row) for row in conn.execute(SERIES, params)]


def vehicle_known(engine: Engine, vehicle_id: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT {KNOWN_VEHICLE}"), {"vehicle_id": vehicle_id}).scalar_one()
