"""One place that turns every error into the contract's JSON, and never leaks internals."""

from __future__ import annotations

import logging

import psycopg
from flask import Flask, jsonify
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# Seconds a client is told to wait after a 503 (queue or database unavailable).
RETRY_AFTER_S = "5"
# The database cannot be reached or has gone away: a connection refused, reset or
# timed out (SQLAlchemy wraps psycopg's OperationalError), or no pooled
# connection free in time. Not a bug of ours, and over once it is back.
DATABASE_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
                        psycopg.OperationalError, psycopg.InterfaceError)


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

    def database_unavailable(exc: Exception):
        # One line, no traceback: an outage is not a bug, and lasts many requests.
        log.warning("database unavailable: %s", type(exc).__name__)
        return (jsonify({"error": "The database is unavailable; retry later."}), 503,
                {"Retry-After": RETRY_AFTER_S})

    for exc_class in DATABASE_UNAVAILABLE:
        app.register_error_handler(exc_class, database_unavailable)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # The details go to the log, never to the client.
        log.exception("unhandled error")
        return jsonify({"error": "Internal error."}), 500
