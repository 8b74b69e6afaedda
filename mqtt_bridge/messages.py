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

from mqtt_bridge.topics import KINDS, device_of
from mqtt_bridge.validation import NotJson, ReadingValidator, parse_payload, readings_of
from readings.rows import dead_letter_row
from settings import Settings

# A dead letter keeps the start of the payload: enough to see what was sent,
# without storing megabytes a device may send again and again.
EXCERPT_BYTES = 4096


@dataclass
class Refused(Exception):
    """A message that cannot become readings: `reason` is the metric label,
    `detail` what the dead letter says beside it."""

    reason: str
    detail: str


def rows_of(topic: str, payload: bytes, validator: ReadingValidator, settings: Settings) -> list[list]:
    """The queue rows of a message's readings, or Refused."""
    device = device_of(topic)
    if device is None:
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
    segment, device_id = device
    for index, row in enumerate(rows):
        if row[0] != KINDS[segment] or row[1] != device_id:
            raise Refused("topic_mismatch", f"Reading {index} is not of {segment[:-1]} {device_id}, "
                                            "the device the topic names.")
    return rows


def dead_letter(topic: str, payload: bytes, refused: Refused) -> list:
    """The queue row that keeps a refused message as a dead letter."""
    excerpt = payload[:EXCERPT_BYTES].decode("utf-8", errors="replace")
    # PostgreSQL's text and jsonb cannot hold NUL.
    excerpt = excerpt.replace("\x00", "\ufffd")
    return dead_letter_row("mqtt", f"{refused.reason}: {refused.detail}", topic, excerpt)
