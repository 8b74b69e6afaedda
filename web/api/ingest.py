"""POST /v1/ingest: validate readings and queue them; 202 once they are in Redis.

The common case (an ingest token, a valid body, a queue that takes it) is
served by web/server/wsgi_ingest.py without Flask's request machinery; this view
serves the rest, and every error answer comes from here.
"""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, current_app, g

from readings.rows import METER
from readings.validator import readings_of
from settings import Settings
from web.api.params import RETRY_AFTER_S
from web.auth import require
from web.errors import ApiError
from web.observability import READINGS_ACCEPTED, READINGS_REJECTED
from web.server.body import json_body
from web.server.group_commit import GroupCommit
from workers.queue import QueueFull

log = logging.getLogger(__name__)

bp = Blueprint("ingest", __name__)
bp.before_request(require("ingest"))

METERS_ACCEPTED = READINGS_ACCEPTED.labels("meter")
VEHICLES_ACCEPTED = READINGS_ACCEPTED.labels("vehicle")


@bp.post("/v1/ingest")
def ingest():
    settings = current_app.config["SETTINGS"]
    body = json_body()
    readings = readings_of(body)
    if readings is None:
        raise ApiError(422, errors={"_schema": ["Send a reading or a non-empty array of readings."]})
    if len(readings) > settings.max_batch:
        READINGS_REJECTED.labels("too_many").inc(len(readings))
        raise ApiError(413, f"At most {settings.max_batch} readings in one request.")
    rows, errors = current_app.extensions["validator"].validate(readings)
    if errors:
        READINGS_REJECTED.labels("invalid").inc(len(readings))
        raise ApiError(422, errors=errors if isinstance(body, list) else errors[0])
    refusals = g.credential.refusals(rows) if g.credential is not None else None
    if refusals:
        READINGS_REJECTED.labels("forbidden").inc(len(readings))
        raise ApiError(403, errors=refusals)
    queue_rows(current_app.extensions["group_commit"], rows, settings)
    return {"accepted": len(rows)}, 202


def queue_rows(group_commit: GroupCommit, rows: list[list], settings: Settings) -> None:
    """Queue validated rows, or ApiError 503 (with Retry-After) when the queue cannot take them."""
    try:
        group_commit.put(rows, settings.max_backlog, settings.max_backlog_s)
    except QueueFull:
        READINGS_REJECTED.labels("backlog_full").inc(len(rows))
        raise ApiError(503, "The queue is full; retry later.",
                       headers={"Retry-After": RETRY_AFTER_S}) from None
    except redis.RedisError as exc:
        # One line per refusal: while Redis is down every request lands here.
        log.warning("queue unavailable: %s: %s", type(exc).__name__, exc)
        READINGS_REJECTED.labels("queue_unavailable").inc(len(rows))
        raise ApiError(503, "The queue is unavailable; retry later.",
                       headers={"Retry-After": RETRY_AFTER_S}) from None
    meters = sum(1 for row in rows if row[0] == METER)
    # Each inc is a locked write to a shared file: skip the zeros.
    if meters:
        METERS_ACCEPTED.inc(meters)
    if meters < len(rows):
        VEHICLES_ACCEPTED.inc(len(rows) - meters)
