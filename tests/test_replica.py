"""Analytics from a real streaming replica (ANALYTICS_DATABASE_URL): the same
answers as the primary once caught up, the primary's while the replica lags
beyond MAX_REPLICA_LAG_S, and 503 (not 500) while it is down, ingest unharmed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta

import pytest

from tests.conftest import INGEST, OPERATOR, wait_for
from tests.readings import NOW, iso, meter, vehicle
from web import create_app
from workers import drain as drain_module
from workers.drain import drain

pytest_plugins = ["tests.servers"]

WINDOW = f"from={iso(NOW - timedelta(hours=2))}&to={iso(NOW + timedelta(minutes=1))}"
READ_PATHS = (
    f"/v1/analytics/performance/V-1?{WINDOW}",
    f"/v1/analytics/performance/V-1/series?bucket=15m&{WINDOW}",
    f"/v1/analytics/fleet?{WINDOW}",
    "/v1/live/vehicles/V-1",
    "/v1/live/meters/M-1",
)


@pytest.fixture
def stack(primary_and_replica, settings) -> Iterator[dict]:
    """Apps on a migrated primary: one reading from its replica, one from the primary alone."""
    primary, replica = primary_and_replica
    drain_module._partition_days.clear()  # known for another database, not for this one
    primary_url = primary.create_database("energy")
    primary.migrate(primary_url)
    on_replica = dataclasses.replace(settings, database_url=primary_url,
                                     analytics_database_url=replica.url("energy"),
                                     max_replica_lag_s=0.5)
    apps = {"replica": create_app({"TESTING": True, "SETTINGS": on_replica}),
            "primary": create_app({"TESTING": True, "SETTINGS": dataclasses.replace(
                on_replica, analytics_database_url=None)})}
    engine = apps["primary"].extensions["engine"]
    try:
        yield {"apps": apps, "engine": engine, "settings": on_replica, "replica": replica,
               "engines": apps["replica"].extensions["read_engines"]}
    finally:
        for app in apps.values():
            app.extensions["engine"].dispose()
            if app.extensions["read_engines"].replica is not None:
                app.extensions["read_engines"].replica.dispose()
            app.extensions["queue"].close()
            app.extensions["group_commit"].close()


def ingest_and_drain(stack, readings: list[dict]) -> None:
    client = stack["apps"]["primary"].test_client()
    response = client.post("/v1/ingest", json=readings, headers=INGEST)
    assert response.status_code == 202
    queue = stack["apps"]["primary"].extensions["queue"]
    report = drain(queue, stack["engine"], "test-drainer",
                   dataclasses.replace(stack["settings"], drain_interval_s=0.01), budget_s=5)
    assert report.readings == len(readings)


def link_and_feed(stack) -> None:
    client = stack["apps"]["primary"].test_client()
    since = iso(NOW - timedelta(hours=3))
    assert client.put("/v1/meters/M-1/vehicle", json={"vehicleId": "V-1", "since": since},
                      headers=OPERATOR).status_code == 200
    ingest_and_drain(stack, [
        r for i in range(60) for r in (
            meter("M-1", ac=1.5 + i, at=NOW - timedelta(minutes=i)),
            vehicle("V-1", dc=1.2 + i, temp=30 + i % 7, at=NOW - timedelta(minutes=i)))])


def caught_up(stack) -> bool:
    return stack["engines"].lag_s() == 0.0


def test_analytics_on_the_replica_equal_those_on_the_primary(stack):
    link_and_feed(stack)
    wait_for(lambda: caught_up(stack), 30, "the replica to catch up")
    assert stack["engines"].for_reads() is stack["engines"].replica
    on_replica, on_primary = (stack["apps"][k].test_client() for k in ("replica", "primary"))
    for path in READ_PATHS:
        a, b = on_replica.get(path, headers=OPERATOR), on_primary.get(path, headers=OPERATOR)
        assert a.status_code == b.status_code == 200, (path, a.json, b.json)
        assert a.json == b.json, path
    ready = on_replica.get("/readyz")
    assert ready.status_code == 200 and ready.json["replica"] == "ok"
    metrics = on_replica.get("/metrics", headers=OPERATOR).get_data(as_text=True)
    assert "energy_replica_lag_seconds 0.0" in metrics


def test_reads_leave_a_replica_that_lags_beyond_the_bound(stack):
    link_and_feed(stack)
    wait_for(lambda: caught_up(stack), 30, "the replica to catch up")
    stack["replica"].pause_replay()
    ingest_and_drain(stack, [vehicle("V-1", soc=12, at=NOW + timedelta(seconds=1))])  # the newest
    engines = stack["engines"]
    wait_for(lambda: engines.lag_s() > engines.max_lag_s, 30, "the paused replica to lag")
    client = stack["apps"]["replica"].test_client()
    # Visible at once, from the primary: the replica never answers beyond its bound.
    live = client.get("/v1/live/vehicles/V-1", headers=OPERATOR)
    assert live.status_code == 200 and live.json["soc"] == 12
    assert engines.for_reads() is engines.primary
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["replica"] == "lagging"
    stack["replica"].resume_replay()
    wait_for(lambda: caught_up(stack), 30, "the replica to catch up again")
    assert engines.for_reads() is engines.replica


def test_a_stopped_replica_gives_503_from_reads_while_ingest_goes_on(stack):
    link_and_feed(stack)
    wait_for(lambda: caught_up(stack), 30, "the replica to catch up")
    stack["replica"].stop(mode="immediate")
    client = stack["apps"]["replica"].test_client()
    for path in READ_PATHS:
        response = client.get(path, headers=OPERATOR)
        assert response.status_code == 503, (path, response.status_code)
        assert response.headers["Retry-After"] and "error" in response.json
    assert client.post("/v1/ingest", json=[vehicle("V-1", at=NOW)], headers=INGEST).status_code == 202
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["replica"] == "unavailable"
