"""Metrics (web and workers), request ids and JSON logs."""

from __future__ import annotations

import io
import json
import logging

from prometheus_client import REGISTRY

from logconfig import configure_logging
from tests.conftest import INGEST, OPERATOR, wait_for
from tests.readings import meter, vehicle


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(client) -> str:
    response = client.get("/metrics", headers=OPERATOR)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_metrics_count_requests_and_readings_by_outcome(client):
    accepted = sample("energy_readings_accepted_total", kind="vehicle")
    invalid = sample("energy_readings_rejected_total", reason="invalid")
    created = sample("energy_http_requests_total", endpoint="/v1/ingest", method="POST", status="202")
    client.post("/v1/ingest", json=[vehicle(), vehicle("V-2"), meter()], headers=INGEST)
    client.post("/v1/ingest", json=[meter(), meter(voltage=-1)], headers=INGEST)
    assert sample("energy_readings_accepted_total", kind="vehicle") == accepted + 2
    assert sample("energy_readings_rejected_total", reason="invalid") == invalid + 2
    assert sample("energy_http_requests_total", endpoint="/v1/ingest", method="POST",
                  status="202") == created + 1
    text = scrape(client)
    assert "energy_http_request_seconds_bucket" in text
    assert "energy_queue_backlog_readings 3.0" in text
    assert "energy_queue_oldest_age_seconds" in text


def test_metrics_need_an_operator_token(client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=INGEST).status_code == 403


def test_drain_counts_batches_rows_and_duplicates(client, drain_all):
    rows, dups = sample("energy_history_rows_written_total"), sample("energy_duplicates_skipped_total")
    client.post("/v1/ingest", json=[meter(), meter(), meter("M-2")], headers=INGEST)
    drain_all()
    assert sample("energy_history_rows_written_total") == rows + 2
    assert sample("energy_duplicates_skipped_total") == dups + 1


def test_request_id_is_echoed_or_made(client):
    given = client.get("/healthz", headers={"X-Request-ID": "probe-42"})
    assert given.headers["X-Request-ID"] == "probe-42"
    forged = client.get("/healthz", headers={"X-Request-ID": 'x" level=ERROR'})
    assert forged.headers["X-Request-ID"] != 'x" level=ERROR'
    assert len(client.get("/healthz").headers["X-Request-ID"]) == 32


def test_logs_are_json_lines_with_the_request_id(app, client):
    stream = io.StringIO()
    configure_logging(stream, level="DEBUG")  # access lines are DEBUG
    try:
        client.post("/v1/ingest", json=[meter()], headers={**INGEST, "X-Request-ID": "req-7"})
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["name"] == "web.access"]
    assert access and access[-1]["request_id"] == "req-7"
    assert access[-1]["status"] == 202 and access[-1]["endpoint"] == "/v1/ingest"
    assert {"time", "level", "message"} <= set(access[-1])
    assert "test-ingest" not in stream.getvalue() and "14.6" not in stream.getvalue()


def test_worker_serves_its_metrics(client, queue, worker_factory, unused_tcp_port):
    import http.client
    import os

    os.environ["WORKER_METRICS_PORT"] = str(unused_tcp_port)
    try:
        worker_factory()
    finally:
        del os.environ["WORKER_METRICS_PORT"]
    client.post("/v1/ingest", json=[meter(), meter("M-2")], headers=INGEST)
    wait_for(lambda: queue.backlog() == 0, 30, "the worker to drain")

    def rows_written() -> float:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", unused_tcp_port, timeout=2)
            conn.request("GET", "/metrics")
            body = conn.getresponse().read().decode()
        except OSError:
            return 0
        for line in body.splitlines():
            if line.startswith("energy_history_rows_written_total "):
                return float(line.split()[1])
        return 0

    assert wait_for(lambda: rows_written() == 2, 30, "the worker's metrics to show 2 rows")
