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
    time = "x." + next((column for unit, (column, _, _) in UNITS.items() if table.endswith(f"_{unit}")), "ts")
    group = " GROUP BY 1" if bucketed else ""
    return (f"CROSS JOIN LATERAL (SELECT {_bucket(time, bucketed)}{sums} FROM {table} x"
            f" WHERE x.{device} = {condition}{group} HAVING count(*) > 0) p")


UNION = "\n        UNION ALL\n        "
METER_SUMS = "sum(x.kwh_consumed_ac) AS kwh, count(*) AS n"
METER_ROLLUP_SUMS = "sum(x.kwh_consumed_ac) AS kwh, sum(x.readings) AS n"
VEHICLE_SUMS = ("sum(x.kwh_delivered_dc) AS kwh, sum(x.battery_temp) AS temp_sum,"
                " max(x.battery_temp) AS temp_max, count(*) AS n")


def _ac_history(spans: str, bucketed: bool, relinked: bool) -> list[str]:
    """AC of the history of each span of `spans`: the window's edges (and, relinked,
    wherever a span's own edges lie)."""
    edges = [("sp.s", "sp.h1", ":start", ":quarters_start"), ("sp.h2", "sp.e", ":quarters_end", ":end")]
    if relinked:
        edges = [(a, b, ":start", ":end") for a, b, _, _ in edges]
    return [_span_part(spans, "meter_readings", METER_SUMS, f"x.ts >= {a} AND x.ts < {b}"
                       f" AND x.ts >= {lo} AND x.ts < {hi}", bucketed)
            for a, b, lo, hi in edges]


def _span_part(spans: str, table: str, sums: str, condition: str, bucketed: bool) -> str:
    """The AC of each span's meter in `table` under `condition`, read meter by
    meter: as many index ranges as spans, whatever the fleet's size."""
    t = "p.t, " if bucketed else ""
    return (f"SELECT sp.vehicle_id, {t}p.kwh, p.n FROM {spans} sp "
            + _lateral('meter_id', sums, table, f'sp.meter_id AND {condition}', bucketed))


def _span_ac(spans: str, bucketed: bool, relinked: bool, history: bool) -> list[str]:
    """AC of each span of `spans` (a few: one vehicle's, or the fleet's spans that
    links cut), span by span. With links starting inside the window, a span's
    history may lie anywhere in it, and hours of its days are cut too."""
    window_hours = ("((x.hour >= :hours_start AND x.hour < :days_start)"
                    " OR (x.hour >= :days_end AND x.hour < :rolled_end))")
    parts = [
        _span_part(spans, "meter_daily", METER_ROLLUP_SUMS, "x.day >= sp.d1 AND x.day < sp.d2"
                   " AND x.day >= :days_start AND x.day < :days_end", bucketed),
        *(_span_part(spans, "meter_hourly", METER_ROLLUP_SUMS,
                     f"x.hour >= {a} AND x.hour < {b} AND {window_hours}", bucketed)
          for a, b in (("sp.h1", "sp.d1"), ("sp.d2", "sp.h2"))),
    ]
    if relinked:  # hours of the window's days that a link starting or ending mid-day cuts
        parts.append(_span_part(
            spans, "meter_hourly", METER_ROLLUP_SUMS,
            "x.hour >= :days_start AND x.hour < :days_end"
            " AND ((x.hour >= sp.h1 AND x.hour < sp.d1) OR (x.hour >= sp.d2 AND x.hour < sp.h2))",
            bucketed) + " WHERE sp.s > :days_start OR sp.e < :days_end")
    # A cut span's own edges lie anywhere in the window: history is read for them whatever its edges.
    return [*parts, *(_ac_history(spans, bucketed, relinked) if history or relinked else [])]


def _ac_parts(one_vehicle: bool, bucketed: bool, relinked: bool, history: bool) -> str:
    """AC of each span: one vehicle's span by span; the fleet's from every meter's
    sums (`_fleet_ac_parts`)."""
    if one_vehicle:
        return f"\n    ac_parts AS (\n        {UNION.join(_span_ac('span_split', bucketed, relinked, history))}\n    )"
    return _fleet_ac_parts(bucketed, relinked, history)


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


def _fleet_ac_parts(bucketed: bool, relinked: bool, history: bool) -> str:
    """AC of the fleet's spans. Those that are the whole window (every span, when
    no link starts inside it) take their meter's rollups of the window, summed
    first for every meter so that each rollup row is hashed once, and the
    window's edges from history. The few that links cut are read span by span."""
    t = "t, " if bucketed else ""
    union = "\n            UNION ALL ".join(
        _rollup_pieces("meter", "kwh_consumed_ac AS kwh, readings AS n", True, bucketed))
    whole, cut = "span_split", []
    if relinked:
        whole = "(SELECT * FROM span_split WHERE s = :start AND e = :end)"
        cut = _span_ac("(SELECT * FROM span_split WHERE s > :start OR e < :end)", bucketed, True, history)
    parts = [f"SELECT sp.vehicle_id, {'m.t, ' if bucketed else ''}m.kwh, m.n"
             f" FROM {whole} sp JOIN meter_sums m USING (meter_id)",
             *(_ac_history(whole, bucketed, False) if history else []), *cut]
    return f"""
    meter_sums AS (
        SELECT meter_id, {t}sum(kwh) AS kwh, sum(n) AS n FROM (
            {union}) p
        GROUP BY meter_id{', t' if bucketed else ''}
    ),
    ac_parts AS (
        {UNION.join(parts)}
    )"""


def _dc_parts(one_vehicle: bool, bucketed: bool, history: bool) -> str:
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
    parts = [*_rollup_pieces("vehicle", columns, not one_vehicle, bucketed, only),
             *edges]
    return f"\n    dc_parts AS (\n        {UNION.join(parts)}\n    )"


def vehicle_figures_sql(one_vehicle: bool, bucketed: bool, relinked: bool,
                        history: bool = True) -> str:
    """`WITH ...` ending in the CTE `figures`: vehicle_id (and t, the bucket's
    start, when `bucketed`), ac_kwh, dc_kwh, avg_temp, max_temp, meter_readings,
    vehicle_readings, for the vehicles with readings or AC in the window (only
    :vehicle_id when `one_vehicle`). Parameters: WindowSplit.params(), and
    :bucket and :origin when bucketed. `relinked`: whether a link of the
    meters concerned starts inside the window (`window_state`): the spans such
    links cut read their own edges from history. `history`: whether the
    window's edges are read from history (`reads_history`). Without either, no
    partition of history is in the query, so the server can plan it once for
    every window."""
    links = ("WHERE meter_id IN (SELECT meter_id FROM meter_links WHERE vehicle_id = :vehicle_id)"
             if one_vehicle else "")
    span_filter = "AND vehicle_id = :vehicle_id" if one_vehicle else ""
    keys = "vehicle_id, t" if bucketed else "vehicle_id"
    return f"""
    WITH {SPAN_SPLIT.format(links=links, span_filter=span_filter)},
    {_ac_parts(one_vehicle, bucketed, relinked, history)},
    {_dc_parts(one_vehicle, bucketed, history)},
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


def reads_history(split: WindowSplit) -> bool:
    """Whether the window has edges read from history (partial quarter hours or
    hours, or hours not rolled up yet): `vehicle_figures_sql`'s `history`."""
    params = split.params()
    return split.start < params["quarters_start"] or params["quarters_end"] < split.end


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
