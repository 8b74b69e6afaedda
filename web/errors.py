"""One place that turns every error into the contract's JSON, and never leaks internals."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as JSON: {"error": message} or {"errors": details}."""

    def __init__(self, status: int, message: str | None = None, errors: object = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message or "")
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    @property
    def body(self) -> dict:
        """The JSON answer: the details if there are any, else the message."""
        return {"errors": self.errors} if self.errors is not None else {"error": self.message}


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return jsonify(exc.body), exc.status, exc.headers

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # Keep headers such as Allow (405), drop the HTML content type.
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        return jsonify({"error": exc.description}), exc.code, headers

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # The details go to the log, never to the client.
        log.exception("unhandled error")
        return jsonify({"error": "Internal error."}), 500
