"""Fleet-wide analytics over a window, from the hourly rollups plus the raw
readings of the partial hours at the window's edges.

A window [a, b) splits into whole UTC hours [ha, hb), read from the rollups (one
row per device-hour) as far as they are rolled up (to hw, models/hours.py),
and the rest, [a, ha) and [hw, b), read from history through its BRIN time
index. AC is attributed through the meter links valid at
each reading's time: a link's span [since, next since) clipped to the window
takes its whole hours from the rollups and its partial hours from history.
The sums equal those of raw history (tests/test_fleet.py proves it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, text

from models.analytics import ratio
from models.db import read_connection
from models.hours import ceil_hour_sql, rolled_up_params, window_params
from models.rollups import rolled_up_until

PER_VEHICLE = f"""
WITH spans AS (
    SELECT meter_id, vehicle_id, greatest(since, :a) AS s,
           least(lead(since) OVER (PARTITION BY meter_id ORDER BY since), :b) AS e
    FROM meter_links
), span_hours AS (
    SELECT meter_id, vehicle_id, s, e, {ceil_hour_sql('s')} AS hs,
           least(date_trunc('hour', e, 'UTC'), :w) AS he
    FROM spans WHERE s < e
), ac_parts AS (
    -- whole hours of each span
    SELECT sp.vehicle_id, r.kwh_consumed_ac AS kwh, r.readings AS n
    FROM span_hours sp JOIN meter_hourly r
      ON r.meter_id = sp.meter_id AND r.hour >= sp.hs AND r.hour < sp.he
     AND r.hour >= :ha AND r.hour < :hb
    UNION ALL
    -- the window's edges, and its hours not rolled up yet
    SELECT sp.vehicle_id, m.kwh_consumed_ac, 1
    FROM meter_readings m JOIN span_hours sp
      ON m.meter_id = sp.meter_id AND m.ts >= sp.s AND m.ts < sp.e
    WHERE (m.ts >= :a AND m.ts < :ha) OR (m.ts >= :hw AND m.ts < :b)
    UNION ALL
    -- partial hours around links that start or end inside the window
    SELECT sp.vehicle_id, m.kwh_consumed_ac, 1
    FROM span_hours sp JOIN meter_readings m
      ON m.meter_id = sp.meter_id AND m.ts >= sp.s AND m.ts < sp.e
     AND m.ts >= :ha AND m.ts < :hw
     AND (m.ts < sp.hs OR m.ts >= greatest(sp.he, sp.hs))
    WHERE sp.s > :a OR sp.e < :b
), ac AS (
    SELECT vehicle_id, sum(kwh) AS kwh, sum(n) AS n FROM ac_parts GROUP BY vehicle_id
), dc_parts AS (
    SELECT vehicle_id, kwh_delivered_dc AS kwh, battery_temp_sum AS temp_sum,
           battery_temp_max AS temp_max, readings AS n
    FROM vehicle_hourly WHERE hour >= :ha AND hour < :hw
    UNION ALL
    SELECT vehicle_id, kwh_delivered_dc, battery_temp, battery_temp, 1
    FROM vehicle_readings
    WHERE (ts >= :a AND ts < :ha) OR (ts >= :hw AND ts < :b)
), dc AS (
    SELECT vehicle_id, sum(kwh) AS kwh, sum(temp_sum) AS temp_sum, max(temp_max) AS temp_max,
           sum(n) AS n
    FROM dc_parts GROUP BY vehicle_id
)
SELECT vehicle_id,
       coalesce(ac.kwh, 0) AS ac_kwh, coalesce(dc.kwh, 0) AS dc_kwh,
       -- numeric: a vanishing AC must not overflow the sort
       coalesce(dc.kwh, 0)::numeric / nullif(ac.kwh, 0)::numeric AS efficiency,
       dc.temp_sum / nullif(dc.n, 0) AS avg_temp, dc.temp_max AS max_temp,
       coalesce(ac.n, 0) AS meter_readings, coalesce(dc.n, 0) AS vehicle_readings
