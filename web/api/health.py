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
    if current_app.extensions["read_engines"].replica is not None:
        # Said, not counted: ingest needs only the primary and Redis, and reads
        # leave a lagging replica for the primary (models/replica.py).
        body["replica"] = _replica_state()
    return body, 200 if ready else 503


def _replica_state() -> str:
    """ok, lagging (over MAX_REPLICA_LAG_S: reads go to the primary) or unavailable."""
    engines = current_app.extensions["read_engines"]
    try:
        return "lagging" if engines.lag_s() > engines.max_lag_s else "ok"
    except Exception:
        log.warning("the replica does not answer", exc_info=True)
        return "unavailable"


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
