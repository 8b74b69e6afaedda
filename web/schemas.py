"""Marshmallow schemas: the one statement of what a valid request body is.

A reading is a meter reading or a vehicle reading; its kind is named by `type`
or follows from the id it carries. Validated readings become queue rows
("m"|"v", device, UTC timestamp, values...) as workers/drain.py reads them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate

from web.fastpath import compile_schema
from web.timestamps import format_rfc3339, parse_rfc3339

ID_PATTERN = r"\A[A-Za-z0-9._:-]{1,64}\Z"
# A terawatt-hour in one reading is no device's; the bound keeps sums of any
# number of readings far inside a double (analytics never overflow).
MAX_KWH_PER_READING = 1e9


class DeviceId(fields.String):
    """1 to 64 characters of A-Z a-z 0-9 . _ : -"""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            required=True,
            validate=validate.Regexp(
                ID_PATTERN, error="Must be 1 to 64 characters of A-Z a-z 0-9 . _ : -"
            ),
            **kwargs,
        )


class JsonNumber(fields.Float):
    """A finite JSON number: booleans, null and numeric strings are refused."""

    default_error_messages = {
        "invalid": "Must be a number.",
        "special": "Must be a finite number.",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=True, allow_nan=False, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        try:
            float(value)
        except OverflowError:  # an integer too large for a float
            raise self.make_error("special") from None
        return super()._deserialize(value, attr, data, **kwargs)


class Timestamp(fields.Field):
    """An RFC 3339 date-time with a zone, loaded as an aware UTC datetime."""

    default_error_messages = {
        "invalid": "Must be an RFC 3339 date-time with a time zone, "
        "such as 2026-02-10T00:55:12Z."
    }

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            return parse_rfc3339(value)
        except ValueError:
            raise self.make_error("invalid") from None


class MeterReadingSchema(Schema):
    class Meta:
        unknown = RAISE

    kind = fields.String(data_key="type", validate=validate.Equal("meter"))
    meterId = DeviceId()
    kwhConsumedAc = JsonNumber(validate=validate.Range(min=0, max=MAX_KWH_PER_READING))
    voltage = JsonNumber(validate=validate.Range(min=0, min_inclusive=False))
    timestamp = Timestamp(required=True)


class VehicleReadingSchema(Schema):
    class Meta:
        unknown = RAISE

    kind = fields.String(data_key="type", validate=validate.Equal("vehicle"))
    vehicleId = DeviceId()
    soc = JsonNumber(validate=validate.Range(min=0, max=100))
    kwhDeliveredDc = JsonNumber(validate=validate.Range(min=0, max=MAX_KWH_PER_READING))
    batteryTemp = JsonNumber(validate=validate.Range(min=-50, max=150))
    timestamp = Timestamp(required=True)


class LinkSchema(Schema):
    """Body of PUT /v1/meters/{meterId}/vehicle."""

    class Meta:
        unknown = RAISE

    vehicleId = DeviceId()
    since = Timestamp()


class ReadingValidator:
    """Validates readings of either kind against the time limits of the settings."""

    def __init__(self, max_clock_skew_s: int, retention_days: int | None) -> None:
        self.schemas = {"meter": MeterReadingSchema(), "vehicle": VehicleReadingSchema()}
        self.fast = {kind: compile_schema(schema) for kind, schema in self.schemas.items()}
        self.max_skew = timedelta(seconds=max_clock_skew_s)
        self.retention = timedelta(days=retention_days) if retention_days else None

    def validate(self, readings: list) -> tuple[list[list], dict[int, Any]]:
        """Queue rows for the readings, and the errors by index (empty if none)."""
        now = datetime.now(UTC)
        rows: list[list] = []
        errors: dict[int, Any] = {}
        for index, reading in enumerate(readings):
            try:
                rows.append(self.row(reading, now))
            except ValidationError as exc:
                errors[index] = exc.messages
        return rows, errors

    def row(self, reading: Any, now: datetime) -> list:
        kind = kind_of(reading)
        # Marshmallow only for what the compiled path is unsure of (errors, mostly).
        data = self.fast[kind](reading) or self.schemas[kind].load(reading)
        self.check_time(data["timestamp"], now)
        ts = format_rfc3339(data["timestamp"])
        if kind == "meter":
            return ["m", data["meterId"], ts, data["kwhConsumedAc"], data["voltage"]]
        return ["v", data["vehicleId"], ts, data["soc"], data["kwhDeliveredDc"],
                data["batteryTemp"]]

    def check_time(self, ts: datetime, now: datetime) -> None:
        if ts > now + self.max_skew:
            raise ValidationError(
                {"timestamp": [f"Lies more than {int(self.max_skew.total_seconds())} s in the future."]}
            )
        if self.retention and ts < now - self.retention:
            raise ValidationError(
                {"timestamp": [f"Older than the {self.retention.days}-day retention."]}
            )


def kind_of(reading: Any) -> str:
    """'meter' or 'vehicle', by `type` or by the id the reading carries."""
    if not isinstance(reading, dict):
        raise ValidationError({"_schema": ["A reading must be a JSON object."]})
    declared = reading.get("type")
    if declared in ("meter", "vehicle"):
        return declared  # the schema refuses fields of the other kind
    if "type" in reading:
        raise ValidationError({"type": ['Must be "meter" or "vehicle".']})
    has_meter, has_vehicle = "meterId" in reading, "vehicleId" in reading
    if has_meter and has_vehicle:
        raise ValidationError({"_schema": ["Has both meterId and vehicleId."]})
    if has_meter:
        return "meter"
    if has_vehicle:
        return "vehicle"
    raise ValidationError({"_schema": ["Needs a meterId or a vehicleId."]})


# Ids and OFFSET are bigint in PostgreSQL: a larger number would fail there (500).
BIGINT_MAX = 2**63 - 1


class RedriveSchema(Schema):
    """Body of POST /v1/dead-letters/redrive: which dead letters (default: the oldest)."""

    class Meta:
        unknown = RAISE

    ids = fields.List(fields.Integer(strict=True, validate=validate.Range(min=-BIGINT_MAX - 1,
                                                                          max=BIGINT_MAX)),
                      validate=validate.Length(min=1, max=10_000))


def reading_of_row(row: list) -> dict:
    """A queue row shown as the reading it came from (the inverse of ReadingValidator.row)."""
    if row[:1] == ["m"] and len(row) == 5:
        return dict(zip(("meterId", "timestamp", "kwhConsumedAc", "voltage"), row[1:], strict=True))
    if row[:1] == ["v"] and len(row) == 6:
        return dict(zip(("vehicleId", "timestamp", "soc", "kwhDeliveredDc", "batteryTemp"), row[1:],
                        strict=True))
    return {"unreadable": row}


class FleetQuerySchema(Schema):
    """Query of GET /v1/analytics/fleet (besides the window)."""

    class Meta:
        unknown = EXCLUDE  # `from` and `to` are read by the window

    sort = fields.String(load_default="efficiency",
                         validate=validate.OneOf(["efficiency", "ac", "dc", "temperature", "vehicleId"]))
    order = fields.String(load_default="asc", validate=validate.OneOf(["asc", "desc"]))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=BIGINT_MAX))
    search = fields.String(load_default="", validate=validate.Length(max=64),
                           metadata={"description": "Only vehicles whose id contains this (any case)."})


BUCKETS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "1d": timedelta(days=1)}


class SeriesQuerySchema(Schema):
    """Query of GET /v1/analytics/performance/{vehicleId}/series (besides the window)."""

    class Meta:
        unknown = EXCLUDE

    bucket = fields.String(load_default="1h", validate=validate.OneOf(list(BUCKETS)))


class AlertsQuerySchema(Schema):
    """Query of GET /v1/alerts."""

    class Meta:
        unknown = RAISE

    state = fields.String(load_default="open", validate=validate.OneOf(["open", "all"]))
    limit = fields.Integer(load_default=500, validate=validate.Range(min=1, max=10_000))


class SessionsQuerySchema(Schema):
    """Query of GET /v1/analytics/sessions (besides the window); the default
    order of each sort puts the worst first (models/sessions.py)."""

    class Meta:
        unknown = EXCLUDE

    sort = fields.String(load_default="loss", validate=validate.OneOf(["loss", "efficiency", "start"]))
    order = fields.String(load_default=None, validate=validate.OneOf(["asc", "desc"]))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=BIGINT_MAX))
