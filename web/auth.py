"""Bearer-token authorization: ingest tokens may POST telemetry, operator tokens read.

Decided before the body is looked at. Every configured token is compared, in
constant time, so the answer's timing tells nothing about how close a guess was.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable

from flask import current_app, request

from web.errors import ApiError

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="energy"'}


def bearer_token() -> str | None:
    """The token of the request's `Authorization: Bearer <token>` header (scheme in any case)."""
    return token_of(request.headers.get("Authorization", ""))


def token_of(authorization: str) -> str | None:
    """The token of an Authorization header's value, or None if it is not a bearer token."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def matches(token: str, allowed: Iterable[str]) -> bool:
    found = False
    for candidate in allowed:
        found |= hmac.compare_digest(token.encode(), candidate.encode())
    return found


def require(kind: str) -> Callable[[], None]:
    """A before_request hook admitting only tokens of `kind` ('ingest' or 'operator')."""

    def check() -> None:
        settings = current_app.config["SETTINGS"]
        kinds = {"ingest": settings.ingest_tokens, "operator": settings.operator_tokens}
        token = bearer_token()
        if token is None:
            raise ApiError(401, "Missing or malformed bearer token.", headers=CHALLENGE)
        if matches(token, kinds[kind]):
            return
        if any(matches(token, tokens) for tokens in kinds.values()):
            raise ApiError(403, f"This token may not be used here: an {kind} token is needed.")
        raise ApiError(401, "Unknown bearer token.", headers=CHALLENGE)

    return check
