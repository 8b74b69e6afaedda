"""History: append-only tables of every reading ever stored (the cold store).

The primary key (device, instant) is both the deduplication key and the index
that serves "one device, a time range".
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Double, Text
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base


class MeterReading(Base):
    __tablename__ = "meter_readings"

    meter_id: Mapped[str] = mapped_column(Text, primary_key=True)
    ts: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), primary_key=True)
    kwh_consumed_ac: Mapped[float] = mapped_column(Double)
    voltage: Mapped[float] = mapped_column(Double)


class VehicleReading(Base):
    __tablename__ = "vehicle_readings"

    vehicle_id: Mapped[str] = mapped_column(Text, primary_key=True)
    ts: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), primary_key=True)
    soc: Mapped[float] = mapped_column(Double)
    kwh_delivered_dc: Mapped[float] = mapped_column(Double)
    battery_temp: Mapped[float] = mapped_column(Double)
