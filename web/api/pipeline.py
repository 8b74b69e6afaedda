"""GET /v1/pipeline: what the dashboard's Pipeline view needs besides /metrics: the
Celery workers that answer a ping, and how many dead letters wait."""

from __future__ import annotations

from functools import cache

from celery import Celery
from flask import Blueprint, current_app

from models.dead_letters import count_dead_letters
from settings import Settings
from web.auth import require

bp = Blueprint("pipeline", __name__)
bp.before_request(require("operator"))

PING_TIMEOUT_S = 1.0


@cache
def celery_app(settings: Settings) -> Celery:
    from workers.app import make_celery  # imported late: the web needs no worker to start

    return make_celery(settings)


@bp.get("/v1/pipeline")
def pipeline():
    settings = current_app.config["SETTINGS"]
    try:
        replies = celery_app(settings).control.ping(timeout=PING_TIMEOUT_S)
        workers = sorted(name for reply in replies for name in reply)
    except Exception:  # Redis down: /readyz says so; no worker can be reached either
        workers = []
    return {"workers": workers,
            "deadLetters": count_dead_letters(current_app.extensions["engine"])}
