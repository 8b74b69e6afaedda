"""GET /v1/analytics/performance/{vehicleId}: energy and efficiency over a window."""

from __future__ import annotations

from flask import Blueprint

from models.analytics import bucket_count, vehicle_known, vehicle_performance, vehicle_series
from readings.schemas import BUCKETS, SeriesQuerySchema
from readings.timestamps import format_rfc3339
from web.api.csv_export import negotiated
from web.api.params import answered, query, window
from web.auth import require
from web.errors import ApiError
from web.reads import read_engine

bp = Blueprint("analytics", __name__)
bp.before_request(require("operator"))

MAX_BUCKETS = 5000
series_query = SeriesQuerySchema()
SERIES_CSV_COLUMNS = ["start", "acConsumedKwh", "dcDeliveredKwh", "efficiencyRatio", "avgBatteryTemp",
                      "readings.meter", "readings.vehicle"]


@bp.get("/v1/analytics/performance/<vehicle_id>")
def performance(vehicle_id: str):
    from_ts, to_ts = window()
    perf = vehicle_performance(read_engine(), vehicle_id, from_ts, to_ts)
    if perf is None:
        raise ApiError(404, "This vehicle has never sent a reading and has no meter linked.")
    return {
        "vehicleId": vehicle_id,
        "window": {"from": format_rfc3339(from_ts), "to": format_rfc3339(to_ts)},
        "answeredWindow": answered(perf.window),
        "totalEnergy": {"acConsumedKwh": perf.ac_kwh, "dcDeliveredKwh": perf.dc_kwh},
        "efficiencyRatio": perf.efficiency,
        "avgBatteryTemp": perf.avg_battery_temp,
        "readings": {"meter": perf.meter_readings, "vehicle": perf.vehicle_readings},
    }


@bp.get("/v1/analytics/performance/<vehicle_id>/series")
def series(vehicle_id: str):
    from_ts, to_ts = window()
    name = query(series_query)["bucket"]
    if bucket_count(from_ts, to_ts, BUCKETS[name]) > MAX_BUCKETS:
        raise ApiError(400, f"At most {MAX_BUCKETS} buckets: widen the bucket or narrow the window.")
    engine = read_engine()
    if not vehicle_known(engine, vehicle_id):
        raise ApiError(404, "This vehicle has never sent a reading and has no meter linked.")
    buckets, split = vehicle_series(engine, vehicle_id, from_ts, to_ts, BUCKETS[name])
    body = {
        "vehicleId": vehicle_id,
        "window": {"from": format_rfc3339(from_ts), "to": format_rfc3339(to_ts)},
        "answeredWindow": answered(split),
        "bucket": name,
        "series": [
            {"start": format_rfc3339(b.start), "acConsumedKwh": b.ac_kwh, "dcDeliveredKwh": b.dc_kwh,
             "efficiencyRatio": b.efficiency, "avgBatteryTemp": b.avg_battery_temp,
             "readings": {"meter": b.meter_readings, "vehicle": b.vehicle_readings}}
            for b in buckets
        ],
    }
    return negotiated(body, "series", SERIES_CSV_COLUMNS, f"series-{vehicle_id}.csv")
