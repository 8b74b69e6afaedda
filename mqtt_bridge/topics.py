"""The MQTT topic layout: `telemetry/meters/{meterId}` and `telemetry/vehicles/{vehicleId}`.

Its own module, importing nothing, so that publishers (the simulator, the
benchmark) name topics exactly as the bridge reads them.
"""

from __future__ import annotations

# The topic's second level, and the kind of queue row (see web/schemas.py) it carries.
KINDS = {"meters": "m", "vehicles": "v"}
TOPICS = tuple(f"telemetry/{segment}/+" for segment in KINDS)
# Bridges subscribe through one MQTT 5 shared subscription, so that each
# message goes to one of them.
SHARE_GROUP = "ingest"


def subscriptions() -> list[str]:
    """The topic filters every bridge subscribes to."""
    return [f"$share/{SHARE_GROUP}/{topic}" for topic in TOPICS]


def topic_of(reading: dict) -> str:
    """The topic a reading belongs on (by the id it carries)."""
    if "meterId" in reading:
        return f"telemetry/meters/{reading['meterId']}"
    return f"telemetry/vehicles/{reading['vehicleId']}"


def device_of(topic: str) -> tuple[str, str] | None:
    """(segment, device id) of a telemetry topic, e.g. ("meters", "M-1"); None if not one."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "telemetry" or parts[1] not in KINDS or not parts[2]:
        return None
    return parts[1], parts[2]
