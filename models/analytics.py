"""The per-vehicle performance aggregation, answered from indexed history.

AC is counted through the links valid at each reading's time: every link of a
meter that has ever fed this vehicle becomes a span [since, next link's since),
and only the meter readings inside both a span of this vehicle and the window
are summed. Each span is one range scan of the (meter_id, ts) primary key, and
DC is one range scan of (vehicle_id, ts): no part of history is scanned whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, text

PERFORMANCE = text(
    """
    WITH spans AS (
        SELECT meter_id, vehicle_id, since,
               lead(since) OVER (PARTITION BY meter_id ORDER BY since) AS until
        FROM meter_links
        WHERE meter_id IN (SELECT meter_id FROM meter_links WHERE vehicle_id = :vehicle_id)
    ), ac AS (
        SELECT coalesce(sum(r.kwh_consumed_ac), 0) AS kwh, count(*) AS n
        FROM spans s
        JOIN meter_readings r
          ON r.meter_id = s.meter_id
         AND r.ts >= greatest(s.since, :from_ts)
         AND r.ts < least(s.until, :to_ts)
        WHERE s.vehicle_id = :vehicle_id
    ), dc AS (
        SELECT coalesce(sum(kwh_delivered_dc), 0) AS kwh, count(*) AS n,
               avg(battery_temp) AS temp
        FROM vehicle_readings
        WHERE vehicle_id = :vehicle_id AND ts >= :from_ts AND ts < :to_ts
    )
    SELECT ac.kwh, ac.n, dc.kwh, dc.n, dc.temp,
           EXISTS (SELECT 1 FROM live_vehicles WHERE vehicle_id = :vehicle_id)
           OR EXISTS (SELECT 1 FROM meter_links WHERE vehicle_id = :vehicle_id)
    FROM ac, dc
    """
)


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
        return self.dc_kwh / self.ac_kwh if self.ac_kwh else None


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
