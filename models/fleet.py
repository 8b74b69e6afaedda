"""Fleet-wide analytics over a window: every vehicle's figures, composed from
daily and hourly rollups and the history of the window's edges
(models/figures.py), sorted and paged, with the fleet's totals. The sums equal
those of raw history (tests/test_long_windows.py proves it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, text

from models.analytics import ratio
from models.db import read_connection
from models.figures import vehicle_figures_sql, window_state
from models.windows import WindowSplit, split_window

# By `relinked` (models/figures.py).
PER_VEHICLE = {relinked: vehicle_figures_sql(False, False, relinked) + """
    SELECT figures.*,
           -- numeric: a vanishing AC must not overflow the sort
           dc_kwh::numeric / nullif(ac_kwh, 0)::numeric AS efficiency
    FROM figures
""" for relinked in (False, True)}

# The totals row always comes back, joined to the page's rows (none past the end).
FLEET_PAGE = """
WITH v AS ({per_vehicle}), totals AS (
    SELECT count(*) AS total_vehicles, coalesce(sum(ac_kwh), 0) AS total_ac,
           coalesce(sum(dc_kwh), 0) AS total_dc,
           coalesce(sum(meter_readings), 0)::bigint AS total_meter_readings,
           coalesce(sum(vehicle_readings), 0)::bigint AS total_vehicle_readings
    FROM v
)
SELECT totals.*, page.*
FROM totals LEFT JOIN LATERAL (
    SELECT * FROM v ORDER BY {order} LIMIT :limit OFFSET :offset
) page ON true
"""

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

    @property
    def efficiency(self) -> float | None:
        return ratio(self.dc_kwh, self.ac_kwh)

    @classmethod
    def of(cls, row) -> VehicleFigures:
        return cls(row.vehicle_id, row.ac_kwh, row.dc_kwh, row.avg_temp, row.max_temp,
                   row.meter_readings, row.vehicle_readings)


@dataclass(frozen=True)
class FleetPage:
    vehicles: list[VehicleFigures]
    total_vehicles: int
    total_ac_kwh: float
    total_dc_kwh: float
    total_meter_readings: int
    total_vehicle_readings: int
    window: WindowSplit  # its start and end: the window answered


def fleet_page(engine: Engine, from_ts: datetime, to_ts: datetime, sort: str, descending: bool,
               limit: int, offset: int) -> FleetPage:
    """Per-vehicle figures over [from_ts, to_ts), sorted and paged, with the fleet's totals.

    The rollup marks are read first, so that the query's time bounds are
    constants to the planner (partitions skipped, indexes chosen)."""
    direction = "DESC" if descending else "ASC"
    order = f"{SORT_COLUMNS[sort]} {direction} NULLS LAST, vehicle_id"
    with read_connection(engine) as conn:
        marks, relinked = window_state(conn, from_ts, to_ts)
        split = split_window(from_ts, to_ts, marks)
        params = {**split.params(), "limit": limit, "offset": offset}
        sql = FLEET_PAGE.format(per_vehicle=PER_VEHICLE[relinked], order=order)
        rows = conn.execute(text(sql), params).all()
    totals = rows[0]
    page = [VehicleFigures.of(row) for row in rows if row.vehicle_id is not None]
    return FleetPage(page, totals.total_vehicles, totals.total_ac, totals.total_dc,
                     totals.total_meter_readings, totals.total_vehicle_readings, split)


def all_vehicles(engine: Engine, from_ts: datetime, to_ts: datetime) -> list[VehicleFigures]:
    """Every vehicle with readings or AC in [from_ts, to_ts) (for alert evaluation)."""
    with read_connection(engine) as conn:
        marks, relinked = window_state(conn, from_ts, to_ts)
        split = split_window(from_ts, to_ts, marks)
        rows = conn.execute(text(PER_VEHICLE[relinked]), split.params()).all()
    return [VehicleFigures.of(row) for row in rows]
