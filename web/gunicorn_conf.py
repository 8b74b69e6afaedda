"""Gunicorn settings for the `web` process; each value can be overridden from the environment."""

import multiprocessing
import os
import tempfile

from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

# Each worker process keeps its metrics in files here; /metrics sums them.
# Set before any worker imports prometheus_client.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="energy-web-metrics-"))

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# gevent: one process per core serves thousands of connections, kept alive
# between requests, and lets web/group_commit.py gather the readings of many
# requests into one Redis call. gevent's own HTTP server (gevent_pywsgi) parses
# requests in less CPU than gunicorn's: on 2 cores, /healthz went from 2,600
# req/s (gthread, 3 processes x 4 threads) to 4,400. PostgreSQL (psycopg 3.1.14
# and later) and Redis calls yield to other requests while they wait.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_connections = int(os.environ.get("WEB_CONNECTIONS", 1000))
# On SIGTERM, requests in flight get this long to finish before workers exit.
graceful_timeout = 30
timeout = 60
# Seconds a connection may wait for its next request line.
keepalive = 5
accesslog = None


class KeepAliveHandler(PyWSGIHandler):
    """Closes a connection that sends no request line within `keepalive` seconds.

    gevent's server waits for the next request forever, and a worker shutting
    down waits for every connection: one idle client held each restart for the
    whole graceful_timeout (30 s). gunicorn's other workers honour `keepalive`."""

    def read_requestline(self):
        self.socket.settimeout(keepalive)
        try:
            return super().read_requestline()
        finally:
            self.socket.settimeout(None)


class GeventWorker(GeventPyWSGIWorker):
    wsgi_handler = KeepAliveHandler


worker_class = GeventWorker


def child_exit(server, worker):
    """Stop counting a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)

# Gunicorn 27's control socket lives at one path per user: several web
# processes on one host would replace each other's. Nothing here uses it.
control_socket_disable = True


def post_worker_init(worker):
    """Exempt everything loaded so far from the garbage collector's full passes."""
    import gc

    gc.freeze()
