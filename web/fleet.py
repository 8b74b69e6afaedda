"""GET /v1/analytics/fleet: every vehicle's energy and efficiency over a window."""

from __future__ import annotations

from flask import Blueprint

from models.analytics import ratio
from models.fleet import fleet_page
from web.analytics import query, window
from web.auth import require
from web.reads import read_engine
from web.schemas import FleetQuerySchema
from web.timestamps import format_rfc3339

bp = Blueprint("fleet", __name__)
bp.before_request(require("operator"))

fleet_query = FleetQuerySchema()


@bp.get("/v1/analytics/fleet")
def fleet():
    from_ts, to_ts = window()
    q = query(fleet_query)
    page = fleet_page(read_engine(), from_ts, to_ts, q["sort"],
                      q["order"] == "desc", q["limit"], q["offset"])
    return {
        "window": {"from": format_rfc3339(from_ts), "to": format_rfc3339(to_ts)},
        "totals": {
            "vehicles": page.total_vehicles,
            "acConsumedKwh": page.total_ac_kwh,
            "dcDeliveredKwh": page.total_dc_kwh,
            "efficiencyRatio": ratio(page.total_dc_kwh, page.total_ac_kwh),
            "readings": {"meter": page.total_meter_readings, "vehicle": page.total_vehicle_readings},
        },
        "vehicles": [
            {"vehicleId": v.vehicle_id, "acConsumedKwh": v.ac_kwh, "dcDeliveredKwh": v.dc_kwh,
             "efficiencyRatio": v.efficiency, "avgBatteryTemp": v.avg_temp,
             "maxBatteryTemp": v.max_temp,
             "readings": {"meter": v.meter_readings, "vehicle": v.vehicle_readings}}
            for v in page.vehicles
        ],
        "page": {"sort": q["sort"], "order": q["order"], "limit": q["limit"], "offset": q["offset"]},
    }
