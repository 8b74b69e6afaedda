"""Marshmallow schemas: the one statement of what a valid request body or query is.

The API validates with them, and the OpenAPI document (web/openapi.py) is built
from them. Readings are validated through readings/validator.py, which adds
the time limits and compiled acceptors.
"""

from __future__ import annotations

from datetime import timedelta

from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

from readings.fields import DeviceId, JsonNumber, Timestamp

# A terawatt-hour in one reading is no device's; the bound keeps sums of any
# number of readings far inside a double (analytics never overflow).
MAX_KWH_PER_READING = 1e9


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


# Ids and OFFSET are bigint in PostgreSQL: a larger number would fail there (500).
BIGINT_MAX = 2**63 - 1


class RedriveSchema(Schema):
    """Body of POST /v1/dead-letters/redrive: which dead letters (default: the oldest)."""

    class Meta:
        unknown = RAISE

    ids = fields.List(fields.Integer(strict=True, validate=validate.Range(min=-BIGINT_MAX - 1,
                                                                          max=BIGINT_MAX)),
                      validate=validate.Length(min=1, max=10_000))


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
