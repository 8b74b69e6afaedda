"""GET /openapi.json, and schemathesis fuzzing every documented operation against it:
no 5xx, and no status or body the document does not describe."""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from settings import Settings
from tests.conftest import INGEST, OPERATOR
from tests.readings import meter, vehicle
from web.openapi import build_spec

# schemathesis.pytest.from_fixture (loading the document from the test's app) fails
# under pytest 9 (it sets Node._nodeid), so the document is loaded at collection,
# from the same builder the app serves it from (the first test checks they are the same).
# Every case is sent through WSGI to the test's own app: its own rows and Redis prefix.
schema = schemathesis.openapi.from_dict(build_spec(Settings()))


CONTRACT_OPERATIONS = {
    ("/v1/ingest", "post"),
    ("/v1/analytics/performance/{vehicleId}", "get"),
    ("/v1/meters/{meterId}/vehicle", "put"),
    ("/v1/meters/{meterId}/vehicle", "get"),
    ("/v1/live/vehicles/{vehicleId}", "get"),
    ("/v1/live/meters/{meterId}", "get"),
    ("/healthz", "get"),
    ("/readyz", "get"),
}


def test_document_is_served_without_a_token_and_is_openapi_3(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    doc = response.json
    # The test settings differ from the defaults in nothing the document shows.
    assert doc == build_spec(Settings())
    assert doc["openapi"].startswith("3.")
    loaded = schemathesis.openapi.from_dict(doc)
    loaded.validate()  # against the OpenAPI 3.0 meta-schema schemathesis ships
    operations = [op.ok() for op in loaded.get_all_operations()]
    assert {(op.path, op.method) for op in operations} >= CONTRACT_OPERATIONS
    for op in operations:
        assert op.definition.raw["responses"], op.label


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.title() for word in rest)


def test_every_route_of_the_app_is_documented(app):
    documented = build_spec(app.config["SETTINGS"])["paths"]
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[-1] == "static":  # files, such as the dashboard's
            continue
        # Flask's <device_id> is the document's {deviceId}.
        path = re.sub(r"<(\w+)>", lambda m: "{" + camel(m[1]) + "}", rule.rule)
        assert path in documented, rule.rule
        assert rule.methods - {"HEAD", "OPTIONS"} <= {m.upper() for m in documented[path]}, rule.rule


def test_ingest_body_is_a_reading_or_a_bounded_array_of_them(app):
    spec = build_spec(app.config["SETTINGS"])
    body = spec["paths"]["/v1/ingest"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    array = body["oneOf"][2]
    assert (array["minItems"], array["maxItems"]) == (1, app.config["SETTINGS"].max_batch)
    voltage = spec["components"]["schemas"]["MeterReading"]["properties"]["voltage"]
    assert voltage == {"type": "number", "minimum": 0, "exclusiveMinimum": True}
    soc = spec["components"]["schemas"]["VehicleReading"]["properties"]["soc"]
    assert (soc["minimum"], soc["maximum"]) == (0, 100)
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert spec["paths"]["/v1/ingest"]["post"]["security"] == [{"bearerAuth": []}]


@pytest.fixture
def seeded(client, drain_all):
    """The devices of the document's examples exist, so some answers are 200s."""
    assert client.post("/v1/ingest", json=[meter("M-101"), vehicle("V-201")],
                       headers=INGEST).status_code == 202
    drain_all()
    assert client.put("/v1/meters/M-101/vehicle", json={"vehicleId": "V-201"},
                      headers=OPERATOR).status_code == 200


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case, app, seeded):
    token = INGEST if case.path == "/v1/ingest" else OPERATOR
    case.call_and_validate(headers=token, app=app, checks=[
        not_a_server_error, response_schema_conformance, status_code_conformance])
