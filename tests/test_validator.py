"""A compiled acceptor never accepts what marshmallow refuses, and returns the
same values for what it accepts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from readings.schemas import MeterReadingSchema, VehicleReadingSchema
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


def test_compiled_acceptor_accepts_ordinary_readings():
    fast = compile_schema(MeterReadingSchema())
    reading = {"meterId": "M-1", "kwhConsumedAc": 14, "voltage": 230.5, "timestamp": "2026-02-10T00:55:12Z"}
    assert fast(reading) == MeterReadingSchema().load(reading)


def test_a_field_the_compiler_does_not_know_is_refused_at_start_up():
    from marshmallow import Schema, fields

    class Odd(Schema):
        when = fields.Date(required=True)

    with pytest.raises(UnsupportedField):
        compile_schema(Odd())
