"""The OpenAPI 3 document of the API, served at GET /openapi.json (no token needed).

Owns: how our custom marshmallow fields map to OpenAPI types, the small schemas of
response bodies, and every path's parameters, security and status codes. Request
bodies come from web/schemas.py itself, so the document cannot drift from what the
API validates. ../shared/CONTRACT.md is the authority; this describes it.
"""

from __future__ import annotations

import json

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, current_app
from marshmallow import Schema, fields, validate

from settings import Settings
from web import schemas
from web.schemas import DeviceId, JsonNumber, Timestamp

bp = Blueprint("openapi", __name__)

# web/schemas.py anchors with Python's \A...\Z; JSON Schema patterns are ECMA 262.
DEVICE_ID = {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$", "minLength": 1, "maxLength": 64}
NON_NEGATIVE = validate.Range(min=0)


def body(name: str, described: dict[str, fields.Field]) -> type[Schema]:
    """A schema of a response body: documentation only (the views build their answers)."""
    return Schema.from_dict(described, name=name)


def number(**kwargs) -> fields.Float:
    return fields.Float(required=True, **kwargs)


def whole(minimum: int = 0) -> fields.Integer:
    return fields.Integer(required=True, validate=validate.Range(min=minimum))


UP = validate.OneOf(["ok", "unavailable"])
Window = body("Window", {"from": Timestamp(required=True), "to": Timestamp(required=True)})
TotalEnergy = body("TotalEnergy", {"acConsumedKwh": number(validate=NON_NEGATIVE),
                                   "dcDeliveredKwh": number(validate=NON_NEGATIVE)})
ReadingCounts = body("ReadingCounts", {"meter": whole(), "vehicle": whole()})
LinkEntry = body("LinkEntry", {"vehicleId": DeviceId(), "since": Timestamp(required=True)})
DeadLetter = body("DeadLetter", {"id": whole(), "failedAt": Timestamp(required=True),
                                 "reason": fields.String(required=True),
                                 "reading": fields.Dict(required=True)})
COMPONENTS = {
    # Request bodies: the schemas the API validates with.
    "MeterReading": schemas.MeterReadingSchema, "VehicleReading": schemas.VehicleReadingSchema,
    "Link": schemas.LinkSchema, "Redrive": schemas.RedriveSchema,
    "Accepted": body("Accepted", {"accepted": whole(minimum=1)}),
    "Error": body("Error", {"error": fields.String(required=True)}),
    "ValidationErrors": body("ValidationErrors", {"errors": fields.Dict(required=True, metadata={
        "description": "Why, by field name; for an array body, by the offending index first."})}),
    "Window": Window, "TotalEnergy": TotalEnergy, "ReadingCounts": ReadingCounts,
    "Performance": body("Performance", {
        "vehicleId": DeviceId(), "window": fields.Nested(Window, required=True),
        "totalEnergy": fields.Nested(TotalEnergy, required=True),
        "efficiencyRatio": number(allow_none=True, validate=NON_NEGATIVE),
        "avgBatteryTemp": number(allow_none=True),
        "readings": fields.Nested(ReadingCounts, required=True)}),
    "LinkEntry": LinkEntry,
    "MeterLink": body("MeterLink", {"meterId": DeviceId(), "vehicleId": DeviceId(),
                                    "since": Timestamp(required=True)}),
    "MeterLinks": body("MeterLinks", {"meterId": DeviceId(), "links": fields.List(
        fields.Nested(LinkEntry), required=True, validate=validate.Length(min=1))}),
    "DeadLetter": DeadLetter,
    "DeadLetters": body("DeadLetters", {
        "deadLetters": fields.List(fields.Nested(DeadLetter), required=True),
        "next": fields.Integer(required=True, allow_none=True)}),
    "Redriven": body("Redriven", {"redriven": whole()}),
    "Health": body("Health", {"status": fields.String(required=True, validate=validate.Equal("ok"))}),
    "Readiness": body("Readiness", {"postgres": fields.String(required=True, validate=UP),
                                    "redis": fields.String(required=True, validate=UP)}),
}

STATUS_TEXT = {
    400: "The body is not JSON (RFC 8259), not UTF-8, or nested deeper than 64 levels; "
         "or a query parameter is malformed.",
    401: "Missing, malformed or unknown bearer token.",
    403: "A valid token of the other kind (ingest vs operator).",
    404: "Not found.",
    413: "The body is over MAX_BODY_BYTES, or the array over MAX_BATCH.",
    415: "Content-Type is missing or not application/json.",
    422: "The body is JSON but not valid; `errors` names each offending index and field, and why.",
    429: "Over this token's RATE_LIMIT.",
    503: "The queue cannot take more (backlog over MAX_BACKLOG, or Redis down); send the same "
         "body again later.",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.",
                               "schema": {"type": "integer", "minimum": 1}}}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def error(code: int, text: str | None = None) -> dict:
    """A response object for an error status, with the contract's body shape."""
    # 422 is the only status whose body lists errors by field ({"errors": {...}}).
    shape = "ValidationErrors" if code == 422 else "Error"
    out = {"description": text or STATUS_TEXT[code], **json_content(ref(shape))}
    if code in (429, 503):
        out["headers"] = RETRY_AFTER
    if code == 401:
        out["headers"] = {"WWW-Authenticate": {"description": "The bearer challenge.",
                                               "schema": {"type": "string"}}}
    return out


