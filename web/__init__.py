"""The Flask app factory: `gunicorn "web:create_app()"`."""

from __future__ import annotations

from typing import Any

from flask import Flask

import settings as settings_module
from credentials.cache import CredentialCache
from logconfig import configure_logging
from models.db import create_db_engine
from models.replica import ReadEngines
from readings.validator import ReadingValidator
from web import dashboard, errors, openapi
from web.api import (
    alerts,
    analytics,
    dead_letters,
    devices,
    fleet,
    gateways,
    health,
    ingest,
    live,
    meters,
    pipeline,
    sessions,
)
from web.observability import init_observability
from web.ratelimit import init_rate_limit
from web.server import wsgi_ingest
from web.server.group_commit import GroupCommit
from workers.queue import ReadingQueue


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app; `test_config` may carry SETTINGS to use instead of the environment."""
    app = Flask(__name__)
    app.config.from_mapping(test_config or {})
    if "SETTINGS" not in app.config:
        app.config["SETTINGS"] = settings_module.load()
    settings = app.config["SETTINGS"]
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False

    app.extensions["engine"] = create_db_engine(settings.database_url)
    replica = (create_db_engine(settings.analytics_database_url)
               if settings.analytics_database_url else None)
    app.extensions["read_engines"] = ReadEngines(app.extensions["engine"], replica,
                                                 settings.max_replica_lag_s)
    app.extensions["queue"] = ReadingQueue.from_settings(settings)
    # Its own connection: the group commit makes one Redis call at a time.
    app.extensions["group_commit"] = GroupCommit(
        lambda: ReadingQueue.from_settings(settings, single_connection=True), settings.max_batch)
    # Device and gateway tokens; its refresher starts in each process on first use.
    app.extensions["credentials"] = CredentialCache(
        app.extensions["engine"], settings.redis_url, settings.redis_prefix)
    app.extensions["validator"] = ReadingValidator(settings.max_clock_skew_s, settings.retention_days)

    errors.register(app)
    init_observability(app)
    init_rate_limit(app, settings)
    for module in (ingest, analytics, fleet, sessions, alerts, live, meters, dead_letters,
                   devices, gateways, pipeline, health, dashboard):
        app.register_blueprint(module.bp)
    openapi.register(app)
    wsgi_ingest.install(app)
    return app
