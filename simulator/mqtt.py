"""Publishing readings over MQTT for `python -m simulator live --mqtt URL` (and the benchmark).

One connection publishes every device's readings, each on its own device's
topic (mqtt_bridge/topics.py) at QoS 1, as many devices or gateways would. A
reading counts as accepted once the broker acknowledges it (PUBACK); one it
refuses (an MQTT 5 reason code, e.g. "Not authorized" under the ACL) counts as
an error.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter

import paho.mqtt.client as mqtt

from mqtt_bridge.topics import topic_of
from settings import parse_mqtt_url

CONNECT_TIMEOUT_S = 10.0
# Messages the broker may have unacknowledged at once. Publish no more than
# this ahead of the PUBACKs (see `room`): paho scans every queued message on
# each PUBACK, so a deep queue makes each acknowledgement slower.
IN_FLIGHT = 200


class Refused(Exception):
    """The broker refused the connection (bad credentials, say)."""


class Publisher:
    """A connected MQTT 5 client that counts acknowledged and refused messages."""

    def __init__(self, url: str, client_id: str | None = None, ca_file: str | None = None) -> None:
        broker = parse_mqtt_url(url, "--mqtt")
        self.broker = broker
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"fleet-simulator-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        if broker.username is not None:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self.client.tls_set(ca_certs=ca_file)
        self.client.max_inflight_messages_set(IN_FLIGHT)
        self.client.max_queued_messages_set(0)
        self.lock = threading.Lock()
        self.published = 0
        self.acked = 0
        self.refused: Counter = Counter()
        self.connected = threading.Event()
        self.connect_error: str | None = None
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.connect_error = str(reason_code)
        self.connected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self.lock:
            if reason_code.is_failure:
                self.refused[str(reason_code)] += 1
            else:
                self.acked += 1

    def connect(self) -> Publisher:
        """Connect, or Refused / OSError."""
        self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(CONNECT_TIMEOUT_S):
            self.close()
            raise Refused(f"no answer from {self.broker} in {CONNECT_TIMEOUT_S:g} s")
        if self.connect_error:
            self.close()
            raise Refused(f"{self.broker} refused the connection: {self.connect_error}")
        return self

    def publish(self, reading: dict) -> None:
        """Publish a reading on its device's topic at QoS 1 (returns before the PUBACK)."""
        self.client.publish(topic_of(reading), json.dumps(reading, separators=(",", ":")), qos=1)
        self.published += 1

    def publish_array(self, readings: list[dict]) -> None:
        """Publish readings of one device as one message (an array) on its topic."""
        self.client.publish(topic_of(readings[0]), json.dumps(readings, separators=(",", ":")), qos=1)
        self.published += 1

    @property
    def pending(self) -> int:
        """Published but neither acknowledged nor refused yet."""
        with self.lock:
            return self.published - self.acked - sum(self.refused.values())

    def room(self) -> bool:
        """Whether another message may be published without queueing it in paho."""
        return self.pending < IN_FLIGHT

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
