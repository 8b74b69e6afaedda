"""History: append-only tables of every reading ever stored (the cold store),
partitioned by day (see models/partitions.py).

The primary key (device, instant) is both the deduplication key and the index
that serves "one device, a time range".
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Double, Index, Text
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base


class MeterReading(Base):
    __tablename__ = "meter_readings"
    __table_args__ = (
        # Fleet-wide scans of a time range (no device): tiny, as rows arrive in time order.
        # It holds the device id too, as every index of history must for Citus
        # (docs/scaling.md); a BRIN index answers on its first column alone.
        Index("ix_meter_readings_ts", "ts", "meter_id", postgresql_using="brin"),
        {"postgresql_partition_by": "RANGE (ts)"},
    )

    meter_id: Mapped[str] = mapped_column(Text, primary_key=True)
    ts: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), primary_key=True)
    kwh_consumed_ac: Mapped[float] = mapped_column(Double)
    voltage: Mapped[float] = mapped_column(Double)


class VehicleReading(Base):
    __tablename__ = "vehicle_readings"
    __table_args__ = (
        Index("ix_vehicle_readings_ts", "ts", "vehicle_id", postgresql_using="brin"),
        {"postgresql_partition_by": "RANGE (ts)"},
    )

    vehicle_id: Mapped[str] = mapped_column(Text, primary_key=True)
    ts: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), primary_key=True)
    soc: Mapped[float] = mapped_column(Double)
    kwh_delivered_dc: Mapped[float] = mapped_column(Double)
    battery_temp: Mapped[float] = mapped_column(Double)
