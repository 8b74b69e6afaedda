"""Marshmallow schemas of the device registry's requests (web/api/devices.py, web/api/gateways.py).

Kept beside, not inside, web/schemas.py: they describe operator requests, not
readings. The OpenAPI document takes them from here.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, fields, validate

from models.devices import KINDS
from readings.fields import DeviceId
from readings.schemas import BIGINT_MAX


class StrictBoolean(fields.Boolean):
    """JSON true or false only (marshmallow's Boolean also takes "yes", 1, ...)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class NewDeviceSchema(Schema):
    """One device of POST /v1/devices (a JSON object, an array of them, or a CSV row)."""

    class Meta:
        unknown = RAISE

    id = DeviceId()
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))


class DevicePatchSchema(Schema):
    """Body of PATCH /v1/devices/{id} and /v1/gateways/{id}."""

    class Meta:
        unknown = RAISE

    disabled = StrictBoolean(required=True)


class NewGatewaySchema(Schema):
    """Body of POST /v1/gateways."""

    class Meta:
        unknown = RAISE

    id = DeviceId()


class DevicesQuerySchema(Schema):
    """Query of GET /v1/devices."""

    class Meta:
        unknown = RAISE

    kind = fields.String(validate=validate.OneOf(KINDS))
    prefix = fields.String(load_default="", validate=validate.Length(max=64))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=BIGINT_MAX))
