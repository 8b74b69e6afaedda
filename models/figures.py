"""The one query behind every analytics figure: per vehicle (and per time bucket,
for series), AC, DC, battery temperature and reading counts over a window,
composed from daily, hourly and (fleet-wide) 6-hour and 15-minute rollups and
history as the window's split says (models/windows.py).

AC is attributed through the meter links valid at each reading's time: each
link span, clipped to the window, is cut like the window (`SPAN_SPLIT`). Rollup
rows are joined by time ranges the planner sees as constants; history (the
edges) is read device by device through its (device, time) primary key, inside
a LATERAL aggregate the planner cannot flatten into a scan of every device's
rows, so an edge costs its own readings whatever order history was loaded in.
Devices are taken from live state (every device that stored a reading has a
row there) and from the links.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, text

from models.db import execute_prepared
from models.rollups import UNITS
from models.windows import SPAN_SPLIT, RollupMarks, WindowSplit

BUCKET_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


def _bucket(column: str, bucketed: bool) -> str:
    """The bucket column of a part (`t`), when the figures are per bucket."""
    return f"date_bin(:bucket, {column}, :origin) AS t, " if bucketed else ""


def _lateral(device: str, sums: str, table: str, condition: str, bucketed: bool) -> str:
    """One device's rows of `table` (alias x) under `condition`, summed (per bucket)."""
    time = "x.hour" if table.endswith("_hourly") else "x.ts"
    group = " GROUP BY 1" if bucketed else ""
    return (f"CROSS JOIN LATERAL (SELECT {_bucket(time, bucketed)}{sums} FROM {table} x"
            f" WHERE x.{device} = {condition}{group} HAVING count(*) > 0) p")


METER_SUMS = "sum(x.kwh_consumed_ac) AS kwh, count(*) AS n"
METER_ROLLUP_SUMS = "sum(x.kwh_consumed_ac) AS kwh, sum(x.readings) AS n"
VEHICLE_SUMS = ("sum(x.kwh_delivered_dc) AS kwh, sum(x.battery_temp) AS temp_sum,"
                " max(x.battery_temp) AS temp_max, count(*) AS n")


def _ac_history(bucketed: bool, relinked: bool) -> str:
    """AC of each span's history: the window's edges (and, relinked, wherever a
    span's own edges lie)."""
    t = "p.t, " if bucketed else ""
    edges = [("sp.s", "sp.h1", ":start", ":quarters_start"), ("sp.h2", "sp.e", ":quarters_end", ":end")]
    if relinked:
        edges = [(a, b, ":start", ":end") for a, b, _, _ in edges]
    return "".join(f"""
        UNION ALL
        SELECT sp.vehicle_id, {t}p.kwh, p.n FROM span_split sp {_lateral(
            'meter_id', METER_SUMS, 'meter_readings',
            f'sp.meter_id AND x.ts >= {a} AND x.ts < {b} AND x.ts >= {lo} AND x.ts < {hi}', bucketed)}"""
        for a, b, lo, hi in edges)


def _ac_parts(one_vehicle: bool, bucketed: bool, relinked: bool, history: bool) -> str:
    """AC of each span. Without links starting inside the window, every span is
    the whole window, and its history is the window's edges: constant bounds
    that leave the planner one or two partitions to plan. With them, a span's
    history may lie anywhere in the window, and hours of its days are cut too."""
    if uses_fleet_cuts(one_vehicle, relinked):
        return _fleet_ac_parts(bucketed, history)
    t = "p.t, " if bucketed else ""
    history = _ac_history(bucketed, relinked) if history else ""
    cut_days = f"""
        UNION ALL
        -- hours of the window's days that a link starting or ending mid-day cuts
        SELECT sp.vehicle_id, {t}p.kwh, p.n FROM span_split sp {_lateral(
            'meter_id', METER_ROLLUP_SUMS, 'meter_hourly',
            'sp.meter_id AND x.hour >= :days_start AND x.hour < :days_end'
            ' AND ((x.hour >= sp.h1 AND x.hour < sp.d1) OR (x.hour >= sp.d2 AND x.hour < sp.h2))',
            bucketed)}
        WHERE sp.s > :days_start OR sp.e < :days_end""" if relinked else ""
    window_hours = ("((x.hour >= :hours_start AND x.hour < :days_start)"
                    " OR (x.hour >= :days_end AND x.hour < :rolled_end))")
    if one_vehicle:  # each meter's own hours: the planner chose the fleet's hour index
        hours = "".join(f"""
        UNION ALL
        SELECT sp.vehicle_id, {t}p.kwh, p.n FROM span_split sp {_lateral(
            'meter_id', METER_ROLLUP_SUMS, 'meter_hourly',
            f'sp.meter_id AND x.hour >= {a} AND x.hour < {b} AND {window_hours}', bucketed)}"""
            for a, b in (("sp.h1", "sp.d1"), ("sp.d2", "sp.h2")))
    else:  # an hour of the fleet lies together (rolled up range by range)
        hours = f"""
        UNION ALL
        SELECT sp.vehicle_id, {_bucket('x.hour', bucketed)}x.kwh_consumed_ac, x.readings
        FROM span_split sp JOIN meter_hourly x ON x.meter_id = sp.meter_id
         AND ((x.hour >= sp.h1 AND x.hour < sp.d1) OR (x.hour >= sp.d2 AND x.hour < sp.h2))
         AND {window_hours}"""
    return f"""
    ac_parts AS (
        SELECT sp.vehicle_id, {_bucket('r.day', bucketed)}r.kwh_consumed_ac AS kwh, r.readings AS n
        FROM span_split sp JOIN meter_daily r ON r.meter_id = sp.meter_id
         AND r.day >= sp.d1 AND r.day < sp.d2 AND r.day >= :days_start AND r.day < :days_end
{hours}{cut_days}{history}
    )"""


