"""Bearer-token authorization: ingest tokens may POST telemetry, operator tokens read.

Decided before the body is looked at. Every configured token is compared, in
constant time, so the answer's timing tells nothing about how close a guess was.
Device and gateway tokens (credentials/) are looked up by their hash instead;
which readings such a token may write is checked once the readings are known.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable

from flask import current_app, g, request

from credentials.cache import Credential, CredentialCache, CredentialsUnavailable
from settings import Settings
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
    """A before_request hook admitting only tokens of `kind` ('ingest' or 'operator').

    For 'ingest' it leaves in `g.credential` the device or gateway credential the
    token opens, or None for a fleet-wide token (which may write any device).
    """

    def check() -> None:
        settings = current_app.config["SETTINGS"]
        token = bearer_token()
        if token is None:
            raise ApiError(401, "Missing or malformed bearer token.", headers=CHALLENGE)
        credentials = current_app.extensions["credentials"]
        if kind == "ingest":
            g.credential = ingest_credential(token, settings, credentials)
            return
        if matches(token, settings.operator_tokens):
            return
        if matches(token, settings.ingest_tokens) or known(token, credentials):
            raise ApiError(403, "This token may not be used here: an operator token is needed.")
        raise ApiError(401, "Unknown bearer token.", headers=CHALLENGE)

    return check


def ingest_credential(token: str, settings: Settings, credentials: CredentialCache) -> Credential | None:
    """The device or gateway credential of an ingest token, None for a fleet-wide one; else ApiError."""
    if matches(token, settings.ingest_tokens):
        if settings.device_auth_required:
            raise ApiError(401, "Fleet-wide ingest tokens are refused here (DEVICE_AUTH=required): "
                                "use a device or gateway token.", headers=CHALLENGE)
        return None
    try:
        credential = credentials.lookup(token)
    except CredentialsUnavailable:
        raise ApiError(503, "Device credentials are unavailable; retry later.",
                       headers={"Retry-After": "5"}) from None
    if credential is not None:
        return credential
    if matches(token, settings.operator_tokens):
        raise ApiError(403, "This token may not be used here: an ingest token is needed.")
    raise ApiError(401, "Unknown bearer token.", headers=CHALLENGE)


def known(token: str, credentials: CredentialCache) -> bool:
    """Whether the token is a device or gateway token (False while that cannot be told)."""
    try:
        return credentials.lookup(token) is not None
    except CredentialsUnavailable:
        return False
