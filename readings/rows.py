"""The queue's row format: how a validated reading travels from an edge to the drain.

A row is a JSON array, a tag and the reading's values in a fixed order:

    ["m", meterId, timestamp, kwhConsumedAc, voltage]
    ["v", vehicleId, timestamp, soc, kwhDeliveredDc, batteryTemp]

with the timestamp in RFC 3339, UTC. Arrays rather than objects keep the queue
small and the drain's decoding cheap. Every edge builds rows here, the drain
decodes them here, and dead letters show them as readings from here: a change
of format is an edit of this module alone.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from readings.timestamps import format_rfc3339

METER = "m"
VEHICLE = "v"
# The reading's fields in row order, after the tag; the drain's columns follow it.
FIELDS = {
    METER: ("meterId", "timestamp", "kwhConsumedAc", "voltage"),
    VEHICLE: ("vehicleId", "timestamp", "soc", "kwhDeliveredDc", "batteryTemp"),
}
TAGS = {"meter": METER, "vehicle": VEHICLE}


def meter_row(reading: dict[str, Any]) -> list:
    """The row of a valid meter reading (as its schema loaded it: timestamp a datetime)."""
    return [METER, reading["meterId"], format_rfc3339(reading["timestamp"]),
            reading["kwhConsumedAc"], reading["voltage"]]


def vehicle_row(reading: dict[str, Any]) -> list:
    """The row of a valid vehicle reading (as its schema loaded it: timestamp a datetime)."""
    return [VEHICLE, reading["vehicleId"], format_rfc3339(reading["timestamp"]),
            reading["soc"], reading["kwhDeliveredDc"], reading["batteryTemp"]]


BUILDERS = {"meter": meter_row, "vehicle": vehicle_row}


def split(rows: list) -> tuple[list[list], list[list]]:
    """Meter and vehicle rows, each without its tag (device, timestamp, values...).

    Raises ValueError for a row of neither shape (an entry no edge wrote).
    """
    by_tag: dict[str, list[list]] = {METER: [], VEHICLE: []}
    for row in rows:
        if not isinstance(row, list) or not row or not isinstance(row[0], str) or row[0] not in by_tag:
            raise ValueError("queue row of unknown kind")
        if len(row) - 1 != len(FIELDS[row[0]]):
            raise ValueError("queue row of the wrong length")
        by_tag[row[0]].append(row[1:])
    return by_tag[METER], by_tag[VEHICLE]


def instant(value: str) -> datetime:
    """A row's timestamp as an aware datetime; ValueError or TypeError if it is none."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("a timestamp without a time zone")
    return parsed


def day_of(row: Any) -> date | None:
    """The UTC day of a row's timestamp, or None for a malformed row."""
    try:
        return date.fromisoformat(row[2][:10])
    except (TypeError, ValueError, IndexError, KeyError):
        return None


def reading_of(row: Any) -> dict:
    """A row shown as the reading it came from; {"unreadable": row} for a malformed one."""
    if (isinstance(row, list) and row and isinstance(row[0], str) and row[0] in FIELDS
            and len(row) - 1 == len(FIELDS[row[0]])):
        return dict(zip(FIELDS[row[0]], row[1:], strict=True))
    return {"unreadable": row}


# A message an edge could not turn into readings (the MQTT bridge's bad
# messages) travels the queue as a row of this kind: the drain keeps it as a
# dead letter in the database, so the edge needs nothing but Redis, and a bad
# message is acknowledged, like a good one, only once it is queued.
DEAD_LETTER = "x"
# The edges that queue dead letters (the values of dead_letters.source besides "database").
DEAD_LETTER_SOURCES = ("mqtt",)


def dead_letter_row(source: str, reason: str, where: str, payload: str) -> list:
    """A queue row that the drain records as a dead letter of `source` (e.g. "mqtt"),
    with the reason, where it came from (an MQTT topic) and the payload (an excerpt)."""
    return [DEAD_LETTER, source, reason, where, payload]


def is_dead_letter_row(row: object) -> bool:
    return (isinstance(row, list) and len(row) == 5 and row[0] == DEAD_LETTER
            and all(isinstance(part, str) for part in row) and row[1] in DEAD_LETTER_SOURCES)
