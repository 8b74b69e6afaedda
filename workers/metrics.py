"""Prometheus metrics of the workers, served by each worker's main process on
WORKER_METRICS_PORT (default 9808; 0 turns it off).

Celery's pool processes are forked, so the metrics live in files under
PROMETHEUS_MULTIPROC_DIR (set by `python -m workers` before anything imports
prometheus_client) and the main process sums them at scrape time.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
    start_http_server,
)

log = logging.getLogger(__name__)

BATCHES = Counter("energy_drain_batches_total", "Batches stored, one transaction each")
READINGS = Counter("energy_drain_readings_total", "Readings taken from the queue and stored")
ROWS_WRITTEN = Counter("energy_history_rows_written_total", "History rows inserted")
DUPLICATES = Counter("energy_duplicates_skipped_total", "Readings already stored, skipped")
DEAD_LETTERS = Counter("energy_dead_letters_total", "Readings refused by the database")
BATCH_SECONDS = Histogram("energy_batch_seconds", "Time to store and acknowledge a batch",
                          buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))


def serve(port: int) -> None:
    """Expose the summed metrics of this worker's processes on `port`."""
    if not port:
        return
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        log.warning("PROMETHEUS_MULTIPROC_DIR is not set (start workers with `python -m workers`): "
                    "/metrics shows this process only, not its pool")
    try:
        start_http_server(port, registry=registry)
    except OSError as exc:  # another worker on this host has the port
        log.warning("worker metrics not served on port %d: %s", port, exc)
    else:
        log.warning("worker metrics on :%d/metrics", port)  # logging is not set up yet: warn