FROM ac FULL JOIN dc USING (vehicle_id)
"""

# The totals row always comes back, joined to the page's rows (none past the end).
FLEET_PAGE = """
WITH v AS (""" + PER_VEHICLE + """), totals AS (
    SELECT count(*) AS total_vehicles, coalesce(sum(ac_kwh), 0) AS total_ac,
           coalesce(sum(dc_kwh), 0) AS total_dc,
           coalesce(sum(meter_readings), 0)::bigint AS total_meter_readings,
           coalesce(sum(vehicle_readings), 0)::bigint AS total_vehicle_readings,
           -- vehicles per efficiency bin: below 0.5, 0.05 wide up to 1.0, then 1.0 and above
           (SELECT array_agg(coalesce(n, 0) ORDER BY bin) FROM generate_series(0, 11) bin
            LEFT JOIN (SELECT width_bucket(efficiency, 0.5, 1.0, 10) AS bin, count(*) AS n
                       FROM v WHERE efficiency IS NOT NULL GROUP BY 1) h USING (bin)) AS histogram
    FROM v
)
SELECT totals.*, page.*
FROM totals LEFT JOIN LATERAL (
    -- matched: the vehicles the search finds, for paging through them
    SELECT v.*, live.soc AS live_soc, live.ts AS last_seen, count(*) OVER () AS matched
    FROM v LEFT JOIN live_vehicles live USING (vehicle_id)
    WHERE strpos(lower(vehicle_id), lower(:search)) > 0
    ORDER BY {order} LIMIT :limit OFFSET :offset
) page ON true
"""

# The bins of the efficiency histogram: (from, to), None for unbounded.
HISTOGRAM_EDGES = [(None, 0.5), *((round(0.5 + i * 0.05, 2), round(0.55 + i * 0.05, 2)) for i in range(10)),
                   (1.0, None)]

SORT_COLUMNS = {
    "efficiency": "efficiency", "ac": "ac_kwh", "dc": "dc_kwh", "temperature": "avg_temp",
    "vehicleId": "vehicle_id",
}


@dataclass(frozen=True)
class VehicleFigures:
    vehicle_id: str
    ac_kwh: float
    dc_kwh: float
    avg_temp: float | None
    max_temp: float | None
    meter_readings: int
    vehicle_readings: int
    # From live state, on a fleet page only.
    live_soc: float | None = None
    last_seen: datetime | None = None

    @property
    def efficiency(self) -> float | None:
        return ratio(self.dc_kwh, self.ac_kwh)

    @classmethod
    def of(cls, row) -> VehicleFigures:
        return cls(row.vehicle_id, row.ac_kwh, row.dc_kwh, row.avg_temp, row.max_temp,
                   row.meter_readings, row.vehicle_readings, getattr(row, "live_soc", None),
                   getattr(row, "last_seen", None))


@dataclass(frozen=True)
class FleetPage:
    vehicles: list[VehicleFigures]
    total_vehicles: int
    total_ac_kwh: float
    total_dc_kwh: float
    total_meter_readings: int
    total_vehicle_readings: int
    matched: int = 0
    efficiency_histogram: list[int] | None = None  # HISTOGRAM_EDGES' bins


def fleet_page(engine: Engine, a: datetime, b: datetime, sort: str, descending: bool,
               limit: int, offset: int, search: str = "") -> FleetPage:
    """Per-vehicle figures over [a, b) of the vehicles whose id contains `search`
    (any case), sorted and paged, with the whole fleet's totals.

    `a` and `b` must be in UTC (whole hours are UTC hours)."""
    direction = "DESC" if descending else "ASC"
    order = f"{SORT_COLUMNS[sort]} {direction} NULLS LAST, vehicle_id"
    with read_connection(engine) as conn:
        params = {**rolled_up_params(window_params(a, b), rolled_up_until(conn)),
                  "limit": limit, "offset": offset, "search": search}
        rows = conn.execute(text(FLEET_PAGE.format(order=order)), params).all()
    t = rows[0]
    page = [VehicleFigures.of(row) for row in rows if row.vehicle_id is not None]
    return FleetPage(page, t.total_vehicles, t.total_ac, t.total_dc, t.total_meter_readings,
                     t.total_vehicle_readings, t.matched or 0, t.histogram)


def all_vehicles(engine: Engine, a: datetime, b: datetime) -> list[VehicleFigures]:
    """Every vehicle with readings or AC in [a, b) (for alert evaluation)."""
    with read_connection(engine) as conn:
        params = rolled_up_params(window_params(a, b), rolled_up_until(conn))
        rows = conn.execute(text(PER_VEHICLE), params).all()
    return [VehicleFigures.of(row) for row in rows]
