"""What the blueprints share: query parsing, the analytics window, Retry-After.

Blueprints import these from here rather than from each other.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import request
from marshmallow import Schema, ValidationError

from models.windows import WindowSplit
from readings.timestamps import format_rfc3339, parse_rfc3339
from web.errors import RETRY_AFTER_S, ApiError

__all__ = ["DEFAULT_WINDOW", "RETRY_AFTER_S", "answered", "query", "window"]  # RETRY_AFTER_S: web/errors.py's

DEFAULT_WINDOW = timedelta(hours=24)


def window() -> tuple[datetime, datetime]:
    """[from, to) from the query; `to` defaults to now and `from` to 24 h before `to`."""
    bounds = {}
    for name in ("from", "to"):
        raw = request.args.get(name)
        if raw is None:
            continue
        try:
            bounds[name] = parse_rfc3339(raw)
        except ValueError:
            raise ApiError(400, f"`{name}` must be an RFC 3339 date-time with a time zone.") from None
    to_ts = bounds.get("to") or datetime.now(UTC)
    try:
        from_ts = bounds.get("from") or to_ts - DEFAULT_WINDOW
    except OverflowError:  # a `to` within a day of year 1
        raise ApiError(400, "`to` is too early for the default window: give `from`.") from None
    if from_ts >= to_ts:
        raise ApiError(400, "`from` must be before `to`.")
    return from_ts, to_ts


def query(schema: Schema) -> dict[str, Any]:
    """The query arguments loaded by `schema`; 400 naming the bad ones."""
    try:
        return schema.load(request.args)
    except ValidationError as exc:
        raise ApiError(400, "Bad query: " + "; ".join(
            f"{name}: {' '.join(msgs)}" for name, msgs in exc.messages.items())) from None


def answered(split: WindowSplit) -> dict:
    """The window the figures cover: the one asked for, or wider (whole UTC days)
    where it needed hourly rollups no longer kept (ROLLUP_HOURLY_RETENTION_DAYS)."""
    return {"from": format_rfc3339(split.start), "to": format_rfc3339(split.end)}
