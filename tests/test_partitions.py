"""History partitioned by day: rows land in their day's partition, retention drops
whole old partitions, and analytics read only the partitions of their window."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from models.analytics import PERFORMANCE
from models.partitions import partitions
from models.rollups import rollup_marks
from models.windows import split_window
from tests.conftest import INGEST, OPERATOR
from tests.readings import iso, meter, vehicle
from workers import drain as drain_module
from workers.maintenance import maintain_history

# The latest noon that has passed: a reading at "today" noon must not lie in the future.
TODAY = (datetime.now(UTC) - timedelta(hours=12)).replace(hour=12, minute=0, second=0, microsecond=0)


def days_ago(n: float) -> datetime:
    return TODAY - timedelta(days=n)


@pytest.fixture
def forget_partition_cache():
    """Retention drops partitions behind this process's drain cache."""
    yield
    drain_module._partition_days.clear()


def test_each_reading_lands_in_its_days_partition(client, drain_all, engine):
    readings = [vehicle(at=days_ago(n)) for n in (0, 1, 400)]
    readings.append(vehicle(timestamp=iso(days_ago(2)).replace("12:00:00Z", "23:30:00-01:00")))
    assert client.post("/v1/ingest", json=readings, headers=INGEST).status_code == 202
    assert drain_all().stored == 4
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT tableoid::regclass::text, to_char(ts AT TIME ZONE 'UTC', 'YYYYMMDD')"
            " FROM vehicle_readings")).all()
    assert len(rows) == 4
    for partition, day in rows:
        assert partition == f"vehicle_readings_p{day}"


def test_retention_drops_whole_old_partitions_only(client, drain_all, engine, settings,
                                                   forget_partition_cache):
    readings = [meter(at=days_ago(n)) for n in (0, 3, 6, 8, 30)]
    readings += [vehicle(at=days_ago(n)) for n in (0, 8)]
    client.post("/v1/ingest", json=readings, headers=INGEST)
    drain_all()
    report = maintain_history(engine, dataclasses.replace(settings, retention_days=7), TODAY.date())
    assert f"meter_readings_p{days_ago(8):%Y%m%d}" in report["dropped"]
    assert f"vehicle_readings_p{days_ago(30):%Y%m%d}" in report["dropped"]
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT ts FROM meter_readings ORDER BY ts")).scalars().all()
        days = set(partitions(conn, "meter_readings"))
    assert kept == [days_ago(6), days_ago(3), days_ago(0)]
    assert {(TODAY + timedelta(days=n)).date() for n in (-1, 0, 1, 2)} <= days
    assert min(days) >= days_ago(7).date()


def test_no_retention_drops_nothing(engine, settings):
    assert maintain_history(engine, settings, TODAY.date()) == {"dropped": []}


def test_analytics_reads_only_the_partitions_of_its_window(client, drain_all, engine):
    client.put("/v1/meters/M-101/vehicle", json={"vehicleId": "V-201", "since": iso(days_ago(5))},
               headers=OPERATOR)
    client.post("/v1/ingest", headers=INGEST,
                json=[r for n in (1, 2, 3) for r in (meter(at=days_ago(n)), vehicle(at=days_ago(n)))])
    drain_all()
    # Partial hours at both ends: history is read for them, the rollups for the rest.
    day = days_ago(2).replace(second=0, microsecond=0)
    start, end = day.replace(hour=0, minute=30), day.replace(hour=23, minute=10)
    with engine.connect() as conn:
        plan = "\n".join(conn.exec_driver_sql(
            "EXPLAIN " + str(PERFORMANCE[False, True].compile(engine)),
            {"vehicle_id": "V-201", **split_window(start, end, rollup_marks(conn)).params()},
        ).scalars())
    for table in ("meter_readings", "vehicle_readings"):
        assert f"{table}_p{days_ago(2):%Y%m%d}" in plan, plan
        for other in (1, 3):
            assert f"{table}_p{days_ago(other):%Y%m%d}" not in plan, plan
