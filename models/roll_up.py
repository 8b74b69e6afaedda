"""Making the rollups (models/rollups.py): hour by hour once each has closed, in
device ranges; rebuilding them after bulk loads; dropping old hourly ones.

An hour is rolled up in ranges of at most RANGE_DEVICES devices (meters and
vehicles together, in id order), each range its own transaction that holds the
watermark lock only while it sums its own devices' readings and marks the
vehicles that charged in the hour, whose stored sessions are recomputed after
the hour, a few vehicles per transaction (models/session_store.py). A drain
waits for one such transaction at most, however large the fleet: the ranges,
not the hour, bound the wait. Each range sums its devices' hour from their
quarter hours (one read of history for both); with the last hour of a 6-hour
block or of a day, it also rolls up their block or day from its hourly rows.

A roll-up waiting for the lock holds no drain up: PostgreSQL grants a row's
FOR SHARE at once while only FOR SHARE holders have it, so new drains pass a
waiting FOR UPDATE (which in turn waits until no drain holds the row).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, text

from models.rollups import KEPT_UNITS, KINDS, UNITS, lock_watermark, rolled_up_until
from models.session_store import MARK, rebuild_sessions, store_marked_sessions
from models.windows import BLOCK, DAY, HOUR, ceil_to, floor_sql, floor_to

# An hour is rolled up this long after it ends: the readings of its last
# minute are drained by then, and fewer take the late path.
SETTLE = timedelta(minutes=1)
# Small enough that a range holds the watermark lock, and so a drain, briefly:
# at 30 days of 4,000 devices (bench scenario 10) a range of 25 holds it for
# 5-6 ms (at most 12-15 ms), and the stored sessions of the vehicles that
# charged in its hour are recomputed afterwards (store_marked_sessions).
RANGE_DEVICES = 25

MOVE_WATERMARK = text("UPDATE rollup_watermark SET rolled_up_until = :until, rolling_device = :device")

# The end (exclusive) of the range of `:n` devices starting at `:first`: the
# (n+1)-th smallest id of both kinds; NULL when fewer are left (the last range).
RANGE_END = text("""
    SELECT id FROM (
        (SELECT meter_id AS id FROM live_meters WHERE meter_id >= :first ORDER BY 1 LIMIT :n + 1)
        UNION ALL
        (SELECT vehicle_id FROM live_vehicles WHERE vehicle_id >= :first ORDER BY 1 LIMIT :n + 1)
    ) ids ORDER BY id OFFSET :n LIMIT 1
""")


def _in_range(device: str) -> str:
    return f"{device} >= :first AND (CAST(:stop AS text) IS NULL OR {device} < :stop)"


def _range_statements(kind: str) -> tuple[str, str, str]:
    """An hour, and a day and a 6-hour block from its hours, of one kind for the
    devices in [:first, :stop). Devices come from live state (every device that ever stored a
    reading has a row there) and each is read through its own index range, so a
    range costs its own devices' rows whatever order history was loaded in."""
    k = KINDS[kind]
    dev = k["device"]
    hour = f"""
        WITH quarters AS (
            INSERT INTO {kind}_15min AS r ({dev}, bucket, {k['columns']})
            SELECT l.{dev}, x.* FROM live_{kind}s l CROSS JOIN LATERAL (
                SELECT {floor_sql('h.ts', 'quarter')}, {k['sums']} FROM {k['history']} h
                WHERE h.{dev} = l.{dev} AND h.ts >= :hour AND h.ts < :hour_end GROUP BY 1) x
            WHERE {_in_range('l.' + dev)}
            ON CONFLICT ({dev}, bucket) DO UPDATE SET {k['replace']}
            RETURNING r.*
        )
        INSERT INTO {kind}_hourly AS r ({dev}, hour, {k['columns']})
        SELECT {dev}, :hour, {k['resum']} FROM quarters GROUP BY 1 ORDER BY 1
        ON CONFLICT ({dev}, hour) DO UPDATE SET {k['replace']}"""
    return hour, _from_hours(kind, "daily", "day", "day"), _from_hours(kind, "6h", "bucket", "block")


