"""POST /v1/ingest: every status code of the contract, and all-or-nothing queueing."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest

from tests.conftest import INGEST, OPERATOR, count
from tests.readings import NOW, iso, meter, vehicle
from web import create_app


def post(client, body, headers=INGEST, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post("/v1/ingest", data=data, headers=headers, content_type=content_type)


def test_single_reading_is_accepted_and_queued(client, queue):
    response = post(client, meter())
    assert response.status_code == 202
    assert response.json == {"accepted": 1}
    assert queue.backlog() == 1


def test_mixed_array_is_accepted_and_stored(client, queue, drain_all, engine):
    response = post(client, [meter(), vehicle(), meter("M-102"), vehicle(type="vehicle")])
    assert response.status_code == 202
    assert response.json == {"accepted": 4}
    report = drain_all()
    assert (report.stored, report.duplicates) == (3, 1)
    assert count(engine, "meter_readings") == 2
    assert count(engine, "vehicle_readings") == 1
    assert queue.backlog() == 0


def test_kind_may_be_named_by_type(client, drain_all, engine):
    assert post(client, meter(type="meter")).status_code == 202
    drain_all()
    assert count(engine, "meter_readings") == 1


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "test-ingest"},
    {"Authorization": "Basic dGVzdDp0ZXN0"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer wrong-token"},
])
def test_missing_malformed_or_wrong_token_is_401(client, headers):
    response = post(client, meter(), headers=headers)
    assert response.status_code == 401
    assert "error" in response.json


def test_operator_token_cannot_ingest(client, queue):
    response = post(client, meter(), headers=OPERATOR)
    assert response.status_code == 403
    assert queue.backlog() == 0


def test_bearer_scheme_in_any_case(client):
    response = post(client, meter(), headers={"Authorization": "BEARER test-ingest"})
    assert response.status_code == 202


def test_authorization_is_decided_before_the_body(client):
    assert post(client, b"not json", headers={}, content_type="text/plain").status_code == 401


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_non_json_content_type_is_415(client, content_type):
    response = client.post("/v1/ingest", data=json.dumps(meter()), headers=INGEST,
                           content_type=content_type)
    assert response.status_code == 415


def test_content_type_with_charset_is_accepted(client):
    assert post(client, meter(), content_type="application/json; charset=utf-8").status_code == 202


def test_body_over_max_body_bytes_is_413(settings):
    small = create_app({"SETTINGS": dataclasses.replace(settings, max_body_bytes=1000)})
    response = post(small.test_client(), [meter()] * 20)
    assert response.status_code == 413
    assert small.extensions["queue"].backlog() == 0


def test_array_over_max_batch_is_413(settings):
    small = create_app({"SETTINGS": dataclasses.replace(settings, max_batch=3)})
    response = post(small.test_client(), [meter(f"M-{i}") for i in range(4)])
    assert response.status_code == 413
    assert small.extensions["queue"].backlog() == 0


@pytest.mark.parametrize("body", [
    b"{not json",
    b'{"meterId": "M-1",}',
    b"[NaN]",
    b'{"meterId":"M-1","kwhConsumedAc":Infinity,"voltage":230,"timestamp":"2026-01-01T00:00:00Z"}',
    b"[-Infinity]",
    b"\xff\xfe[]",
    '[{"meterId": "M-\u00e9"}]'.encode("latin-1"),
    b"[" * 65 + b"]" * 65,
    b"[" * 100000 + b"]" * 100000,
    b"",
], ids=["broken", "trailing-comma", "nan", "infinity", "minus-infinity", "utf16-bom",
        "latin1", "depth-65", "depth-100000", "empty"])
def test_body_that_is_not_json_is_400(client, queue, body):
    response = post(client, body)
    assert response.status_code == 400
    assert "error" in response.json
    assert queue.backlog() == 0


def test_nesting_of_64_levels_is_json_but_not_a_reading(client):
    assert post(client, b"[" * 64 + b"]" * 64).status_code == 422


FUTURE = iso(NOW + timedelta(hours=1))


@pytest.mark.parametrize("body, field", [
    ([], "_schema"),
    (5, "_schema"),
    ("reading", "_schema"),
    ([5], "_schema"),
    ({**meter(), "vehicleId": "V-1"}, "_schema"),
    ({"kwhConsumedAc": 1, "voltage": 230, "timestamp": iso(NOW)}, "_schema"),
    (meter(type="vehicle"), "meterId"),
    (meter(type="charger"), "type"),
    (meter(extra=1), "extra"),
    (meter(voltage=True), "voltage"),
    (meter(voltage=None), "voltage"),
    (meter(voltage="230"), "voltage"),
    (meter(voltage=0), "voltage"),
    (meter(ac=-0.1), "kwhConsumedAc"),
    (meter(ac=1e9 + 1), "kwhConsumedAc"),
    (vehicle(dc=1e308), "kwhDeliveredDc"),
    (meter(timestamp="\u0662\u0660\u0662\u0666-02-10T00:55:12Z"), "timestamp"),
    (vehicle(soc=100.5), "soc"),
    (vehicle(soc=-1), "soc"),
    (vehicle(temp=151), "batteryTemp"),
    (vehicle(temp=-50.5), "batteryTemp"),
    (vehicle(dc=-1), "kwhDeliveredDc"),
    (meter(timestamp="2026-02-10T00:55:12"), "timestamp"),
    (meter(timestamp="2026-02-10"), "timestamp"),
    (meter(timestamp="2026-02-30T00:00:00Z"), "timestamp"),
    (meter(timestamp=1770000000), "timestamp"),
    (meter(timestamp=FUTURE), "timestamp"),
    (meter("M" * 65), "meterId"),
    (meter(""), "meterId"),
    (meter("M-1'; DROP TABLE meter_readings;--"), "meterId"),
    (meter("M-1\n"), "meterId"),
    ({k: v for k, v in meter().items() if k != "voltage"}, "voltage"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_invalid_reading_is_422_naming_the_field(client, queue, body, field):
    response = post(client, body)
    assert response.status_code == 422
    errors = response.json["errors"]
    named = errors["0"] if isinstance(body, list) and body else errors
    assert field in named, errors
    assert queue.backlog() == 0


@pytest.mark.parametrize("number", [b"1e309", b"-1e309", b"1" + b"0" * 400])
def test_number_overflowing_to_infinity_is_422(client, queue, number):
    body = (b'{"meterId":"M-1","kwhConsumedAc":' + number
            + b',"voltage":230,"timestamp":"' + iso(NOW).encode() + b'"}')
    response = post(client, body)
    assert response.status_code == 422
    assert "kwhConsumedAc" in response.json["errors"]
    assert queue.backlog() == 0


def test_one_bad_reading_rejects_the_whole_array(client, queue, drain_all, engine):
    body = [meter("M-1"), vehicle("V-1"), meter("M-2", voltage=-5), vehicle("V-2")]
    response = post(client, body)
    assert response.status_code == 422
    assert response.json["errors"] == {"2": {"voltage": ["Must be greater than 0."]}}
    assert queue.backlog() == 0
    drain_all()
    assert count(engine, "meter_readings") == count(engine, "vehicle_readings") == 0


def test_timestamp_within_clock_skew_is_accepted(client):
    assert post(client, meter(at=NOW + timedelta(seconds=200))).status_code == 202


def test_reading_older_than_retention_is_422(settings):
    app = create_app({"SETTINGS": dataclasses.replace(settings, retention_days=7)})
    client = app.test_client()
    assert post(client, meter(at=NOW - timedelta(days=8))).status_code == 422
    assert post(client, meter(at=NOW - timedelta(days=6))).status_code == 202


def test_full_backlog_is_503_with_retry_after(settings):
    app = create_app({"SETTINGS": dataclasses.replace(settings, max_backlog=3)})
    client = app.test_client()
    assert post(client, [meter(f"M-{i}") for i in range(3)]).status_code == 202
    response = post(client, meter("M-9"))
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert app.extensions["queue"].backlog() == 3


def test_redis_down_is_503_with_retry_after(settings, unused_tcp_port):
    app = create_app({"SETTINGS": dataclasses.replace(
        settings, redis_url=f"redis://127.0.0.1:{unused_tcp_port}/0")})
    response = post(app.test_client(), meter())
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert "Traceback" not in response.get_data(as_text=True)
