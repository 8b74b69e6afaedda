"""POST /v1/ingest as plain WSGI, in front of Flask: the common case without Flask's machinery.

At thousands of single-reading requests a second, Flask's request context,
routing, hooks and response objects cost several times the work of the request
itself. This WSGI middleware serves the common case directly: an ingest token
(fleet-wide, or a device's or gateway's that may write every reading), a JSON
body of known length, readings that validate, and a queue that takes them. It
uses the same pieces as the Flask view (token check, strict JSON, validator,
group commit, metrics), so nothing is decided twice in two ways.

Anything else goes to the Flask app untouched (the body it read is put back),
and Flask answers it: every 4xx comes from the one place that words them. Only
the queue's 503 is answered here, because the readings were valid and Flask
would just try the queue again.

With RATE_LIMIT set it is not installed: every request passes flask-limiter.
tests/test_wsgi_ingest.py checks that it answers as Flask would, headers included.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from credentials.cache import CredentialsUnavailable
from readings.strict_json import NotJson, parse_json_any_depth
from readings.validator import readings_of
from web.api.ingest import queue_rows
from web.auth import matches, token_of
from web.errors import ApiError
from web.observability import record_request, request_id

log = logging.getLogger(__name__)

PATH = "/v1/ingest"
WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


class Declined(Exception):
    """Not the common case: Flask should answer this request."""


class WsgiIngest:
    """WSGI middleware in front of the Flask app; see the module docstring."""

    def __init__(self, app: Flask, flask_wsgi: WsgiApp) -> None:
        self.flask_wsgi = flask_wsgi
        self.settings = app.config["SETTINGS"]
        self.validator = app.extensions["validator"]
        self.group_commit = app.extensions["group_commit"]
        self.credentials = app.extensions["credentials"]

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.flask_wsgi(environ, start_response)
        started = time.perf_counter()
        try:
            status, body, headers = self.serve(environ)
        except Declined:
            return self.flask_wsgi(environ, start_response)
        except HTTPException as exc:  # the server cut the body off (408)
            status, body, headers = exc.code, {"error": exc.description}, {}
        except Exception:
            log.exception("unhandled error in the WSGI ingest")
            status, body, headers = 500, {"error": "Internal error."}, {}
        # Byte for byte what Flask sends (tests/test_wsgi_parity.py): its JSON,
        # compact with a newline, and werkzeug's status line.
        payload = (json.dumps(body, separators=(",", ":")) + "\n").encode()
        rid = request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        start_response(f"{status} {HTTP_STATUS_CODES[status].upper()}", [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            *headers.items(),
            ("X-Request-ID", rid),
        ])
        record_request(PATH, "POST", status, time.perf_counter() - started, rid)
        return [payload]

    def serve(self, environ: dict) -> tuple[int, dict, dict[str, str]]:
        """(status, body, headers) for the common case; Declined for anything else."""
        credential = self.credential(environ)
        content_type = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        if content_type != "application/json":
            raise Declined
        readings = self.readings(environ)
        rows, errors = self.validator.validate(readings)
        if errors or (credential is not None and credential.refusals(rows)):
            raise Declined
        try:
            queue_rows(self.group_commit, rows, self.settings)
        except ApiError as exc:
            return exc.status, exc.body, exc.headers
        return 202, {"accepted": len(rows)}, {}

    def credential(self, environ: dict):
        """The request's device or gateway credential, None for a fleet-wide token; else Declined."""
        token = token_of(environ.get("HTTP_AUTHORIZATION", ""))
        if token is None:
            raise Declined
        if matches(token, self.settings.ingest_tokens):
            if self.settings.device_auth_required:
                raise Declined
            return None
        try:
            credential = self.credentials.lookup(token)
        except CredentialsUnavailable:
            raise Declined from None
        if credential is None:
            raise Declined
        return credential

    def readings(self, environ: dict) -> list[Any]:
        """The body's readings, read and parsed; Declined (body put back) unless well-formed."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:  # absent (chunked) or garbled: Flask decides
            raise Declined from None
        if not 0 < length <= self.settings.max_body_bytes:
            raise Declined
        raw = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            # No depth check (a tenth of this path's CPU for a 1,000-reading body):
            # it serves only bodies whose readings all validate, and a valid
            # reading is a flat object. Anything else goes to Flask, which checks.
            body = parse_json_any_depth(raw)
        except NotJson:
            raise Declined from None
        readings = readings_of(body)
        if readings is None or len(readings) > self.settings.max_batch:
            raise Declined
        return readings


def install(app: Flask) -> None:
    """Put WsgiIngest in front of the app, unless rate limiting needs every request."""
    if not app.config["SETTINGS"].rate_limit:
        app.wsgi_app = WsgiIngest(app, app.wsgi_app)
