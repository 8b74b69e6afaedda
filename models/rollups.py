"""Hourly rollups of history: per device and UTC hour, the sums that fleet-wide
queries need, so that they read one row per device-hour instead of sixty.

The drain maintains them in the same statement that inserts history, from the
rows it really inserted (a duplicate adds nothing). `rebuild` recomputes them
from raw history, for bulk loads that bypass the drain.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Double, Engine, Integer, Text, text
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base


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


# How a device-hour is rolled up, stated once for the drain and for rebuild.
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

# Both take the rows just inserted into history as the CTE `stored`; ordered so
# that concurrent workers lock rollup rows in the same order.
METER_ROLLUP_CTE = METER_INSERT + """
    FROM stored GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (meter_id, hour) DO UPDATE
        SET kwh_consumed_ac = h.kwh_consumed_ac + excluded.kwh_consumed_ac,
            readings = h.readings + excluded.readings
"""

VEHICLE_ROLLUP_CTE = VEHICLE_INSERT + """
    FROM stored GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (vehicle_id, hour) DO UPDATE
        SET kwh_delivered_dc = h.kwh_delivered_dc + excluded.kwh_delivered_dc,
            battery_temp_sum = h.battery_temp_sum + excluded.battery_temp_sum,
            battery_temp_max = greatest(h.battery_temp_max, excluded.battery_temp_max),
            readings = h.readings + excluded.readings
"""

REBUILD = [
    text("DELETE FROM meter_hourly WHERE hour >= :start AND hour < :end"),
    text("DELETE FROM vehicle_hourly WHERE hour >= :start AND hour < :end"),
    text(METER_INSERT + "FROM meter_readings WHERE ts >= :start AND ts < :end GROUP BY 1, 2"),
    text(VEHICLE_INSERT + "FROM vehicle_readings WHERE ts >= :start AND ts < :end GROUP BY 1, 2"),
]

HOUR_BOUNDS = text(
    "SELECT date_trunc('hour', CAST(:start AS timestamptz), 'UTC'),"
    " date_trunc('hour', CAST(:end AS timestamptz) - interval '1 microsecond', 'UTC')"
    " + interval '1 hour'"
)


def rebuild(engine: Engine, start: datetime, end: datetime) -> None:
    """Recompute the rollups of every hour that [start, end) touches, from raw history."""
    with engine.begin() as conn:
        hour_start, hour_end = conn.execute(HOUR_BOUNDS, {"start": start, "end": end}).one()
        for statement in REBUILD:
            conn.execute(statement, {"start": hour_start, "end": hour_end})
