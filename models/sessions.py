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
session is one range of each linked meter's primary key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, text

from models.analytics import ratio
from models.db import read_connection

# {vehicles}, {links} and {meters} restrict the readings, links and meters to one
# vehicle's, or not.
SESSIONS = """
WITH relinks AS (
    SELECT DISTINCT fed.vehicle_id, l.since
    FROM (SELECT DISTINCT meter_id, vehicle_id FROM meter_links {links}) fed
    JOIN meter_links l USING (meter_id)
    WHERE l.since > :a AND l.since < :b
), events AS (
    -- relinks sort before a reading at the same instant: that reading starts a session
    SELECT vehicle_id, ts, true AS is_reading, soc, kwh_delivered_dc, battery_temp
    FROM vehicle_readings
    WHERE ts >= :a AND ts < :b AND kwh_delivered_dc > 0 {vehicles}
    UNION ALL
    SELECT vehicle_id, since, false, NULL, NULL, NULL FROM relinks
), marked AS (
    -- a session's first reading starts it, its last ends it (both, for a single reading)
    SELECT *, lag(is_reading) OVER w IS NOT TRUE OR ts - lag(ts) OVER w > :gap AS starts,
           lead(is_reading) OVER w IS NOT TRUE OR lead(ts) OVER w - ts > :gap AS ends
    FROM events
    WINDOW w AS (PARTITION BY vehicle_id ORDER BY ts, is_reading)
), numbered AS (
    SELECT *, count(*) FILTER (WHERE starts) OVER (PARTITION BY vehicle_id ORDER BY ts) AS n
    FROM marked WHERE is_reading
), sessions AS (
    -- one reading of each group starts it and one ends it: their SoC needs no sort
    SELECT vehicle_id, min(ts) AS start, max(ts) AS "end", sum(kwh_delivered_dc) AS dc,
           max(soc) FILTER (WHERE starts) AS soc_start, max(soc) FILTER (WHERE ends) AS soc_end,
           avg(battery_temp) AS avg_temp, max(battery_temp) AS max_temp
    FROM numbered GROUP BY vehicle_id, n
), spans AS (
    SELECT meter_id, vehicle_id, since,
           coalesce(lead(since) OVER (PARTITION BY meter_id ORDER BY since), 'infinity') AS until
    FROM meter_links {meters}
), ac AS (
    SELECT s.vehicle_id, s.start, sum(m.kwh_consumed_ac) AS ac,
           array_agg(DISTINCT m.meter_id) FILTER (WHERE m.kwh_consumed_ac > 0) AS meter_ids
    FROM sessions s
    JOIN spans sp ON sp.vehicle_id = s.vehicle_id AND sp.since <= s."end" AND sp.until > s.start
    JOIN meter_readings m
      ON m.meter_id = sp.meter_id AND m.ts >= s.start AND m.ts <= s."end"
     AND m.ts >= sp.since AND m.ts < sp.until AND m.ts >= :a AND m.ts < :b
    GROUP BY 1, 2
), figures AS (
    SELECT s.*, coalesce(ac.ac, 0) AS ac, coalesce(ac.meter_ids, '{{}}') AS meter_ids,
           coalesce(ac.ac, 0) - s.dc AS loss,
           -- numeric: a vanishing AC must not overflow the sort
           s.dc::numeric / nullif(ac.ac, 0)::numeric AS efficiency
    FROM sessions s LEFT JOIN ac USING (vehicle_id, start)
)
SELECT *, count(*) OVER () AS total FROM figures
ORDER BY {order}
LIMIT :limit OFFSET :offset
"""

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


def _params(a: datetime, b: datetime, gap: timedelta, limit: int | None, offset: int) -> dict:
    return {"a": a, "b": b, "gap": gap, "limit": limit, "offset": offset}


def vehicle_sessions(engine: Engine, vehicle_id: str, a: datetime, b: datetime,
                     gap: timedelta) -> list[Session]:
    """The vehicle's sessions in [a, b), oldest first."""
    sql = SESSIONS.format(
        links="WHERE vehicle_id = :vehicle_id", vehicles="AND vehicle_id = :vehicle_id",
        meters="WHERE meter_id IN (SELECT meter_id FROM meter_links WHERE vehicle_id = :vehicle_id)",
        order="start")
    with read_connection(engine) as conn:
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
    sql = SESSIONS.format(links="", vehicles="", meters="", order=order)
    with read_connection(engine) as conn:
        rows = conn.execute(text(sql), _params(a, b, gap, limit, offset)).all()
    return SessionPage([Session.of(row) for row in rows], rows[0].total if rows else 0)
