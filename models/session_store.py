"""Stored charging sessions: kept up to date as hours close, marked stale by late
readings and late relinks, rebuilt after bulk loads.

`charging_sessions` holds, for every vehicle, the sessions of the window
[sessions_from, its rolled-up hour) exactly as models/sessions.py finds them in a
live window: the hour a vehicle's rollups reach (models/rollups.py, per device
range) is the hour its stored sessions reach. Each device range of the hourly
roll-up recomputes its vehicles' sessions from the start of their last stored
one if it ended within the gap before the hour (the hour's readings may extend
it), else from the hour, or from their mark, in the roll-up's transaction under
the watermark lock. Why that start is safe: it is a session start in the longer
window as well, since nothing before it changed.

A stored session may go stale when history before its vehicle's rolled-up hour
changes: a late reading (DC of the vehicle, AC of a meter linked to it then) or
a relink of a meter that has fed it. The drain and a PUT of a link then mark the
vehicle in `session_marks` with the earliest instant changed (-infinity when a
meter feeds the vehicle for the first time: all of that meter's relinks now end
its sessions); queries read a marked vehicle live from the first stored session
the change can reach, and its range's next roll-up recomputes it. Both take the
watermark FOR SHARE, so a roll-up never drops a mark it has not seen.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, Double, Index, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, TIMESTAMP
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base
from models.rollups import WATERMARK_FOR_DRAIN, rolled_up_sql
from models.sessions import SESSIONS_CTES, stale_from_sql
from models.windows import DAY, floor_sql, floor_to

TS = TIMESTAMP(timezone=True)


class ChargingSession(Base):
    __tablename__ = "charging_sessions"
    # The fleet's sessions of a window; the vehicle id in it for Citus.
    __table_args__ = (Index("ix_charging_sessions_start", "start", "vehicle_id"),)

    vehicle_id: Mapped[str] = mapped_column(Text, primary_key=True)
    start: Mapped[datetime] = mapped_column(TS, primary_key=True)
    end: Mapped[datetime] = mapped_column(TS)
    ac: Mapped[float] = mapped_column(Double)
    dc: Mapped[float] = mapped_column(Double)
    soc_start: Mapped[float | None] = mapped_column(Double)
    soc_end: Mapped[float | None] = mapped_column(Double)
    avg_temp: Mapped[float | None] = mapped_column(Double)
    max_temp: Mapped[float | None] = mapped_column(Double)
    meter_ids: Mapped[list[str]] = mapped_column(ARRAY(Text))


class SessionMark(Base):
    """A vehicle whose stored sessions may be stale from `since` on."""

    __tablename__ = "session_marks"

    vehicle_id: Mapped[str] = mapped_column(Text, primary_key=True)
    since: Mapped[datetime] = mapped_column(TS)


MARK = "ON CONFLICT (vehicle_id) DO UPDATE SET since = least(k.since, excluded.since)"


def late_sessions_cte(kind: str) -> str:
    """A CTE for the drain's statement: marks the vehicles whose stored sessions the
    rows just stored (`stored`) may change."""
    if kind == "vehicle":
        source = f"""
        SELECT vehicle_id, min(ts) FROM stored, rollup_watermark m
        WHERE kwh_delivered_dc > 0 AND ts >= m.sessions_from
          AND {rolled_up_sql('vehicle_id', floor_sql('ts', 'hour'))}"""
    else:
        # Only rows of hours that may be rolled up look for their vehicle.
        source = f"""
        SELECT l.vehicle_id, min(s.ts) FROM (
            SELECT s.* FROM stored s, rollup_watermark m
            WHERE s.kwh_consumed_ac <> 0 AND s.ts >= m.sessions_from
              AND (s.ts < m.rolled_up_until OR (m.rolling_device IS NOT NULL
                                                AND s.ts < m.rolled_up_until + interval '1 hour'))) s
        CROSS JOIN LATERAL (SELECT vehicle_id FROM meter_links
                            WHERE meter_id = s.meter_id AND since <= s.ts
                            ORDER BY since DESC LIMIT 1) l
        CROSS JOIN rollup_watermark m
        WHERE {rolled_up_sql('l.vehicle_id', floor_sql('s.ts', 'hour'))}"""
    return f"""
    late_sessions AS (
        INSERT INTO session_marks AS k (vehicle_id, since)
        {source}
        GROUP BY 1 ORDER BY 1
        {MARK}
    )"""


# Before a PUT of links: every vehicle the meters have fed is marked from `since`;
# a vehicle a meter feeds for the first time, from the beginning.
MARK_RELINKS = text(f"""
    INSERT INTO session_marks AS k (vehicle_id, since)
    SELECT vehicle_id, min(since) FROM (
        SELECT l.vehicle_id, CAST(:since AS timestamptz) AS since FROM meter_links l
        WHERE l.meter_id = ANY(CAST(:meter_ids AS text[]))
        UNION ALL
        SELECT n.vehicle_id, CASE WHEN EXISTS (
            SELECT 1 FROM meter_links l WHERE l.meter_id = n.meter_id AND l.vehicle_id = n.vehicle_id)
            THEN CAST(:since AS timestamptz) ELSE '-infinity' END
        FROM unnest(CAST(:meter_ids AS text[]), CAST(:vehicle_ids AS text[])) n(meter_id, vehicle_id)
    ) x GROUP BY 1 ORDER BY 1
    {MARK}
