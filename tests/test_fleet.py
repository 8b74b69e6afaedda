"""Fleet analytics and series: rollups equal raw sums, fleet and per-vehicle
figures (both read rollups) equal raw history for any window, and sorting,
paging and totals hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from models.roll_up import rebuild
from tests.conftest import INGEST, OPERATOR, set_watermark
from tests.readings import iso, meter, vehicle

T0 = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def fleet_data(client, drain_all):
    """Four vehicles over five hours; M-3 relinked from V-3 to V-4 mid-hour; M-9 unlinked."""
    links = [("M-1", "V-1", 0), ("M-2", "V-2", 0), ("M-3", "V-3", 0), ("M-3", "V-4", 137.5)]
    for meter_id, vehicle_id, since in links:
        client.put(f"/v1/meters/{meter_id}/vehicle", headers=OPERATOR,
                   json={"vehicleId": vehicle_id, "since": iso(at(since))})
    readings = []
    for minute in range(0, 300, 3):
        for n in (1, 2, 3, 9):
            readings.append(meter(f"M-{n}", ac=0.1 * n + minute / 1000, at=at(minute + 0.25)))
        for n, efficiency in ((1, 0.9), (2, 0.8), (3, 0.93), (4, 0.88)):
            source = 3 if n == 4 else n
            dc = (0.1 * source + minute / 1000) * efficiency
            readings.append(vehicle(f"V-{n}", dc=dc, temp=20 + n + minute % 7, at=at(minute + 0.25)))
    for i in range(0, len(readings), 1000):
        assert client.post("/v1/ingest", json=readings[i:i + 1000], headers=INGEST).status_code == 202
    # Retries of the first 50 readings must not count twice, in raw or rollup sums.
    client.post("/v1/ingest", json=readings[:50], headers=INGEST)
    drain_all()


def fleet(client, start, end, **query):
    response = client.get("/v1/analytics/fleet", headers=OPERATOR,
                          query_string={"from": iso(start), "to": iso(end), **query})
    assert response.status_code == 200, response.json
    return response.json


def performance(client, vehicle_id, start, end):
    return client.get(f"/v1/analytics/performance/{vehicle_id}", headers=OPERATOR,
                      query_string={"from": iso(start), "to": iso(end)}).json


# Rollups are read (and kept) only for the hours before the watermark.
BEFORE_WATERMARK = "< (SELECT rolled_up_until FROM rollup_watermark)"

ROLLUP_VS_RAW = {
    "meter_hourly": f"""
        SELECT meter_id, date_trunc('hour', ts, 'UTC'), sum(kwh_consumed_ac), count(*)
        FROM meter_readings WHERE ts {BEFORE_WATERMARK} GROUP BY 1, 2 ORDER BY 1, 2""",
    "vehicle_hourly": f"""
        SELECT vehicle_id, date_trunc('hour', ts, 'UTC'), sum(kwh_delivered_dc), sum(battery_temp),
               max(battery_temp), count(*)
        FROM vehicle_readings WHERE ts {BEFORE_WATERMARK} GROUP BY 1, 2 ORDER BY 1, 2""",
}


def rollup_rows(engine, table):
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT * FROM {table} WHERE hour {BEFORE_WATERMARK} ORDER BY 1, 2")).all()


def assert_rollups_equal_raw_sums(engine) -> None:
    """The rollups before the watermark are exactly what history sums to."""
    for table, raw_sql in ROLLUP_VS_RAW.items():
        with engine.connect() as conn:
            raw = conn.execute(text(raw_sql)).all()
        rolled = rollup_rows(engine, table)
        assert len(rolled) == len(raw), table
        for got, want in zip(rolled, raw, strict=True):
            assert got[:2] == want[:2]
            assert got[2:] == pytest.approx(want[2:], rel=1e-12)


def test_rollups_kept_by_the_drain_equal_raw_sums(fleet_data, engine):
    assert all(rollup_rows(engine, table) for table in ROLLUP_VS_RAW)
    assert_rollups_equal_raw_sums(engine)


def test_rebuilt_rollups_equal_those_kept_by_the_drain(fleet_data, engine):
    kept = {t: rollup_rows(engine, t) for t in ROLLUP_VS_RAW}
    rebuild(engine, at(0), at(300))
    for table, rows in kept.items():
        rebuilt = rollup_rows(engine, table)
        assert [r[:2] for r in rebuilt] == [r[:2] for r in rows]
        for got, want in zip(rebuilt, rows, strict=True):
            assert got[2:] == pytest.approx(want[2:], rel=1e-12)


# The reference: a vehicle's readings straight from history, no rollups. AC: the
# readings of every span [since, next since) of a link to this vehicle.
VEHICLE_AC_READINGS = """
    (SELECT meter_id, vehicle_id, since,
            lead(since) OVER (PARTITION BY meter_id ORDER BY since) AS until
     FROM meter_links) s
    JOIN meter_readings r
      ON r.meter_id = s.meter_id AND r.ts >= s.since AND (s.until IS NULL OR r.ts < s.until)
     AND r.ts >= :from_ts AND r.ts < :to_ts
    WHERE s.vehicle_id = :vehicle_id