# The rollup pieces of a window (models/windows.py) as (unit, from, to),
# fleet-wide (with quarter hours and 6-hour blocks) or not.
PIECES = [("daily", "days_start", "days_end"),
          ("hourly", "hours_start", "days_start"),
          ("hourly", "days_end", "rolled_end")]
FLEET_PIECES = [("daily", "days_start", "days_end"),
                ("hourly", "hours_start", "before_blocks_start"),
                ("6h", "before_blocks_start", "before_blocks_end"),
                ("hourly", "before_blocks_end", "days_start"),
                ("hourly", "days_end", "after_blocks_start"),
                ("6h", "after_blocks_start", "after_blocks_end"),
                ("hourly", "after_blocks_end", "rolled_end"),
                ("15min", "quarters_start", "hours_start"),
                ("15min", "rolled_end", "quarters_end")]


def _rollup_pieces(kind: str, columns: str, fleet: bool, bucketed: bool, only: str = "") -> list[str]:
    """SELECTs of `columns` from each rollup piece of the window (PIECES)."""
    return [f"SELECT {kind}_id, {_bucket(UNITS[unit][0], bucketed)}{columns} FROM {kind}_{unit}"
            f" WHERE {UNITS[unit][0]} >= :{a} AND {UNITS[unit][0]} < :{b} {only}"
            for unit, a, b in (FLEET_PIECES if fleet else PIECES)]


def _fleet_ac_parts(bucketed: bool, history: bool) -> str:
    """AC of each span when every span is the whole window (fleet-wide, no link
    starting inside it): every meter's rollups of the window are summed first,
    then given to its span's vehicle, so that each rollup row is hashed once."""
    t = "t, " if bucketed else ""
    union = "\n            UNION ALL ".join(
        _rollup_pieces("meter", "kwh_consumed_ac AS kwh, readings AS n", True, bucketed))
    return f"""
    meter_sums AS (
        SELECT meter_id, {t}sum(kwh) AS kwh, sum(n) AS n FROM (
            {union}) p
        GROUP BY meter_id{', t' if bucketed else ''}
    ),
    ac_parts AS (
        SELECT sp.vehicle_id, {'m.t, ' if bucketed else ''}m.kwh, m.n
        FROM span_split sp JOIN meter_sums m USING (meter_id)
{_ac_history(bucketed, False) if history else ''}
    )"""


def _dc_parts(one_vehicle: bool, bucketed: bool, relinked: bool, history: bool) -> str:
    t = "p.t, " if bucketed else ""
    only = "AND vehicle_id = :vehicle_id" if one_vehicle else ""
    live = "WHERE v.vehicle_id = :vehicle_id" if one_vehicle else ""
    edges = [
        f"SELECT v.vehicle_id, {t}p.kwh, p.temp_sum, p.temp_max, p.n FROM live_vehicles v "
        + _lateral('vehicle_id', VEHICLE_SUMS, 'vehicle_readings',
                   f'v.vehicle_id AND x.ts >= :{a} AND x.ts < :{b}', bucketed) + f" {live}"
        for a, b in (("start", "quarters_start"), ("quarters_end", "end"))
    ] if history else []
    columns = ("kwh_delivered_dc AS kwh, battery_temp_sum AS temp_sum,"
               " battery_temp_max AS temp_max, readings AS n")
    parts = [*_rollup_pieces("vehicle", columns, uses_fleet_cuts(one_vehicle, relinked), bucketed, only),
             *edges]
    return "\n    dc_parts AS (\n        " + "\n        UNION ALL\n        ".join(parts) + "\n    )"


