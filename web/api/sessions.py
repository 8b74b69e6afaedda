"""Charging sessions: one vehicle's, and the whole fleet's, worst first."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, current_app

from models.analytics import vehicle_known
from models.sessions import SORTS, Session, fleet_sessions, vehicle_sessions
from readings.schemas import SessionsQuerySchema
from readings.timestamps import format_rfc3339
from web.api.csv_export import negotiated
from web.api.params import query, window
from web.auth import require
from web.errors import ApiError
from web.reads import read_engine

bp = Blueprint("sessions", __name__)
bp.before_request(require("operator"))

sessions_query = SessionsQuerySchema()
COLUMNS = ["start", "end", "acConsumedKwh", "dcDeliveredKwh", "lossKwh", "lossShare",
           "efficiencyRatio", "socStart", "socEnd", "avgBatteryTemp", "maxBatteryTemp", "meterIds"]


def session_json(s: Session) -> dict:
    return {"start": format_rfc3339(s.start), "end": format_rfc3339(s.end),
            "acConsumedKwh": s.ac_kwh, "dcDeliveredKwh": s.dc_kwh, "lossKwh": s.loss_kwh,
            "lossShare": s.loss_kwh / s.ac_kwh if s.efficiency is not None else None,
            "efficiencyRatio": s.efficiency, "socStart": s.soc_start, "socEnd": s.soc_end,
            "avgBatteryTemp": s.avg_battery_temp, "maxBatteryTemp": s.max_battery_temp,
            "meterIds": s.meter_ids}


def gap() -> timedelta:
    return timedelta(minutes=current_app.config["SETTINGS"].session_gap_min)


@bp.get("/v1/analytics/performance/<vehicle_id>/sessions")
def vehicle(vehicle_id: str):
    from_ts, to_ts = window()
    engine = read_engine()
    if not vehicle_known(engine, vehicle_id):
        raise ApiError(404, "This vehicle has never sent a reading and has no meter linked.")
    found = vehicle_sessions(engine, vehicle_id, from_ts, to_ts, gap())
    body = {"vehicleId": vehicle_id,
            "window": {"from": format_rfc3339(from_ts), "to": format_rfc3339(to_ts)},
            "sessions": [session_json(s) for s in found]}
    return negotiated(body, "sessions", COLUMNS, f"sessions-{vehicle_id}.csv")


@bp.get("/v1/analytics/sessions")
def fleet():
    from_ts, to_ts = window()
    q = query(sessions_query)
    order = q["order"] or SORTS[q["sort"]][1]
    page = fleet_sessions(read_engine(), from_ts, to_ts, gap(), q["sort"],
                          order == "desc", q["limit"], q["offset"])
    body = {"window": {"from": format_rfc3339(from_ts), "to": format_rfc3339(to_ts)},
            "sessions": [{"vehicleId": s.vehicle_id, **session_json(s)} for s in page.sessions],
            "page": {"sort": q["sort"], "order": order, "limit": q["limit"], "offset": q["offset"],
                     "total": page.total}}
    return negotiated(body, "sessions", ["vehicleId", *COLUMNS], "sessions.csv")
