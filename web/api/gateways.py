"""Gateways for operators: /v1/gateways. A gateway's token may post readings for
the devices attached to it (PUT/DELETE /v1/gateways/{id}/devices/{deviceId}).
"""

from __future__ import annotations

from flask import Blueprint, current_app
from marshmallow import ValidationError

from credentials.tokens import new_token, token_hash
from models import devices as registry
from readings.timestamps import format_rfc3339
from web.api.device_schemas import NewGatewaySchema
from web.api.devices import announce, rotated, set_disabled
from web.auth import require
from web.errors import ApiError
from web.server.body import json_body

bp = Blueprint("gateways", __name__)
bp.before_request(require("operator"))

new_gateway_schema = NewGatewaySchema()


@bp.post("/v1/gateways")
def create():
    try:
        gateway_id = new_gateway_schema.load(json_body())["id"]
    except ValidationError as exc:
        raise ApiError(422, errors=exc.messages) from None
    token = new_token()
    if not registry.create_gateway(current_app.extensions["engine"], gateway_id, token_hash(token)):
        raise ApiError(409, f"Already registered: {gateway_id}.")
    announce()
    return {"id": gateway_id, "token": token}, 201


@bp.get("/v1/gateways/<gateway_id>")
def show(gateway_id: str):
    return shown(gateway_id)


@bp.post("/v1/gateways/<gateway_id>/token")
def rotate(gateway_id: str):
    return rotated("gateways", gateway_id)


@bp.patch("/v1/gateways/<gateway_id>")
def patch(gateway_id: str):
    set_disabled("gateways", gateway_id)
    return shown(gateway_id)


@bp.put("/v1/gateways/<gateway_id>/devices/<device_id>")
def attach(gateway_id: str, device_id: str):
    if not registry.attach(current_app.extensions["engine"], gateway_id, device_id):
        raise ApiError(404, "No such gateway or device.")
    announce()
    return shown(gateway_id)


@bp.delete("/v1/gateways/<gateway_id>/devices/<device_id>")
def detach(gateway_id: str, device_id: str):
    if not registry.detach(current_app.extensions["engine"], gateway_id, device_id):
        raise ApiError(404, "No such gateway, or the device is not attached to it.")
    announce()
    return "", 204


def shown(gateway_id: str) -> dict:
    info = registry.get_gateway(current_app.extensions["engine"], gateway_id)
    if info is None:
        raise ApiError(404, "No such gateway.")
    return {"id": info.id, "disabled": info.disabled, "created": format_rfc3339(info.created_at),
            "devices": info.devices}
