"""Charging sessions, found in raw history.

A vehicle's session is a run of its readings with DC delivered > 0, in which no
two consecutive ones lie more than the gap (`SESSION_GAP_MIN`) apart; readings
with no DC between them do not end it, a longer silence does. A link of one of
the meters that has ever fed the vehicle, set between two readings (a relink),
ends it too: the AC of a session then comes from one set of links. Only the
window's readings count, so a session that crosses a window bound is cut there.

Per session: its first and last reading's instants (start, end); DC, the sum of
its readings; AC, the sum of the readings with start <= ts <= end of the
meters linked to the vehicle at their time; SoC of its first and last reading;
average and maximum battery temperature; the meters whose AC was above 0.

Sessions are found with window functions over the vehicle's readings with DC
(one range of the (vehicle, ts) primary key per vehicle); the AC of each
session is one range of each linked meter's primary key. That costs about 10 s
per 1,000 vehicle-days, so windows from `sessions_from` on (found with the
stored gap) read the sessions stored as hours close (models/session_store.py)
and find live only what those do not hold exactly (COMPOSED says which).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, text

from models.analytics import ratio
from models.db import read_connection
from models.rollups import rolled_up_sql
from models.windows import floor_sql

# The sessions of each range of `bounds(vehicle_id, a, b)`: a vehicle may have
# several disjoint ranges, each found on its own (`part` is its start). Every
# range lies within [:a, :b), which the readings' conditions repeat: constants
# the planner prunes partitions with, where the ranges (a join) would leave it
# planning every partition of history (135 ms of a roll-up range's 165 ms with
# a year of daily partitions).
SESSIONS_CTES = """
bounds (vehicle_id, a, b) AS ({bounds}), relinks AS (
    SELECT DISTINCT bd.vehicle_id, bd.a AS part, l.since
    FROM bounds bd
    JOIN (SELECT DISTINCT meter_id, vehicle_id FROM meter_links) fed USING (vehicle_id)
    JOIN meter_links l USING (meter_id)
    WHERE l.since > bd.a AND l.since < bd.b
), events AS (
    -- relinks sort before a reading at the same instant: that reading starts a session
    SELECT r.vehicle_id, bd.a AS part, r.ts, true AS is_reading, r.soc, r.kwh_delivered_dc,
           r.battery_temp
    FROM bounds bd JOIN vehicle_readings r
      ON r.vehicle_id = bd.vehicle_id AND r.ts >= bd.a AND r.ts < bd.b AND r.kwh_delivered_dc > 0
     AND r.ts >= :a AND r.ts < :b
    UNION ALL
    SELECT vehicle_id, part, since, false, NULL, NULL, NULL FROM relinks
), marked AS (
    -- a session's first reading starts it, its last ends it (both, for a single reading)
    SELECT *, lag(is_reading) OVER w IS NOT TRUE OR ts - lag(ts) OVER w > :gap AS starts,
           lead(is_reading) OVER w IS NOT TRUE OR lead(ts) OVER w - ts > :gap AS ends
    FROM events
    WINDOW w AS (PARTITION BY vehicle_id, part ORDER BY ts, is_reading)
), numbered AS (
    SELECT *, count(*) FILTER (WHERE starts) OVER (PARTITION BY vehicle_id, part ORDER BY ts) AS n
    FROM marked WHERE is_reading
), sessions AS (
    -- one reading of each group starts it and one ends it: their SoC needs no sort
    SELECT vehicle_id, min(ts) AS start, max(ts) AS "end", sum(kwh_delivered_dc) AS dc,
           max(soc) FILTER (WHERE starts) AS soc_start, max(soc) FILTER (WHERE ends) AS soc_end,
           avg(battery_temp) AS avg_temp, max(battery_temp) AS max_temp
    FROM numbered GROUP BY vehicle_id, part, n
), spans AS (
    SELECT meter_id, vehicle_id, since,
           coalesce(lead(since) OVER (PARTITION BY meter_id ORDER BY since), 'infinity') AS until
    FROM meter_links
    WHERE meter_id IN (SELECT meter_id FROM meter_links
                       WHERE vehicle_id IN (SELECT vehicle_id FROM bounds))
), ac AS (
    SELECT s.vehicle_id, s.start, sum(m.kwh_consumed_ac) AS ac,
           array_agg(DISTINCT m.meter_id) FILTER (WHERE m.kwh_consumed_ac > 0) AS meter_ids
    FROM sessions s
    JOIN spans sp ON sp.vehicle_id = s.vehicle_id AND sp.since <= s."end" AND sp.until > s.start
    JOIN meter_readings m
      ON m.meter_id = sp.meter_id AND m.ts >= s.start AND m.ts <= s."end"
     AND m.ts >= sp.since AND m.ts < sp.until AND m.ts >= :a AND m.ts < :b
    GROUP BY 1, 2
), live AS (
    SELECT s.vehicle_id, s.start, s."end", coalesce(ac.ac, 0) AS ac, s.dc, s.soc_start, s.soc_end,
           s.avg_temp, s.max_temp, coalesce(ac.meter_ids, ARRAY[]::text[]) AS meter_ids
    FROM sessions s LEFT JOIN ac USING (vehicle_id, start)
)"""

# Sorted and paged figures of the sessions in `found` (columns as `live`).
PAGE = """
, figures AS (
    SELECT *, ac - dc AS loss,
           -- numeric: a vanishing AC must not overflow the sort
           dc::numeric / nullif(ac, 0)::numeric AS efficiency
    FROM found
)
SELECT *, count(*) OVER () AS total FROM figures
ORDER BY {order}
LIMIT :limit OFFSET :offset
"""

# Every session of the window, found in history.
LIVE_WINDOW = "WITH " + SESSIONS_CTES + ", found AS (SELECT * FROM live)" + PAGE
ALL_VEHICLES = "SELECT vehicle_id, CAST(:a AS timestamptz), CAST(:b AS timestamptz) FROM live_vehicles"
ONE_VEHICLE = "SELECT CAST(:vehicle_id AS text), CAST(:a AS timestamptz), CAST(:b AS timestamptz)"

# Worst first: the largest loss, the lowest efficiency; the latest start.
SORTS = {"loss": ("loss", "desc"), "efficiency": ("efficiency", "asc"), "start": ("start", "desc")}


@dataclass(frozen=True)
class Session:
    vehicle_id: str
    start: datetime
    end: datetime
    ac_kwh: float
    dc_kwh: float
    soc_start: float
    soc_end: float
    avg_battery_temp: float
    max_battery_temp: float
    meter_ids: list[str]

    @property
    def loss_kwh(self) -> float:
        return self.ac_kwh - self.dc_kwh

    @property
    def efficiency(self) -> float | None:
        return ratio(self.dc_kwh, self.ac_kwh)

    @classmethod
    def of(cls, row) -> Session:
        return cls(row.vehicle_id, row.start, row.end, float(row.ac), row.dc, row.soc_start,
                   row.soc_end, row.avg_temp, row.max_temp, sorted(row.meter_ids))


# Stored sessions (models/session_store.py) of vehicles `{vehicles}` (a filter
# on the live_vehicles row `l`), with the part of the window they do not cover
# found live: a stored session wholly inside the window is as stored; a vehicle
# with readings after its stored sessions end (`fresh`) or with a mark is read
# live from its last stored session (or its mark) on; a stored session crossing
# a bound is found again, cut there.
# A reading after its vehicle's stored sessions end; where a mark reaches back to.
FRESH = "(" + rolled_up_sql("r.vehicle_id", floor_sql("r.ts", "hour")) + ") IS NOT TRUE"


def stale_from_sql(vehicle: str, since: str, gap: str) -> str:
    """SQL: where a vehicle's sessions may change after a change at `since`: the
    first stored session that ends within the gap before it, or `since` itself."""
    return (f"least({since}, (SELECT min(start) FROM charging_sessions s"
            f" WHERE s.vehicle_id = {vehicle} AND s.\"end\" >= {since} - {gap}))")


COMPOSED = """
WITH m AS (SELECT * FROM rollup_watermark
), vehicles AS (SELECT l.vehicle_id FROM live_vehicles l WHERE true {vehicles}
), fresh AS (
    SELECT DISTINCT r.vehicle_id FROM vehicle_readings r, m
    -- a scalar bound (not m's column), for the partitions and the index to be pruned
    WHERE r.ts >= greatest(CAST(:a AS timestamptz), (SELECT rolled_up_until FROM rollup_watermark))
      AND r.ts < :b
      AND r.kwh_delivered_dc > 0 AND """ + FRESH + """
      AND r.vehicle_id IN (SELECT vehicle_id FROM vehicles)
), starts AS (
    SELECT f.vehicle_id,
           (SELECT max(start) FROM charging_sessions s WHERE s.vehicle_id = f.vehicle_id) AS lo
    FROM fresh f
    UNION ALL
    SELECT k.vehicle_id, """ + stale_from_sql("k.vehicle_id", "k.since", ":gap") + """
    FROM session_marks k WHERE k.vehicle_id IN (SELECT vehicle_id FROM vehicles)
), tail AS (
    SELECT vehicle_id, greatest(CAST(:a AS timestamptz), min(coalesce(lo, '-infinity'))) AS lo
    FROM starts GROUP BY vehicle_id
    HAVING greatest(CAST(:a AS timestamptz), min(coalesce(lo, '-infinity'))) < :b
), head AS (
    SELECT v.vehicle_id, CAST(:a AS timestamptz) AS a,
           least(s."end" + interval '1 microsecond', CAST(:b AS timestamptz)) AS b
    FROM vehicles v CROSS JOIN LATERAL (
        SELECT "end" FROM charging_sessions s WHERE s.vehicle_id = v.vehicle_id AND s.start < :a
        ORDER BY start DESC LIMIT 1) s
    WHERE s."end" >= :a
      AND NOT EXISTS (SELECT 1 FROM tail t WHERE t.vehicle_id = v.vehicle_id AND t.lo <= :a)
), cut AS (
    SELECT s.vehicle_id, s.start AS a, CAST(:b AS timestamptz) AS b FROM charging_sessions s
    WHERE s.start >= :a AND s.start < :b AND s."end" >= :b
      AND s.vehicle_id IN (SELECT vehicle_id FROM vehicles)
      AND NOT EXISTS (SELECT 1 FROM tail t WHERE t.vehicle_id = s.vehicle_id)
), kept AS (
    SELECT s.vehicle_id, s.start, s."end", s.ac, s.dc, s.soc_start, s.soc_end, s.avg_temp,
           s.max_temp, s.meter_ids
    FROM charging_sessions s
    WHERE s.start >= :a AND s."end" < :b AND s.vehicle_id IN (SELECT vehicle_id FROM vehicles)
      AND NOT EXISTS (SELECT 1 FROM tail t WHERE t.vehicle_id = s.vehicle_id AND s.start >= t.lo)
), """ + SESSIONS_CTES.format(bounds="""
    SELECT vehicle_id, lo, CAST(:b AS timestamptz) FROM tail
    UNION ALL SELECT * FROM head UNION ALL SELECT * FROM cut""") + """
, found AS (SELECT * FROM kept UNION ALL SELECT * FROM live)""" + PAGE

STORED = text("SELECT sessions_from, sessions_gap FROM rollup_watermark")


def _sql(conn: Connection, a: datetime, gap: timedelta, vehicles: str, bounds: str,
         order: str) -> str:
    """The stored sessions' query where they cover the window's start with this gap,
    else the live one."""
    stored_from, stored_gap = conn.execute(STORED).one()
    if a >= stored_from and gap == stored_gap:
        return COMPOSED.format(vehicles=vehicles, order=order)
    return LIVE_WINDOW.format(bounds=bounds, order=order)


def _params(a: datetime, b: datetime, gap: timedelta, limit: int | None, offset: int) -> dict:
    return {"a": a, "b": b, "gap": gap, "limit": limit, "offset": offset}


def vehicle_sessions(engine: Engine, vehicle_id: str, a: datetime, b: datetime,
                     gap: timedelta) -> list[Session]:
    """The vehicle's sessions in [a, b), oldest first."""
    with read_connection(engine) as conn:
        sql = _sql(conn, a, gap, "AND l.vehicle_id = :vehicle_id", ONE_VEHICLE, "start")
        rows = conn.execute(text(sql), {**_params(a, b, gap, None, 0), "vehicle_id": vehicle_id})
        return [Session.of(row) for row in rows]


@dataclass(frozen=True)
class SessionPage:
    sessions: list[Session]
    total: int


def fleet_sessions(engine: Engine, a: datetime, b: datetime, gap: timedelta, sort: str,
                   descending: bool, limit: int, offset: int) -> SessionPage:
    """Every vehicle's sessions in [a, b), sorted and paged; `total` counts them all."""
    direction = "DESC" if descending else "ASC"
    order = f"{SORTS[sort][0]} {direction} NULLS LAST, vehicle_id, start"
    with read_connection(engine) as conn:
        sql = _sql(conn, a, gap, "", ALL_VEHICLES, order)
        rows = conn.execute(text(sql), _params(a, b, gap, limit, offset)).all()
    return SessionPage([Session.of(row) for row in rows], rows[0].total if rows else 0)