"""
VEHICLE_DC_READINGS = "vehicle_readings WHERE vehicle_id = :vehicle_id AND ts >= :from_ts AND ts < :to_ts"


def raw_figures(engine, vehicle_id: str, start: datetime, end: datetime) -> dict:
    """The vehicle's figures straight from history (no rollups): the reference."""
    params = {"vehicle_id": vehicle_id, "from_ts": start, "to_ts": end}
    with engine.connect() as conn:
        ac, ac_n = conn.execute(text(
            f"SELECT coalesce(sum(r.kwh_consumed_ac), 0), count(*) FROM {VEHICLE_AC_READINGS}"), params).one()
        dc, dc_n, temp = conn.execute(text(
            "SELECT coalesce(sum(kwh_delivered_dc), 0), count(*), avg(battery_temp)"
            f" FROM {VEHICLE_DC_READINGS}"), params).one()
    return {"acConsumedKwh": ac, "dcDeliveredKwh": dc, "avgBatteryTemp": temp,
            "readings": {"meter": ac_n, "vehicle": dc_n}}


def assert_figures_equal(got: dict, raw: dict) -> None:
    assert got["readings"] == raw["readings"]
    for key in ("acConsumedKwh", "dcDeliveredKwh", "avgBatteryTemp"):
        assert got[key] == pytest.approx(raw[key], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("watermark", [None, 0, 120], ids=["rolled-up", "none-rolled-up", "2h-rolled-up"])
@pytest.mark.parametrize("start, end", [
    (0, 300),          # whole hours
    (17.5, 281),       # partial hours at both edges
    (130, 150),        # inside one hour, across the relink
    (61, 179.9),       # whole hours, with the relink inside one of them
    (120, 240),        # whole hours only, the relink inside the first
    (-600, 1000),      # wider than the data
])
def test_fleet_and_performance_figures_equal_raw_history(fleet_data, client, engine, start, end,
                                                         watermark):
    if watermark is not None:  # hours from here on are read from history, not their rollups
        set_watermark(engine, at(watermark))
    body = fleet(client, at(start), at(end), sort="vehicleId", limit=1000)
    by_vehicle = {v["vehicleId"]: v for v in body["vehicles"]}
    for vehicle_id in ("V-1", "V-2", "V-3", "V-4"):
        raw = raw_figures(engine, vehicle_id, at(start), at(end))
        perf = performance(client, vehicle_id, at(start), at(end))
        assert_figures_equal({**perf["totalEnergy"], **perf}, raw)
        got = by_vehicle.get(vehicle_id)
        if got is None:
            assert raw["readings"] == {"meter": 0, "vehicle": 0}
            continue
        assert_figures_equal(got, raw)
        assert got["efficiencyRatio"] == pytest.approx(perf["efficiencyRatio"], rel=1e-9)
    totals = body["totals"]
    assert totals["vehicles"] == len(body["vehicles"])
    assert totals["acConsumedKwh"] == pytest.approx(sum(v["acConsumedKwh"] for v in body["vehicles"]))


def test_relinked_meter_splits_its_energy_at_the_link(fleet_data, client):
    body = fleet(client, at(0), at(300), sort="vehicleId")
    by_vehicle = {v["vehicleId"]: v for v in body["vehicles"]}
    assert by_vehicle["V-3"]["readings"]["meter"] == 46  # minutes 0..135 of every 3
    assert by_vehicle["V-4"]["readings"]["meter"] == 54
    assert "V-9" not in by_vehicle  # M-9 is linked to nothing


def test_sorted_worst_efficiency_first_and_paged(fleet_data, client):
    everyone = fleet(client, at(0), at(300), sort="vehicleId")["vehicles"]
    worst_first = [v["vehicleId"] for v in sorted(everyone, key=lambda v: v["efficiencyRatio"])]
    assert worst_first[0] == "V-2"  # the 0.8 vehicle
    body = fleet(client, at(0), at(300), sort="efficiency", order="asc", limit=2)
    assert [v["vehicleId"] for v in body["vehicles"]] == worst_first[:2]
    assert body["totals"]["vehicles"] == 4
    second = fleet(client, at(0), at(300), sort="efficiency", order="asc", limit=2, offset=2)
    assert [v["vehicleId"] for v in second["vehicles"]] == worst_first[2:]
    assert second["totals"] == body["totals"]
    past_end = fleet(client, at(0), at(300), offset=10)
    assert past_end["vehicles"] == [] and past_end["totals"] == body["totals"]
    by_energy = fleet(client, at(0), at(300), sort="dc", order="desc")["vehicles"]
    assert [v["dcDeliveredKwh"] for v in by_energy] == sorted(
        (v["dcDeliveredKwh"] for v in by_energy), reverse=True)


@pytest.mark.parametrize("query", [{"sort": "colour"}, {"order": "up"}, {"limit": "0"},
                                   {"limit": "x"}, {"offset": "-1"}, {"offset": str(2**63)},
                                   {"from": "yesterday"}])
def test_bad_fleet_query_is_400(client, query):
    response = client.get("/v1/analytics/fleet", headers=OPERATOR, query_string=query)
    assert response.status_code == 400
    assert "error" in response.json


def test_fleet_needs_an_operator_token(client):
    assert client.get("/v1/analytics/fleet", headers=INGEST).status_code == 403
    assert client.get("/v1/analytics/fleet").status_code == 401


def test_series_buckets_add_up_to_the_window(fleet_data, client):
    start, end = at(17.5), at(281)
    response = client.get("/v1/analytics/performance/V-4/series", headers=OPERATOR,
                          query_string={"from": iso(start), "to": iso(end), "bucket": "15m"})
    assert response.status_code == 200
    body = response.json
    series = body["series"]
    assert body["bucket"] == "15m"
    assert series[0]["start"] == iso(at(15)) and series[-1]["start"] == iso(at(270))
    assert len(series) == (270 - 15) // 15 + 1
    raw = performance(client, "V-4", start, end)
    assert sum(b["acConsumedKwh"] for b in series) == pytest.approx(raw["totalEnergy"]["acConsumedKwh"])
    assert sum(b["dcDeliveredKwh"] for b in series) == pytest.approx(raw["totalEnergy"]["dcDeliveredKwh"])
    assert sum(b["readings"]["vehicle"] for b in series) == raw["readings"]["vehicle"]
    empty_before_link = [b for b in series if b["start"] < iso(at(135))]
    assert all(b["acConsumedKwh"] == 0 and b["efficiencyRatio"] is None for b in empty_before_link)


@pytest.mark.parametrize("query, status", [
    ({"bucket": "5m"}, 400),
    ({"bucket": "15m", "from": "2000-01-01T00:00:00Z"}, 400),  # too many buckets
])
def test_bad_series_query_is_400(fleet_data, client, query, status):
    response = client.get("/v1/analytics/performance/V-1/series", headers=OPERATOR, query_string=query)
    assert response.status_code == status


def test_series_of_unknown_vehicle_is_404(client):
    response = client.get("/v1/analytics/performance/V-404/series", headers=OPERATOR)
    assert response.status_code == 404
