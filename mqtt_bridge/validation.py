"""The bridge's one door to the rules a reading is judged by: the same JSON
parser, body shape, schemas and time limits as POST /v1/ingest.

A seam, not a copy: every rule lives with the HTTP edge today (web/body.py,
web/ingest.py, web/schemas.py), and importing them loads Flask through
web/__init__.py. When the rules move to a package of their own (`readings/`),
only the imports here change.
"""

from __future__ import annotations

from typing import Any

from settings import Settings
from web.body import parse_json
from web.errors import ApiError
from web.ingest import readings_of
from web.schemas import ReadingValidator

__all__ = ["NotJson", "ReadingValidator", "parse_payload", "readings_of", "validator"]


class NotJson(ValueError):
    """The payload is not JSON under RFC 8259, not UTF-8, or nested too deep."""


def parse_payload(payload: bytes) -> Any:
    """The payload parsed exactly as an HTTP body is, or NotJson saying why."""
    try:
        return parse_json(payload)
    except ApiError as exc:
        raise NotJson(exc.message) from None


def validator(settings: Settings) -> ReadingValidator:
    """The validator with the time limits of the settings (MAX_CLOCK_SKEW, RETENTION_DAYS)."""
    return ReadingValidator(settings.max_clock_skew_s, settings.retention_days)
