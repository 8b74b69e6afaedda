"""GET /v1/live/..., /healthz and /readyz, and errors outside the routes."""

from __future__ import annotations

import dataclasses

from tests.conftest import INGEST, OPERATOR
from tests.readings import meter, vehicle
from web import create_app


def test_live_vehicle_and_meter_have_the_contract_fields(client, drain_all):
    v, m = vehicle("V-1", soc=80.5), meter("M-1", ac=0.25)
    assert client.post("/v1/ingest", json=[v, m], headers=INGEST).status_code == 202
    drain_all()
    assert client.get("/v1/live/vehicles/V-1", headers=OPERATOR).json == {
        "vehicleId": "V-1", "soc": 80.5, "kwhDeliveredDc": 11.2, "batteryTemp": 36.0,
        "timestamp": v["timestamp"]}
    assert client.get("/v1/live/meters/M-1", headers=OPERATOR).json == {
        "meterId": "M-1", "kwhConsumedAc": 0.25, "voltage": 230.0, "timestamp": m["timestamp"]}


def test_unknown_device_is_404(client):
    for path in ("/v1/live/vehicles/V-404", "/v1/live/meters/M-404"):
        response = client.get(path, headers=OPERATOR)
        assert response.status_code == 404
        assert "error" in response.json


def test_live_state_needs_an_operator_token(client):
    assert client.get("/v1/live/meters/M-1", headers=INGEST).status_code == 403
    assert client.get("/v1/live/meters/M-1").status_code == 401


def test_healthz_needs_no_token(client):
    assert client.get("/healthz").status_code == 200


def test_readyz_is_200_when_both_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"postgres": "ok", "redis": "ok"}


def test_readyz_is_503_when_redis_or_postgres_is_down(settings, unused_tcp_port):
    dead_redis = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{unused_tcp_port}/0")
    response = create_app({"SETTINGS": dead_redis}).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json == {"postgres": "ok", "redis": "unavailable"}
    dead_pg = dataclasses.replace(
        settings, database_url=f"postgresql://127.0.0.1:{unused_tcp_port}/energy")
    response = create_app({"SETTINGS": dead_pg}).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json == {"postgres": "unavailable", "redis": "ok"}


def test_unknown_route_and_wrong_method_are_json(client):
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert "error" in response.json
    response = client.get("/v1/ingest", headers=INGEST)
    assert response.status_code == 405
    assert "error" in response.json
