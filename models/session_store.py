"""Stored charging sessions: kept up to date as hours close, marked stale by late
readings and late relinks, rebuilt after bulk loads.

`charging_sessions` holds, for every vehicle, the sessions of the window
[sessions_from, its rolled-up hour) exactly as models/sessions.py finds them in a
live window, except where the vehicle is marked in `session_marks`: from the
mark's instant on (`since`) its stored sessions may be stale, and queries read
it live from the first stored session the change can reach.

What marks a vehicle:
- the hourly roll-up (models/roll_up.py), for each vehicle of a device range that
  charged in the hour it rolls up (the hour's readings may extend its last
  session or start new ones);
- the drain, storing a late reading (DC of the vehicle, AC of a meter linked to
  it then) of a rolled-up hour, with the earliest instant changed;
- a PUT of links, for every vehicle a meter of it has fed (-infinity when a meter
  feeds the vehicle for the first time: all of that meter's relinks now end its
  sessions).

`store_marked_sessions` then recomputes the marked vehicles, a few at a time:
each from where its mark reaches back to (a session start in the longer window
as well, since nothing before it changed) up to its rolled-up hour, and drops
the mark. Every writer of marks holds the watermark (the drain and a PUT FOR
SHARE, a roll-up range FOR UPDATE) and so does each recompute (FOR UPDATE), so a
recompute never drops a mark it has not seen. Recomputing outside the roll-up's
ranges keeps a range's hold on the drains to its rollups; each recompute
transaction takes at most SESSION_HOURS of vehicle-history, so that it too
holds them briefly.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Double, Engine, Index, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, TIMESTAMP
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base
from models.rollups import WATERMARK_FOR_DRAIN, lock_watermark, rolled_up_sql
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


# Each vehicle's rolled-up hour's end: where its stored sessions end.
def _covered_sql(vehicle: str) -> str:
    return (f"m.rolled_up_until + CASE WHEN {rolled_up_sql(vehicle, 'm.rolled_up_until')}"
            " THEN interval '1 hour' ELSE interval '0' END")


COVERED = text(f"SELECT l.vehicle_id, {_covered_sql('l.vehicle_id')} AS until"
               " FROM live_vehicles l, rollup_watermark m")

# At most this much vehicle-history (hours from where a vehicle's mark reaches
# back to its rolled-up hour's end, summed) is recomputed per transaction, and
# so per hold on the drains: 15-38 ms for 48 hours in bench scenario 10. A
# vehicle whose own history is longer is recomputed alone (a relinked meter's
# first vehicle, from sessions_from on: about 10 ms a day).
SESSION_HOURS = 48
MARKED = text(f"""
    SELECT k.vehicle_id,
           greatest(m.sessions_from, {stale_from_sql('k.vehicle_id', 'k.since', 'm.sessions_gap')}) AS lo,
           {_covered_sql('k.vehicle_id')} AS until
    FROM session_marks k, rollup_watermark m
    WHERE k.vehicle_id > :after ORDER BY k.vehicle_id LIMIT :n
""")
ANY_MARK = text("SELECT EXISTS (SELECT 1 FROM session_marks WHERE vehicle_id > :after)")


def within_budget(rows) -> list[tuple[str, datetime, datetime]]:
    """The first vehicles whose recompute spans SESSION_HOURS in all (at least one)."""
    todo, hours = [], 0.0
    for row in rows:
        span = max((row.until - row.lo).total_seconds() / 3600, 0.0)
        if todo and hours + span > SESSION_HOURS:
            break
        todo.append((row.vehicle_id, row.lo, row.until))
        hours += span
    return todo


def store_marked_sessions(engine: Engine) -> int:
    """Recompute the marked vehicles' stored sessions, a few vehicles per
    transaction (module docstring), in one pass over the vehicles: a vehicle
    marked again meanwhile waits for the next call, so that a stream of late
    readings cannot keep a call going. Returns how many vehicles."""
    done, after = 0, ""
    while True:
        with engine.connect() as conn:  # a look without the lock, which would stop the drains
            if not conn.execute(ANY_MARK, {"after": after}).scalar_one():
                return done
        with engine.begin() as conn:
            lock_watermark(conn)
            todo = within_budget(conn.execute(MARKED, {"after": after, "n": 100}))
            _recompute(conn, todo)
        if not todo:
            return done
        done += len(todo)
        after = todo[-1][0]


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
