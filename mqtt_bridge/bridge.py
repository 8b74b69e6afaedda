"""The bridge's loop: MQTT messages in, queued readings out, PUBACKs only after.

The network thread (paho's) only appends messages to an inbox. The main
thread takes what has arrived, turns each message into rows or a dead letter,
queues the whole batch in one call of the queue's script (all or nothing, with
the same admission as HTTP ingest), and only then acknowledges the batch's
messages, in the order they arrived (as MQTT requires).

While the queue cannot take a batch (Redis down, or the backlog over
MAX_BACKLOG / MAX_BACKLOG_SECONDS), the bridge retries it with back-off and
acknowledges nothing. The broker sends at most RECEIVE_MAXIMUM unacknowledged
messages (MQTT 5 flow control), so it stops sending and keeps the rest in the
bridge's persistent session. A bridge that dies holds nothing: whatever it had
not acknowledged, the broker sends again when it reconnects with the same
client id. Storing is idempotent, so a message queued twice is stored once.
"""

from __future__ import annotations

import logging
import queue as inbox_queue
import threading
import time
from collections import Counter

import paho.mqtt.client as mqtt
import redis
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from mqtt_bridge import messages, metrics
from mqtt_bridge.topics import subscriptions
from mqtt_bridge.validation import ReadingValidator
from settings import MqttBroker, Settings, parse_mqtt_url
from workers.backoff import Backoff
from workers.queue import QueueFull, ReadingQueue

log = logging.getLogger(__name__)

# Unacknowledged messages the broker may have in flight to one bridge: enough
# to fill batches at full speed, few enough that a stalled bridge holds little.
RECEIVE_MAXIMUM = 2000
# A batch closes at this many readings, or BATCH_LINGER_S after its first
# message, once nothing more has arrived: a Redis call costs more than reading
# a message, so a few milliseconds' wait for more is cheaper than not.
BATCH_READINGS = 5000
BATCH_LINGER_S = 0.005
KEEPALIVE_S = 30
FULL_LOG_INTERVAL_S = 60
SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason: another client connected with our id
# Mosquitto 2.0 just closes the connection of a client whose id another one
# took, and both then take it back from each other every second. So this many
# connections in a row that drop within SHORT_CONNECTION_S mean the same.
TAKEOVERS_IN_A_ROW = 5
SHORT_CONNECTION_S = 5.0


class SessionTakenOver(RuntimeError):
    """Another process connected with this bridge's client id."""


