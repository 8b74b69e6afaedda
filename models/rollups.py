"""Hourly rollups of history: per device and UTC hour, the sums that fleet-wide
queries need, so that they read one row per device-hour instead of sixty.

The rollups are complete for the hours before the watermark (`rollup_watermark`,
one row) and are not read for later ones, which analytics take from history.
A beat task rolls each hour up from history once it has closed (`roll_up`) and
moves the watermark past it. A reading that arrives later than that (a late
one, for an hour already rolled up) is added to its rollup by the drain, in the
statement that inserts it into history.

The two must not miss each other. The drain reads the watermark FOR SHARE, in
its own statement at the start of its transaction; `roll_up` locks it FOR
UPDATE before reading history. So a roll-up waits for the drains in flight to
commit (their readings are then in what it reads), and the drains that start
meanwhile wait for it, then see the moved watermark and upsert their late
readings themselves. `rebuild` recomputes any hours from raw history, for bulk
loads that bypass the drain, under the same lock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Boolean, CheckConstraint, Double, Engine, Integer, Text, text
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base
from models.hours import HOUR


class MeterHourly(Base):
    __tablename__ = "meter_hourly"

    meter_id: Mapped[str] = mapped_column(Text, primary_key=True)
    hour: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), primary_key=True)
    kwh_consumed_ac: Mapped[float] = mapped_column(Double)
    readings: Mapped[int] = mapped_column(Integer)


class VehicleHourly(Base):
    __tablename__ = "vehicle_hourly"

    vehicle_id: Mapped[str] = mapped_column(Text, primary_key=True)
    hour: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), primary_key=True)
    kwh_delivered_dc: Mapped[float] = mapped_column(Double)
    battery_temp_sum: Mapped[float] = mapped_column(Double)
    battery_temp_max: Mapped[float] = mapped_column(Double)
    readings: Mapped[int] = mapped_column(Integer)


class RollupWatermark(Base):
    """One row: the hours before `rolled_up_until` are rolled up."""

    __tablename__ = "rollup_watermark"
    __table_args__ = (CheckConstraint("one", name="one_row"),)

    one: Mapped[bool] = mapped_column(Boolean, primary_key=True, server_default=text("true"))
    rolled_up_until: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True))


# How a device-hour is rolled up, stated once for the drain, roll_up and rebuild.
METER_INSERT = """
    INSERT INTO meter_hourly AS h (meter_id, hour, kwh_consumed_ac, readings)
    SELECT meter_id, date_trunc('hour', ts, 'UTC'), sum(kwh_consumed_ac), count(*)
"""
VEHICLE_INSERT = """
    INSERT INTO vehicle_hourly AS h
        (vehicle_id, hour, kwh_delivered_dc, battery_temp_sum, battery_temp_max, readings)
    SELECT vehicle_id, date_trunc('hour', ts, 'UTC'), sum(kwh_delivered_dc), sum(battery_temp),
           max(battery_temp), count(*)
"""

# Both take the rows just inserted into history as the CTE `stored`, and add
# those of hours already rolled up (the drain's parameter `rolled_up_until`);
# ordered so that concurrent workers lock rollup rows in the same order.
METER_ROLLUP_CTE = METER_INSERT + """
    FROM stored WHERE ts < %(rolled_up_until)s GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (meter_id, hour) DO UPDATE
        SET kwh_consumed_ac = h.kwh_consumed_ac + excluded.kwh_consumed_ac,
            readings = h.readings + excluded.readings
"""

VEHICLE_ROLLUP_CTE = VEHICLE_INSERT + """
    FROM stored WHERE ts < %(rolled_up_until)s GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (vehicle_id, hour) DO UPDATE
        SET kwh_delivered_dc = h.kwh_delivered_dc + excluded.kwh_delivered_dc,
            battery_temp_sum = h.battery_temp_sum + excluded.battery_temp_sum,
            battery_temp_max = greatest(h.battery_temp_max, excluded.battery_temp_max),
            readings = h.readings + excluded.readings
"""

# Recomputing an hour from history. Rows already there (from a rebuild, or the
# drain before migration 0007) came from the same history: overwritten.
ROLL_UP = [
    text(METER_INSERT + """FROM meter_readings WHERE ts >= :start AND ts < :end GROUP BY 1, 2
         ON CONFLICT (meter_id, hour) DO UPDATE
             SET kwh_consumed_ac = excluded.kwh_consumed_ac, readings = excluded.readings"""),
    text(VEHICLE_INSERT + """FROM vehicle_readings WHERE ts >= :start AND ts < :end GROUP BY 1, 2
         ON CONFLICT (vehicle_id, hour) DO UPDATE
             SET kwh_delivered_dc = excluded.kwh_delivered_dc,
                 battery_temp_sum = excluded.battery_temp_sum,
                 battery_temp_max = excluded.battery_temp_max, readings = excluded.readings"""),
]

# A rebuild also drops rows of device-hours that history no longer holds. The
# roll-up need not: history is append-only, and a later hour has no such rows.
REBUILD = [
    text("DELETE FROM meter_hourly WHERE hour >= :start AND hour < :end"),
    text("DELETE FROM vehicle_hourly WHERE hour >= :start AND hour < :end"),
    *ROLL_UP,
]

HOUR_BOUNDS = text(
    "SELECT date_trunc('hour', CAST(:start AS timestamptz), 'UTC'),"
    " date_trunc('hour', CAST(:end AS timestamptz) - interval '1 microsecond', 'UTC')"
    " + interval '1 hour'"
)


# The drain's lock: shared with other drains, it only keeps roll_up out.
WATERMARK_FOR_DRAIN = "SELECT rolled_up_until FROM rollup_watermark FOR SHARE"
WATERMARK = text("SELECT rolled_up_until FROM rollup_watermark")
LOCK_WATERMARK = text("SELECT rolled_up_until FROM rollup_watermark FOR UPDATE")
MOVE_WATERMARK = text("UPDATE rollup_watermark SET rolled_up_until = :until")


def rolled_up_until(conn) -> datetime:
    """The watermark: the hours before it are rolled up."""
    return conn.execute(WATERMARK).scalar_one()


# An hour is rolled up this long after it ends: the readings of its last
# minute are drained by then, and fewer take the late path.
SETTLE = timedelta(minutes=1)


def rebuild(engine: Engine, start: datetime, end: datetime) -> None:
    """Recompute the rollups of every hour that [start, end) touches, from raw history."""
    with engine.begin() as conn:
        conn.execute(LOCK_WATERMARK)
        hour_start, hour_end = conn.execute(HOUR_BOUNDS, {"start": start, "end": end}).one()
        for statement in REBUILD:
            conn.execute(statement, {"start": hour_start, "end": hour_end})


def roll_up(engine: Engine, now: datetime, max_hours: int = 24) -> int:
    """Roll up the hours that have closed since the watermark, one transaction
    each (drains wait for one hour's aggregation at most), at most `max_hours`
    of them; returns how many."""
    done = 0
    while done < max_hours:
        with engine.connect() as conn:  # a look without the lock, which would stop the drains
            if rolled_up_until(conn) + HOUR > now - SETTLE:
                break
        with engine.begin() as conn:
            start = conn.execute(LOCK_WATERMARK).scalar_one()
            if start + HOUR > now - SETTLE:  # another roll_up was faster
                break
            for statement in ROLL_UP:
                conn.execute(statement, {"start": start, "end": start + HOUR})
            conn.execute(MOVE_WATERMARK, {"until": start + HOUR})
        done += 1
    return done