def _from_hours(kind: str, unit: str, column: str, period: str) -> str:
    """A day's (or 6-hour block's) rollups from its hourly ones, for the devices
    in [:first, :stop); the period is [:{period}, :{period}_end)."""
    k = KINDS[kind]
    dev = k["device"]
    return f"""
        INSERT INTO {kind}_{unit} AS r ({dev}, {column}, {k['columns']})
        SELECT l.{dev}, :{period}, x.* FROM live_{kind}s l CROSS JOIN LATERAL (
            SELECT {k['resum']} FROM {kind}_hourly h
            WHERE h.{dev} = l.{dev} AND h.hour >= :{period} AND h.hour < :{period}_end
            HAVING count(*) > 0) x
        WHERE {_in_range('l.' + dev)}
        ON CONFLICT ({dev}, {column}) DO UPDATE SET {k['replace']}"""


# The range's vehicles that charged in the hour: their stored sessions from the
# hour on may change (models/session_store.py recomputes them after the hour).
MARK_HOUR = text(f"""
    INSERT INTO session_marks AS k (vehicle_id, since)
    SELECT l.vehicle_id, CAST(:hour AS timestamptz) FROM live_vehicles l
    WHERE {_in_range('l.vehicle_id')}
      AND EXISTS (SELECT 1 FROM vehicle_readings r
                  WHERE r.vehicle_id = l.vehicle_id AND r.ts >= :hour AND r.ts < :hour_end
                    AND r.kwh_delivered_dc > 0)
    ORDER BY 1
    {MARK}
""")

RANGE_HOUR, RANGE_DAY, RANGE_BLOCK = ([text(s) for s in statements] for statements in zip(
    *(_range_statements(kind) for kind in KINDS), strict=True))


def roll_up(engine: Engine, now: datetime, max_hours: int = 24,
            range_devices: int = RANGE_DEVICES) -> int:
    """Roll up the hours that have closed since the watermark, a device range
    per transaction, at most `max_hours` of them; returns how many hours."""
    done = 0
    while done < max_hours:
        with engine.connect() as conn:  # a look without the lock, which would stop the drains
            if rolled_up_until(conn) + HOUR > now - SETTLE:
                break
        while (moved := roll_up_range(engine, now, range_devices)) is False:
            pass
        if moved is None:  # another roll-up was faster
            break
        done += 1
        store_marked_sessions(engine)  # the hour's, before the next hour marks more
    store_marked_sessions(engine)  # those of late readings and relinks, within a minute
    return done


def roll_up_range(engine: Engine, now: datetime, range_devices: int = RANGE_DEVICES) -> bool | None:
    """Roll up the next device range of the watermark's hour. True: the hour is
    done; False: more ranges left; None: the hour has not closed."""
    with engine.begin() as conn:
        hour, first = _lock(conn)
        if hour + HOUR > now - SETTLE:
            return None
        bounds = {"first": first or "", "hour": hour, "hour_end": hour + HOUR,
                  "day": floor_to(hour, DAY), "day_end": floor_to(hour, DAY) + DAY,
                  "block": floor_to(hour, BLOCK), "block_end": floor_to(hour, BLOCK) + BLOCK}
        bounds["stop"] = conn.execute(RANGE_END, {"first": bounds["first"], "n": range_devices}).scalar()
        for statement in RANGE_HOUR:
            conn.execute(statement, bounds)
        conn.execute(MARK_HOUR, bounds)
        for last_hour_of, statements in (("block_end", RANGE_BLOCK), ("day_end", RANGE_DAY)):
            if hour + HOUR == bounds[last_hour_of]:
                for statement in statements:
                    conn.execute(statement, bounds)
        last = bounds["stop"] is None
        conn.execute(MOVE_WATERMARK, {"until": hour + HOUR if last else hour,
                                      "device": None if last else bounds["stop"]})
        return last


def _lock(conn: Connection) -> tuple[datetime, str | None]:
    row = lock_watermark(conn)
    return row.rolled_up_until, row.rolling_device


