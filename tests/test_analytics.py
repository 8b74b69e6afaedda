"""GET /v1/analytics/performance/{vehicleId}: exact sums through time-valid links."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.conftest import INGEST, OPERATOR
from tests.readings import NOW, iso, meter, vehicle

T0 = (NOW - timedelta(days=2)).replace(minute=0, second=0)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def load(client, drain_all, readings):
    for i in range(0, len(readings), 1000):
        response = client.post("/v1/ingest", json=readings[i:i + 1000], headers=INGEST)
        assert response.status_code == 202, response.json
    drain_all()


def link(client, meter_id, vehicle_id, since):
    response = client.put(f"/v1/meters/{meter_id}/vehicle", headers=OPERATOR,
                          json={"vehicleId": vehicle_id, "since": iso(since)})
    assert response.status_code == 200, response.json


def performance(client, vehicle_id, start, end, status=200):
    response = client.get(f"/v1/analytics/performance/{vehicle_id}", headers=OPERATOR,
                          query_string={"from": iso(start), "to": iso(end)})
    assert response.status_code == status, response.json
    return response.json


def test_sums_count_readings_inside_the_window_only(client, drain_all):
    link(client, "M-1", "V-1", at(0))
    load(client, drain_all, [
        meter("M-1", ac=1.25, at=at(9.999)),  # before the window
        meter("M-1", ac=2.5, at=at(10)),      # on `from`: inside
        meter("M-1", ac=3.75, at=at(15)),
        meter("M-1", ac=100, at=at(20)),      # on `to`: outside
        vehicle("V-1", dc=2.0, temp=30, at=at(10)),
        vehicle("V-1", dc=3.0, temp=35, at=at(19.999)),
        vehicle("V-1", dc=50, temp=90, at=at(20)),
    ])
    body = performance(client, "V-1", at(10), at(20))
    assert body["window"] == {"from": iso(at(10)), "to": iso(at(20))}
    assert body["totalEnergy"] == {"acConsumedKwh": 6.25, "dcDeliveredKwh": 5.0}
    assert body["efficiencyRatio"] == pytest.approx(5.0 / 6.25, rel=1e-12)
    assert body["avgBatteryTemp"] == pytest.approx(32.5, rel=1e-12)
    assert body["readings"] == {"meter": 2, "vehicle": 2}


def test_unlinked_meter_and_readings_before_first_link_count_for_no_vehicle(client, drain_all):
    link(client, "M-1", "V-1", at(30))
    load(client, drain_all, [
        meter("M-1", ac=7, at=at(29)),       # before M-1's first link
        meter("M-1", ac=1, at=at(30)),       # from the link on (inclusive)
        meter("M-9", ac=1000, at=at(31)),    # never linked
        vehicle("V-1", dc=0.5, at=at(31)),
    ])
    body = performance(client, "V-1", at(0), at(60))
    assert body["totalEnergy"] == {"acConsumedKwh": 1.0, "dcDeliveredKwh": 0.5}
    assert body["readings"] == {"meter": 1, "vehicle": 1}


def test_relinked_meter_keeps_history_with_the_old_vehicle(client, drain_all):
    link(client, "M-1", "V-1", at(0))
    link(client, "M-1", "V-2", at(60))
    load(client, drain_all, [meter("M-1", ac=1.5, at=at(m)) for m in (10, 59, 60, 90)])
    assert performance(client, "V-1", at(0), at(120))["totalEnergy"]["acConsumedKwh"] == 3.0
    assert performance(client, "V-2", at(0), at(120))["totalEnergy"]["acConsumedKwh"] == 3.0
    # Relinking back to V-1 later leaves the V-2 span alone.
    link(client, "M-1", "V-1", at(80))
    assert performance(client, "V-1", at(0), at(120))["totalEnergy"]["acConsumedKwh"] == 4.5
    assert performance(client, "V-2", at(0), at(120))["readings"]["meter"] == 1


def test_two_meters_feeding_one_vehicle_add_up(client, drain_all):
    link(client, "M-1", "V-1", at(0))
    link(client, "M-2", "V-1", at(0))
    load(client, drain_all, [meter("M-1", ac=0.1, at=at(1)), meter("M-2", ac=0.2, at=at(1))])
    body = performance(client, "V-1", at(0), at(10))
    assert body["totalEnergy"]["acConsumedKwh"] == pytest.approx(0.3, rel=1e-12)
    assert body["efficiencyRatio"] == 0


def test_sums_are_exact_over_a_day_of_readings(client, drain_all):
    link(client, "M-1", "V-1", at(0))
    readings = []
    for m in range(1440):
        readings.append(meter("M-1", ac=0.123457 + m * 1e-6, at=at(m)))
        readings.append(vehicle("V-1", dc=0.104321 + m * 1e-6, temp=20 + m % 17, at=at(m)))
    load(client, drain_all, readings)
    body = performance(client, "V-1", at(0), at(1440))
    ac = sum(0.123457 + m * 1e-6 for m in range(1440))
    dc = sum(0.104321 + m * 1e-6 for m in range(1440))
    assert body["totalEnergy"]["acConsumedKwh"] == pytest.approx(ac, rel=1e-9)
    assert body["totalEnergy"]["dcDeliveredKwh"] == pytest.approx(dc, rel=1e-9)
    assert body["efficiencyRatio"] == pytest.approx(dc / ac, rel=1e-9)
    assert body["avgBatteryTemp"] == pytest.approx(sum(20 + m % 17 for m in range(1440)) / 1440)
    assert body["readings"] == {"meter": 1440, "vehicle": 1440}


def test_vanishing_ac_gives_a_null_ratio_not_infinity(client, drain_all):
    link(client, "M-1", "V-1", at(0))
    load(client, drain_all, [meter("M-1", ac=5e-324, at=at(1)), vehicle("V-1", dc=1e9, at=at(1))])
    response = client.get("/v1/analytics/performance/V-1", headers=OPERATOR,
                          query_string={"from": iso(at(0)), "to": iso(at(10))})
    assert response.status_code == 200
    assert "Infinity" not in response.get_data(as_text=True)
    assert response.json["efficiencyRatio"] is None
    assert response.json["totalEnergy"]["dcDeliveredKwh"] == 1e9


def test_known_vehicle_without_readings_in_window_is_zeros_and_nulls(client, drain_all):
    load(client, drain_all, [vehicle("V-1", at=at(0))])
    body = performance(client, "V-1", at(100), at(200))
    assert body["totalEnergy"] == {"acConsumedKwh": 0, "dcDeliveredKwh": 0}
    assert body["efficiencyRatio"] is None
    assert body["avgBatteryTemp"] is None
    assert body["readings"] == {"meter": 0, "vehicle": 0}


def test_vehicle_known_only_by_a_link_is_200(client):
    link(client, "M-1", "V-7", at(0))
    assert performance(client, "V-7", at(0), at(10))["readings"] == {"meter": 0, "vehicle": 0}


def test_unknown_vehicle_is_404(client):
    assert "error" in performance(client, "V-404", at(0), at(10), status=404)


def test_default_window_is_the_last_24_hours(client, drain_all):
    load(client, drain_all, [vehicle("V-1", dc=1, at=NOW - timedelta(hours=23)),
                             vehicle("V-1", dc=2, at=NOW - timedelta(hours=25))])
    response = client.get("/v1/analytics/performance/V-1", headers=OPERATOR)
    assert response.status_code == 200
    body = response.json
    start = datetime.fromisoformat(body["window"]["from"])
    end = datetime.fromisoformat(body["window"]["to"])
    assert end - start == timedelta(hours=24)
    assert abs(end - datetime.now(UTC)) < timedelta(minutes=1)
    assert body["totalEnergy"]["dcDeliveredKwh"] == 1


@pytest.mark.parametrize("query", [
    {"from": "yesterday"},
    {"from": "2026-02-10T00:00:00", "to": "2026-02-11T00:00:00Z"},
    {"from": "2026-02-11T00:00:00Z", "to": "2026-02-10T00:00:00Z"},
    {"from": "2026-02-10T00:00:00Z", "to": "2026-02-10T02:00:00+02:00"},
])
def test_bad_window_is_400(client, drain_all, query):
    load(client, drain_all, [vehicle("V-1")])
    response = client.get("/v1/analytics/performance/V-1", headers=OPERATOR, query_string=query)
    assert response.status_code == 400
    assert "error" in response.json


def test_ingest_token_cannot_read_analytics(client):
    response = client.get("/v1/analytics/performance/V-1", headers=INGEST)
    assert response.status_code == 403
    assert client.get("/v1/analytics/performance/V-1").status_code == 401


def test_query_uses_indexes_not_sequential_scans(client, drain_all, engine):
    for m in range(40):
        link(client, f"M-{m}", f"V-{m}", at(0))
    readings = []
    for m in range(40):
        readings += [meter(f"M-{m}", at=at(i)) for i in range(100)]
        readings += [vehicle(f"V-{m}", at=at(i)) for i in range(100)]
    load(client, drain_all, readings)
    from models.analytics import PERFORMANCE
    from models.rollups import rollup_marks
    from models.windows import split_window
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
        compiled = PERFORMANCE[False, True].compile(engine)  # history read: edges
        plan = conn.exec_driver_sql(
            "EXPLAIN " + str(compiled),
            {"vehicle_id": "V-3", **split_window(at(10), at(50), rollup_marks(conn)).params()},
        ).scalars().all()
    plan_text = "\n".join(plan)
    for table in ("meter_readings", "vehicle_readings"):
        assert table in plan_text
        assert f"Seq Scan on {table}" not in plan_text, plan_text
    # Whole hours and days read no history: no partition to plan, one plan for every window.
    assert not re.search(r"(FROM|JOIN) (meter|vehicle)_readings\b", PERFORMANCE[False, False].text)
    assert re.search(r"FROM (meter|vehicle)_readings\b", PERFORMANCE[False, True].text)
