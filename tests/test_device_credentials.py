"""Per-device and gateway tokens on POST /v1/ingest, and the registry that makes them."""

from __future__ import annotations

import dataclasses
import json

import pytest
from sqlalchemy import text

import settings as settings_module
from credentials.tokens import token_hash
from tests.conftest import INGEST, OPERATOR, count, wait_for
from tests.readings import meter, vehicle
from tests.test_wsgi_ingest import flask_must_not_answer, wsgi_call
from web import create_app
from web.server.wsgi_ingest import WsgiIngest


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register(client, *devices: tuple[str, str]) -> dict[str, str]:
    """Register (id, kind) devices; their tokens by id."""
    response = client.post("/v1/devices", json=[{"id": i, "kind": k} for i, k in devices],
                           headers=OPERATOR)
    assert response.status_code == 201, response.json
    return {d["id"]: d["token"] for d in response.json}


def post(client, body, token: str):
    return client.post("/v1/ingest", data=json.dumps(body), headers=bearer(token),
                       content_type="application/json")


def test_a_device_token_writes_its_own_readings(client, queue):
    tokens = register(client, ("M-1", "meter"), ("V-1", "vehicle"))
    assert post(client, meter("M-1"), tokens["M-1"]).status_code == 202
    assert post(client, [vehicle("V-1"), vehicle("V-1", soc=80)], tokens["V-1"]).status_code == 202
    assert queue.backlog() == 3


def test_another_devices_reading_is_403_and_nothing_of_the_request_is_stored(
        client, queue, drain_all, engine):
    tokens = register(client, ("M-1", "meter"), ("M-2", "meter"))
    response = post(client, [meter("M-1"), meter("M-2"), meter("M-1", ac=1)], tokens["M-1"])
    assert response.status_code == 403
    assert response.json == {"errors": {"1": "This token may not write readings of meter M-2."}}
    drain_all()
    assert queue.backlog() == 0 and count(engine, "meter_readings") == 0


def test_a_reading_of_the_wrong_kind_for_the_device_is_403(client, queue):
    tokens = register(client, ("X-1", "meter"))
    response = post(client, vehicle("X-1"), tokens["X-1"])
    assert response.status_code == 403 and list(response.json["errors"]) == ["0"]
    assert queue.backlog() == 0


def test_a_gateway_posts_for_its_devices_and_gets_403_for_the_rest(client, queue):
    register(client, ("M-1", "meter"), ("V-1", "vehicle"), ("M-9", "meter"))
    gateway = client.post("/v1/gateways", json={"id": "G-1"}, headers=OPERATOR)
    assert gateway.status_code == 201
    token = gateway.json["token"]
    for device in ("M-1", "V-1"):
        assert client.put(f"/v1/gateways/G-1/devices/{device}", headers=OPERATOR).status_code == 200
    assert client.get("/v1/gateways/G-1", headers=OPERATOR).json["devices"] == ["M-1", "V-1"]
    wait_for(lambda: post(client, [meter("M-1"), vehicle("V-1")], token).status_code == 202,
             5, "the attachments to reach the cache")
    queued = queue.backlog()
    response = post(client, [meter("M-1"), meter("M-9"), vehicle("V-2")], token)
    assert response.status_code == 403 and set(response.json["errors"]) == {"1", "2"}
    assert queue.backlog() == queued
    assert client.delete("/v1/gateways/G-1/devices/V-1", headers=OPERATOR).status_code == 204
    wait_for(lambda: post(client, vehicle("V-1"), token).status_code == 403, 5, "the detachment")


def test_a_disabled_device_gets_403_and_an_enabled_one_202_again(client, queue):
    tokens = register(client, ("M-1", "meter"))
    response = client.patch("/v1/devices/M-1", json={"disabled": True}, headers=OPERATOR)
    assert response.status_code == 200 and response.json["disabled"] is True
    wait_for(lambda: post(client, meter("M-1"), tokens["M-1"]).status_code == 403, 5, "disabling")
    assert post(client, meter("M-1"), tokens["M-1"]).json == {
        "errors": {"0": "The device M-1 is disabled."}}
    client.patch("/v1/devices/M-1", json={"disabled": False}, headers=OPERATOR)
    wait_for(lambda: post(client, meter("M-1"), tokens["M-1"]).status_code == 202, 5, "enabling")


