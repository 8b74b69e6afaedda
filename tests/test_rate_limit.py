"""Per-token rate limit: off by default; when set, 429 with Retry-After per token."""

from __future__ import annotations

import dataclasses

from tests.conftest import INGEST
from tests.readings import meter
from web import create_app


def test_no_limit_by_default(client):
    for _ in range(30):
        assert client.post("/v1/ingest", json=meter(), headers=INGEST).status_code == 202


def test_token_over_its_limit_gets_429_with_retry_after(settings):
    limited = dataclasses.replace(settings, rate_limit="3/minute",
                                  ingest_tokens=("test-ingest", "other-ingest"))
    client = create_app({"SETTINGS": limited}).test_client()
    for _ in range(3):
        assert client.post("/v1/ingest", json=meter(), headers=INGEST).status_code == 202
    response = client.post("/v1/ingest", json=meter(), headers=INGEST)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert "error" in response.json
    other = {"Authorization": "Bearer other-ingest"}
    assert client.post("/v1/ingest", json=meter(), headers=other).status_code == 202
