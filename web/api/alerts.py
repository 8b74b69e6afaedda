"""GET /v1/alerts: vehicles losing energy or running hot, as the beat task found them."""

from __future__ import annotations

from flask import Blueprint, current_app

from models.alerts import list_alerts
from readings.schemas import AlertsQuerySchema
from readings.timestamps import format_rfc3339
from web.api.params import query
from web.auth import require

bp = Blueprint("alerts", __name__)
bp.before_request(require("operator"))

alerts_query = AlertsQuerySchema()


def _time(value):
    return format_rfc3339(value) if value else None


@bp.get("/v1/alerts")
def alerts():
    q = query(alerts_query)
    rows = list_alerts(current_app.extensions["engine"], q["state"] == "all", q["limit"])
    return {"alerts": [
        {"id": r.id, "vehicleId": r.vehicle_id, "kind": r.kind, "reason": r.reason,
         "figures": r.figures, "openedAt": _time(r.opened_at), "clearedAt": _time(r.cleared_at),
         "evaluatedAt": _time(r.evaluated_at)}
        for r in rows
    ]}
