"""Dead letters for operators: list readings the database refused (and MQTT
messages the bridge could not read); re-drive the database's."""

from __future__ import annotations

import redis
from flask import Blueprint, current_app, request
from marshmallow import ValidationError

from models import dead_letters
from readings.rows import reading_of
from readings.schemas import BIGINT_MAX, RedriveSchema
from readings.timestamps import format_rfc3339
from web.api.params import RETRY_AFTER_S
from web.auth import require
from web.errors import ApiError
from web.server.body import json_body
from workers.queue import QueueFull

bp = Blueprint("dead_letters", __name__)
bp.before_request(require("operator"))

PAGE = 100
MAX_PAGE = 1000
REDRIVE_DEFAULT = 1000
redrive_schema = RedriveSchema()


@bp.get("/v1/dead-letters")
def list_letters():
    try:
        after = int(request.args.get("after", 0))
        limit = int(request.args.get("limit", PAGE))
    except ValueError:
        after = limit = -1
    if not 0 <= after <= BIGINT_MAX or not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, f"`after` must be a whole number >= 0, `limit` one of 1 to {MAX_PAGE}.")
    rows = dead_letters.list_dead_letters(current_app.extensions["engine"], after, limit)
    return {
        "deadLetters": [shown(r) for r in rows],
        "next": rows[-1].id if len(rows) == limit else None,
    }


def shown(letter) -> dict:
    """A dead letter as operators see it: the refused reading, or the MQTT message's
    topic and payload (see readings.rows.dead_letter_row)."""
    body = {"id": letter.id, "failedAt": format_rfc3339(letter.failed_at), "reason": letter.reason,
            "source": letter.source}
    if letter.source == "database":
        body["reading"] = reading_of(letter.row)
    else:
        body["topic"], body["payload"] = letter.row[3], letter.row[4]
    return body


@bp.post("/v1/dead-letters/redrive")
def redrive():
    """Queue dead letters again (after the cause was fixed) and forget them."""
    body = json_body() if request.content_length else {}
    try:
        ids = redrive_schema.load(body).get("ids")
    except ValidationError as exc:
        raise ApiError(422, errors=exc.messages) from None
    settings = current_app.config["SETTINGS"]
    # Queued before the rows are deleted, in their transaction: a failure on
    # either side leaves them dead-lettered (a re-drive twice stores once).
    with current_app.extensions["engine"].begin() as conn:
        letters = dead_letters.take(conn, ids, REDRIVE_DEFAULT)
        if letters:
            try:
                current_app.extensions["queue"].put([r.row for r in letters], settings.max_backlog)
            except (QueueFull, redis.RedisError):
                raise ApiError(503, "The queue cannot take them now; retry later.",
                               headers={"Retry-After": RETRY_AFTER_S}) from None
            dead_letters.delete(conn, [r.id for r in letters])
    return {"redriven": len(letters)}
