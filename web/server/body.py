"""Reading a JSON request body strictly: the content type, then readings/strict_json.py's rules."""

from __future__ import annotations

from typing import Any

from flask import request

from readings.strict_json import NotJson, parse_json
from web.errors import ApiError


def json_body() -> Any:
    """The parsed body, or an ApiError with the contract's status (415, 413, 400).

    Flask's MAX_CONTENT_LENGTH (set from MAX_BODY_BYTES) makes get_data() refuse
    an oversized body with 413 before reading it, from Content-Length or as it streams.
    """
    if request.mimetype != "application/json":
        raise ApiError(415, "Content-Type must be application/json.")
    try:
        return parse_json(request.get_data(cache=False))
    except NotJson as exc:
        raise ApiError(400, str(exc)) from None
