"""Per-token rate limiting (off unless RATE_LIMIT is set): 429 with Retry-After.

Counters live in Redis so that every web process shares them. They are keyed
by a hash of the token, so no token is ever written to Redis.
"""

from __future__ import annotations

import hashlib

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from settings import Settings
from web.auth import bearer_token


def _token_key() -> str:
    token = bearer_token()
    if token is None:
        return f"addr:{get_remote_address()}"
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:32]


def init_rate_limit(app: Flask, settings: Settings) -> None:
    if not settings.rate_limit:
        return
    Limiter(
        key_func=_token_key,
        app=app,
        default_limits=[settings.rate_limit],
        storage_uri=settings.redis_url,
        storage_options={"socket_connect_timeout": 2, "socket_timeout": 2},
        key_prefix=f"{settings.redis_prefix}:ratelimit",
        headers_enabled=True,
        # With Redis down, ingest answers 503 on its own; reads should still work.
        swallow_errors=True,
        default_limits_exempt_when=lambda: request.path in ("/healthz", "/readyz"),
    )
