"""The fleet page as the dashboard pages it: a search on the vehicle id, the count of
vehicles it matches, and each vehicle's live SoC and last reading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import INGEST, OPERATOR
from tests.readings import iso, vehicle

NOW = datetime.now(UTC).replace(microsecond=0)


def test_search_pages_through_the_matching_vehicles_with_live_state(client, drain_all):
    readings = [vehicle(f"{prefix}-{n}", soc=40 + n, dc=0.5, at=NOW - timedelta(minutes=m))
                for prefix in ("Bus", "Van") for n in range(1, 6) for m in (1, 2)]
    assert client.post("/v1/ingest", json=readings, headers=INGEST).status_code == 202
    drain_all()
    window = {"from": iso(NOW - timedelta(hours=1)), "to": iso(NOW + timedelta(minutes=1))}
    body = client.get("/v1/analytics/fleet", headers=OPERATOR, query_string={
        **window, "search": "bus", "sort": "vehicleId", "limit": 2, "offset": 2}).json
    assert [v["vehicleId"] for v in body["vehicles"]] == ["Bus-3", "Bus-4"]
    assert body["page"]["matched"] == 5 and body["totals"]["vehicles"] == 10
    first = body["vehicles"][0]
    assert first["liveSoc"] == 43 and first["lastSeen"] == iso(NOW - timedelta(minutes=1))
    everyone = client.get("/v1/analytics/fleet", headers=OPERATOR, query_string=window).json
    assert everyone["page"]["matched"] == 10 and everyone["page"]["search"] == ""
    long = client.get("/v1/analytics/fleet", headers=OPERATOR, query_string={"search": "x" * 65})
    assert long.status_code == 400


def test_totals_carry_the_efficiency_histogram(client, drain_all):
    client.put("/v1/meters/M-1/vehicle", headers=OPERATOR,
               json={"vehicleId": "V-1", "since": iso(NOW - timedelta(days=1))})
    readings = [vehicle("V-1", dc=0.9, at=NOW - timedelta(minutes=2)), vehicle("V-2", dc=0.5)]
    readings.append({"meterId": "M-1", "kwhConsumedAc": 1.0, "voltage": 230,
                     "timestamp": iso(NOW - timedelta(minutes=2))})
    assert client.post("/v1/ingest", json=readings, headers=INGEST).status_code == 202
    drain_all()
    bins = client.get("/v1/analytics/fleet", headers=OPERATOR).json["totals"]["efficiencyHistogram"]
    assert len(bins) == 12 and bins[0] == {"from": None, "to": 0.5, "vehicles": 0}
    assert [b["vehicles"] for b in bins if b["from"] == 0.9] == [1]  # V-2 has no AC: no bin
    assert sum(b["vehicles"] for b in bins) == 1 and bins[-1]["to"] is None
