"""Draining: duplicates stored once, live state only moves forward, batches never fail
on repeats, and a batch stored but not acknowledged is not stored twice."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from tests.conftest import INGEST, OPERATOR, count
from tests.readings import NOW, iso, meter, vehicle
from workers.drain import drain, store_entries


def ingest(client, body):
    response = client.post("/v1/ingest", json=body, headers=INGEST)
    assert response.status_code == 202, response.json
    return response


def test_same_instant_in_any_offset_is_stored_once_and_first_stands(client, drain_all, engine):
    at = NOW - timedelta(hours=1)
    ingest(client, vehicle(soc=50, at=at))
    drain_all()
    offset = (at + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00")
    ingest(client, [vehicle(soc=60, timestamp=offset), vehicle(soc=70, timestamp=iso(at))])
    report = drain_all()
    assert report.duplicates == 2
    assert count(engine, "vehicle_readings") == 1
    live = client.get("/v1/live/vehicles/V-201", headers=OPERATOR).json
    assert live["soc"] == 50
    with engine.connect() as conn:
        assert conn.execute(text("SELECT soc FROM vehicle_readings")).scalar_one() == 50


def test_duplicates_within_one_batch_keep_the_first(client, drain_all, engine):
    at = NOW - timedelta(minutes=3)
    ingest(client, [meter(ac=1.0, at=at), meter(ac=2.0, at=at), meter(ac=3.0, at=at)])
    report = drain_all()
    assert (report.stored, report.duplicates) == (1, 2)
    assert client.get("/v1/live/meters/M-101", headers=OPERATOR).json["kwhConsumedAc"] == 1.0


def test_older_reading_never_replaces_live_state(client, drain_all):
    ingest(client, meter(voltage=231, at=NOW - timedelta(minutes=1)))
    drain_all()
    ingest(client, meter(voltage=229, at=NOW - timedelta(minutes=30)))
    drain_all()
    live = client.get("/v1/live/meters/M-101", headers=OPERATOR).json
    assert live["voltage"] == 231
    assert live["timestamp"] == iso(NOW - timedelta(minutes=1))


def test_newest_reading_of_a_batch_wins_whatever_its_order(client, drain_all):
    readings = [vehicle(soc=s, at=NOW - timedelta(minutes=m)) for s, m in [(40, 9), (80, 1), (60, 5)]]
    ingest(client, readings)
    drain_all()
    live = client.get("/v1/live/vehicles/V-201", headers=OPERATOR).json
    assert (live["soc"], live["timestamp"]) == (80, iso(NOW - timedelta(minutes=1)))


def test_newer_reading_replaces_live_state(client, drain_all):
    ingest(client, vehicle(soc=10, at=NOW - timedelta(minutes=9)))
    drain_all()
    ingest(client, vehicle(soc=20, at=NOW - timedelta(minutes=2)))
    drain_all()
    assert client.get("/v1/live/vehicles/V-201", headers=OPERATOR).json["soc"] == 20


def test_batch_stored_but_not_acknowledged_is_stored_once(client, queue, engine, settings):
    """A worker that dies between commit and acknowledgement: its successor
    claims the entries, stores nothing twice, and the backlog still empties."""
    ingest(client, [meter(f"M-{i}") for i in range(250)])
    entries = queue.take("doomed", 1000, fill_wait_s=0.05)
    assert store_entries(engine, entries).stored == 250  # committed, never acked
    assert queue.backlog() == 250
    report = drain(queue, engine, "successor", _claim_at_once(settings), budget_s=2)
    assert (report.readings, report.stored, report.duplicates) == (250, 0, 250)
    assert count(engine, "meter_readings") == 250
    assert queue.backlog() == 0


def test_live_acknowledgement_of_a_claimed_entry_counts_once(client, queue, engine, settings):
    ingest(client, [meter(f"M-{i}") for i in range(3)])
    entries = queue.take("slow", 1000, fill_wait_s=0.05)
    drain(queue, engine, "successor", _claim_at_once(settings), budget_s=2)
    assert queue.ack(entries) == 0  # the slow owner's late ack changes nothing
    assert queue.backlog() == 0


def test_large_request_is_split_into_bounded_batches(client, queue, engine, settings):
    ingest(client, [meter(f"M-{i}", at=NOW - timedelta(seconds=i)) for i in range(2500)])
    small = _claim_at_once(settings, batch_max_readings=1000)
    report = drain(queue, engine, "drainer", small, budget_s=5)
    assert report.batches == 3
    assert count(engine, "meter_readings") == 2500


def _claim_at_once(settings, **changes):
    import dataclasses
    return dataclasses.replace(settings, claim_idle_s=0.001, **changes)
