"""Poison readings: the database refuses one for a reason validation missed; the
rest of its batch is stored, it is dead-lettered with the reason, and operators
can list it and re-drive it once the cause is fixed."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import text

from tests.conftest import INGEST, OPERATOR, count
from tests.readings import NOW, meter, vehicle
from workers.drain import store_entries


@contextmanager
def refusing_voltage(engine, voltage: int):
    """A constraint the validation does not know of, as a stand-in for any such gap."""
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE meter_readings ADD CONSTRAINT poison_test "
                          f"CHECK (voltage <> {voltage})"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE meter_readings DROP CONSTRAINT IF EXISTS poison_test"))


@pytest.fixture
def poisoned(client, engine, drain_all):
    batch = [meter("M-1"), meter("M-2", voltage=666), vehicle("V-1"), meter("M-3")]
    with refusing_voltage(engine, 666):
        assert client.post("/v1/ingest", json=batch, headers=INGEST).status_code == 202
        report = drain_all()
    return report


def test_refused_reading_is_dead_lettered_and_the_rest_stored(poisoned, client, queue, engine):
    assert (poisoned.stored, poisoned.refused) == (3, 1)
    assert count(engine, "meter_readings") == 2
    assert count(engine, "vehicle_readings") == 1
    assert queue.backlog() == 0
    body = client.get("/v1/dead-letters", headers=OPERATOR).json
    [letter] = body["deadLetters"]
    assert letter["source"] == "database"
    assert letter["reading"]["meterId"] == "M-2"
    assert letter["reading"]["voltage"] == 666
    assert "CheckViolation" in letter["reason"] and "poison_test" in letter["reason"]
    assert "violates" not in letter["reason"]  # a class and a name, not the server's text


def test_re_driven_dead_letter_is_stored_once_the_cause_is_gone(poisoned, client, engine, drain_all):
    response = client.post("/v1/dead-letters/redrive", headers=OPERATOR)
    assert response.status_code == 200
    assert response.json == {"redriven": 1}
    drain_all()
    assert count(engine, "meter_readings") == 3
    assert client.get("/v1/dead-letters", headers=OPERATOR).json["deadLetters"] == []


def test_redrive_by_id_and_bad_ids(poisoned, client):
    [letter] = client.get("/v1/dead-letters", headers=OPERATOR).json["deadLetters"]
    bad = client.post("/v1/dead-letters/redrive", json={"ids": ["x"]}, headers=OPERATOR)
    assert bad.status_code == 422
    huge = client.post("/v1/dead-letters/redrive", json={"ids": [2**63]}, headers=OPERATOR)
    assert huge.status_code == 422  # beyond PostgreSQL's bigint: refused, not a 500
    beyond = client.get("/v1/dead-letters", headers=OPERATOR, query_string={"after": str(2**63)})
    assert beyond.status_code == 400
    ok = client.post("/v1/dead-letters/redrive", json={"ids": [letter["id"]]}, headers=OPERATOR)
    assert ok.json == {"redriven": 1}


def test_retried_poison_batch_is_dead_lettered_once(client, queue, engine):
    with refusing_voltage(engine, 666):
        client.post("/v1/ingest", json=[meter(voltage=666), meter("M-2")], headers=INGEST)
        entries = queue.take("c", 100, fill_wait_s=0.01)
        store_entries(engine, entries)
        store_entries(engine, entries)  # the worker died before acknowledging
    assert count(engine, "dead_letters") == 1
    assert count(engine, "meter_readings") == 1


def test_unreadable_queue_entry_is_dead_lettered_not_blocking(client, queue, engine, drain_all):
    queue.redis.xadd(queue.stream, {"r": b"\xff not json"})
    queue.redis.incrby(queue.backlog_key, 1)
    client.post("/v1/ingest", json=vehicle(at=NOW), headers=INGEST)
    report = drain_all()
    assert (report.stored, report.refused) == (1, 1)
    assert queue.backlog() == 0
    [letter] = client.get("/v1/dead-letters", headers=OPERATOR).json["deadLetters"]
    assert letter["reason"].startswith("malformed queue row")


def test_dead_letters_need_an_operator_token(client):
    assert client.get("/v1/dead-letters", headers=INGEST).status_code == 403
    assert client.post("/v1/dead-letters/redrive").status_code == 401
