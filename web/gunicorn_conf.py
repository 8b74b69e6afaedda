"""Gunicorn settings for the `web` process (each value can be overridden from the
environment), and its worker: gunicorn's gevent_pywsgi worker, changed where
profiles of single-reading POSTs showed time going to waste.

- Headers are parsed strictly, by gunicorn's C parser (gunicorn_h1c) where it is
  installed (requirements-speedups.txt: it is published as source only, and
  needs a compiler), else by parse_headers below; never by the email package.
- A response goes out in one send, not two (headers, then body).
- No socket timeout per read, whose timer gevent arms at every wait; a sweeper
  closes idle connections instead, and closes them all at once on shutdown.
- No access-log record is built when there is no access log.

The worker lives here, not in the web package: gunicorn loads it in the master,
which must not import the app before a worker has monkey-patched.
"""

import gc
import multiprocessing
import os
import re
import socket
import time

import gevent
from gevent.pywsgi import OldMessage
from gunicorn.glogging import Logger
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

from inmemory import IN_MEMORY, metrics_dir
from logconfig import formatter

# Files that each worker process writes all the time go in memory (/dev/shm)
# where there is one: on a disk-backed file system, a write can wait for its
# journal, seconds while PostgreSQL writes heavily, and the whole process with
# it. gunicorn's heartbeat file (worker_tmp_dir) is one; the metrics, which
# each process writes through mmap and /metrics sums, are the other
# (on_starting, below).
worker_tmp_dir = IN_MEMORY

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


MAX_HEADER_LINE, MAX_HEADERS = 65_536, 100

# RFC 9110: a field name is a token; a value is visible characters, spaces and
# tabs (and obs-text), with no CR, LF or other control character.
FIELD_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")


def parse_headers(block: bytes) -> list[tuple[bytes, bytes]]:
    """The (name, value) pairs of a header block that ends with its empty line,
    as gunicorn_h1c parses them: ValueError for obsolete line folding, space
    before a colon, bare LF line ends, a missing colon, or control characters."""
    if not block.endswith(b"\r\n"):
        raise ValueError("incomplete or not CRLF-terminated headers")
    lines = block[:-2].split(b"\r\n")
    if lines[-1] != b"":
        raise ValueError("headers not ended by an empty line")
    fields = []
    for line in lines[:-1]:
        name, colon, value = line.partition(b":")
        value = value.strip(b" \t")
        if not colon or not FIELD_NAME.fullmatch(name) or not FIELD_VALUE.fullmatch(value):
            raise ValueError("invalid header line")
        fields.append((name, value))
    return fields


try:  # the C parser, where it could be built
    from gunicorn_h1c import IncompleteError
    from gunicorn_h1c import parse_headers as parse_headers_fast
except ImportError:
    parse_headers_fast, IncompleteError = parse_headers, ValueError

# Connections waiting for their next request line, and since when (monotonic s).
_idle: dict = {}


class Handler(PyWSGIHandler):
    """gevent's handler with the changes listed above."""

    _held = None  # while the headers are written: what to send with them

    def read_requestline(self):
        # Not a socket timeout: gevent arms a timer for each wait on a socket
        # with one, about a tenth of a request's CPU. close_idle_connections
        # sweeps these instead.
        _idle[self] = time.monotonic()
        try:
            return super().read_requestline()
        finally:
            _idle.pop(self, None)

    def MessageClass(self, fp, *args):
        """The request's headers, as gevent's message object, parsed by
        parse_headers_fast rather than the email package (which took an eighth
        of a single-reading request's CPU). Stricter too: obsolete line folding,
        space before a colon, or bare LF line ends get a 400."""
        message = OldMessage()
        try:
            for name, value in parse_headers_fast(read_header_block(fp)):
                message.set_raw(name.decode("latin-1"), value.decode("latin-1"))
        except (ValueError, IncompleteError):  # h1c's ParseError is a ValueError
            message.status = "Invalid headers"
        return message

    def log_request(self):
        # gunicorn builds the access-log record before it checks that there is a log.
        if self.server.log.access_log_enabled:
            super().log_request()

    # gevent sends the headers, then the body: two sends and two segments for
    # the client to read, for responses of a few hundred bytes. These two
    # methods make it one: while the headers are written, sends are collected.
    def _write_with_headers(self, data):
        self._held = []
        try:
            super()._write_with_headers(data)  # the headers, then the first body chunk
        finally:
            held, self._held = self._held, None
        super()._sendall(b"".join(held))

    def _sendall(self, data):
        if self._held is None:
            super()._sendall(data)
        else:
            self._held.append(data)


def read_header_block(fp) -> bytes:
    """The header lines up to the empty one, within http.client's limits
    (65,536 bytes a line, 100 lines); ValueError beyond them."""
    lines = []
    while True:
        line = fp.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE or len(lines) > MAX_HEADERS:
            raise ValueError("header line too long, or too many header lines")
        lines.append(line)
        if line in (b"\r\n", b"\n", b""):
            return b"".join(lines)


def close_idle_connections(worker):
    """Close connections idle for `keepalive` seconds, and all idle ones once the
    worker is shutting down: gevent's server would wait for a next request
    forever, and a worker shutting down waits for every connection, so one idle
    client held each restart for the whole graceful_timeout (30 s)."""
    while True:
        gevent.sleep(1)
        cutoff = time.monotonic() - (worker.cfg.keepalive if worker.alive else 0)
        for handler, since in list(_idle.items()):
            if since <= cutoff:
                try:  # its read returns end-of-file, and gevent closes the connection
                    handler.socket.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed


class GeventWorker(GeventPyWSGIWorker):
    wsgi_handler = Handler

    def run(self):
        gevent.spawn(close_idle_connections, self)
        super().run()


worker_class = GeventWorker


class JsonLogger(Logger):
    """gunicorn's own lines (start, workers, signals) in the format of every other process."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter())


logger_class = JsonLogger


def on_starting(server):
    """Where each worker process keeps its metrics files, for /metrics to sum: set
    in the master, before any worker forks and imports prometheus_client."""
    metrics_dir("energy-web-metrics-")  # removed when the master exits


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
