"""GET /v1/analytics/fleet: every vehicle's energy and efficiency over a window."""

from __future__ import annotations

from flask import Blueprint

from models.analytics import ratio
from models.fleet import HISTOGRAM_EDGES, fleet_page
from readings.schemas import FleetQuerySchema
from readings.timestamps import format_rfc3339
from web.api.csv_export import negotiated
from web.api.params import answered, query, window
from web.auth import require
from web.reads import read_engine

bp = Blueprint("fleet", __name__)
bp.before_request(require("operator"))

fleet_query = FleetQuerySchema()
CSV_COLUMNS = ["vehicleId", "acConsumedKwh", "dcDeliveredKwh", "efficiencyRatio", "avgBatteryTemp",
               "maxBatteryTemp", "liveSoc", "lastSeen", "readings.meter", "readings.vehicle"]


@bp.get("/v1/analytics/fleet")
def fleet():
    from_ts, to_ts = window()
    q = query(fleet_query)
    page = fleet_page(read_engine(), from_ts, to_ts, q["sort"],
                      q["order"] == "desc", q["limit"], q["offset"], q["search"])
    body = {
        "window": {"from": format_rfc3339(from_ts), "to": format_rfc3339(to_ts)},
        "answeredWindow": answered(page.window),
        "totals": {
            "vehicles": page.total_vehicles,
            "acConsumedKwh": page.total_ac_kwh,
            "dcDeliveredKwh": page.total_dc_kwh,
            "efficiencyRatio": ratio(page.total_dc_kwh, page.total_ac_kwh),
            "readings": {"meter": page.total_meter_readings, "vehicle": page.total_vehicle_readings},
            "efficiencyHistogram": [{"from": lo, "to": hi, "vehicles": n} for (lo, hi), n
                                    in zip(HISTOGRAM_EDGES, page.efficiency_histogram, strict=True)],
        },
        "vehicles": [
            {"vehicleId": v.vehicle_id, "acConsumedKwh": v.ac_kwh, "dcDeliveredKwh": v.dc_kwh,
             "efficiencyRatio": v.efficiency, "avgBatteryTemp": v.avg_temp,
             "maxBatteryTemp": v.max_temp, "liveSoc": v.live_soc,
             "lastSeen": format_rfc3339(v.last_seen) if v.last_seen else None,
             "readings": {"meter": v.meter_readings, "vehicle": v.vehicle_readings}}
            for v in page.vehicles
        ],
        "page": {"sort": q["sort"], "order": q["order"], "limit": q["limit"], "offset": q["offset"],
                 "search": q["search"], "matched": page.matched},
    }
    return negotiated(body, "vehicles", CSV_COLUMNS, "fleet.csv")