class Bridge:
    """One bridge process's MQTT client and the loop that queues and acknowledges."""

    def __init__(self, settings: Settings, queue: ReadingQueue, validator: ReadingValidator) -> None:
        self.settings = settings
        self.queue = queue
        self.validator = validator
        self.broker: MqttBroker = parse_mqtt_url(settings.mqtt_url)
        self.inbox: inbox_queue.SimpleQueue[mqtt.MQTTMessage] = inbox_queue.SimpleQueue()
        self.stopping = threading.Event()
        self.taken_over = False
        self.connected_at = 0.0
        self.short_connections = 0
        self.full_logged_at = -FULL_LOG_INTERVAL_S
        self.client = self._client()

    def _client(self) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.settings.mqtt_client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        if self.broker.username is not None:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            client.tls_set(ca_certs=self.settings.mqtt_ca_file)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    # -- paho's network thread -------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code: ReasonCode, properties) -> None:
        if reason_code.is_failure:
            log.error("the broker refused the connection: %s", reason_code,
                      extra={"broker": str(self.broker)})
            return
        metrics.CONNECTED.set(1)
        self.connected_at = time.monotonic()
        log.info("connected to %s as %s (%s session)", self.broker, self.settings.mqtt_client_id,
                 "resumed" if flags.session_present else "new")
        client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in subscriptions()])

    def _on_subscribe(self, client, userdata, mid, reason_codes: list[ReasonCode], properties) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("the broker refused the subscriptions: %s", ", ".join(refused))
        else:
            log.info("subscribed to %s", ", ".join(subscriptions()))

    def _on_disconnect(self, client, userdata, flags, reason_code: ReasonCode, properties) -> None:
        metrics.CONNECTED.set(0)
        short = self.connected_at and time.monotonic() - self.connected_at < SHORT_CONNECTION_S
        self.short_connections = self.short_connections + 1 if short else 0
        self.connected_at = 0.0
        if reason_code.value == SESSION_TAKEN_OVER or self.short_connections >= TAKEOVERS_IN_A_ROW:
            self.taken_over = True
            self.stopping.set()
        if not self.stopping.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        metrics.HELD.inc()
        self.inbox.put(message)

    # -- the main thread -----------------------------------------------------------

    def run(self) -> None:
        """Bridge until stop() (or another process takes the session over)."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.settings.mqtt_session_expiry_s
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=KEEPALIVE_S,
                                  clean_start=False, properties=properties)
        self.client.loop_start()
        try:
            while not self.stopping.is_set():
                batch = self.next_batch()
                if batch:
                    self.handle(batch)
        finally:
            self.client.disconnect()
            self.client.loop_stop()
        if self.taken_over:
            raise SessionTakenOver(self.settings.mqtt_client_id)

    def stop(self) -> None:
        self.stopping.set()

    def next_batch(self, wait_s: float = 0.5) -> list[tuple[mqtt.MQTTMessage, str, list]]:
        """Messages that have arrived (waiting up to wait_s for one), with outcome and rows."""
        try:
            message = self.inbox.get(timeout=wait_s)
        except inbox_queue.Empty:
            return []
        batch, readings = [], 0
        deadline = time.monotonic() + BATCH_LINGER_S
        while True:
            batch.append((message, *self.rows(message)))
            readings += len(batch[-1][2])
            if readings >= BATCH_READINGS:
                return batch
            try:
                message = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except inbox_queue.Empty:
                return batch

    def rows(self, message: mqtt.MQTTMessage) -> tuple[str, list[list]]:
        """The message's outcome ("queued" or why it was refused) and its queue rows:
        its readings, or one dead-letter row."""
        try:
            return "queued", messages.rows_of(message.topic, message.payload, self.validator, self.settings)
        except messages.Refused as exc:
            refused = exc
        except Exception:  # a message that trips a bug must not stop the bridge for good
            log.exception("unexpected error reading a message on %s", message.topic)
            refused = messages.Refused("internal_error", "The bridge failed to read this message.")
        # Topic, reason and size: never the payload, which may hold anything.
        log.warning("message on %s dead-lettered: %s (%d bytes)", message.topic, refused.reason,
                    len(message.payload))
        return refused.reason, [messages.dead_letter(message.topic, message.payload, refused)]

    def handle(self, batch: list[tuple[mqtt.MQTTMessage, str, list]]) -> None:
        """Queue the batch (retrying until the queue takes it), then acknowledge it."""
        rows = [row for _, _, message_rows in batch for row in message_rows]
        if not self.put(rows):
            return  # stopping: the broker sends the batch again to whoever resumes the session
        for message, _, _ in batch:
            self.client.ack(message.mid, message.qos)
        metrics.HELD.dec(len(batch))
        for outcome, n in Counter(outcome for _, outcome, _ in batch).items():
            metrics.MESSAGES.labels(outcome).inc(n)
        metrics.READINGS.inc(sum(len(rows) for _, outcome, rows in batch if outcome == "queued"))

    def report_hold(self, reason: str) -> None:
        """Log that acknowledgements are held: every time Redis is down, at most once
        a minute for a full queue (routine under overload: the metric counts each)."""
        now = time.monotonic()
        if reason == "backlog_full" and now - self.full_logged_at < FULL_LOG_INTERVAL_S:
            return
        if reason == "backlog_full":
            self.full_logged_at = now
        log.log(logging.INFO if reason == "backlog_full" else logging.WARNING,
                "the queue cannot take a batch (%s): holding acknowledgements", reason)

    def put(self, rows: list[list]) -> bool:
        """Queue the rows; on a full queue or Redis down, wait and retry. False if stopped first."""
        backoff = Backoff(first_s=0.05, cap_s=2.0)
        while True:
            try:
                self.queue.put(rows, self.settings.max_backlog, self.settings.max_backlog_s)
                return True
            except QueueFull:
                reason = "backlog_full"
            except redis.RedisError:
                reason = "queue_unavailable"
            if backoff.failures == 0:
                self.report_hold(reason)
            metrics.QUEUE_WAITS.labels(reason).inc()
            if self.stopping.wait(backoff.failed()):
                return False