def _rebuild_statements(kind: str) -> list[str]:
    """Written in time order, as live roll-ups write them: a fleet-wide read of a
    time range then finds its rows together (in the hash aggregate's order, the
    fleet over a day read 46,000 hourly rows from 17,500 pages)."""
    k = KINDS[kind]
    dev = k["device"]
    return [
        f"DELETE FROM {kind}_15min WHERE bucket >= :start AND bucket < :end",
        f"""INSERT INTO {kind}_15min ({dev}, bucket, {k['columns']})
            SELECT {dev}, {floor_sql('ts', 'quarter')}, {k['sums']} FROM {k['history']}
            WHERE ts >= :start AND ts < :end GROUP BY 1, 2 ORDER BY 2, 1""",
        f"DELETE FROM {kind}_hourly WHERE hour >= :start AND hour < :end",
        f"""INSERT INTO {kind}_hourly ({dev}, hour, {k['columns']})
            SELECT {dev}, {floor_sql('bucket', 'hour')}, {k['resum']} FROM {kind}_15min
            WHERE bucket >= :start AND bucket < :end GROUP BY 1, 2 ORDER BY 2, 1""",
        *(statement for unit, column, period in (("6h", "bucket", "block"), ("daily", "day", "day"))
          for statement in (
              f"DELETE FROM {kind}_{unit} WHERE {column} >= :start AND {column} < :end",
              f"""INSERT INTO {kind}_{unit} ({dev}, {column}, {k['columns']})
                  SELECT {dev}, {floor_sql('hour', period)}, {k['resum']} FROM {kind}_hourly
                  WHERE hour >= :start AND hour < :end GROUP BY 1, 2 ORDER BY 2, 1""")),
        # Rollups finer than a day no longer kept were needed only for their days.
        *(f"""DELETE FROM {kind}_{unit} WHERE {UNITS[unit][0]} >= :start AND {UNITS[unit][0]} < :end
              AND {UNITS[unit][0]} < (SELECT hours_kept_since FROM rollup_watermark)"""
          for unit in KEPT_UNITS),
    ]


REBUILD = [text(s) for kind in KINDS for s in _rebuild_statements(kind)]


def rebuild(engine: Engine, start: datetime, end: datetime) -> None:
    """Recompute the hourly and daily rollups of every day that [start, end)
    touches from raw history (after bulk loads that bypass the drain). It holds
    the watermark lock throughout: drains wait for it."""
    bounds = {"start": floor_to(start, DAY), "end": ceil_to(end, DAY)}
    with engine.begin() as conn:
        lock_watermark(conn)
        for statement in REBUILD:
            conn.execute(statement, bounds)
        rebuild_sessions(conn, start)


KEPT_SINCE = text("SELECT hours_kept_since FROM rollup_watermark")
KEEP_HOURS_SINCE = text("""
    UPDATE rollup_watermark
    SET hours_kept_since = least(CAST(:cutoff AS timestamptz), date_trunc('day', rolled_up_until, 'UTC'))
    WHERE hours_kept_since IS NULL OR hours_kept_since < least(CAST(:cutoff AS timestamptz),
                                                              date_trunc('day', rolled_up_until, 'UTC'))
""")


def drop_hours_before(engine: Engine, cutoff: datetime) -> int:
    """Stop reading the rollups finer than a day (KEPT_UNITS) before `cutoff` (a
    midnight; never a day not rolled up yet), and delete those that the previous
    call stopped reading: a query may have read the old mark just before it
    moved. Returns the rows deleted."""
    with engine.begin() as conn:
        previous = conn.execute(KEPT_SINCE).scalar()
        lock_watermark(conn)
        conn.execute(KEEP_HOURS_SINCE, {"cutoff": cutoff})
    if previous is None:
        return 0
    deleted = 0
    with engine.begin() as conn:
        for kind in KINDS:
            for unit in KEPT_UNITS:
                deleted += conn.execute(text(f"DELETE FROM {kind}_{unit} WHERE {UNITS[unit][0]} < :before"),
                                        {"before": previous}).rowcount
    return deleted
