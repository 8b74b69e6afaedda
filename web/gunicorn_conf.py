"""Gunicorn settings for the `web` process; each value can be overridden from the environment."""

import gc
import multiprocessing
import os
import socket
import tempfile
import time

import gevent
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

# Each worker process keeps its metrics in files here; /metrics sums them.
# Set before any worker imports prometheus_client.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="energy-web-metrics-"))

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# gevent: each process serves thousands of connections, kept alive between
# requests, and lets web/group_commit.py gather the readings of many requests
# into one Redis call. gevent's own HTTP server (gevent_pywsgi) parses requests
# in less CPU than gunicorn's: on 2 cores, /healthz went from 2,600 req/s
# (gthread, 3 processes x 4 threads) to 4,400. PostgreSQL (psycopg 3.1.14 and
# later) and Redis calls yield to other requests while they wait. One process
# more than cores keeps the cores busy while a process waits: single-reading
# POSTs on 2 cores went from 3,760 req/s (2 processes) to 4,030 (3); 4 gave 3,370.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() + 1))
worker_connections = int(os.environ.get("WEB_CONNECTIONS", 1000))
# On SIGTERM, requests in flight get this long to finish before workers exit.
graceful_timeout = 30
timeout = 60
# Seconds a connection may wait for its next request line.
keepalive = 5
accesslog = None


# Connections waiting for their next request line, and since when (monotonic s).
_idle: dict = {}


class Handler(PyWSGIHandler):
    """gevent's handler, with idle connections closed and one send per response."""

    _held = None  # the status line and headers, waiting to go out with the body

    def read_requestline(self):
        # Not a socket timeout: gevent arms a timer for each wait on a socket
        # with one, about a tenth of a request's CPU. close_idle_connections
        # sweeps these instead.
        _idle[self] = time.monotonic()
        try:
            return super().read_requestline()
        finally:
            _idle.pop(self, None)

    def log_request(self):
        # gunicorn builds the access-log record before it checks that there is a log.
        if self.server.log.access_log_enabled:
            super().log_request()

    # gevent sends the headers, then the body: two sends and two segments for
    # the client to read, for responses of a few hundred bytes. These two
    # methods make it one: the headers wait for the body's first write.
    def _write_with_headers(self, data):
        self._held = b""  # the next send is the headers: hold it
        try:
            super()._write_with_headers(data)
        finally:
            held, self._held = self._held, None
        if held:  # an empty body: nothing took the headers along
            super()._sendall(held)

    def _sendall(self, data):
        if self._held == b"":
            self._held = bytes(data)
        elif self._held:
            data, self._held = self._held + data, None
            super()._sendall(data)
        else:
            super()._sendall(data)


def close_idle_connections(worker):
    """Close connections idle for `keepalive` seconds, and all idle ones once the
    worker is shutting down: gevent's server would wait for a next request
    forever, and a worker shutting down waits for every connection, so one idle
    client held each restart for the whole graceful_timeout (30 s)."""
    while True:
        gevent.sleep(1)
        cutoff = time.monotonic() - (keepalive if worker.alive else 0)
        for handler, since in list(_idle.items()):
            if since <= cutoff:
                try:  # its read returns end-of-file, and gevent closes the connection
                    handler.socket.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed


class GeventWorker(GeventPyWSGIWorker):
    wsgi_handler = Handler


worker_class = GeventWorker


def child_exit(server, worker):
    """Stop counting a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)

# Gunicorn 27's control socket lives at one path per user: several web
# processes on one host would replace each other's. Nothing here uses it.
control_socket_disable = True


def post_worker_init(worker):
    # Exempt everything loaded so far from the garbage collector's full passes.
    gc.freeze()
    gevent.spawn(close_idle_connections, worker)
