"""The device registry for operators: /v1/devices (create, list, show, rotate, disable).

A device's token is answered only when it is made (creation, rotation); the
database keeps its hash. Every change is announced to the web processes'
credential caches (credentials/cache.py).
"""

from __future__ import annotations

import csv
import io

from flask import Blueprint, current_app, request
from marshmallow import ValidationError

from credentials.cache import announce_change
from credentials.tokens import new_token, token_hash
from models import devices as registry
from readings.timestamps import format_rfc3339
from web.api.device_schemas import DevicePatchSchema, DevicesQuerySchema, NewDeviceSchema
from web.api.params import query
from web.auth import require
from web.errors import ApiError
from web.server.body import json_body

bp = Blueprint("devices", __name__)
bp.before_request(require("operator"))

new_devices_schema = NewDeviceSchema(many=True)
patch_schema = DevicePatchSchema()
devices_query = DevicesQuerySchema()


@bp.post("/v1/devices")
def create():
    """One device (an object) or many (an array, or a CSV upload with an `id,kind` header)."""
    body = csv_body() if request.mimetype == "text/csv" else json_body()
    many = isinstance(body, list)
    items = body if many else [body]
    max_batch = current_app.config["SETTINGS"].max_batch
    if len(items) > max_batch:
        raise ApiError(413, f"At most {max_batch} devices in one request.")
    if not items:
        raise ApiError(422, errors={"_schema": ["Send at least one device."]})
    try:
        loaded = new_devices_schema.load(items)
    except ValidationError as exc:
        raise ApiError(422, errors=exc.messages if many else exc.messages.get(0, exc.messages)) from None
    ids = [d["id"] for d in loaded]
    if len(set(ids)) < len(ids):
        raise ApiError(422, errors={"_schema": ["The same id appears twice."]})
    tokens = [new_token() for _ in loaded]
    try:
        registry.create_devices(current_app.extensions["engine"], [
            (d["id"], d["kind"], token_hash(t)) for d, t in zip(loaded, tokens, strict=True)])
    except registry.AlreadyExists as exc:
        raise ApiError(409, f"Already registered: {', '.join(exc.ids[:20])}.") from None
    announce()
    created = [{"id": d["id"], "kind": d["kind"], "token": t} for d, t in zip(loaded, tokens, strict=True)]
    return (created if many else created[0]), 201


def csv_body() -> list[dict]:
    """The rows of a CSV upload as objects, keyed by its header row (`id,kind`)."""
    try:
        text = request.get_data(cache=False).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiError(400, "The body is not UTF-8.") from None
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or set(reader.fieldnames) != {"id", "kind"}:
        raise ApiError(422, errors={"_schema": ["The CSV must start with the header row id,kind."]})
    try:
        return [dict(row) for row in reader]
    except csv.Error:
        raise ApiError(400, "The body is not valid CSV.") from None


@bp.get("/v1/devices")
def list_all():
    q = query(devices_query)
    found = registry.list_devices(current_app.extensions["engine"], q.get("kind"), q["prefix"],
                                  q["limit"], q["offset"])
    return {"devices": [shown(d) for d in found],
            "page": {"limit": q["limit"], "offset": q["offset"]}}


@bp.get("/v1/devices/<device_id>")
def show(device_id: str):
    return shown(existing(device_id))


@bp.post("/v1/devices/<device_id>/token")
def rotate(device_id: str):
    return rotated("devices", device_id)


@bp.patch("/v1/devices/<device_id>")
def patch(device_id: str):
    set_disabled("devices", device_id)
    return shown(existing(device_id))


def rotated(table: str, owner_id: str) -> tuple[dict, int]:
    """A device's or gateway's new token; the old one works TOKEN_GRACE_S more seconds."""
    token = new_token()
    grace_s = current_app.config["SETTINGS"].token_grace_s
    if not registry.rotate_token(current_app.extensions["engine"], table, owner_id,
                                 token_hash(token), grace_s):
        raise ApiError(404, f"No such {table[:-1]}.")
    announce()
    return {"id": owner_id, "token": token}, 201


def set_disabled(table: str, owner_id: str) -> None:
    """Disable or enable a device or gateway as the PATCH body says."""
    try:
        disabled = patch_schema.load(json_body())["disabled"]
    except ValidationError as exc:
        raise ApiError(422, errors=exc.messages) from None
    if not registry.set_disabled(current_app.extensions["engine"], table, owner_id, disabled):
        raise ApiError(404, f"No such {table[:-1]}.")
    announce()


def existing(device_id: str) -> registry.DeviceInfo:
    device = registry.get_device(current_app.extensions["engine"], device_id)
    if device is None:
        raise ApiError(404, "No such device.")
    return device


def shown(device: registry.DeviceInfo) -> dict:
    return {"id": device.id, "kind": device.kind, "created": format_rfc3339(device.created_at),
            "lastSeen": format_rfc3339(device.last_seen) if device.last_seen else None,
            "disabled": device.disabled}


def announce() -> None:
    """Tell every web process's credential cache that the registry changed."""
    announce_change(current_app.extensions["queue"].redis, current_app.config["SETTINGS"].redis_prefix)
