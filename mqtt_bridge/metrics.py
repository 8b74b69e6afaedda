"""Prometheus metrics of a bridge process, on MQTT_METRICS_PORT (default 9809; 0: off)."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, start_http_server

log = logging.getLogger(__name__)

# outcome: "queued", or why the message was dead-lettered (see messages.Refused).
MESSAGES = Counter("energy_mqtt_messages_total", "MQTT messages handled, by outcome", ["outcome"])
READINGS = Counter("energy_mqtt_readings_queued_total", "Readings queued from MQTT messages")
# Each time the queue could not take a batch and the bridge held its acknowledgements.
QUEUE_WAITS = Counter("energy_mqtt_queue_waits_total",
                      "Batches the queue refused for now (backlog_full, queue_unavailable)", ["reason"])
# Received and not yet acknowledged: at most the Receive Maximum while the queue refuses.
HELD = Gauge("energy_mqtt_held_messages", "Messages received and not yet acknowledged")
CONNECTED = Gauge("energy_mqtt_connected", "1 while the bridge is connected to the broker")


def serve(port: int) -> None:
    """Expose this process's metrics on `port` (0: not at all)."""
    if not port:
        return
    try:
        start_http_server(port)
    except OSError as exc:  # another bridge on this host has the port
        log.warning("bridge metrics not served on port %d: %s", port, exc)
    else:
        log.info("bridge metrics on :%d/metrics", port)
