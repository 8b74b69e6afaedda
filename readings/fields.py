"""The custom marshmallow fields of readings: device ids, JSON numbers, RFC 3339 timestamps.

Their own module because both the schemas (readings/schemas.py) and the
compiler of fast acceptors (readings/validator.py) need them, and the
OpenAPI document (web/openapi.py) maps them to OpenAPI types.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from marshmallow import fields, validate

from readings.timestamps import parse_rfc3339

ID_PATTERN = r"\A[A-Za-z0-9._:-]{1,64}\Z"


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
