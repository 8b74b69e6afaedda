"""Structured JSON logs for every process (web and gunicorn itself, workers,
Flower, the MQTT bridge): one object per line, with the request id (web) or
task id (workers) of the work that logged it.

Nothing here logs request bodies, reading values or headers: a token or a
device's data never reaches the logs.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Celery logs every beat tick and every task at INFO: one drain a second makes
# that noise. Flower shows each task; the drain logs what it stored.
CHATTY = ("celery.beat", "celery.worker.strategy", "celery.app.trace")


class ContextFilter(logging.Filter):
    """Adds request_id inside a Flask request, task_id and task inside a Celery task."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Looked up, not imported: a process without Flask or Celery (the MQTT
        # bridge) must not load them for its logs.
        flask, celery = sys.modules.get("flask"), sys.modules.get("celery")
        if flask and flask.has_request_context() and "request_id" in flask.g:
            record.request_id = flask.g.request_id
        task = celery.current_task if celery else None
        if task and task.request.id:
            record.task_id = task.request.id
            record.task = task.name
        return True


def formatter(log_format: str = "json") -> logging.Formatter:
    """JSON lines, or plain lines with LOG_FORMAT=text: the one format of every process."""
    if log_format == "text":
        return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    return JsonFormatter(FIELDS, rename_fields={"asctime": "time", "levelname": "level"})


def configure_logging(stream: TextIO | None = None, log_format: str = "json",
                      level: str = "INFO") -> None:
    """JSON lines on stderr ("text" for plain lines), at `level`: the settings'
    LOG_FORMAT and LOG_LEVEL, checked in settings.py."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logging.captureWarnings(True)  # Python's warnings too, not as bare lines on stderr
    root.setLevel(level)
    for name in CHATTY:
        logging.getLogger(name).setLevel(level if level == "DEBUG" else "WARNING")
