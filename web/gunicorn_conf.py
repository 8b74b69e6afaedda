"""Gunicorn settings for the `web` process; each value can be overridden from the environment."""

import multiprocessing
import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
# On SIGTERM, requests in flight get this long to finish before workers exit.
graceful_timeout = 30
timeout = 60
keepalive = 5
accesslog = None
