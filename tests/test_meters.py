"""PUT/GET /v1/meters/{meterId}/vehicle."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.conftest import INGEST, OPERATOR


def put(client, meter_id, body, headers=OPERATOR):
    return client.put(f"/v1/meters/{meter_id}/vehicle", json=body, headers=headers)


def test_link_is_stored_and_listed_latest_first(client):
    assert put(client, "M-1", {"vehicleId": "V-1", "since": "2026-01-01T00:00:00Z"}).json == {
        "meterId": "M-1", "vehicleId": "V-1", "since": "2026-01-01T00:00:00Z"}
    put(client, "M-1", {"vehicleId": "V-2", "since": "2026-03-01T02:00:00+02:00"})
    response = client.get("/v1/meters/M-1/vehicle", headers=OPERATOR)
    assert response.status_code == 200
    assert response.json == {"meterId": "M-1", "links": [
        {"vehicleId": "V-2", "since": "2026-03-01T00:00:00Z"},
        {"vehicleId": "V-1", "since": "2026-01-01T00:00:00Z"},
    ]}


def test_same_since_replaces_the_link(client):
    put(client, "M-1", {"vehicleId": "V-1", "since": "2026-01-01T00:00:00Z"})
    put(client, "M-1", {"vehicleId": "V-9", "since": "2026-01-01T00:00:00Z"})
    links = client.get("/v1/meters/M-1/vehicle", headers=OPERATOR).json["links"]
    assert links == [{"vehicleId": "V-9", "since": "2026-01-01T00:00:00Z"}]


def test_since_defaults_to_now(client):
    before = datetime.now(UTC)
    body = put(client, "M-1", {"vehicleId": "V-1"}).json
    since = datetime.fromisoformat(body["since"])
    assert before.replace(microsecond=0) <= since <= datetime.now(UTC)


@pytest.mark.parametrize("body, field", [
    ({}, "vehicleId"),
    ({"vehicleId": ""}, "vehicleId"),
    ({"vehicleId": 7}, "vehicleId"),
    ({"vehicleId": "V-1", "since": "2026-01-01"}, "since"),
    ({"vehicleId": "V-1", "since": "2026-01-01T00:00:00"}, "since"),
    ({"vehicleId": "V-1", "colour": "red"}, "colour"),
    (["V-1"], "_schema"),
])
def test_bad_body_is_422(client, body, field):
    response = put(client, "M-1", body)
    assert response.status_code == 422
    assert field in response.json["errors"]
    assert client.get("/v1/meters/M-1/vehicle", headers=OPERATOR).status_code == 404


def test_bad_meter_id_is_422(client):
    response = put(client, "M" * 65, {"vehicleId": "V-1"})
    assert response.status_code == 422
    assert "meterId" in response.json["errors"]


def test_body_that_is_not_json_is_400_and_wrong_type_415(client):
    assert client.put("/v1/meters/M-1/vehicle", data=b"{", headers=OPERATOR,
                      content_type="application/json").status_code == 400
    assert client.put("/v1/meters/M-1/vehicle", data=b"{}", headers=OPERATOR,
                      content_type="text/plain").status_code == 415


def test_never_linked_meter_is_404(client):
    response = client.get("/v1/meters/M-404/vehicle", headers=OPERATOR)
    assert response.status_code == 404
    assert "error" in response.json


def test_links_need_an_operator_token(client):
    assert put(client, "M-1", {"vehicleId": "V-1"}, headers=INGEST).status_code == 403
    assert put(client, "M-1", {"vehicleId": "V-1"}, headers={}).status_code == 401
    assert client.get("/v1/meters/M-1/vehicle", headers=INGEST).status_code == 403
    assert client.get("/v1/meters/M-1/vehicle").status_code == 401
