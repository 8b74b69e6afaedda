"""Lazy rollups: hours are rolled up once closed, late readings are added by the
drain, and a drain and a roll-up never miss each other's readings."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from models.roll_up import roll_up
from models.rollups import rolled_up_until
from tests.conftest import INGEST, OPERATOR, set_watermark, wait_for
from tests.readings import meter, vehicle
from tests.test_fleet import assert_rollups_equal_raw_sums, at, performance, rollup_rows
from workers.drain import ensure_partitions, store_rows


def rolled_up_until_now(engine) -> datetime:
    with engine.connect() as conn:
        return rolled_up_until(conn)


@pytest.fixture
def unrolled_hours(client, drain_all, engine):
    """Three hours of readings of M-1 (linked to V-1) and V-1, none rolled up yet."""
    set_watermark(engine, at(0))
    client.put("/v1/meters/M-1/vehicle", headers=OPERATOR,
               json={"vehicleId": "V-1", "since": at(0).isoformat()})
    readings = [r for minute in range(0, 180, 2) for r in (
        meter("M-1", ac=1 + minute / 100, at=at(minute)),
        vehicle("V-1", dc=0.9 + minute / 100, temp=20 + minute % 11, at=at(minute)))]
    assert client.post("/v1/ingest", json=readings, headers=INGEST).status_code == 202
    drain_all()


def test_hours_are_rolled_up_once_closed(unrolled_hours, client, engine):
    with engine.connect() as conn:  # the drain left them to the roll-up
        assert conn.execute(text("SELECT count(*) FROM meter_hourly")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM vehicle_hourly")).scalar_one() == 0
    before = performance(client, "V-1", at(0), at(300))
    assert before["readings"] == {"meter": 90, "vehicle": 90}

    now = at(179)  # hours 0 and 1 have closed; hour 2 has not
    assert roll_up(engine, now) == 2
    assert rolled_up_until_now(engine) == at(120)
    assert roll_up(engine, now) == 0
    assert roll_up(engine, datetime.now(UTC), max_hours=1) == 1  # at most as many as asked

    assert len(rollup_rows(engine, "meter_hourly")) == 3
    assert_rollups_equal_raw_sums(engine)
    after = performance(client, "V-1", at(0), at(300))
    assert after["readings"] == before["readings"]
    for key in ("acConsumedKwh", "dcDeliveredKwh"):
        assert after["totalEnergy"][key] == pytest.approx(before["totalEnergy"][key], rel=1e-12)


def test_an_hour_is_rolled_up_only_once_settled(unrolled_hours, engine):
    assert roll_up(engine, at(60)) == 0  # hour 0 has just ended: late readings may be in flight
    assert roll_up(engine, at(61)) == 1


def test_late_reading_of_a_rolled_up_hour_is_added_by_the_drain(unrolled_hours, client, engine,
                                                                drain_all):
    roll_up(engine, at(179))
    before = performance(client, "V-1", at(0), at(300))
    late = [meter("M-1", ac=5, at=at(31)), vehicle("V-1", dc=4, temp=70, at=at(31)),
            vehicle("V-1", dc=3, at=at(131))]  # one after the watermark: history only
    assert client.post("/v1/ingest", json=late, headers=INGEST).status_code == 202
    drain_all()
    assert_rollups_equal_raw_sums(engine)
    after = performance(client, "V-1", at(0), at(300))
    assert after["readings"] == {"meter": 91, "vehicle": 92}
    assert after["totalEnergy"]["dcDeliveredKwh"] == pytest.approx(
        before["totalEnergy"]["dcDeliveredKwh"] + 7, rel=1e-12)


def test_a_drain_waits_for_a_roll_up_in_progress(engine, settings):  # settings: emptied after
    """The drain reads the watermark under a lock that a roll-up holds: a drain
    that starts during one sees the moved watermark and adds its late reading
    to the rollups itself, which the roll-up, reading history before the
    drain committed, could not."""
    set_watermark(engine, at(0))
    row = ["v", "V-1", at(10).isoformat(), 50.0, 2.5, 30.0]
    ensure_partitions(engine, [row])
    roll = engine.connect()
    roll_tx = roll.begin()
    roll.execute(text("SELECT rolled_up_until FROM rollup_watermark FOR UPDATE"))
    stored = []
    drainer = threading.Thread(target=lambda: stored.append(store_rows(engine, [row])))
    drainer.start()
    try:
        # Autocommit: within a transaction pg_stat_activity would show one snapshot.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            wait_for(lambda: conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE '%rollup_watermark%'")).scalar_one(),
                timeout_s=10, what="the drain waiting for the roll-up")
        assert drainer.is_alive()
        roll.execute(text("UPDATE rollup_watermark SET rolled_up_until = :until"), {"until": at(60)})
    finally:
        roll_tx.commit()
        roll.close()
        drainer.join(10)
    assert stored[0].stored == 1
    assert [row[-1] for row in rollup_rows(engine, "vehicle_hourly")] == [1]  # its reading counted
    assert_rollups_equal_raw_sums(engine)