def test_rotation_keeps_the_old_token_for_the_grace_period_only(settings, queue):
    app = create_app({"TESTING": True, "SETTINGS": dataclasses.replace(settings, token_grace_s=2)})
    client = app.test_client()
    try:
        old = register(client, ("M-1", "meter"))["M-1"]
        rotated = client.post("/v1/devices/M-1/token", headers=OPERATOR)
        assert rotated.status_code == 201 and rotated.json["id"] == "M-1"
        new = rotated.json["token"]
        wait_for(lambda: post(client, meter("M-1"), new).status_code == 202, 5, "the new token")
        assert post(client, meter("M-1"), old).status_code == 202  # within its grace
        wait_for(lambda: post(client, meter("M-1"), old).status_code == 401, 10, "the grace to end")
    finally:
        app.extensions["credentials"].close()
        app.extensions["engine"].dispose()


def test_device_auth_required_refuses_fleet_tokens(settings):
    app = create_app({"TESTING": True,
                      "SETTINGS": dataclasses.replace(settings, device_auth_required=True)})
    client = app.test_client()
    try:
        response = client.post("/v1/ingest", json=meter(), headers=INGEST)
        assert response.status_code == 401 and "DEVICE_AUTH" in response.json["error"]
        token = register(client, ("M-1", "meter"))["M-1"]
        wait_for(lambda: post(client, meter("M-1"), token).status_code == 202, 5, "the device")
    finally:
        app.extensions["credentials"].close()
        app.extensions["engine"].dispose()


def test_fleet_tokens_still_write_any_device(client, queue):
    register(client, ("M-1", "meter"))
    assert client.post("/v1/ingest", json=[meter("M-1"), meter("M-77")], headers=INGEST).status_code == 202


def test_device_tokens_are_refused_on_operator_endpoints_and_unknown_ones_are_401(client):
    token = register(client, ("M-1", "meter"))["M-1"]
    assert client.get("/v1/devices", headers=bearer(token)).status_code == 403
    assert post(client, meter("M-1"), "x" * 43).status_code == 401
    assert client.post("/v1/devices", json={"id": "M-2", "kind": "meter"},
                       headers=INGEST).status_code == 403


def test_the_lane_serves_device_tokens_and_leaves_refusals_to_flask(app, client, queue):
    tokens = register(client, ("M-1", "meter"), ("M-2", "meter"))
    served = WsgiIngest(app, flask_must_not_answer)
    status, *_ = wsgi_call(served, json.dumps(meter("M-1")).encode(), bearer(tokens["M-1"]))
    assert status == "202 ACCEPTED" and queue.backlog() == 1

    def flask(environ, start_response):
        start_response("418 Flask", [])
        return [b""]

    status, *_ = wsgi_call(WsgiIngest(app, flask), json.dumps(meter("M-2")).encode(),
                           bearer(tokens["M-1"]))
    assert status == "418 Flask" and queue.backlog() == 1


def test_only_the_hash_of_a_token_is_stored(client, engine):
    token = register(client, ("M-1", "meter"))["M-1"]
    assert len(token) >= 43  # 32 random bytes, base64
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT token_hash FROM devices WHERE id = 'M-1'")).scalar_one()
    assert bytes(stored) == token_hash(token) and token.encode() not in bytes(stored)


def test_registry_lists_filters_and_shows_devices(client, drain_all):
    register(client, ("M-1", "meter"), ("M-2", "meter"), ("V-1", "vehicle"))
    client.post("/v1/ingest", json=meter("M-1"), headers=INGEST)
    drain_all()
    page = client.get("/v1/devices?kind=meter&prefix=M-&limit=1&offset=1", headers=OPERATOR)
    assert page.status_code == 200
    assert [d["id"] for d in page.json["devices"]] == ["M-2"]
    one = client.get("/v1/devices/M-1", headers=OPERATOR).json
    assert one["kind"] == "meter" and one["lastSeen"] and one["disabled"] is False and one["created"]
    assert "token" not in one
    assert client.get("/v1/devices/V-1", headers=OPERATOR).json["lastSeen"] is None
    assert client.get("/v1/devices/nope", headers=OPERATOR).status_code == 404
    assert client.get("/v1/devices?kind=toaster", headers=OPERATOR).status_code == 400


