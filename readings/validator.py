"""A fast acceptor compiled from a marshmallow schema's own declarations.

Marshmallow spends about 40 µs per reading on its machinery; a 1,000-reading
request would spend 40 ms validating. The rules stay where they are (the
schemas in readings/schemas.py): this module reads each field's type, `required`,
and validators once, and builds a plain function that accepts a reading only
when marshmallow would, returning the same values. Anything it is not sure of
it hands back as None, and the caller runs marshmallow, which then either
accepts too or produces the error messages. tests/test_validator.py checks the
two agree on generated payloads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from marshmallow import Schema, fields, validate

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
    from readings.schemas import Timestamp  # the schemas module imports this one

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
