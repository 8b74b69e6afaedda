"""Live state: the newest reading of each device (the hot store), one row per device."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Double, Engine, Row, Text, text
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base, read_connection


class LiveMeter(Base):
    __tablename__ = "live_meters"

    meter_id: Mapped[str] = mapped_column(Text, primary_key=True)
    ts: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True))
    kwh_consumed_ac: Mapped[float] = mapped_column(Double)
    voltage: Mapped[float] = mapped_column(Double)


class LiveVehicle(Base):
    __tablename__ = "live_vehicles"

    vehicle_id: Mapped[str] = mapped_column(Text, primary_key=True)
    ts: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True))
    soc: Mapped[float] = mapped_column(Double)
    kwh_delivered_dc: Mapped[float] = mapped_column(Double)
    battery_temp: Mapped[float] = mapped_column(Double)


# The newest reading of each device in {source} (rows with the history table's
# columns) becomes its live state, unless the live state holds a newer one.
# models/store.py feeds it the rows a batch stored; the simulator's backfill, its
# history's last minute.
UPSERT_LIVE_METERS = """
    INSERT INTO live_meters AS cur (meter_id, ts, kwh_consumed_ac, voltage)
    SELECT DISTINCT ON (meter_id) meter_id, ts, kwh_consumed_ac, voltage
    FROM {source} ORDER BY meter_id, ts DESC
    ON CONFLICT (meter_id) DO UPDATE
        SET ts = excluded.ts, kwh_consumed_ac = excluded.kwh_consumed_ac,
            voltage = excluded.voltage
        WHERE cur.ts < excluded.ts
"""
UPSERT_LIVE_VEHICLES = """
    INSERT INTO live_vehicles AS cur (vehicle_id, ts, soc, kwh_delivered_dc, battery_temp)
    SELECT DISTINCT ON (vehicle_id) vehicle_id, ts, soc, kwh_delivered_dc, battery_temp
    FROM {source} ORDER BY vehicle_id, ts DESC
    ON CONFLICT (vehicle_id) DO UPDATE
        SET ts = excluded.ts, soc = excluded.soc,
            kwh_delivered_dc = excluded.kwh_delivered_dc,
            battery_temp = excluded.battery_temp
        WHERE cur.ts < excluded.ts
"""

LIVE_METER = text(
    "SELECT meter_id, kwh_consumed_ac, voltage, ts FROM live_meters WHERE meter_id = :id"
)
LIVE_VEHICLE = text(
    """
    SELECT vehicle_id, soc, kwh_delivered_dc, battery_temp, ts
    FROM live_vehicles WHERE vehicle_id = :id
    """
)


def live_meter(engine: Engine, meter_id: str) -> Row | None:
    """The meter's newest reading, or None for a meter never heard from."""
    with read_connection(engine) as conn:
        return conn.execute(LIVE_METER, {"id": meter_id}).first()


def live_vehicle(engine: Engine, vehicle_id: str) -> Row | None:
    """The vehicle's newest reading, or None for a vehicle never heard from."""
    with read_connection(engine) as conn:
        return conn.execute(LIVE_VEHICLE, {"id": vehicle_id}).first()
