"""Builders of valid readings for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

NOW = datetime.now(UTC).replace(microsecond=0)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def meter(meter_id: str = "M-101", ac: float = 14.6, voltage: float = 230,
          at: datetime | None = None, **extra) -> dict:
    return {"meterId": meter_id, "kwhConsumedAc": ac, "voltage": voltage,
            "timestamp": iso(at or NOW - timedelta(minutes=5)), **extra}


def vehicle(vehicle_id: str = "V-201", soc: float = 75, dc: float = 11.2, temp: float = 36,
            at: datetime | None = None, **extra) -> dict:
    return {"vehicleId": vehicle_id, "soc": soc, "kwhDeliveredDc": dc, "batteryTemp": temp,
            "timestamp": iso(at or NOW - timedelta(minutes=5)), **extra}
