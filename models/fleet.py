"""Fleet-wide analytics over a window: every vehicle's figures, composed from
daily, 6-hour, hourly and 15-minute rollups and the history of the window's edges
(models/figures.py), sorted and paged, with the fleet's totals. The sums equal
those of raw history (tests/test_long_windows.py proves it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, text

from models.analytics import ratio
from models.db import read_connection
from models.figures import reads_history, vehicle_figures_sql, window_state
from models.windows import WindowSplit, split_window

# By `relinked` and whether history is read (models/figures.py).
PER_VEHICLE = {(relinked, history): vehicle_figures_sql(False, False, relinked, history) + """
    SELECT figures.*,
           -- numeric: a vanishing AC must not overflow the sort
           dc_kwh::numeric / nullif(ac_kwh, 0)::numeric AS efficiency
    FROM figures
""" for relinked in (False, True) for history in (False, True)}

# The totals row always comes back, joined to the page's rows (none past the end).
# Live state is joined to the page's rows only; `matched` counts the vehicles the
# search finds, for paging through them.
FLEET_PAGE = """
WITH v AS ({per_vehicle}), totals AS (
    SELECT count(*) AS total_vehicles, coalesce(sum(ac_kwh), 0) AS total_ac,
           coalesce(sum(dc_kwh), 0) AS total_dc,
           coalesce(sum(meter_readings), 0)::bigint AS total_meter_readings,
           coalesce(sum(vehicle_readings), 0)::bigint AS total_vehicle_readings,
           count(*) FILTER (WHERE {found}) AS matched,
           -- vehicles per efficiency bin: below 0.5, 0.05 wide up to 1.0, then 1.0 and above
           (SELECT array_agg(coalesce(n, 0) ORDER BY bin) FROM generate_series(0, 11) bin
            LEFT JOIN (SELECT width_bucket(efficiency, 0.5, 1.0, 10) AS bin, count(*) AS n
                       FROM v WHERE efficiency IS NOT NULL GROUP BY 1) h USING (bin)) AS histogram
    FROM v
)
SELECT totals.*, page.*
FROM totals LEFT JOIN LATERAL (
    SELECT p.*, live.soc AS live_soc, live.ts AS last_seen
    FROM (SELECT * FROM v WHERE {found} ORDER BY {order} LIMIT :limit OFFSET :offset) p
    LEFT JOIN live_vehicles live USING (vehicle_id)
    ORDER BY {order}
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
    window: WindowSplit  # its start and end: the window answered
    matched: int = 0
    efficiency_histogram: list[int] | None = None  # HISTOGRAM_EDGES' bins


def fleet_page(engine: Engine, from_ts: datetime, to_ts: datetime, sort: str, descending: bool,
               limit: int, offset: int, search: str = "") -> FleetPage:
    """Per-vehicle figures over [from_ts, to_ts) of the vehicles whose id contains
    `search` (any case), sorted and paged, with the whole fleet's totals.

    The rollup marks are read first, so that the query's time bounds are
    constants to the planner (partitions skipped, indexes chosen)."""
    direction = "DESC" if descending else "ASC"
    order = f"{SORT_COLUMNS[sort]} {direction} NULLS LAST, vehicle_id"
    with read_connection(engine) as conn:
        marks, relinked = window_state(conn, from_ts, to_ts)
        split = split_window(from_ts, to_ts, marks, fleet=True)
        params = {**split.params(), "limit": limit, "offset": offset, "search": search}
        per_vehicle = PER_VEHICLE[relinked, reads_history(split)]
        # An empty search finds every vehicle: no filter for the planner to estimate.
        found = "strpos(lower(vehicle_id), lower(:search)) > 0" if search else "true"
        sql = FLEET_PAGE.format(per_vehicle=per_vehicle, order=order, found=found)
        rows = conn.execute(text(sql), params).all()
    totals = rows[0]
    page = [VehicleFigures.of(row) for row in rows if row.vehicle_id is not None]
    return FleetPage(page, totals.total_vehicles, totals.total_ac, totals.total_dc,
                     totals.total_meter_readings, totals.total_vehicle_readings, split,
                     totals.matched or 0, totals.histogram)


def all_vehicles(engine: Engine, from_ts: datetime, to_ts: datetime) -> list[VehicleFigures]:
    """Every vehicle with readings or AC in [from_ts, to_ts) (for alert evaluation)."""
    with read_connection(engine) as conn:
        marks, relinked = window_state(conn, from_ts, to_ts)
        split = split_window(from_ts, to_ts, marks, fleet=True)
        per_vehicle = PER_VEHICLE[relinked, reads_history(split)]
        rows = conn.execute(text(per_vehicle), split.params()).all()
    return [VehicleFigures.of(row) for row in rows]
