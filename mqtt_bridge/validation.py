"""The bridge's one door to the rules a reading is judged by: the same JSON
parser, body shape, schemas and time limits as POST /v1/ingest, from the
readings/ package (which, like this bridge, loads neither Flask nor gunicorn).
"""

from __future__ import annotations

from typing import Any

from readings.strict_json import NotJson, parse_json
from readings.validator import ReadingValidator, readings_of
from settings import Settings

__all__ = ["NotJson", "ReadingValidator", "parse_payload", "readings_of", "validator"]


def parse_payload(payload: bytes) -> Any:
    """The payload parsed exactly as an HTTP body is, or NotJson saying why."""
    return parse_json(payload)


def validator(settings: Settings) -> ReadingValidator:
    """The validator with the time limits of the settings (MAX_CLOCK_SKEW, RETENTION_DAYS)."""
    return ReadingValidator(settings.max_clock_skew_s, settings.retention_days)
