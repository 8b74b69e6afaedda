"""Alerts open when a vehicle charges inefficiently or runs hot, and clear when it recovers."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import INGEST, OPERATOR, wait_for
from tests.readings import meter, vehicle
from workers.alerts import evaluate_alerts

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def charge(client, n: int, efficiency: float, minutes: range, ac: float = 0.2, temp: float = 30):
    client.put(f"/v1/meters/M-{n}/vehicle", json={"vehicleId": f"V-{n}",
               "since": (NOW - timedelta(days=2)).isoformat()}, headers=OPERATOR)
    readings = []
    for m in minutes:
        at = NOW - timedelta(minutes=m)
        readings += [meter(f"M-{n}", ac=ac, at=at), vehicle(f"V-{n}", dc=ac * efficiency, temp=temp, at=at)]
    for i in range(0, len(readings), 1000):
        assert client.post("/v1/ingest", json=readings[i:i + 1000], headers=INGEST).status_code == 202


def open_alerts(client, state="open"):
    response = client.get("/v1/alerts", headers=OPERATOR, query_string={"state": state})
    assert response.status_code == 200
    return {(a["vehicleId"], a["kind"]): a for a in response.json["alerts"]}


@pytest.fixture
def fleet(client, drain_all):
    charge(client, 1, 0.72, range(10, 70))              # degraded: 12 kWh AC
    charge(client, 2, 0.92, range(10, 70))              # healthy
    charge(client, 3, 0.50, range(10, 20))              # degraded, but 2 kWh: too little to judge
    charge(client, 4, 0.90, range(10, 40), temp=64.5)   # hot
    drain_all()


def test_degraded_and_hot_vehicles_open_alerts_that_say_why(fleet, client, engine, settings):
    assert evaluate_alerts(engine, settings, NOW)["opened"] == 2
    alerts = open_alerts(client)
    assert set(alerts) == {("V-1", "low_efficiency"), ("V-4", "battery_temperature")}
    low = alerts[("V-1", "low_efficiency")]
    assert low["figures"]["efficiencyRatio"] == pytest.approx(0.72)
    assert low["figures"]["acConsumedKwh"] == pytest.approx(12.0)
    assert "0.720" in low["reason"] and "0.85" in low["reason"]
    assert low["clearedAt"] is None and low["openedAt"]
    assert "64.5" in alerts[("V-4", "battery_temperature")]["reason"]


def test_evaluating_again_opens_nothing_new(fleet, client, engine, settings):
    evaluate_alerts(engine, settings, NOW)
    first = open_alerts(client)
    assert evaluate_alerts(engine, settings, NOW + timedelta(minutes=1))["opened"] == 0
    again = open_alerts(client)
    assert {k: a["id"] for k, a in again.items()} == {k: a["id"] for k, a in first.items()}


def test_alert_clears_when_the_vehicle_recovers(fleet, client, drain_all, engine, settings):
    evaluate_alerts(engine, settings, NOW)
    charge(client, 1, 0.99, range(70, 400), ac=0.5)  # much efficient charging since
    drain_all()
    assert evaluate_alerts(engine, settings, NOW)["cleared"] == 1
    assert ("V-1", "low_efficiency") not in open_alerts(client)
    history = open_alerts(client, state="all")[("V-1", "low_efficiency")]
    assert history["clearedAt"] is not None


def test_threshold_is_configurable(fleet, client, engine, settings):
    evaluate_alerts(engine, dataclasses.replace(settings, alert_threshold=0.95), NOW)
    assert ("V-2", "low_efficiency") in open_alerts(client)


def test_bad_query_and_tokens(client):
    assert client.get("/v1/alerts", headers=OPERATOR, query_string={"state": "x"}).status_code == 400
    assert client.get("/v1/alerts", headers=INGEST).status_code == 403
    assert client.get("/v1/alerts").status_code == 401


def test_beat_task_in_a_real_worker_opens_the_alert(client, worker_factory):
    charge(client, 1, 0.7, range(10, 70))
    worker_factory(alert_interval_s=1)
    wait_for(lambda: open_alerts(client), 60, "the beat task to open an alert")
    assert ("V-1", "low_efficiency") in open_alerts(client)