""")

# Where each vehicle of [:first, :stop) is recomputed from as its hour :hour closes:
# its last stored session if a reading of the hour may extend it (it ended within
# the gap before), else the hour; earlier if it is marked.
EXTEND_FROM = text(f"""
    SELECT l.vehicle_id, greatest(w.sessions_from, least(
        coalesce((SELECT start FROM charging_sessions s
                  WHERE s.vehicle_id = l.vehicle_id AND s."end" >= :hour - w.sessions_gap
                  ORDER BY start DESC LIMIT 1), CAST(:hour AS timestamptz)),
        (SELECT {stale_from_sql('k.vehicle_id', 'k.since', 'w.sessions_gap')}
         FROM session_marks k WHERE k.vehicle_id = l.vehicle_id))) AS lo
    FROM live_vehicles l, rollup_watermark w
    WHERE l.vehicle_id >= :first AND (CAST(:stop AS text) IS NULL OR l.vehicle_id < :stop)
""")

TODO = "unnest(CAST(:ids AS text[]), CAST(:los AS timestamptz[]), CAST(:untils AS timestamptz[]))"
COLUMNS = "vehicle_id, start, \"end\", ac, dc, soc_start, soc_end, avg_temp, max_temp, meter_ids"
DROP_STALE = text(f"""
    DELETE FROM charging_sessions s USING {TODO} t(vehicle_id, lo, until)
    WHERE s.vehicle_id = t.vehicle_id AND s.start >= t.lo""")
STORE = text("WITH " + SESSIONS_CTES.format(bounds=f"SELECT * FROM {TODO}")
             + f" INSERT INTO charging_sessions ({COLUMNS}) SELECT {COLUMNS} FROM live")
UNMARK = text("DELETE FROM session_marks WHERE vehicle_id = ANY(CAST(:ids AS text[]))")
GAP = text("SELECT sessions_gap FROM rollup_watermark")


def _recompute(conn: Connection, todo: list[tuple[str, datetime, datetime]]) -> None:
    """Replace each vehicle's stored sessions from `lo` on by those of [lo, until)."""
    if not todo:
        return
    ids, los, untils = (list(column) for column in zip(*todo, strict=True))
    params = {"ids": ids, "los": los, "untils": untils, "a": min(los), "b": max(untils),
              "gap": conn.execute(GAP).scalar_one()}
    conn.execute(DROP_STALE, params)
    conn.execute(STORE, params)
    conn.execute(UNMARK, params)


def extend_sessions(conn: Connection, first: str, stop: str | None, hour: datetime) -> None:
    """Extend the stored sessions of the vehicles in [first, stop) over `hour`, which
    the caller (holding the watermark lock) is rolling up for them."""
    rows = conn.execute(EXTEND_FROM, {"first": first, "stop": stop, "hour": hour}).all()
    _recompute(conn, [(row.vehicle_id, row.lo, hour + timedelta(hours=1)) for row in rows])


# Each vehicle's rolled-up hour's end: where its stored sessions end.
COVERED = text(f"""
    SELECT l.vehicle_id, m.rolled_up_until + CASE WHEN {rolled_up_sql('l.vehicle_id', 'm.rolled_up_until')}
                                                  THEN interval '1 hour' ELSE interval '0' END AS until
    FROM live_vehicles l, rollup_watermark m""")
MOVE_FROM = text("UPDATE rollup_watermark SET sessions_from = :start RETURNING sessions_from")
SESSIONS_FROM = text("SELECT sessions_from FROM rollup_watermark")


def rebuild_sessions(conn: Connection, start: datetime) -> None:
    """Recompute every stored session after a bulk load of history from `start` on
    (the caller holds the watermark lock); stored sessions then begin at the
    earlier of their old beginning and `start`'s midnight."""
    begin = min(conn.execute(SESSIONS_FROM).scalar_one(), floor_to(start, DAY))
    conn.execute(MOVE_FROM, {"start": begin})
    conn.execute(text("DELETE FROM charging_sessions"))
    conn.execute(text("DELETE FROM session_marks"))
    _recompute(conn, [(row.vehicle_id, begin, row.until) for row in conn.execute(COVERED)])


# Retention: sessions before the cutoff go; one that crosses it is found again
# from the cutoff on (marked), since its readings before it are gone.
FORGET = text(f"""
    WITH gone AS (DELETE FROM charging_sessions WHERE start < :cutoff RETURNING vehicle_id, "end")
    INSERT INTO session_marks AS k (vehicle_id, since)
    SELECT vehicle_id, CAST(:cutoff AS timestamptz) FROM gone WHERE "end" >= :cutoff
    GROUP BY 1 ORDER BY 1
    {MARK}""")
MOVE_FROM_UP = text("UPDATE rollup_watermark SET sessions_from = greatest(sessions_from, :cutoff)")


def forget_sessions_before(conn: Connection, cutoff: datetime) -> None:
    """Stored sessions begin no earlier than `cutoff`, where retention dropped history."""
    conn.exec_driver_sql(WATERMARK_FOR_DRAIN)
    conn.execute(MOVE_FROM_UP, {"cutoff": cutoff})
    conn.execute(FORGET, {"cutoff": cutoff})
