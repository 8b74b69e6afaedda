"""The OpenAPI 3 document of the API, served at GET /openapi.json (no token needed).

Owns: how our custom marshmallow fields map to OpenAPI types, the small schemas of
response bodies, and every path's parameters, security and status codes. Request
bodies and query schemas come from readings/schemas.py itself, so the document cannot
drift from what the API validates. ../shared/CONTRACT.md is the authority; this
describes it. The document is built once, when the app is created.
"""

from __future__ import annotations

import json
from datetime import timedelta

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, current_app
from marshmallow import Schema, fields, validate

from models.devices import KINDS
from readings import schemas
from readings.fields import DeviceId, JsonNumber, Timestamp
from readings.strict_json import MAX_DEPTH
from settings import Settings
from web.api import device_schemas
from web.api.analytics import MAX_BUCKETS
from web.api.dead_letters import MAX_PAGE, REDRIVE_DEFAULT
from web.api.params import DEFAULT_WINDOW

bp = Blueprint("openapi", __name__)

# readings/schemas.py anchors with Python's \A...\Z; JSON Schema patterns are ECMA 262.
DEVICE_ID = {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$", "minLength": 1, "maxLength": 64}
UP = validate.OneOf(["ok", "unavailable"])


def body(name: str, described: dict[str, fields.Field]) -> type[Schema]:
    """A schema of a response body: documentation only (the views build their answers)."""
    return Schema.from_dict(described, name=name)


def kwh(nullable: bool = False) -> fields.Float:
    return fields.Float(required=True, allow_none=nullable, validate=validate.Range(min=0))


def whole(minimum: int = 0, **kwargs) -> fields.Integer:
    return fields.Integer(required=True, validate=validate.Range(min=minimum), **kwargs)


def at(nullable: bool = False) -> Timestamp:
    return Timestamp(required=True, allow_none=nullable)


def temp() -> fields.Float:
    return fields.Float(required=True, allow_none=True)


def nested(schema: type[Schema], many: bool = False) -> fields.Field:
    return fields.List(fields.Nested(schema), required=True) if many else fields.Nested(
        schema, required=True)


Window = body("Window", {"from": at(), "to": at()})
Counts = body("ReadingCounts", {"meter": whole(), "vehicle": whole()})
Energy = {"acConsumedKwh": kwh(), "dcDeliveredKwh": kwh(), "efficiencyRatio": kwh(nullable=True)}
SESSION = {"start": at(), "end": at(), **Energy, "lossKwh": fields.Float(required=True),
           "lossShare": fields.Float(required=True, allow_none=True), "socStart": fields.Float(required=True),
           "socEnd": fields.Float(required=True), "avgBatteryTemp": fields.Float(required=True),
           "maxBatteryTemp": fields.Float(required=True),
           "meterIds": fields.List(DeviceId(), required=True)}
LinkEntry = body("LinkEntry", {"vehicleId": DeviceId(), "since": at()})
Device = body("Device", {
    "id": DeviceId(), "kind": fields.String(required=True, validate=validate.OneOf(KINDS)),
    "created": at(), "lastSeen": at(nullable=True), "disabled": fields.Boolean(required=True)})
COMPONENTS = {
    # Request bodies: the schemas the API validates with.
    "MeterReading": schemas.MeterReadingSchema, "VehicleReading": schemas.VehicleReadingSchema,
    "Link": schemas.LinkSchema, "Redrive": schemas.RedriveSchema,
    "Accepted": body("Accepted", {"accepted": whole(minimum=1)}),
    "Error": body("Error", {"error": fields.String(required=True)}),
    "ValidationErrors": body("ValidationErrors", {"errors": fields.Dict(required=True, metadata={
        "description": "Why, by field name; for an array body, by the offending index first."})}),
    "Window": Window, "ReadingCounts": Counts, "LinkEntry": LinkEntry,
    "Performance": body("Performance", {
        "vehicleId": DeviceId(), "window": nested(Window), "answeredWindow": nested(Window),
        "avgBatteryTemp": temp(),
        "totalEnergy": nested(body("TotalEnergy", {"acConsumedKwh": kwh(), "dcDeliveredKwh": kwh()})),
        "efficiencyRatio": kwh(nullable=True), "readings": nested(Counts)}),
    "Series": body("Series", {
        "vehicleId": DeviceId(), "window": nested(Window), "answeredWindow": nested(Window),
        "bucket": fields.String(required=True),
        "series": nested(body("Bucket", {"start": at(), **Energy, "avgBatteryTemp": temp(),
                                         "readings": nested(Counts)}), many=True)}),
    "Fleet": body("Fleet", {
        "window": nested(Window), "answeredWindow": nested(Window),
        "totals": nested(body("FleetTotals", {
            "vehicles": whole(), **Energy, "readings": nested(Counts),
            "efficiencyHistogram": nested(body("HistogramBin", {
                "from": fields.Float(required=True, allow_none=True),
                "to": fields.Float(required=True, allow_none=True), "vehicles": whole()}), many=True)})),
        "vehicles": nested(body("FleetVehicle", {
            "vehicleId": DeviceId(), **Energy, "avgBatteryTemp": temp(), "maxBatteryTemp": temp(),
            "liveSoc": fields.Float(required=True, allow_none=True), "lastSeen": at(nullable=True),
            "readings": nested(Counts)}), many=True),
        "page": nested(body("FleetPage", {"sort": fields.String(required=True),
                                          "order": fields.String(required=True),
                                          "limit": whole(minimum=1), "offset": whole(),
                                          "search": fields.String(required=True),
                                          "matched": whole()}))}),
    "VehicleSessions": body("VehicleSessions", {
        "vehicleId": DeviceId(), "window": nested(Window),
        "sessions": nested(body("Session", SESSION), many=True)}),
    "FleetSessions": body("FleetSessions", {
        "window": nested(Window),
        "sessions": nested(body("FleetSession", {"vehicleId": DeviceId(), **SESSION}), many=True),
        "page": nested(body("SessionsPage", {
            "sort": fields.String(required=True), "order": fields.String(required=True),
            "limit": whole(minimum=1), "offset": whole(), "total": whole()}))}),
    "Pipeline": body("Pipeline", {"workers": fields.List(fields.String(), required=True),
                                  "deadLetters": whole()}),
    "Alerts": body("Alerts", {"alerts": nested(body("Alert", {
        "id": whole(), "vehicleId": DeviceId(), "kind": fields.String(required=True),
        "reason": fields.String(required=True), "figures": fields.Dict(required=True),
        "openedAt": at(), "clearedAt": at(nullable=True), "evaluatedAt": at()}), many=True)}),
    "MeterLink": body("MeterLink", {"meterId": DeviceId(), "vehicleId": DeviceId(), "since": at()}),
    "MeterLinks": body("MeterLinks", {"meterId": DeviceId(), "links": fields.List(
        fields.Nested(LinkEntry), required=True, validate=validate.Length(min=1))}),
    "DeadLetters": body("DeadLetters", {
        "deadLetters": nested(body("DeadLetter", {
            "id": whole(), "failedAt": at(), "reason": fields.String(required=True),
            "source": fields.String(required=True, validate=validate.OneOf(["database", "mqtt"])),
            "reading": fields.Dict(metadata={"description": "The refused reading (source database)."}),
            "topic": fields.String(metadata={"description": "The MQTT topic (source mqtt)."}),
            "payload": fields.String(metadata={"description": "The first 4 KiB of the MQTT payload "
                                                              "(source mqtt)."})}), many=True),
        "next": fields.Integer(required=True, allow_none=True)}),
    "Redriven": body("Redriven", {"redriven": whole()}),
    "NewDevice": device_schemas.NewDeviceSchema, "DevicePatch": device_schemas.DevicePatchSchema,
    "NewGateway": device_schemas.NewGatewaySchema,
    "DeviceToken": body("DeviceToken", {
        "id": DeviceId(), "kind": fields.String(required=True, validate=validate.OneOf(KINDS)),
        "token": fields.String(required=True, metadata={"description": "Shown only this once."})}),
    "Token": body("Token", {"id": DeviceId(), "token": fields.String(required=True, metadata={
        "description": "Shown only this once."})}),
    "Device": Device,
    "Devices": body("Devices", {"devices": nested(Device, many=True), "page": nested(body(
        "DevicesPage", {"limit": whole(minimum=1), "offset": whole()}))}),
    "Gateway": body("Gateway", {"id": DeviceId(), "disabled": fields.Boolean(required=True),
                                "created": at(), "devices": fields.List(DeviceId(), required=True)}),
    "Health": body("Health", {"status": fields.String(required=True, validate=validate.Equal("ok"))}),
    "Readiness": body("Readiness", {
        "postgres": fields.String(required=True, validate=UP),
        "redis": fields.String(required=True, validate=UP),
        # Only with ANALYTICS_DATABASE_URL; said, not counted in the status (docs/scaling.md).
        "replica": fields.String(validate=validate.OneOf(["ok", "lagging", "unavailable"]))}),
}

STATUS_TEXT = {
    400: f"The body is not JSON (RFC 8259), not UTF-8, or nested deeper than {MAX_DEPTH} levels.",
    401: "Missing, malformed or unknown bearer token.",
    403: "A valid token of the other kind (ingest vs operator).",
    404: "Not found.",
    413: "The body is over MAX_BODY_BYTES, or the array over MAX_BATCH.",
    415: "Content-Type is missing or not application/json.",
    422: "The body is JSON but not valid; `errors` names each offending index and field, and why.",
    429: "Over this token's RATE_LIMIT.",
    503: "The queue cannot take more (backlog over MAX_BACKLOG, or more than the workers drain "
         "in MAX_BACKLOG_SECONDS, or Redis down); send the same body again later.",
}
BAD_QUERY = "A query parameter is malformed or out of range, or `from` is not before `to`."
UNKNOWN_VEHICLE = "The vehicle never sent a reading and has no meter linked."
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


def param(name: str, where: str, schema: dict, **extra: str) -> dict:
    return {"name": name, "in": where, "required": where == "path", "schema": schema, **extra}


def window_query_params() -> list[dict]:
    """The `from` and `to` query parameters of the analytics endpoints, as OpenAPI parameters."""
    bound = {"type": "string", "format": "date-time"}
    return [param("from", "query", bound, description="Window start (RFC 3339 with a zone); "
                  f"default `to` - {DEFAULT_WINDOW / timedelta(hours=1):g} h."),
            param("to", "query", bound, description="Window end, exclusive; default now.")]


def operation(token: str | None, summary: str, ok: tuple[int, str | dict], *codes: int,
              texts: dict[int, str] | None = None, **fields_: object) -> dict:
    """One operation: its success response (a schema's name, or a whole response object),
    its errors, and its security: the kind of token it needs ("ingest", "operator") or None.
    """
    texts = texts or {}
    status, schema = ok
    ok_response = schema if isinstance(schema, dict) else {
        "description": texts.get(status, "OK"), **json_content(ref(schema))}
    op = {"summary": summary, **fields_, "responses": {str(status): ok_response}, "security": []}
    if token:
        op["security"] = [{"bearerAuth": []}]
        op["description"] = f"Needs an **{token}** token. " + str(op.get("description", ""))
        codes = (*codes, 401, 403)
    op["responses"].update({str(code): error(code, texts.get(code)) for code in codes})
    return op


def build_spec(settings: Settings) -> dict:
    """The whole document for these settings (MAX_BATCH and RATE_LIMIT show in it)."""
    plugin = MarshmallowPlugin()
    spec = APISpec(title="Energy ingestion engine", version="1", openapi_version="3.0.3",
                   plugins=[plugin])
    plugin.map_to_openapi_type(Timestamp, "string", "date-time")
    plugin.converter.add_attribute_function(_custom_fields)
    spec.components.security_scheme("bearerAuth", {
        "type": "http", "scheme": "bearer",
        "description": "An ingest token for POST /v1/ingest (fleet-wide from INGEST_TOKENS, or a "
                       "device's or gateway's from /v1/devices, /v1/gateways); an operator token "
                       "(OPERATOR_TOKENS) for every other endpoint but health and this document."})
    for name, schema in COMPONENTS.items():
        spec.components.schema(name, schema=schema)

    reading = {"oneOf": [ref("MeterReading"), ref("VehicleReading")]}
    batch = {"type": "array", "minItems": 1, "maxItems": settings.max_batch, "items": reading}
    # The examples name devices the test suite creates, so that fuzzing also meets 200s.
    vehicle_id = param("vehicleId", "path", DEVICE_ID, example="V-201")
    meter_id = param("meterId", "path", DEVICE_ID, example="M-101")
    # apispec expands a marshmallow schema given "in": "query" into one parameter per field.
    fleet_query = {"in": "query", "schema": schemas.FleetQuerySchema}
    ops = {
        "/v1/ingest": {"post": operation(
            "ingest", "Queue one reading or a non-empty array of readings (all or nothing).",
            (202, "Accepted"), 400, 413, 415, 422, 503,
            texts={202: "Durably queued; `accepted` is the number of readings in the request."},
            description="A reading's kind is its `type`, else the id it carries. Its timestamp may "
                        "lie at most MAX_CLOCK_SKEW s in the future, and be no older than "
                        "RETENTION_DAYS when that is set (422 otherwise).",
            requestBody={"required": True, **json_content({"oneOf": [*reading["oneOf"], batch]})})},
        "/v1/analytics/performance/{vehicleId}": {"get": operation(
            "operator", "Energy and charging efficiency of a vehicle over [from, to).",
            (200, "Performance"), 400, 404, texts={400: BAD_QUERY, 404: UNKNOWN_VEHICLE},
            parameters=[vehicle_id, *window_query_params()])},
        "/v1/analytics/performance/{vehicleId}/series": {"get": operation(
            "operator", "The same figures per time bucket of the window.", (200, "Series"), 400, 404,
            texts={400: BAD_QUERY + f" Or more than {MAX_BUCKETS} buckets.", 404: UNKNOWN_VEHICLE},
            parameters=[vehicle_id, *window_query_params(),
                        {"in": "query", "schema": schemas.SeriesQuerySchema}])},
        "/v1/analytics/fleet": {"get": operation(
            "operator", "Every vehicle's figures over the window, sorted and paged.", (200, "Fleet"),
            400, texts={400: BAD_QUERY}, parameters=[*window_query_params(), fleet_query])},
        "/v1/analytics/performance/{vehicleId}/sessions": {"get": operation(
            "operator", "The vehicle's charging sessions in the window, oldest first.",
            (200, "VehicleSessions"), 400, 404, texts={400: BAD_QUERY, 404: UNKNOWN_VEHICLE},
            parameters=[vehicle_id, *window_query_params()])},
        "/v1/analytics/sessions": {"get": operation(
            "operator", "The fleet's charging sessions in the window, worst first, paged.",
            (200, "FleetSessions"), 400, texts={400: BAD_QUERY},
            parameters=[*window_query_params(), {"in": "query", "schema": schemas.SessionsQuerySchema}])},
        "/v1/pipeline": {"get": operation(
            "operator", "Celery workers that answer a ping (within 1 s), and dead letters waiting.",
            (200, "Pipeline"))},
        "/dashboard": {"get": operation(None, "The operators' dashboard (HTML; asks for a token).", (
            200, {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}))},
        "/v1/alerts": {"get": operation(
            "operator", "Open (or all) alerts, newest first.", (200, "Alerts"), 400,
            texts={400: BAD_QUERY}, parameters=[{"in": "query", "schema": schemas.AlertsQuerySchema}])},
        "/v1/meters/{meterId}/vehicle": {
            "put": operation(
                "operator", "Link the meter to a vehicle from `since` (default now) on.",
                (200, "MeterLink"), 400, 413, 415, 422, parameters=[meter_id],
                texts={422: "A bad body, or a meterId that is not a valid id."},
                requestBody={"required": True, **json_content(ref("Link"))}),
            "get": operation(
                "operator", "The meter's links, latest `since` first.", (200, "MeterLinks"), 404,
                texts={404: "The meter was never linked."}, parameters=[meter_id])},
        "/v1/live/vehicles/{vehicleId}": {"get": operation(
            "operator", "The vehicle's newest reading by timestamp.", (200, "VehicleReading"), 404,
            texts={404: "No reading from it."}, parameters=[vehicle_id])},
        "/v1/live/meters/{meterId}": {"get": operation(
            "operator", "The meter's newest reading by timestamp.", (200, "MeterReading"), 404,
            texts={404: "No reading from it."}, parameters=[meter_id])},
        "/v1/dead-letters": {"get": operation(
            "operator", "Readings the database refused and MQTT messages the bridge could not read, "
            "oldest first.", (200, "DeadLetters"), 400,
            texts={400: f"`after` is not a whole number >= 0, or `limit` not 1 to {MAX_PAGE}."},
            parameters=[param("after", "query",
                              {"type": "integer", "minimum": 0, "maximum": schemas.BIGINT_MAX}),
                        param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE})])},
        "/v1/dead-letters/redrive": {"post": operation(
            "operator", f"Queue dead letters again (the given ids, else the oldest {REDRIVE_DEFAULT}).",
            (200, "Redriven"), 400, 413, 415, 422, 503,
            requestBody={"required": False, **json_content(ref("Redrive"))})},
        "/metrics": {"get": operation("operator", "Prometheus metrics.", (200, {
            "description": "Prometheus text format.",
            "content": {"text/plain": {"schema": {"type": "string"}}}}))},
        "/healthz": {"get": operation(None, "200 while the process runs.", (200, "Health"))},
        "/readyz": {"get": operation(None, "200 when PostgreSQL and Redis answer, else 503.",
                                     (200, "Readiness"))},
        "/openapi.json": {"get": operation(None, "This document.", (200, {
            "description": "OpenAPI 3", **json_content({"type": "object"})}))},
    }
    ops.update(registry_operations(batch_max=settings.max_batch))
    ops["/v1/ingest"]["post"]["responses"]["403"] = {
        "description": "A token of the wrong kind ({\"error\"}); or a device or gateway token "
                       "sending readings it may not write, or of a disabled device: `errors` "
                       "names each such index. Nothing of the request is queued.",
        **json_content({"oneOf": [ref("Error"), ref("ValidationErrors")]})}
    ops["/v1/ingest"]["post"]["responses"]["503"]["description"] += (
        " Or device credentials cannot be loaded (the database does not answer).")
    ops["/readyz"]["get"]["responses"]["503"] = {"description": "A dependency does not answer.",
                                                 **json_content(ref("Readiness"))}
    for path, operations in ops.items():
        # The limiter (web/ratelimit.py) is on only when RATE_LIMIT is set, and spares the probes.
        if getattr(settings, "rate_limit", None) and path not in ("/healthz", "/readyz"):
            for op in operations.values():
                op["responses"]["429"] = error(429)
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def registry_operations(batch_max: int) -> dict:
    """The device registry's and gateways' paths (web/api/devices.py, web/api/gateways.py)."""
    device_id = param("deviceId", "path", DEVICE_ID, example="M-101")
    gateway_id = param("gatewayId", "path", DEVICE_ID, example="G-1")
    no_device = {404: "No such device."}
    created = {201: "Created; the token is shown only in this answer."}
    many = {"type": "array", "minItems": 1, "maxItems": batch_max, "items": ref("NewDevice")}
    csv_upload = {"type": "string", "description": "A header row `id,kind`, then one device a row."}
    patch = {"required": True, **json_content(ref("DevicePatch"))}
    return {
        "/v1/devices": {
            "post": operation(
                "operator", "Register one device, or many (an array, or a CSV upload).",
                (201, {"description": created[201], **json_content({"oneOf": [
                    ref("DeviceToken"), {"type": "array", "items": ref("DeviceToken")}]})}),
                400, 409, 413, 415, 422,
                texts={409: "An id is registered already; nothing was created."},
                requestBody={"required": True, "content": {
                    "application/json": {"schema": {"oneOf": [ref("NewDevice"), many]}},
                    "text/csv": {"schema": csv_upload}}}),
            "get": operation(
                "operator", "Devices in id order, with kind, created, last seen and disabled.",
                (200, "Devices"), 400, texts={400: BAD_QUERY},
                parameters=[{"in": "query", "schema": device_schemas.DevicesQuerySchema}])},
        "/v1/devices/{deviceId}": {
            "get": operation("operator", "One device.", (200, "Device"), 404, texts=no_device,
                             parameters=[device_id]),
            "patch": operation("operator", "Disable or enable a device (within 2 s everywhere).",
                               (200, "Device"), 400, 404, 413, 415, 422, texts=no_device,
                               parameters=[device_id], requestBody=patch)},
        "/v1/devices/{deviceId}/token": {"post": operation(
            "operator", "A new token; the old one works TOKEN_GRACE_S more seconds.",
            (201, "Token"), 404, texts={**no_device, **created}, parameters=[device_id])},
        "/v1/gateways": {"post": operation(
            "operator", "Register a gateway.", (201, "Token"), 400, 409, 413, 415, 422,
            texts={**created, 409: "The id is registered already."},
            requestBody={"required": True, **json_content(ref("NewGateway"))})},
        "/v1/gateways/{gatewayId}": {
            "get": operation("operator", "A gateway and its devices.", (200, "Gateway"), 404,
                             parameters=[gateway_id]),
            "patch": operation("operator", "Disable or enable a gateway.", (200, "Gateway"),
                               400, 404, 413, 415, 422, parameters=[gateway_id], requestBody=patch)},
        "/v1/gateways/{gatewayId}/token": {"post": operation(
            "operator", "A new token; the old one works TOKEN_GRACE_S more seconds.",
            (201, "Token"), 404, texts=created, parameters=[gateway_id])},
        "/v1/gateways/{gatewayId}/devices/{deviceId}": {
            "put": operation("operator", "Let the gateway post the device's readings.",
                             (200, "Gateway"), 404, texts={404: "No such gateway or device."},
                             parameters=[gateway_id, device_id]),
            "delete": operation("operator", "Stop the gateway posting the device's readings.",
                                (204, {"description": "Detached."}), 404,
                                texts={404: "No such gateway, or the device is not attached."},
                                parameters=[gateway_id, device_id])},
    }


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