def vehicle_figures_sql(one_vehicle: bool, bucketed: bool, relinked: bool,
                        history: bool = True) -> str:
    """`WITH ...` ending in the CTE `figures`: vehicle_id (and t, the bucket's
    start, when `bucketed`), ac_kwh, dc_kwh, avg_temp, max_temp, meter_readings,
    vehicle_readings, for the vehicles with readings or AC in the window (only
    :vehicle_id when `one_vehicle`). Parameters: WindowSplit.params(), and
    :bucket and :origin when bucketed. `relinked`: whether a link of the
    meters concerned starts inside the window (`window_state`). Without
    `history` (for a window that reads none: `reads_history`), no partition of
    history is in the query, so the server can plan it once for every window."""
    links = ("WHERE meter_id IN (SELECT meter_id FROM meter_links WHERE vehicle_id = :vehicle_id)"
             if one_vehicle else "")
    span_filter = "AND vehicle_id = :vehicle_id" if one_vehicle else ""
    keys = "vehicle_id, t" if bucketed else "vehicle_id"
    return f"""
    WITH {SPAN_SPLIT.format(links=links, span_filter=span_filter)},
    {_ac_parts(one_vehicle, bucketed, relinked, history)},
    {_dc_parts(one_vehicle, bucketed, relinked, history)},
    -- both streams in one aggregate: no second hash table, and no join to merge them
    parts AS (
        SELECT {keys}, kwh AS ac_kwh, n AS ac_n, NULL::float8 AS dc_kwh, NULL::float8 AS temp_sum,
               NULL::float8 AS temp_max, NULL::bigint AS dc_n FROM ac_parts
        UNION ALL
        SELECT {keys}, NULL, NULL, kwh, temp_sum, temp_max, n FROM dc_parts
    ),
    figures AS (
        SELECT {keys}, coalesce(sum(ac_kwh), 0) AS ac_kwh, coalesce(sum(dc_kwh), 0) AS dc_kwh,
               sum(temp_sum) / nullif(sum(dc_n), 0) AS avg_temp, max(temp_max) AS max_temp,
               coalesce(sum(ac_n), 0)::bigint AS meter_readings,
               coalesce(sum(dc_n), 0)::bigint AS vehicle_readings
        FROM parts GROUP BY {keys}
    )"""


def uses_fleet_cuts(one_vehicle: bool, relinked: bool) -> bool:
    """Whether `vehicle_figures_sql` reads quarter hours and 6-hour blocks
    (split_window's `fleet`): fleet-wide, unless links start inside the window
    (a span's edges may then lie anywhere in it)."""
    return not one_vehicle and not relinked


def reads_history(split: WindowSplit, relinked: bool) -> bool:
    """Whether `vehicle_figures_sql` needs its history parts: the window has
    edges (partial or not rolled-up hours) or spans of links that start inside it."""
    params = split.params()
    return relinked or split.start < params["quarters_start"] or params["quarters_end"] < split.end


# What the rollups hold, and whether a link of the meters concerned (those ever
# linked to :vehicle_id, or all) starts inside the window: one round trip. The
# window is taken to whole days, as a split may widen it to them.
WINDOW_STATE = """
    SELECT rolled_up_until, hours_kept_since, EXISTS (
        SELECT 1 FROM meter_links
        WHERE since > date_trunc('day', CAST(:start AS timestamptz), 'UTC')
          AND since < date_trunc('day', CAST(:end AS timestamptz), 'UTC') + interval '1 day' {only})
    FROM rollup_watermark
"""
ONE_VEHICLE_METERS = "AND meter_id IN (SELECT meter_id FROM meter_links WHERE vehicle_id = :vehicle_id)"
WINDOW_STATES = {one: text(WINDOW_STATE.format(only=ONE_VEHICLE_METERS if one else ""))
                 for one in (False, True)}


def window_state(conn: Connection, start: datetime, end: datetime,
                 vehicle_id: str | None = None) -> tuple[RollupMarks, bool]:
    """The rollup marks, and whether links start inside the window (for
    `vehicle_figures_sql`'s `relinked`)."""
    until, kept, relinked = execute_prepared(
        conn, WINDOW_STATES[vehicle_id is not None],
        {"start": start, "end": end, "vehicle_id": vehicle_id}).fetchone()
    return RollupMarks(until, kept), relinked
