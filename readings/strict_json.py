"""JSON as every edge reads it: RFC 8259 (no NaN or Infinity), UTF-8, at most
MAX_DEPTH levels deep. The HTTP body and the MQTT payload are parsed by these
functions alone, so the two doors cannot drift apart."""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


class NotJson(ValueError):
    """Not JSON under RFC 8259, not UTF-8, or nested too deep; the message says which."""


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes) -> Any:
    """`raw` parsed under RFC 8259 (UTF-8, no NaN/Infinity, at most MAX_DEPTH deep), or NotJson."""
    body = parse_json_any_depth(raw)
    if depth_exceeds(body, MAX_DEPTH):
        raise NotJson(f"The body is nested deeper than {MAX_DEPTH} levels.")
    return body


def parse_json_any_depth(raw: bytes) -> Any:
    """parse_json without the depth check, for a caller that checks the shape itself."""
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise NotJson("The body is not UTF-8.") from None
    except (ValueError, RecursionError):
        raise NotJson("The body is not valid JSON.") from None


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
