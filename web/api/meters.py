"""PUT/GET /v1/meters/{meterId}/vehicle: which vehicle a meter feeds, since when."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, current_app
from marshmallow import ValidationError

from models.links import list_links, put_link
from readings.fields import DeviceId
from readings.schemas import LinkSchema
from readings.timestamps import format_rfc3339
from web.auth import require
from web.errors import ApiError
from web.server.body import json_body

bp = Blueprint("meters", __name__)
bp.before_request(require("operator"))

link_schema = LinkSchema()
meter_id_field = DeviceId()


@bp.put("/v1/meters/<meter_id>/vehicle")
def link(meter_id: str):
    body = json_body()
    try:
        meter_id = meter_id_field.deserialize(meter_id)
    except ValidationError as exc:
        raise ApiError(422, errors={"meterId": exc.messages}) from None
    try:
        data = link_schema.load(body)
    except ValidationError as exc:
        raise ApiError(422, errors=exc.messages) from None
    since = data.get("since") or datetime.now(UTC)
    put_link(current_app.extensions["engine"], meter_id, data["vehicleId"], since)
    return {"meterId": meter_id, "vehicleId": data["vehicleId"], "since": format_rfc3339(since)}


@bp.get("/v1/meters/<meter_id>/vehicle")
def links(meter_id: str):
    found = list_links(current_app.extensions["engine"], meter_id)
    if not found:
        raise ApiError(404, "This meter has never been linked.")
    return {"meterId": meter_id,
            "links": [{"vehicleId": v, "since": format_rfc3339(s)} for v, s in found]}
