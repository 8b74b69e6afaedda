"""The OpenAPI 3 document of the API, served at GET /openapi.json (no token needed).

Owns: how our custom marshmallow fields map to OpenAPI types, the small schemas of
response bodies, and every path's parameters, security and status codes. Request
bodies and query schemas come from web/schemas.py itself, so the document cannot
drift from what the API validates. ../shared/CONTRACT.md is the authority; this
describes it. The document is built once, when the app is created.
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
LinkEntry = body("LinkEntry", {"vehicleId": DeviceId(), "since": at()})
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
        "vehicleId": DeviceId(), "window": nested(Window), "avgBatteryTemp": temp(),
        "totalEnergy": nested(body("TotalEnergy", {"acConsumedKwh": kwh(), "dcDeliveredKwh": kwh()})),
        "efficiencyRatio": kwh(nullable=True), "readings": nested(Counts)}),
    "Series": body("Series", {
        "vehicleId": DeviceId(), "window": nested(Window), "bucket": fields.String(required=True),
        "series": nested(body("Bucket", {"start": at(), **Energy, "avgBatteryTemp": temp(),
                                         "readings": nested(Counts)}), many=True)}),
    "Fleet": body("Fleet", {
        "window": nested(Window),
        "totals": nested(body("FleetTotals", {"vehicles": whole(), **Energy, "readings": nested(Counts)})),
        "vehicles": nested(body("FleetVehicle", {
            "vehicleId": DeviceId(), **Energy, "avgBatteryTemp": temp(), "maxBatteryTemp": temp(),
            "readings": nested(Counts)}), many=True),
        "page": nested(body("FleetPage", {"sort": fields.String(required=True),
                                          "order": fields.String(required=True),
                                          "limit": whole(minimum=1), "offset": whole()}))}),
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
            "reading": fields.Dict(required=True)}), many=True),
        "next": fields.Integer(required=True, allow_none=True)}),
    "Redriven": body("Redriven", {"redriven": whole()}),
    "Health": body("Health", {"status": fields.String(required=True, validate=validate.Equal("ok"))}),
    "Readiness": body("Readiness", {
        "postgres": fields.String(required=True, validate=UP),
        "redis": fields.String(required=True, validate=UP),
        # Only with ANALYTICS_DATABASE_URL; said, not counted in the status (docs/scaling.md).
        "replica": fields.String(validate=validate.OneOf(["ok", "lagging", "unavailable"]))}),
}

STATUS_TEXT = {
    400: "The body is not JSON (RFC 8259), not UTF-8, or nested deeper than 64 levels.",
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


def window_params() -> list[dict]:
    bound = {"type": "string", "format": "date-time"}
    return [param("from", "query", bound, description="Window start (RFC 3339 with a zone); "
                  "default `to` - 24 h."),
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
        "description": "An ingest token (INGEST_TOKENS) for POST /v1/ingest; an operator token "
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
            parameters=[vehicle_id, *window_params()])},
        "/v1/analytics/performance/{vehicleId}/series": {"get": operation(
            "operator", "The same figures per time bucket of the window.", (200, "Series"), 400, 404,
            texts={400: BAD_QUERY + " Or more than 5000 buckets.", 404: UNKNOWN_VEHICLE},
            parameters=[vehicle_id, *window_params(),
                        {"in": "query", "schema": schemas.SeriesQuerySchema}])},
        "/v1/analytics/fleet": {"get": operation(
            "operator", "Every vehicle's figures over the window, sorted and paged.", (200, "Fleet"),
            400, texts={400: BAD_QUERY}, parameters=[*window_params(), fleet_query])},
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
            "operator", "Readings the database refused, oldest first.", (200, "DeadLetters"), 400,
            texts={400: "`after` is not a whole number >= 0, or `limit` not 1 to 1000."},
            parameters=[param("after", "query",
                              {"type": "integer", "minimum": 0, "maximum": schemas.BIGINT_MAX}),
                        param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000})])},
        "/v1/dead-letters/redrive": {"post": operation(
            "operator", "Queue dead letters again (the given ids, else the oldest 1000).",
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
    ops["/readyz"]["get"]["responses"]["503"] = {"description": "A dependency does not answer.",
                                                 **json_content(ref("Readiness"))}
    for path, operations in ops.items():
        # The limiter (web/ratelimit.py) is on only when RATE_LIMIT is set, and spares the probes.
        if getattr(settings, "rate_limit", None) and path not in ("/healthz", "/readyz"):
            for op in operations.values():
                op["responses"]["429"] = error(429)
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
