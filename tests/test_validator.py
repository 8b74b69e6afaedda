"""A compiled acceptor never accepts what marshmallow refuses, and returns the
same values for what it accepts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from readings.schemas import MAX_KWH_PER_READING, MeterReadingSchema, VehicleReadingSchema
from readings.validator import UnsupportedField, compile_schema

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**400, 10**400),
    st.sampled_from([0, 0.0, -0.0, 100, 100.0000001, -50, 150, 1e-300, True, False, None, "75", "1e3"]),
)
IDS = st.one_of(st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True),
                st.text(max_size=70), st.sampled_from(["", "M" * 65, "M-1\n", 7, None]))
TIMESTAMPS = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["2026-02-10T00:55:12Z", "2026-02-10t00:55:12z", "2026-02-10 00:55:12+25:00",
                     "2026-02-30T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                     "2026-02-10T00:55:12.1234567+05:30", "2026-02-10", 1770000000, None]),
)
IDS_VALID = st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True)
# RFC 3339 offsets are whole minutes (some of zoneinfo's historical ones are not);
# the instant must exist in UTC too (year 1 at +01:00 does not).
OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda minutes: timezone(timedelta(minutes=minutes)))
ZONED = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                     timezones=OFFSETS).map(lambda d: d.isoformat())
VALUES = {"meterId": IDS, "vehicleId": IDS, "kwhConsumedAc": NUMBERS, "voltage": NUMBERS,
          "soc": NUMBERS, "kwhDeliveredDc": NUMBERS, "batteryTemp": NUMBERS, "timestamp": TIMESTAMPS,
          "type": st.sampled_from(["meter", "vehicle", "charger", 1]), "extra": st.just(1)}


@st.composite
def readings(draw, schema):
    keys = [f.data_key or name for name, f in schema.load_fields.items()]
    chosen = draw(st.lists(st.sampled_from(keys + ["extra", "vehicleId", "meterId"]), unique=True))
    required = [f.data_key or n for n, f in schema.load_fields.items() if f.required]
    if draw(st.booleans()):
        chosen = list(dict.fromkeys(required + chosen))
    return {key: draw(VALUES[key]) for key in chosen}


@pytest.mark.parametrize("schema", [MeterReadingSchema(), VehicleReadingSchema()],
                         ids=["meter", "vehicle"])
def test_compiled_acceptor_agrees_with_marshmallow(schema):
    fast = compile_schema(schema)

    @settings(max_examples=1500, deadline=None)
    @given(readings(schema))
    def check(reading):
        got = fast(reading)
        try:
            want = schema.load(reading)
        except ValidationError:
            assert got is None, reading
            return
        if got is not None:
            assert got == want, reading

    check()


def within(low: float, high: float) -> st.SearchStrategy:
    """Numbers marshmallow accepts between the bounds, the bounds themselves included."""
    return st.one_of(st.floats(low, high), st.integers(int(low), int(high)), st.sampled_from([low, high]))


VALID = {
    "meter": {"meterId": IDS_VALID, "kwhConsumedAc": within(0, MAX_KWH_PER_READING),
              "voltage": st.floats(min_value=0, exclude_min=True, max_value=1e12),
              "timestamp": ZONED, "type": st.just("meter")},
    "vehicle": {"vehicleId": IDS_VALID, "soc": within(0, 100),
                "kwhDeliveredDc": within(0, MAX_KWH_PER_READING), "batteryTemp": within(-50, 150),
                "timestamp": ZONED, "type": st.just("vehicle")},
}


@pytest.mark.parametrize("schema", [MeterReadingSchema(), VehicleReadingSchema()],
                         ids=["meter", "vehicle"])
def test_compiled_acceptor_accepts_every_valid_reading_as_marshmallow_does(schema):
    # The property test above rarely draws a valid vehicle reading (four bounded
    # numbers): these are all valid, so both must accept, with the same values.
    kind = "meter" if isinstance(schema, MeterReadingSchema) else "vehicle"
    fast = compile_schema(schema)

    @settings(max_examples=300, deadline=None)
    @given(st.fixed_dictionaries({k: v for k, v in VALID[kind].items() if k != "type"},
                                 optional={"type": VALID[kind]["type"]}))
    def check(reading):
        assert fast(reading) == schema.load(reading), reading

    check()


def test_compiled_acceptor_accepts_ordinary_readings():
    fast = compile_schema(MeterReadingSchema())
    reading = {"meterId": "M-1", "kwhConsumedAc": 14, "voltage": 230.5, "timestamp": "2026-02-10T00:55:12Z"}
    assert fast(reading) == MeterReadingSchema().load(reading)
    fast = compile_schema(VehicleReadingSchema())
    reading = {"vehicleId": "V-1", "soc": 75, "kwhDeliveredDc": 11.2, "batteryTemp": -3.5,
               "timestamp": "2026-02-10T00:55:12.25+01:00", "type": "vehicle"}
    assert fast(reading) == VehicleReadingSchema().load(reading)


def test_a_field_the_compiler_does_not_know_is_refused_at_start_up():
    from marshmallow import Schema, fields

    class Odd(Schema):
        when = fields.Date(required=True)

    with pytest.raises(UnsupportedField):
        compile_schema(Odd())
