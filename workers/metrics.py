"""Prometheus metrics of the workers, served by each worker's main process on
the first free port from WORKER_METRICS_PORT up (default 9808; 0 turns it off).

Celery's pool processes are forked, so the metrics live in files under
PROMETHEUS_MULTIPROC_DIR (set by `python -m workers` before anything imports
prometheus_client, one folder per worker) and the main process sums them at
scrape time. So each port shows one worker's figures, all of them; a second
worker on the host takes the next port rather than going unseen, and
`energy_worker_info{node="..."}` on each port says whose figures they are.
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
from prometheus_client.core import InfoMetricFamily

log = logging.getLogger(__name__)

BATCHES = Counter("energy_drain_batches_total", "Batches stored, one transaction each")
READINGS = Counter("energy_drain_readings_total", "Readings taken from the queue and stored")
ROWS_WRITTEN = Counter("energy_history_rows_written_total", "History rows inserted")
DUPLICATES = Counter("energy_duplicates_skipped_total", "Readings already stored, skipped")
DEAD_LETTERS = Counter("energy_dead_letters_total", "Readings refused by the database")
BATCH_SECONDS = Histogram("energy_batch_seconds", "Time to store and acknowledge a batch",
                          buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))

# Ports tried from WORKER_METRICS_PORT up: workers on one host take one each.
PORTS_TRIED = 32


class NodeInfo:
    """energy_worker_info{node="worker-123@host"} 1: whose figures a port serves."""

    def __init__(self, node: str) -> None:
        self.node = node

    def collect(self):
        yield InfoMetricFamily("energy_worker", "The Celery node whose figures these are",
                               value={"node": self.node})


def serve(port: int, node: str) -> int | None:
    """Expose the summed metrics of this worker's processes on the first free port
    from `port` up; the port, or None if off or none was free."""
    if not port:
        return None
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        log.warning("PROMETHEUS_MULTIPROC_DIR is not set (start workers with `python -m workers`): "
                    "/metrics shows this process only, not its pool")
    registry.register(NodeInfo(node))
    for candidate in range(port, port + PORTS_TRIED):
        try:
            start_http_server(candidate, registry=registry)
        except OSError:  # another worker on this host has it
            continue
        log.warning("worker metrics of %s on :%d/metrics", node, candidate)  # logging is not set up yet: warn
        return candidate
    log.warning("worker metrics of %s not served: ports %d to %d are taken",
                node, port, port + PORTS_TRIED - 1)
    return None