def test_bulk_creation_is_all_or_nothing(client, engine):
    register(client, ("M-1", "meter"))
    taken = client.post("/v1/devices", json=[{"id": "M-2", "kind": "meter"},
                                             {"id": "M-1", "kind": "meter"}], headers=OPERATOR)
    assert taken.status_code == 409
    bad = client.post("/v1/devices", json=[{"id": "M-3", "kind": "meter"},
                                           {"id": "M 4", "kind": "meter"}], headers=OPERATOR)
    assert bad.status_code == 422 and list(bad.json["errors"]) == ["1"]
    assert count(engine, "devices") == 1


def test_a_csv_upload_provisions_a_fleet(client, engine):
    csv_body = "id,kind\n" + "".join(f"M-{i},meter\n" for i in range(500))
    response = client.post("/v1/devices", data=csv_body, content_type="text/csv", headers=OPERATOR)
    assert response.status_code == 201 and len(response.json) == 500
    assert len({d["token"] for d in response.json}) == 500
    assert count(engine, "devices") == 500
    headless = client.post("/v1/devices", data="M-9,meter\n", content_type="text/csv",
                           headers=OPERATOR)
    assert headless.status_code == 422


@pytest.mark.parametrize("body", [{"disabled": "yes"}, {"disabled": 1}, {}, {"disabled": True, "x": 1}])
def test_a_bad_patch_is_422_and_changes_nothing(client, body):
    register(client, ("M-1", "meter"))
    response = client.patch("/v1/devices/M-1", json=body, headers=OPERATOR)
    assert response.status_code == 422
    assert client.get("/v1/devices/M-1", headers=OPERATOR).json["disabled"] is False


@pytest.mark.parametrize("env", [{"DEVICE_AUTH": "sometimes"}, {"TOKEN_GRACE_S": "-1"},
                                 {"TOKEN_GRACE_S": "soon"}])
def test_a_bad_credentials_setting_is_refused_by_name(env):
    with pytest.raises(settings_module.SettingsError, match=next(iter(env))):
        settings_module.load({"INGEST_TOKENS": "a", "OPERATOR_TOKENS": "b", **env})


def test_credentials_settings_default_to_optional_and_no_grace():
    loaded = settings_module.load({"INGEST_TOKENS": "a", "OPERATOR_TOKENS": "b"})
    assert (loaded.device_auth_required, loaded.token_grace_s) == (False, 0)
    loaded = settings_module.load({"INGEST_TOKENS": "a", "OPERATOR_TOKENS": "b",
                                   "DEVICE_AUTH": "Required", "TOKEN_GRACE_S": "30"})
    assert (loaded.device_auth_required, loaded.token_grace_s) == (True, 30)


@pytest.mark.parametrize("csv_body", ["id,kind\nM-1,meter,extra\n", "id,kind\nM-1\n", "id,kind\n",
                                      "id,kind\nM-1,toaster\n"])
def test_a_bad_csv_row_is_422_and_registers_nothing(client, engine, csv_body):
    response = client.post("/v1/devices", data=csv_body, content_type="text/csv", headers=OPERATOR)
    assert response.status_code == 422, response.json
    assert count(engine, "devices") == 0


def test_too_many_devices_in_one_request_is_413(settings):
    app = create_app({"TESTING": True, "SETTINGS": dataclasses.replace(settings, max_batch=2)})
    try:
        response = app.test_client().post("/v1/devices", json=[
            {"id": f"M-{i}", "kind": "meter"} for i in range(3)], headers=OPERATOR)
        assert response.status_code == 413
    finally:
        app.extensions["engine"].dispose()
