"""Gunicorn settings for the `web` process; each value can be overridden from the environment."""

import multiprocessing
import os
import tempfile

# Each worker process keeps its metrics in files here; /metrics sums them.
# Set before any worker imports prometheus_client.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="energy-web-metrics-"))

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# Threads keep client connections alive between requests (sync workers close
# each one): on 2 cores, 3 processes x 4 threads served twice the requests of
# 5 sync workers on /healthz and a quarter more on single-reading ingest.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() + 1))
threads = int(os.environ.get("WEB_THREADS", 4))
# On SIGTERM, requests in flight get this long to finish before workers exit.
graceful_timeout = 30
timeout = 60
keepalive = 5
accesslog = None


def child_exit(server, worker):
    """Stop counting a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)

# Gunicorn 27's control socket lives at one path per user: several web
# processes on one host would replace each other's. Nothing here uses it.
control_socket_disable = True
