"""Reading a JSON request body strictly: RFC 8259, UTF-8, bounded size and depth."""

from __future__ import annotations

import json
from typing import Any

from flask import request

from web.errors import ApiError

MAX_DEPTH = 64


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def json_body() -> Any:
    """The parsed body, or an ApiError with the contract's status (415, 413, 400).

    Flask's MAX_CONTENT_LENGTH (set from MAX_BODY_BYTES) makes get_data() refuse
    an oversized body with 413 before reading it, from Content-Length or as it streams.
    """
    if request.mimetype != "application/json":
        raise ApiError(415, "Content-Type must be application/json.")
    return parse_json(request.get_data(cache=False))


def parse_json(raw: bytes) -> Any:
    """A body parsed under RFC 8259 (UTF-8, no NaN/Infinity, at most MAX_DEPTH deep), or ApiError 400."""
    body = parse_json_any_depth(raw)
    if depth_exceeds(body, MAX_DEPTH):
        raise ApiError(400, f"The body is nested deeper than {MAX_DEPTH} levels.")
    return body


def parse_json_any_depth(raw: bytes) -> Any:
    """parse_json without the depth check, for a caller that checks the shape itself."""
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise ApiError(400, "The body is not UTF-8.") from None
    except (ValueError, RecursionError):
        raise ApiError(400, "The body is not valid JSON.") from None


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether containers nest more than `limit` deep (iterative: no recursion limit)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (list, dict)))
    return False
