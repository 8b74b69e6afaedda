"""Liveness and readiness probes (no token needed)."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app
from sqlalchemy import text

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    checks = {"postgres": _postgres_answers(), "redis": _redis_answers()}
    ready = all(checks.values())
    body = {name: "ok" if up else "unavailable" for name, up in checks.items()}
    return body, 200 if ready else 503


def _postgres_answers() -> bool:
    try:
        with current_app.extensions["engine"].connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        log.warning("PostgreSQL does not answer", exc_info=True)
        return False


def _redis_answers() -> bool:
    try:
        return bool(current_app.extensions["queue"].redis.ping())
    except Exception:
        log.warning("Redis does not answer", exc_info=True)
        return False
