"""The readings package: no web framework in it, and one row format both ways."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.store import METER_COLUMNS, VEHICLE_COLUMNS
from readings import rows
from readings.validator import ReadingValidator

METER = {"meterId": "M-1", "kwhConsumedAc": 14.5, "voltage": 230.0, "timestamp": "2026-02-10T00:55:12+01:00"}
ROOT = Path(__file__).resolve().parent.parent
VEHICLE = {"vehicleId": "V-1", "soc": 75, "kwhDeliveredDc": 11.2, "batteryTemp": -3.5,
           "timestamp": "2026-02-10T00:55:12.25Z"}


def test_readings_imports_neither_flask_nor_gunicorn():
    # A fresh interpreter: this one has long imported Flask for other tests.
    code = ("import sys, readings.fields, readings.rows, readings.schemas, readings.timestamps, "
            "readings.validator; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('flask', 'gunicorn', 'werkzeug', 'web')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def validated(reading: dict) -> list:
    valid, errors = ReadingValidator(max_clock_skew_s=300, retention_days=None).validate([reading])
    assert errors == {}
    return valid[0]


def test_a_row_reads_back_as_its_reading_in_utc():
    meter, vehicle = validated(METER), validated(VEHICLE)
    assert meter == ["m", "M-1", "2026-02-09T23:55:12Z", 14.5, 230.0]
    assert rows.reading_of(meter) == {**METER, "timestamp": "2026-02-09T23:55:12Z"}
    assert rows.reading_of(vehicle) == {**VEHICLE, "soc": 75.0, "timestamp": "2026-02-10T00:55:12.250000Z"}
    # Rows go through Redis as JSON: the round trip changes nothing.
    assert json.loads(json.dumps(vehicle)) == vehicle


def test_split_hands_each_kind_its_fields_in_the_store_columns_order():
    meter, vehicle = validated(METER), validated(VEHICLE)
    meters, vehicles = rows.split([vehicle, meter, meter])
    assert meters == [meter[1:]] * 2 and vehicles == [vehicle[1:]]
    assert len(METER_COLUMNS) == len(rows.FIELDS[rows.METER])
    assert len(VEHICLE_COLUMNS) == len(rows.FIELDS[rows.VEHICLE])
    assert rows.instant(meter[2]) == datetime(2026, 2, 9, 23, 55, 12, tzinfo=UTC)
    assert rows.day_of(meter).isoformat() == "2026-02-09"


@pytest.mark.parametrize("row", [["x", "M-1"], ["m", "M-1", "2026-02-10T00:00:00Z"], {"m": 1}, [], "m",
                                 [["m"], "M-1", "2026-02-10T00:00:00Z", 1, 1]])
def test_a_row_no_edge_wrote_is_refused_and_shown_as_unreadable(row):
    with pytest.raises(ValueError):
        rows.split([row])
    assert rows.reading_of(row) == {"unreadable": row}
