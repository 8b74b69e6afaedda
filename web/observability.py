"""Request ids, access logs and Prometheus metrics of the web processes.

Under gunicorn, metrics are kept per process in PROMETHEUS_MULTIPROC_DIR (set
by web/server/gunicorn_conf.py) and summed at scrape time; queue figures are read
from Redis at scrape time, so every web process reports the same queue.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import re
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from web.auth import require

log = logging.getLogger("web.access")

REQUESTS = Counter("energy_http_requests_total", "HTTP requests", ["endpoint", "method", "status"])
LATENCY = Histogram("energy_http_request_seconds", "HTTP request duration", ["endpoint"],
                    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
READINGS_ACCEPTED = Counter("energy_readings_accepted_total", "Readings queued", ["kind"])
READINGS_REJECTED = Counter("energy_readings_rejected_total", "Readings refused, by reason", ["reason"])

# A client's X-Request-ID is kept only if it cannot forge log content.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id(given: str) -> str:
    """The client's X-Request-ID if it is safe to log, else a new one."""
    # 128 random bits as 32 hex digits, like uuid4().hex, for a tenth of its CPU:
    # an id needs to be unique, not unpredictable (random reseeds in each fork).
    return given if REQUEST_ID.fullmatch(given) else f"{random.getrandbits(128):032x}"


@functools.cache
def _request_metrics(endpoint: str, method: str, status: int):
    # labels() costs several µs a call: look each combination up once.
    return REQUESTS.labels(endpoint, method, status), LATENCY.labels(endpoint)


def record_request(endpoint: str, method: str, status: int, elapsed_s: float, rid: str) -> None:
    """Count a request and its duration, and log it at DEBUG."""
    count, latency = _request_metrics(endpoint, method, status)
    count.inc()
    latency.observe(elapsed_s)
    # At DEBUG: a line per request costs as much as the request itself at
    # thousands a second; metrics count them, LOG_LEVEL=DEBUG shows them.
    if log.isEnabledFor(logging.DEBUG):
        log.debug("request", extra={"method": method, "endpoint": endpoint, "status": status,
                                    "duration_ms": round(elapsed_s * 1000, 2), "request_id": rid})

bp = Blueprint("metrics", __name__)
bp.before_request(require("operator"))


class QueueCollector:
    """Backlog, pending and oldest-entry age of the queue, read at scrape time."""

    def collect(self):
        queue = current_app.extensions["queue"]
        backlog = GaugeMetricFamily("energy_queue_backlog_readings", "Readings queued, not yet stored")
        age = GaugeMetricFamily("energy_queue_oldest_age_seconds", "Age of the oldest queued reading")
        try:
            backlog.add_metric([], queue.backlog())
            age.add_metric([], queue.oldest_age_s())
        except Exception:  # Redis down: /readyz says so; report no queue figures
            log.warning("queue figures unavailable for /metrics")
            return
        yield backlog
        yield age


class ReplicaCollector:
    """The read replica's replay lag, measured at scrape time (none without a replica)."""

    def collect(self):
        engines = current_app.extensions["read_engines"]
        if engines.replica is None:
            return
        lag = GaugeMetricFamily("energy_replica_lag_seconds",
                                "How far the analytics replica's replay is behind the primary")
        try:
            lag.add_metric([], engines.lag_s())
        except Exception:  # the replica down: /readyz says so
            log.warning("replica lag unavailable for /metrics")
            return
        yield lag


@bp.get("/metrics")
def metrics() -> Response:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    queue_registry = CollectorRegistry(auto_describe=False)
    queue_registry.register(QueueCollector())
    queue_registry.register(ReplicaCollector())
    body = generate_latest(registry) + generate_latest(queue_registry)
    return Response(body, mimetype="text/plain; version=0.0.4")


def init_observability(app: Flask) -> None:
    @app.before_request
    def start_request() -> None:
        g.request_id = request_id(request.headers.get("X-Request-ID", ""))
        g.started = time.perf_counter()

    @app.after_request
    def finish_request(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        rid = g.get("request_id", "")
        record_request(endpoint, request.method, response.status_code, elapsed, rid)
        response.headers["X-Request-ID"] = rid
        return response

    app.register_blueprint(bp)
