"""Property-based tests of the ingest schemas: whatever JSON is posted, it is either
refused with 422 and nothing is queued, or accepted (202) and every reading of it
is then stored by the database: none refused, none dead-lettered.

Each example is self-contained: base readings get device ids no other example
uses, and what is asserted are differences of counts before and after it.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from readings.schemas import MAX_KWH_PER_READING
from tests.conftest import INGEST, count

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
HISTORY = ("meter_readings", "vehicle_readings")
FIELDS = {"meter": ("meterId", "kwhConsumedAc", "voltage", "timestamp"),
          "vehicle": ("vehicleId", "soc", "kwhDeliveredDc", "batteryTemp", "timestamp")}
# Far enough in the past for any offset, and never in the future.
LATEST = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=2)
serial = itertools.count()


class Raw(str):
    """A number literal sent as written (1e309 has no Python float to dump it from)."""


def encode(body: object) -> bytes:
    raws: list[str] = []

    def placeholder(value: object) -> object:
        if isinstance(value, Raw):
            raws.append(value)
            return f"@raw{len(raws) - 1}@"
        if isinstance(value, list):
            return [placeholder(v) for v in value]
        if isinstance(value, dict):
            return {k: placeholder(v) for k, v in value.items()}
        return value

    out = json.dumps(placeholder(body), allow_nan=False)
    for i, raw in enumerate(raws):
        out = out.replace(f'"@raw{i}@"', raw)
    return out.encode()


def finite(lo: float | None = None, hi: float | None = None, **kw) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, **kw)


@st.composite
def timestamps(draw) -> tuple[str, datetime]:
    """A valid RFC 3339 timestamp in any offset and style, and the instant it names."""
    utc = draw(st.datetimes(min_value=datetime(2, 1, 1), max_value=LATEST)).replace(tzinfo=UTC)
    minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    local = utc.astimezone(timezone(timedelta(minutes=minutes)))
    zone = (draw(st.sampled_from(["Z", "z"])) if minutes == 0 and draw(st.booleans())
            else f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}")
    fraction = draw(st.sampled_from(["", f".{local.microsecond:06d}",
                                     f".{local.microsecond:06d}{draw(st.integers(0, 999)):03d}"]))
    if not fraction and local.microsecond:
        fraction = f".{local.microsecond:06d}"
    sep = draw(st.sampled_from("Tt "))
    stamp = (f"{local.year:04d}-{local.month:02d}-{local.day:02d}{sep}"
             f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}{fraction}{zone}")
    return stamp, utc


@st.composite
def valid_pairs(draw) -> tuple[dict, datetime]:
    """A valid reading with a device id no other example uses, and its instant."""
    kind = draw(st.sampled_from(["meter", "vehicle"]))
    stamp, instant = draw(timestamps())
    if kind == "meter":
        reading = {"meterId": f"M-p{next(serial)}", "kwhConsumedAc": draw(finite(0, MAX_KWH_PER_READING)),
                   "voltage": draw(finite(0, exclude_min=True)), "timestamp": stamp}
    else:
        reading = {"vehicleId": f"V-p{next(serial)}", "soc": draw(finite(0, 100)),
                   "kwhDeliveredDc": draw(finite(0, MAX_KWH_PER_READING)),
                   "batteryTemp": draw(finite(-50, 150)),
                   "timestamp": stamp}
    if draw(st.booleans()):
        reading["type"] = kind
    return reading, instant


valid_readings = valid_pairs().map(lambda pair: pair[0])


odd_numbers = st.one_of(
    finite(), st.integers(), st.integers(2**53, 10**400),
    st.sampled_from([0, -0.0, 5e-324, -5e-324, 1.7976931348623157e308, -1e308, 100, 100.000001,
                     -50, -50.000001, 150, 150.000001, 2**63, 2**64, 10**308, 10**309]),
    st.sampled_from([Raw(r) for r in ("1e309", "-1e309", "1E400", "4.9e-325", "1e-400", "-0",
                                       "0E0", "1" + "0" * 400, "-" + "9" * 320)]),
)
wrong_types = st.one_of(
    st.none(), st.booleans(), st.text(max_size=12), st.from_regex(r"-?\d{1,4}(\.\d+)?", fullmatch=True),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
odd_ids = st.one_of(
    st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True), st.text(max_size=70),
    st.sampled_from(["", "x" * 64, "x" * 65, "M-1\n", "M 1", "M\x00", "\uff2d-1", "\u00e9", "M/1",
                     "M-1'--", "\U0001f600"]),
)
odd_timestamps = st.one_of(
    timestamps().map(lambda t: t[0]),
    st.datetimes().map(datetime.isoformat),  # naive
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.text(max_size=30),
    st.sampled_from([
        "2026-02-10T00:55:12", "2026-02-10", "2024-02-29T12:00:00Z", "2025-02-29T12:00:00Z",
        "2026-02-10T23:59:60Z", "2026-02-10T24:00:00Z", "2026-02-10T00:55:12+24:00",
        "2026-02-10T00:55:12+23:59", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00",
        "0001-01-01T00:00:00-01:00", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59",
        "2026-02-10T00:55:12.Z", "2026-02-10T00:55:12.1234567890123Z", "2026-02-10T00:55:12-00:00",
        "\u0662\u0660\u0662\u0666-02-10T00:55:12Z", "2026-02-10T00:55:12Z\n", " 2026-02-10T00:55:12Z",
        "2026-02-10T00:55:12+0100", "20260210T005512Z",
    ]),
)
odd_values = {"id": odd_ids, "number": st.one_of(odd_numbers, wrong_types),
              "timestamp": st.one_of(odd_timestamps, wrong_types)}


@st.composite
def near_valid_readings(draw) -> dict:
    """A valid reading, left as is or with one thing about it changed."""
    reading = draw(valid_readings)
    kind = "meter" if "meterId" in reading else "vehicle"
    how = draw(st.sampled_from(["none", "none", "value", "value", "value", "drop", "extra", "type",
                                "both-ids"]))
    if how == "value":
        name = draw(st.sampled_from(FIELDS[kind]))
        sort = "id" if name.endswith("Id") else "timestamp" if name == "timestamp" else "number"
        reading[name] = draw(odd_values[sort])
    elif how == "drop":
        del reading[draw(st.sampled_from(sorted(reading)))]
    elif how == "extra":
        name = draw(st.sampled_from([*FIELDS["meter"], *FIELDS["vehicle"], "extra", "Type", ""]))
        reading.setdefault(name, draw(st.one_of(odd_numbers, wrong_types)))
    elif how == "type":
        reading["type"] = draw(st.sampled_from(["meter", "vehicle", "METER", "", None, 1, True, [],
                                                "charger"]))
    elif how == "both-ids":
        reading["vehicleId" if kind == "meter" else "meterId"] = f"X-p{next(serial)}"
    return reading


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15,
)
reading_like = st.dictionaries(
    st.sampled_from([*FIELDS["meter"], *FIELDS["vehicle"], "type"]),
    st.one_of(odd_ids, odd_numbers, odd_timestamps, wrong_types), max_size=6,
)
bodies = st.one_of(
    near_valid_readings(),
    near_valid_readings(),  # twice: single readings reach the database most often
    st.lists(near_valid_readings(), max_size=4),
    st.lists(st.one_of(near_valid_readings(), reading_like, json_values), min_size=1, max_size=4),
    reading_like,
    json_values,
)


def history_rows(engine) -> int:
    return sum(count(engine, table) for table in HISTORY)


def post(client, body: object):
    return client.post("/v1/ingest", data=encode(body), headers=INGEST, content_type="application/json")


@SETTINGS
@given(body=bodies)
def test_any_payload_is_stored_whole_or_refused_with_422(client, queue, drain_all, engine, body):
    backlog, rows = queue.backlog(), history_rows(engine)
    response = post(client, body)
    event(f"status {response.status_code}")
    assert response.status_code in (202, 422), (response.status_code, response.get_json(), encode(body))
    if response.status_code == 422:
        assert isinstance(response.json["errors"], dict) and response.json["errors"]
        assert queue.backlog() == backlog  # all or nothing: none of it was queued
        return
    readings = len(body) if isinstance(body, list) else 1
    assert response.json == {"accepted": readings}
    report = drain_all()
    # The database took every reading (a valid id may repeat one stored before).
    assert (report.refused, report.stored + report.duplicates) == (0, readings), (report, encode(body))
    assert history_rows(engine) - rows == report.stored
    assert count(engine, "dead_letters") == 0


@settings(SETTINGS, max_examples=60)  # every example drains: keep the run short
@given(batch=st.lists(valid_pairs(), min_size=1, max_size=4))
def test_valid_readings_are_accepted_and_stored_exactly(client, drain_all, engine, batch):
    readings = [reading for reading, _ in batch]
    response = post(client, readings)
    assert response.status_code == 202, (response.get_json(), readings)
    report = drain_all()
    assert (report.stored, report.refused) == (len(readings), 0)
    with engine.connect() as conn:
        for reading, instant in batch:
            if "meterId" in reading:
                row = conn.execute(text("SELECT ts, kwh_consumed_ac, voltage FROM meter_readings "
                                        "WHERE meter_id = :d"), {"d": reading["meterId"]}).one()
                values = (reading["kwhConsumedAc"], reading["voltage"])
            else:
                row = conn.execute(text("SELECT ts, soc, kwh_delivered_dc, battery_temp FROM "
                                        "vehicle_readings WHERE vehicle_id = :d"),
                                   {"d": reading["vehicleId"]}).one()
                values = (reading["soc"], reading["kwhDeliveredDc"], reading["batteryTemp"])
            assert row[0] == instant, reading
            assert tuple(row[1:]) == values, reading
