"""GET /v1/live/...: the newest reading of a device, from the hot store."""

from __future__ import annotations

from flask import Blueprint

from models.live import live_meter, live_vehicle
from readings.timestamps import format_rfc3339
from web.auth import require
from web.errors import ApiError
from web.reads import read_engine

bp = Blueprint("live", __name__)
bp.before_request(require("operator"))


@bp.get("/v1/live/vehicles/<vehicle_id>")
def vehicle(vehicle_id: str):
    row = live_vehicle(read_engine(), vehicle_id)
    if row is None:
        raise ApiError(404, "No reading from this vehicle.")
    return {"vehicleId": row.vehicle_id, "soc": row.soc, "kwhDeliveredDc": row.kwh_delivered_dc,
            "batteryTemp": row.battery_temp, "timestamp": format_rfc3339(row.ts)}


@bp.get("/v1/live/meters/<meter_id>")
def meter(meter_id: str):
    row = live_meter(read_engine(), meter_id)
    if row is None:
        raise ApiError(404, "No reading from this meter.")
    return {"meterId": row.meter_id, "kwhConsumedAc": row.kwh_consumed_ac,
            "voltage": row.voltage, "timestamp": format_rfc3339(row.ts)}