def responses(ok: int, ok_schema: str, *codes: int, texts: dict[int, str] | None = None) -> dict:
    """A responses object: `ok` with its schema, and each error code with its text."""
    texts = texts or {}
    out = {str(ok): {"description": texts.get(ok, "OK"), **json_content(ref(ok_schema))}}
    out.update({str(code): error(code, texts.get(code)) for code in codes})
    return out


def param(name: str, where: str, schema: dict, **extra: str) -> dict:
    return {"name": name, "in": where, "required": where == "path", "schema": schema, **extra}


def secured(kind: str, operation: dict, rate_limited: bool) -> dict:
    """Bearer auth for one operation; 401/403 (and 429 under RATE_LIMIT) are added to it."""
    operation["security"] = [{"bearerAuth": []}]
    operation["description"] = f"Needs an **{kind}** token. " + operation.get("description", "")
    codes = (401, 403, 429) if rate_limited else (401, 403)
    operation["responses"].update({str(code): error(code) for code in codes})
    return operation


def build_spec(settings: Settings) -> dict:
    """The whole document for these settings (MAX_BATCH appears in it)."""
    plugin = MarshmallowPlugin()
    spec = APISpec(title="Energy ingestion engine", version="1", openapi_version="3.0.3",
                   plugins=[plugin])
    plugin.map_to_openapi_type(Timestamp, "string", "date-time")
    plugin.converter.add_attribute_function(_custom_fields)
    spec.components.security_scheme("bearerAuth", {
        "type": "http", "scheme": "bearer",
        "description": "An ingest token (INGEST_TOKENS) for POST /v1/ingest; an operator token "
                       "(OPERATOR_TOKENS) for every other endpoint but health and this document."})
    for name, schema in COMPONENTS.items():
        spec.components.schema(name, schema=schema)

    limited = bool(getattr(settings, "rate_limit", None))
    reading = {"oneOf": [ref("MeterReading"), ref("VehicleReading")]}
    batch = {"type": "array", "minItems": 1, "maxItems": settings.max_batch, "items": reading}
    json_body = {"required": True, **json_content({"oneOf": [*reading["oneOf"], batch]})}
    # The examples name devices the test suite creates, so that fuzzing also meets 200s.
    vehicle_id = param("vehicleId", "path", DEVICE_ID, example="V-201")
    meter_id = param("meterId", "path", DEVICE_ID, example="M-101")
    bound = {"type": "string", "format": "date-time"}
    ops = {
        "/v1/ingest": {"post": secured("ingest", {
            "summary": "Queue one reading or a non-empty array of readings (all or nothing).",
            "description": "A reading's kind is its `type`, else the id it carries. Its timestamp "
                           "may lie at most MAX_CLOCK_SKEW s in the future, and be no older than "
                           "RETENTION_DAYS when that is set (422 otherwise).",
            "requestBody": json_body,
            "responses": responses(202, "Accepted", 400, 413, 415, 422, 503, texts={
                202: "Durably queued; `accepted` is the number of readings in the request."}),
        }, limited)},
        "/v1/analytics/performance/{vehicleId}": {"get": secured("operator", {
            "summary": "Energy and charging efficiency of a vehicle over [from, to).",
            "parameters": [vehicle_id, param("from", "query", bound, description=(
                "Window start, RFC 3339 with a zone; default `to` - 24 h.")), param(
                "to", "query", bound, description="Window end (exclusive); default now.")],
            "responses": responses(200, "Performance", 400, 404, texts={
                400: "A bound is not RFC 3339 with a zone, or `from` is not before `to`.",
                404: "The vehicle never sent a reading and has no meter linked."}),
        }, limited)},
        "/v1/meters/{meterId}/vehicle": {
            "put": secured("operator", {
                "summary": "Link the meter to a vehicle from `since` (default now) on.",
                "parameters": [meter_id],
                "requestBody": {"required": True, **json_content(ref("Link"))},
                "responses": responses(200, "MeterLink", 400, 413, 415, 422, texts={
                    422: "A bad body, or a meterId that is not a valid id."}),
            }, limited),
            "get": secured("operator", {
                "summary": "The meter's links, latest `since` first.",
                "parameters": [meter_id],
                "responses": responses(200, "MeterLinks", 404, texts={
                    404: "The meter was never linked."}),
            }, limited),
        },
        "/v1/live/vehicles/{vehicleId}": {"get": secured("operator", {
            "summary": "The vehicle's newest reading by timestamp.",
            "parameters": [vehicle_id],
            "responses": responses(200, "VehicleReading", 404, texts={404: "No reading from it."}),
        }, limited)},
        "/v1/live/meters/{meterId}": {"get": secured("operator", {
            "summary": "The meter's newest reading by timestamp.",
            "parameters": [meter_id],
            "responses": responses(200, "MeterReading", 404, texts={404: "No reading from it."}),
        }, limited)},
        "/v1/dead-letters": {"get": secured("operator", {
            "summary": "Readings the database refused, oldest first.",
            "parameters": [
                param("after", "query", {"type": "integer", "minimum": 0}, description="Ids above it."),
                param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000},
                      description="At most this many (default 100).")],
            "responses": responses(200, "DeadLetters", 400, texts={
                400: "`after` is not a whole number >= 0, or `limit` not 1 to 1000."}),
        }, limited)},
        "/v1/dead-letters/redrive": {"post": secured("operator", {
            "summary": "Queue dead letters again (the given ids, else the oldest 1000).",
            "requestBody": {"required": False, **json_content(ref("Redrive"))},
            "responses": responses(200, "Redriven", 400, 413, 415, 422, 503),
        }, limited)},
        "/healthz": {"get": {"summary": "200 while the process runs.", "security": [],
                             "responses": responses(200, "Health")}},
        "/readyz": {"get": {"summary": "200 when PostgreSQL and Redis answer, else 503.",
                            "security": [], "responses": {
                                **responses(200, "Readiness"),
                                "503": {"description": "A dependency does not answer.",
                                        **json_content(ref("Readiness"))}}}},
        "/openapi.json": {"get": {"summary": "This document.", "security": [], "responses": {
            "200": {"description": "OpenAPI 3", **json_content({"type": "object"})}}}},
    }
    for path, operations in ops.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _custom_fields(self, field: fields.Field, **kwargs) -> dict:
    """apispec attribute function for what the plugin cannot read off our fields."""
    if isinstance(field, DeviceId):
        # Replaces the Python-flavoured pattern field2pattern copied.
        return {k: DEVICE_ID[k] for k in ("pattern", "minLength", "maxLength")}
    extra = {}
    if isinstance(field, JsonNumber):
        # field2range ignores min_inclusive/max_inclusive (voltage must be > 0).
        for rule in field.validators:
            if isinstance(rule, validate.Range):
                if rule.min is not None and not rule.min_inclusive:
                    extra["exclusiveMinimum"] = True
                if rule.max is not None and not rule.max_inclusive:
                    extra["exclusiveMaximum"] = True
    return extra


def register(app: Flask) -> None:
    """Build the document once, from the app's settings, and serve it."""
    app.extensions["openapi"] = json.dumps(build_spec(app.config["SETTINGS"])).encode()
    app.register_blueprint(bp)


@bp.get("/openapi.json")
def document():
    return Response(current_app.extensions["openapi"], mimetype="application/json")
