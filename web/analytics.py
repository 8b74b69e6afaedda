"""GET /v1/analytics/performance/{vehicleId}: energy and efficiency over a window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, request
from marshmallow import ValidationError

from models.analytics import vehicle_known, vehicle_performance, vehicle_series
from web.auth import require
from web.errors import ApiError
from web.reads import read_engine
from web.schemas import BUCKETS, SeriesQuerySchema
from web.timestamps import format_rfc3339, parse_rfc3339

bp = Blueprint("analytics", __name__)
bp.before_request(require("operator"))

DEFAULT_WINDOW = timedelta(hours=24)
MAX_BUCKETS = 5000
series_query = SeriesQuerySchema()


def window() -> tuple[datetime, datetime]:
    """[from, to) from the query; `to` defaults to now and `from` to 24 h before `to`."""
    bounds = {}
    for name in ("from", "to"):
        raw = request.args.get(name)
        if raw is None:
            continue
        try:
            bounds[name] = parse_rfc3339(raw)
        except ValueError:
            raise ApiError(400, f"`{name}` must be an RFC 3339 date-time with a time zone.") from None
    to_ts = bounds.get("to") or datetime.now(UTC)
    from_ts = bounds.get("from") or to_ts - DEFAULT_WINDOW
    if from_ts >= to_ts:
        raise ApiError(400, "`from` must be before `to`.")
    return from_ts, to_ts


@bp.get("/v1/analytics/performance/<vehicle_id>")
def performance(vehicle_id: str):
    from_ts, to_ts = window()
    perf = vehicle_performance(read_engine(), vehicle_id, from_ts, to_ts)
    if perf is None:
        raise ApiError(404, "This vehicle has never sent a reading and has no meter linked.")
    return {
        "vehicleId": vehicle_id,
        "window": {"from": format_rfc3339(from_ts), "to": format_rfc3339(to_ts)},
        "totalEnergy": {"acConsumedKwh": perf.ac_kwh, "dcDeliveredKwh": perf.dc_kwh},
        "efficiencyRatio": perf.efficiency,
        "avgBatteryTemp": perf.avg_battery_temp,
        "readings": {"meter": perf.meter_readings, "vehicle": perf.vehicle_readings},
    }


def query(schema):
    """The query arguments loaded by `schema`; 400 naming the bad ones."""
    try:
        return schema.load(request.args)
    except ValidationError as exc:
        raise ApiError(400, "Bad query: " + "; ".join(
            f"{name}: {' '.join(msgs)}" for name, msgs in exc.messages.items())) from None


@bp.get("/v1/analytics/performance/<vehicle_id>/series")
def series(vehicle_id: str):
    from_ts, to_ts = window()
    name = query(series_query)["bucket"]
    if (to_ts - from_ts) / BUCKETS[name] > MAX_BUCKETS:
        raise ApiError(400, f"At most {MAX_BUCKETS} buckets: widen the bucket or narrow the window.")
    engine = read_engine()
    if not vehicle_known(engine, vehicle_id):
        raise ApiError(404, "This vehicle has never sent a reading and has no meter linked.")
    buckets = vehicle_series(engine, vehicle_id, from_ts, to_ts, BUCKETS[name])
    return {
        "vehicleId": vehicle_id,
        "window": {"from": format_rfc3339(from_ts), "to": format_rfc3339(to_ts)},
        "bucket": name,
        "series": [
            {"start": format_rfc3339(b.start), "acConsumedKwh": b.ac_kwh, "dcDeliveredKwh": b.dc_kwh,
             "efficiencyRatio": b.efficiency, "avgBatteryTemp": b.avg_battery_temp,
             "readings": {"meter": b.meter_readings, "vehicle": b.vehicle_readings}}
            for b in buckets
        ],
    }
