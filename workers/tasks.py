"""Celery tasks: each body is one call to a plain, separately tested function."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime

from models.roll_up import roll_up
from workers.alerts import evaluate_alerts
from workers.app import app, consumer_name, engine, queue, settings
from workers.backoff import Backoff
from workers.drain import UNAVAILABLE, drain
from workers.maintenance import maintain_history

log = logging.getLogger(__name__)

# Per process: while the database or Redis is down, beat still starts a drain
# every interval, and each returns at once until the back-off has passed.
unavailable = Backoff(first_s=1.0, cap_s=30.0)


@app.task(name="workers.drain")
def drain_queue() -> dict:
    """Drain queued readings into history and live state for up to DRAIN_TASK_S."""
    if not unavailable.ready():
        return {"skipped": "backing off"}
    try:
        report = drain(queue(), engine(), consumer_name(), settings)
    except UNAVAILABLE as exc:
        delay = unavailable.failed()
        log.warning("database unavailable or queue unreachable (%s); backing off %.1f s; "
                    "the batch stays queued", type(exc).__name__, delay)
        return {"skipped": "unavailable"}
    unavailable.succeeded()
    if report.readings:
        log.info("drained %d readings in %d batches: %d stored, %d duplicates, %d refused",
                 report.readings, report.batches, report.stored, report.duplicates, report.refused)
    return asdict(report)


@app.task(name="workers.maintain_history")
def maintain_history_task() -> dict:
    """Make the coming days' history partitions; drop those past RETENTION_DAYS."""
    return maintain_history(engine(), settings, datetime.now(UTC).date())


@app.task(name="workers.roll_up_hours")
def roll_up_hours_task() -> dict:
    """Roll up the hours (and days) that have closed into the rollups."""
    return {"hours": roll_up(engine(), datetime.now(UTC))}


@app.task(name="workers.evaluate_alerts")
def evaluate_alerts_task() -> dict:
    """Open and clear efficiency and temperature alerts from the last ALERT_WINDOW_HOURS."""
    return evaluate_alerts(engine(), settings, datetime.now(UTC))
