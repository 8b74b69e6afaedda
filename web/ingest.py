"""POST /v1/ingest: validate readings and queue them; 202 once they are in Redis."""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, current_app

from web.auth import require
from web.body import json_body
from web.errors import ApiError
from web.observability import READINGS_ACCEPTED, READINGS_REJECTED
from workers.queue import QueueFull

log = logging.getLogger(__name__)

bp = Blueprint("ingest", __name__)
bp.before_request(require("ingest"))

RETRY_AFTER_S = "5"


@bp.post("/v1/ingest")
def ingest():
    settings = current_app.config["SETTINGS"]
    body = json_body()
    readings = body if isinstance(body, list) else [body]
    if not isinstance(body, (list, dict)) or not readings:
        raise ApiError(422, errors={"_schema": ["Send a reading or a non-empty array of readings."]})
    if len(readings) > settings.max_batch:
        READINGS_REJECTED.labels("too_many").inc(len(readings))
        raise ApiError(413, f"At most {settings.max_batch} readings in one request.")
    rows, errors = current_app.extensions["validator"].validate(readings)
    if errors:
        READINGS_REJECTED.labels("invalid").inc(len(readings))
        raise ApiError(422, errors=errors if isinstance(body, list) else errors[0])
    try:
        current_app.extensions["queue"].put(rows, settings.max_backlog)
    except QueueFull:
        READINGS_REJECTED.labels("backlog_full").inc(len(rows))
        raise ApiError(503, "The queue is full; retry later.",
                       headers={"Retry-After": RETRY_AFTER_S}) from None
    except redis.RedisError:
        log.warning("queue unavailable", exc_info=True)
        READINGS_REJECTED.labels("queue_unavailable").inc(len(rows))
        raise ApiError(503, "The queue is unavailable; retry later.",
                       headers={"Retry-After": RETRY_AFTER_S}) from None
    meters = sum(1 for row in rows if row[0] == "m")
    READINGS_ACCEPTED.labels("meter").inc(meters)
    READINGS_ACCEPTED.labels("vehicle").inc(len(rows) - meters)
    return {"accepted": len(rows)}, 202
