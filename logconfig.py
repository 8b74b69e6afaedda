"""Structured JSON logs for every process (web and gunicorn itself, workers,
Flower): one object per line, with the request id (web) or task id (workers)
of the work that logged it.

Nothing here logs request bodies, reading values or headers: a token or a
device's data never reaches the logs.
"""

from __future__ import annotations

import logging
import os
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
        # Imported here: gunicorn's master loads this module (for formatter) and
        # must not import Flask or Celery before its workers monkey-patch.
        from celery import current_task
        from flask import g, has_request_context

        if has_request_context() and "request_id" in g:
            record.request_id = g.request_id
        task = current_task
        if task and task.request.id:
            record.task_id = task.request.id
            record.task = task.name
        return True


def formatter() -> logging.Formatter:
    """JSON lines, or plain lines with LOG_FORMAT=text: the one format of every process."""
    if os.environ.get("LOG_FORMAT", "json") == "text":
        return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    return JsonFormatter(FIELDS, rename_fields={"asctime": "time", "levelname": "level"})


def configure_logging(stream: TextIO | None = None) -> None:
    """JSON lines on stderr (LOG_FORMAT=text for plain lines), at LOG_LEVEL (INFO)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logging.captureWarnings(True)  # Python's warnings too, not as bare lines on stderr
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    root.setLevel(level)
    for name in CHATTY:
        logging.getLogger(name).setLevel(level if level == "DEBUG" else "WARNING")
