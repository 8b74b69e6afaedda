"""MQTT messages as queue rows: the topic layout, and why a message is refused.

Devices publish to `telemetry/meters/{meterId}` or `telemetry/vehicles/{vehicleId}`
a payload that is one reading or an array of readings, exactly as the body of
POST /v1/ingest (same JSON rules, MAX_BODY_BYTES, MAX_BATCH, schemas and time
limits), and every reading in it must be of the topic's kind and device. A
message is all or nothing, like a request: one bad reading refuses the message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mqtt_bridge.validation import NotJson, ReadingValidator, parse_payload, readings_of
from settings import Settings
from workers.queue import dead_letter_row

# The topic's second level, and the queue row kind (see web/schemas.py) it carries.
KINDS = {"meters": "m", "vehicles": "v"}
TOPICS = tuple(f"telemetry/{segment}/+" for segment in KINDS)
# Bridges subscribe through one MQTT 5 shared subscription, so that each
# message goes to one of them.
SHARE_GROUP = "ingest"
# A dead letter keeps the start of the payload: enough to see what was sent,
# without storing megabytes a device may send again and again.
EXCERPT_BYTES = 4096


def subscriptions() -> list[str]:
    """The topic filters every bridge subscribes to."""
    return [f"$share/{SHARE_GROUP}/{topic}" for topic in TOPICS]


@dataclass
class Refused(Exception):
    """A message that cannot become readings: `reason` is the metric label,
    `detail` what the dead letter says beside it."""

    reason: str
    detail: str


def rows_of(topic: str, payload: bytes, validator: ReadingValidator, settings: Settings) -> list[list]:
    """The queue rows of a message's readings, or Refused."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "telemetry" or parts[1] not in KINDS or not parts[2]:
        raise Refused("bad_topic", "Publish to telemetry/meters/{meterId} or telemetry/vehicles/{vehicleId}.")
    if len(payload) > settings.max_body_bytes:
        raise Refused("too_large", f"The payload of {len(payload)} bytes is over MAX_BODY_BYTES "
                                   f"({settings.max_body_bytes}).")
    try:
        body = parse_payload(payload)
    except NotJson as exc:
        raise Refused("invalid_json", str(exc)) from None
    readings = readings_of(body)
    if readings is None:
        raise Refused("invalid", "Send a reading or a non-empty array of readings.")
    if len(readings) > settings.max_batch:
        raise Refused("too_many", f"At most {settings.max_batch} readings in one message.")
    rows, errors = validator.validate(readings)
    if errors:
        shown = errors if isinstance(body, list) else errors[0]
        raise Refused("invalid", json.dumps(shown, sort_keys=True, default=str))
    kind, device = KINDS[parts[1]], parts[2]
    for index, row in enumerate(rows):
        if row[0] != kind or row[1] != device:
            raise Refused("topic_mismatch", f"Reading {index} is not of {parts[1][:-1]} {device}, "
                                            "the device the topic names.")
    return rows


def dead_letter(topic: str, payload: bytes, refused: Refused) -> list:
    """The queue row that keeps a refused message as a dead letter."""
    excerpt = payload[:EXCERPT_BYTES].decode("utf-8", errors="replace")
    # PostgreSQL's text and jsonb cannot hold NUL.
    excerpt = excerpt.replace("\x00", "\ufffd")
    return dead_letter_row("mqtt", f"{refused.reason}: {refused.detail}", topic, excerpt)
