"""Rollups of history: per device and UTC day, 6 hours, hour or 15 minutes, the
sums analytics need, so that a window reads one row per device-day or
device-hour instead of 1,440 or 60 readings; fleet-wide reads also read one row
per device and 6-hour block of the hours outside whole days, and per device and
quarter hour of the edges' partial hours (models/windows.py says which part of a
window comes from which).

What the rollups hold is recorded in one row, `rollup_watermark`:

- `rolled_up_until` (W): every device-hour before W is rolled up (with its
  quarter hours), and every device-day and 6-hour block whose last hour is;
- `rolling_device` (D): W's own hour is being rolled up in device ranges
  (models/roll_up.py), and is rolled up for the devices before D (none when
  NULL); a device-day or block is rolled up with its last hour;
- `hours_kept_since` (K): hourly, 6-hour and 15-minute rollups before K have
  been dropped (ROLLUP_HOURLY_RETENTION_DAYS; NULL: none), daily ones are kept.

Analytics read rollups only before W, and those finer than a day only from K;
the device-hours of hour W already rolled up are not read until the whole hour
is.

A reading stored after its device-hour was rolled up (a late one) is added to
its 15-minute, hourly and 6-hour (if kept) and daily rollups by the drain, in
the statement that inserts it into history. The drain and a roll-up must not miss each other: the
drain reads the watermark FOR SHARE at the start of its transaction, a roll-up
locks it FOR UPDATE before reading history. So a roll-up waits for the drains
in flight to commit (their readings are then in what it reads), and the drains
that start meanwhile wait for it, then see the moved watermark and add their
late readings themselves.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Boolean, CheckConstraint, Connection, Double, Index, Integer, Row, Text, text
from sqlalchemy.dialects.postgresql import INTERVAL, TIMESTAMP
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base
from models.windows import RollupMarks, floor_sql

TS = TIMESTAMP(timezone=True)


class MeterHourly(Base):
    __tablename__ = "meter_hourly"
    # Fleet-wide reads of a time range (no device): the edges' hours of a long window.
    __table_args__ = (Index("ix_meter_hourly_hour", "hour", "meter_id"),)

    meter_id: Mapped[str] = mapped_column(Text, primary_key=True)
    hour: Mapped[datetime] = mapped_column(TS, primary_key=True)
    kwh_consumed_ac: Mapped[float] = mapped_column(Double)
    readings: Mapped[int] = mapped_column(Integer)


class VehicleHourly(Base):
    __tablename__ = "vehicle_hourly"
    __table_args__ = (Index("ix_vehicle_hourly_hour", "hour", "vehicle_id"),)

    vehicle_id: Mapped[str] = mapped_column(Text, primary_key=True)
    hour: Mapped[datetime] = mapped_column(TS, primary_key=True)
    kwh_delivered_dc: Mapped[float] = mapped_column(Double)
    battery_temp_sum: Mapped[float] = mapped_column(Double)
    battery_temp_max: Mapped[float] = mapped_column(Double)
    readings: Mapped[int] = mapped_column(Integer)


class MeterDaily(Base):
    __tablename__ = "meter_daily"
    __table_args__ = (Index("ix_meter_daily_day", "day", "meter_id"),)

    meter_id: Mapped[str] = mapped_column(Text, primary_key=True)
    day: Mapped[datetime] = mapped_column(TS, primary_key=True)
    kwh_consumed_ac: Mapped[float] = mapped_column(Double)
    readings: Mapped[int] = mapped_column(Integer)


class VehicleDaily(Base):
    __tablename__ = "vehicle_daily"
    __table_args__ = (Index("ix_vehicle_daily_day", "day", "vehicle_id"),)

    vehicle_id: Mapped[str] = mapped_column(Text, primary_key=True)
    day: Mapped[datetime] = mapped_column(TS, primary_key=True)
    kwh_delivered_dc: Mapped[float] = mapped_column(Double)
    battery_temp_sum: Mapped[float] = mapped_column(Double)
    battery_temp_max: Mapped[float] = mapped_column(Double)
    readings: Mapped[int] = mapped_column(Integer)


class Meter15Min(Base):
    """Read only fleet-wide, by time: the edges' partial hours of a fleet window
    (one device reads its edges from history)."""

    __tablename__ = "meter_15min"
    __table_args__ = (Index("ix_meter_15min_bucket", "bucket", "meter_id"),)

    meter_id: Mapped[str] = mapped_column(Text, primary_key=True)
    bucket: Mapped[datetime] = mapped_column(TS, primary_key=True)
    kwh_consumed_ac: Mapped[float] = mapped_column(Double)
    readings: Mapped[int] = mapped_column(Integer)


class Vehicle15Min(Base):
    __tablename__ = "vehicle_15min"
    __table_args__ = (Index("ix_vehicle_15min_bucket", "bucket", "vehicle_id"),)

    vehicle_id: Mapped[str] = mapped_column(Text, primary_key=True)
    bucket: Mapped[datetime] = mapped_column(TS, primary_key=True)
    kwh_delivered_dc: Mapped[float] = mapped_column(Double)
    battery_temp_sum: Mapped[float] = mapped_column(Double)
    battery_temp_max: Mapped[float] = mapped_column(Double)
    readings: Mapped[int] = mapped_column(Integer)


class Meter6h(Base):
    """Read only fleet-wide, by time: the whole 6-hour blocks of a fleet window's
    hours outside whole days (one device reads those hours)."""

    __tablename__ = "meter_6h"
    __table_args__ = (Index("ix_meter_6h_bucket", "bucket", "meter_id"),)

    meter_id: Mapped[str] = mapped_column(Text, primary_key=True)
    bucket: Mapped[datetime] = mapped_column(TS, primary_key=True)
    kwh_consumed_ac: Mapped[float] = mapped_column(Double)
    readings: Mapped[int] = mapped_column(Integer)


class Vehicle6h(Base):
    __tablename__ = "vehicle_6h"
    __table_args__ = (Index("ix_vehicle_6h_bucket", "bucket", "vehicle_id"),)

    vehicle_id: Mapped[str] = mapped_column(Text, primary_key=True)
    bucket: Mapped[datetime] = mapped_column(TS, primary_key=True)
    kwh_delivered_dc: Mapped[float] = mapped_column(Double)
    battery_temp_sum: Mapped[float] = mapped_column(Double)
    battery_temp_max: Mapped[float] = mapped_column(Double)
    readings: Mapped[int] = mapped_column(Integer)


class RollupWatermark(Base):
    """One row: what the rollups hold (module docstring)."""

    __tablename__ = "rollup_watermark"
    __table_args__ = (CheckConstraint("one", name="one_row"),)

    one: Mapped[bool] = mapped_column(Boolean, primary_key=True, server_default=text("true"))
    rolled_up_until: Mapped[datetime] = mapped_column(TS)
    rolling_device: Mapped[str | None] = mapped_column(Text)
    hours_kept_since: Mapped[datetime | None] = mapped_column(TS)
    # Stored charging sessions (models/session_store.py) begin here, found with this gap.
    sessions_from: Mapped[datetime] = mapped_column(TS)
    sessions_gap: Mapped[timedelta] = mapped_column(
        INTERVAL, server_default=text("interval '15 minutes'"))


# The rollup tables of each kind: the device column and the sums, stated once
# for the drain, the roll-up and the rebuild. `sums` are the aggregates over
# history; `merge` adds a row's sums to those already there.
KINDS = {
    "meter": {
        "history": "meter_readings", "device": "meter_id",
        "columns": "kwh_consumed_ac, readings",
        "sums": "sum(kwh_consumed_ac), count(*)",
        "resum": "sum(kwh_consumed_ac), sum(readings)",
        "merge": "kwh_consumed_ac = r.kwh_consumed_ac + excluded.kwh_consumed_ac,"
                 " readings = r.readings + excluded.readings",
        "replace": "kwh_consumed_ac = excluded.kwh_consumed_ac, readings = excluded.readings",
    },
    "vehicle": {
        "history": "vehicle_readings", "device": "vehicle_id",
        "columns": "kwh_delivered_dc, battery_temp_sum, battery_temp_max, readings",
        "sums": "sum(kwh_delivered_dc), sum(battery_temp), max(battery_temp), count(*)",
        "resum": "sum(kwh_delivered_dc), sum(battery_temp_sum), max(battery_temp_max), sum(readings)",
        "merge": "kwh_delivered_dc = r.kwh_delivered_dc + excluded.kwh_delivered_dc,"
                 " battery_temp_sum = r.battery_temp_sum + excluded.battery_temp_sum,"
                 " battery_temp_max = greatest(r.battery_temp_max, excluded.battery_temp_max),"
                 " readings = r.readings + excluded.readings",
        "replace": "kwh_delivered_dc = excluded.kwh_delivered_dc,"
                   " battery_temp_sum = excluded.battery_temp_sum,"
                   " battery_temp_max = excluded.battery_temp_max, readings = excluded.readings",
    },
}


def rolled_up_sql(device: str, hour: str) -> str:
    """SQL: whether the device-hour is rolled up, against the watermark row `m`."""
    return (f"({hour} < m.rolled_up_until"
            f" OR ({hour} = m.rolled_up_until AND {device} < m.rolling_device))")


# Each rollup table's suffix (`{kind}_{unit}`): its time column, its unit in
# floor_sql, and the hours from its start to its last hour, which rolls it up.
UNITS = {"15min": ("bucket", "quarter", 0), "hourly": ("hour", "hour", 0),
         "6h": ("bucket", "block", 5), "daily": ("day", "day", 23)}
# Those dropped with the hours before `hours_kept_since`.
KEPT_UNITS = ("15min", "hourly", "6h")


def late_rollups_cte(kind: str) -> str:
    """CTEs for the drain's statement: the rows just inserted into history
    (`stored`) whose device-hour, -block or -day is already rolled up are added
    to those rollups (those finer than a day only if kept). Ordered so that
    concurrent drains lock rollup rows in the same order."""
    k = KINDS[kind]
    dev = k["device"]
    hour = floor_sql("ts", "hour")
    ctes = []
    for unit, (column, floor, last_hour) in UNITS.items():
        start = floor_sql("ts", floor)
        rolled = rolled_up_sql(dev, f"{start} + interval '{last_hour} hours'" if last_hour else hour)
        kept = "\n          AND (m.hours_kept_since IS NULL OR ts >= m.hours_kept_since)" \
            if unit in KEPT_UNITS else ""
        ctes.append(f"""
    late_{unit} AS (
        INSERT INTO {kind}_{unit} AS r ({dev}, {column}, {k['columns']})
        SELECT {dev}, {start}, {k['sums']} FROM stored, rollup_watermark m
        WHERE {rolled}{kept}
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT ({dev}, {column}) DO UPDATE SET {k['merge']}
    )""")
    return ",".join(ctes)


# The drain's lock: shared with other drains, it only keeps roll-ups out.
WATERMARK_FOR_DRAIN = "SELECT rolled_up_until FROM rollup_watermark FOR SHARE"
# A roll-up's (and a recompute of stored sessions'): drains wait while it is held.
LOCK_WATERMARK = text("SELECT rolled_up_until, rolling_device FROM rollup_watermark FOR UPDATE")
# psycopg prepares a statement on its sixth run, and PostgreSQL then builds a
# generic plan of it at its sixth execution: over a year of daily partitions
# that took 50-90 ms, once per connection and statement, under the lock.
CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = force_custom_plan")


def lock_watermark(conn: Connection) -> Row:
    """Take the roll-up's lock for the transaction, which plans every statement
    for its own parameters (CUSTOM_PLANS); the watermark's row."""
    conn.execute(CUSTOM_PLANS)
    return conn.execute(LOCK_WATERMARK).one()


MARKS = text("SELECT rolled_up_until, hours_kept_since FROM rollup_watermark")


def rollup_marks(conn) -> RollupMarks:
    """What the rollups hold now, for splitting a window."""
    return RollupMarks(*conn.execute(MARKS).one())


def rolled_up_until(conn) -> datetime:
    """The watermark: the hours before it are rolled up."""
    return rollup_marks(conn).rolled_up_until
