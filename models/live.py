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
