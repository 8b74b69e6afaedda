"""Celery tasks: each body is one call to a plain, separately tested function."""

from __future__ import annotations

from dataclasses import asdict

from workers.app import app, consumer_name, engine, queue, settings
from workers.drain import drain


@app.task(name="workers.drain")
def drain_queue() -> dict:
    """Drain queued readings into history and live state for up to DRAIN_TASK_S."""
    return asdict(drain(queue(), engine(), consumer_name(), settings))
