"""Helpers of the MQTT tests: bridge processes as the Procfile runs them, a publisher,
and the bridge's metrics."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import paho.mqtt.client as mqtt

from mqtt_bridge.topics import topic_of
from settings import Settings
from tests.conftest import wait_for
from tests.processes import ChildProcess


class BridgeProcess(ChildProcess):
    """`python -m mqtt_bridge` in its own process group, on this test's queue."""

    stop_timeout_s = 20

    def __init__(self, settings: Settings, mqtt_url: str, client_id: str, log_path: Path,
                 metrics_port: int = 0, **env: str) -> None:
        super().__init__({
            **os.environ,
            "REDIS_URL": settings.redis_url, "REDIS_PREFIX": settings.redis_prefix,
            "INGEST_TOKENS": ",".join(settings.ingest_tokens),
            "OPERATOR_TOKENS": ",".join(settings.operator_tokens),
            "MQTT_URL": mqtt_url, "MQTT_CLIENT_ID": client_id,
            "MQTT_METRICS_PORT": str(metrics_port), "LOG_FORMAT": "text", **env,
        }, log_path)
        self.metrics_port = metrics_port

    def start(self) -> BridgeProcess:
        """Start, and return once its subscriptions are in place at the broker."""
        subscribed = self.log().count("subscribed to")
        self.spawn("mqtt_bridge")
        wait_for(lambda: self._alive() and self.log().count("subscribed to") > subscribed, 30,
                 "the bridge to subscribe")
        return self

    def _alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the bridge exited ({self.proc.returncode}):\n{self.log()}")
        return True

    def metric(self, name: str, **labels: str) -> float:
        """A sample of this bridge's /metrics (0 when absent)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        wanted = f"{name}{{{label_text}}}" if labels else name
        for line in text.splitlines():
            sample, _, value = line.rpartition(" ")
            if sample == wanted:
                return float(value)
        return 0.0


def publish(port: int, messages: Iterable[tuple[str, bytes | str]], client_id: str = "test-publisher",
            timeout_s: float = 120) -> int:
    """Publish at QoS 1 and wait until the broker has acknowledged every message."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout_s)
            assert info.is_published(), "the broker did not acknowledge a message"
    finally:
        client.disconnect()
        client.loop_stop()
    return len(infos)


def as_message(reading: dict) -> tuple[str, str]:
    """A reading on its own device's topic."""
    return topic_of(reading), json.dumps(reading)
