"""Validating readings: the schemas' rules, the time limits, and compiled acceptors.

ReadingValidator turns readings (one request's, or one MQTT message's) into
queue rows (readings/rows.py) and errors by index. The rules stay where they
are, in the schemas of readings/schemas.py; this module adds the limits that
depend on the clock and the settings (clock skew, retention).

Marshmallow spends about 40 µs per reading on its machinery; a 1,000-reading
request would spend 40 ms validating. So compile_schema reads each field's
type, `required`, and validators once, and builds a plain function that accepts
a reading only when marshmallow would, returning the same values. Anything it
is not sure of it hands back as None, and the validator runs marshmallow,
which then either accepts too or produces the error messages.
tests/test_validator.py checks the two agree on generated payloads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from readings import rows
from readings.fields import Timestamp
from readings.schemas import MeterReadingSchema, VehicleReadingSchema
from readings.timestamps import parse_rfc3339

Check = Callable[[Any], tuple[bool, Any]]


class UnsupportedField(TypeError):
    """The schema declares something this compiler does not know: extend it."""


def _number(field: fields.Float) -> Check:
    bounds = []
    for v in field.validators:
        if not isinstance(v, validate.Range):
            raise UnsupportedField(f"{v!r} on {field!r}")
        bounds.append(v)

    def check(value: Any) -> tuple[bool, Any]:
        if type(value) is not float and type(value) is not int:  # not bool, not str
            return False, None
        try:
            number = float(value)
        except OverflowError:
            return False, None
        if not math.isfinite(number):
            return False, None
        for r in bounds:
            if r.min is not None and (number < r.min or (number == r.min and not r.min_inclusive)):
                return False, None
            if r.max is not None and (number > r.max or (number == r.max and not r.max_inclusive)):
                return False, None
        return True, number

    return check


def _string(field: fields.String) -> Check:
    tests: list[Callable[[str], bool]] = []
    for v in field.validators:
        if isinstance(v, validate.Regexp):
            tests.append(lambda s, regex=v.regex: regex.match(s) is not None)
        elif isinstance(v, validate.Equal):
            tests.append(lambda s, want=v.comparable: s == want)
        else:
            raise UnsupportedField(f"{v!r} on {field!r}")

    def check(value: Any) -> tuple[bool, Any]:
        if type(value) is not str or not all(t(value) for t in tests):
            return False, None
        return True, value

    return check


def _timestamp(field: fields.Field) -> Check:
    if field.validators:
        raise UnsupportedField(f"validators on {field!r}")

    def check(value: Any) -> tuple[bool, Any]:
        if type(value) is not str:
            return False, None
        try:
            return True, parse_rfc3339(value)
        except ValueError:
            return False, None

    return check


def _checker(field: fields.Field) -> Check:
    if field.allow_none:
        raise UnsupportedField(f"allow_none on {field!r}")
    if isinstance(field, Timestamp):
        return _timestamp(field)
    if isinstance(field, fields.Float) and not field.allow_nan:
        return _number(field)
    if isinstance(field, fields.String):
        return _string(field)
    raise UnsupportedField(repr(field))


def compile_schema(schema: Schema) -> Callable[[Any], dict | None]:
    """A function returning what `schema.load(reading)` would, or None when unsure."""
    checks = []
    required, allowed = set(), set()
    for name, field in schema.load_fields.items():
        key = field.data_key or name
        allowed.add(key)
        if field.required:
            required.add(key)
        checks.append((key, name, _checker(field)))
    required_keys, allowed_keys = frozenset(required), frozenset(allowed)

    def load(reading: Any) -> dict | None:
        if type(reading) is not dict:
            return None
        keys = reading.keys()
        if not (required_keys <= keys <= allowed_keys):
            return None
        loaded = {}
        for key, name, check in checks:
            if key in reading:
                ok, value = check(reading[key])
                if not ok:
                    return None
                loaded[name] = value
        return loaded

    return load


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
        valid: list[list] = []
        errors: dict[int, Any] = {}
        for index, reading in enumerate(readings):
            try:
                valid.append(self.row(reading, now))
            except ValidationError as exc:
                errors[index] = exc.messages
        return valid, errors

    def row(self, reading: Any, now: datetime) -> list:
        """The queue row of one reading; ValidationError if it is not valid."""
        kind = kind_of(reading)
        # Marshmallow only for what the compiled acceptor is unsure of (errors, mostly).
        data = self.fast[kind](reading) or self.schemas[kind].load(reading)
        self.check_time(data["timestamp"], now)
        return rows.BUILDERS[kind](data)

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


def readings_of(body: Any) -> list | None:
    """The readings of a body that is one reading or a non-empty array of them; else None."""
    readings = body if isinstance(body, list) else [body]
    if not isinstance(body, (list, dict)) or not readings:
        return None
    return readings
