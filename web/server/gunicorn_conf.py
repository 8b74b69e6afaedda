"""Gunicorn settings for the `web` process (read from settings.py, which checks
them), and its worker: gunicorn's gevent_pywsgi worker, changed where profiles
of single-reading POSTs showed time going to waste, and where one hostile
client could hold the service.

- Headers are parsed strictly, by gunicorn's C parser (gunicorn_h1c) where it is
  installed (requirements-speedups.txt: it is published as source only, and
  needs a compiler), else by parse_headers below; never by the email package.
- A response goes out in one send, not two (headers, then body).
- No socket timeout per read, whose timer gevent arms at every wait; a sweeper
  enforces every deadline instead: the wait for a request line (keepalive),
  for the rest of the headers (HEADER_TIMEOUT_S) and for body progress
  (BODY_TIMEOUT_S), and closes idle connections at once on shutdown.
- Connections per client address are capped (MAX_CONNECTIONS_PER_CLIENT,
  web/server/client_limits.py); over the cap a connection gets 429 and is closed.
- Content-Length with Transfer-Encoding, or a Transfer-Encoding other than
  chunked, gets 400 and a close (RFC 9112 6.3: a request smuggling vector).
- A body the app did not read is not drained: the connection is closed
  (web/server/body_input.py, which also bounds chunked bodies at MAX_BODY_BYTES).
- No access-log record is built when there is no access log.

The worker lives here, not in the web package: gunicorn loads it in the master,
which must not import the app before a worker has monkey-patched. The web
modules it uses are imported in the worker, once it has.
"""

import gc
import json
import mmap
import re
import socket
import time

import gevent
from gevent.pywsgi import OldMessage
from gunicorn.glogging import Logger
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

import settings as settings_module
from inmemory import IN_MEMORY, metrics_dir
from logconfig import formatter

# A bad setting stops the master here: one line naming it, status 2.
_settings = settings_module.load_or_exit()

# The heartbeat file each worker process writes all the time: in memory (see
# inmemory.py), like the metrics (on_starting, below).
worker_tmp_dir = IN_MEMORY

bind = f"0.0.0.0:{_settings.port}"
# gevent: each process serves thousands of connections, kept alive between
# requests, and lets web/server/group_commit.py gather the readings of many requests
# into one Redis call. gevent's own HTTP server (gevent_pywsgi) parses requests
# in less CPU than gunicorn's: on 2 cores, /healthz went from 2,600 req/s
# (gthread, 3 processes x 4 threads) to 4,400. PostgreSQL (psycopg 3.1.14 and
# later) and Redis calls yield to other requests while they wait. One process
# more than cores keeps the cores busy while a process waits: single-reading
# POSTs on 2 cores went from 3,760 req/s (2 processes) to 4,030 (3); 4 gave 3,370.
workers = _settings.web_concurrency
worker_connections = _settings.web_connections
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
SWEEP_INTERVAL_S = 0.5

# Connections waiting on their client: handler -> (deadline in monotonic s, phase).
_waiting: dict = {}
IDLE, HEADERS = "idle", "headers"  # and web/server/body_input.py's BODY

# Connection counts per client, shared by the worker processes: one row per
# process (web/server/client_limits.py), twice as many rows as processes, for a reload
# that starts new workers before the old ones leave.
COUNT_ROWS = 2 * workers + 2
_count_memory = mmap.mmap(-1, COUNT_ROWS * 65_536 * 2)  # client_limits.ROW_BYTES a row
_counts = None  # this worker's ConnectionCounts, once it runs


def refusal(status: str, message: str, *headers: str) -> bytes:
    """A whole response with a JSON error that ends the connection."""
    body = json.dumps({"error": message}).encode()
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


BAD_REQUEST = refusal("400 Bad Request", "The request is malformed.")
SMUGGLING = refusal("400 Bad Request", "Send Content-Length or Transfer-Encoding: chunked, not both.")
HEADERS_TIMED_OUT = refusal("408 Request Timeout",
                            f"The request headers were not complete within {_settings.header_timeout_s:g} s.")
URI_TOO_LONG = refusal("414 URI Too Long", "The request line is over 8,192 bytes.")
TOO_MANY_CONNECTIONS = refusal("429 Too Many Requests",
                               "Too many connections from this address.", "Retry-After: 1")


class Refusal(ValueError):
    """A request answered with `response` (from `refusal`) and a close."""

    def __init__(self, code: str, response: bytes) -> None:
        super().__init__(code)
        self.code, self.response = code, response


class Handler(PyWSGIHandler):
    """gevent's handler with the changes listed above."""

    _held = None  # while the headers are written: what to send with them
    timed_out = None  # the phase the sweeper cut off
    proxy = False  # whether the peer is a trusted proxy
    proxied_client = None  # then: the client of the request in hand, counted

    def handle(self):
        """Serve the connection, unless its address has its share already."""
        peer = self.client_address[0] if isinstance(self.client_address, tuple) else ""
        if _settings.trusted_proxies and client_limits.is_trusted(peer, _settings.trusted_proxies):
            self.proxy = True  # its clients are counted per request (read_request)
            return super().handle()
        if not _counts.enter(peer):
            try:
                self.socket.send(TOO_MANY_CONNECTIONS)  # into an empty send buffer: no wait
            except OSError:
                pass
            self.rfile.close()
            self.socket.close()
            return None
        try:
            return super().handle()
        finally:
            _counts.leave(peer)

    def read_requestline(self):
        # Not a socket timeout: gevent arms a timer for each wait on a socket
        # with one, about a tenth of a request's CPU. The sweeper
        # (close_overdue_connections) enforces deadlines instead.
        _waiting[self] = (time.monotonic() + keepalive, IDLE)
        try:
            return super().read_requestline()
        finally:
            _waiting.pop(self, None)

    def read_request(self, raw_requestline):
        _waiting[self] = (time.monotonic() + _settings.header_timeout_s, HEADERS)
        try:
            super().read_request(raw_requestline)
        finally:
            _waiting.pop(self, None)
        if self.timed_out:
            raise Refusal("408", HEADERS_TIMED_OUT)
        if self.proxy:
            self.count_proxied_client()
        return True

    def count_proxied_client(self):
        """Count the connection, for this request, against the client its proxy names."""
        client = client_limits.client_of(self.client_address[0], self.headers.get("X-Forwarded-For", ""),
                                         _settings.trusted_proxies)
        if not _counts.enter(client):
            raise Refusal("429", TOO_MANY_CONNECTIONS)
        self.proxied_client = client

    def handle_one_request(self):
        try:
            result = super().handle_one_request()
            if type(result) is tuple and result[0] == "414":  # gevent's has no JSON body
                return "414", URI_TOO_LONG
            return result
        finally:
            if self.proxied_client is not None:
                _counts.leave(self.proxied_client)
                self.proxied_client = None

    def _handle_client_error(self, ex):
        if isinstance(ex, Refusal):
            return ex.code, ex.response
        if self.timed_out == HEADERS:
            return "408", HEADERS_TIMED_OUT
        super()._handle_client_error(ex)  # logs it
        return "400", BAD_REQUEST

    def get_environ(self):
        env = super().get_environ()
        body = self.wsgi_input
        if env["wsgi.input"] is body and (body.content_length or body.chunked_input):  # a body to read
            self.wsgi_input = env["wsgi.input"] = body_input.BodyInput(
                self, self.wsgi_input, _waiting, _settings.body_timeout_s, _settings.max_body_bytes)
        if self.proxied_client is not None:
            env["REMOTE_ADDR"] = self.proxied_client
        return env

    def start_response(self, status, headers, exc_info=None):
        # A response before the body was read ends the connection: draining a
        # body only to throw it away is what a slow client would like.
        if not self.close_connection and not getattr(self.wsgi_input, "finished", True):
            headers = [*headers, ("Connection", "close")]
        return super().start_response(status, headers, exc_info)

    def cut_off(self, phase):
        """Called by the sweeper: end the wait of `phase`. A cut wait for the
        next request ends the connection; a cut request gets its 408 first."""
        _waiting.pop(self, None)
        self.timed_out = phase
        try:  # the blocked read returns end-of-file
            self.socket.shutdown(socket.SHUT_RDWR if phase == IDLE else socket.SHUT_RD)
        except OSError:
            pass  # already closed

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
        if "Transfer-Encoding" in message:
            check_framing(message)
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


def check_framing(message) -> None:
    """Refuse what RFC 9112 section 6.3 calls a smuggling vector: Content-Length
    with Transfer-Encoding, or a Transfer-Encoding other than chunked (gevent
    would read such a body as none, and its bytes as the next request)."""
    if "Content-Length" in message:
        raise Refusal("400", SMUGGLING)
    if [coding.strip().lower() for coding in message.get_all("Transfer-Encoding")] != ["chunked"]:
        raise Refusal("400", BAD_REQUEST)


def close_overdue_connections(worker):
    """Cut off every wait on a client that has passed its deadline, and all
    waits for a next request once the worker is shutting down: gevent's server
    would wait for a next request forever, and a worker shutting down waits for
    every connection, so one idle client held each restart for the whole
    graceful_timeout (30 s)."""
    while True:
        gevent.sleep(SWEEP_INTERVAL_S)
        now = time.monotonic()
        for handler, (deadline, phase) in list(_waiting.items()):
            if deadline <= now or (phase == IDLE and not worker.alive):
                handler.cut_off(phase)


class GeventWorker(GeventPyWSGIWorker):
    wsgi_handler = Handler

    def run(self):
        global _counts, body_input, client_limits
        from web.server import body_input, client_limits  # now that this process has monkey-patched

        # Without a row of its own (more workers than rows, after TTIN), it counts alone.
        memory, row = ((_count_memory, self.count_row) if self.count_row is not None
                       else (mmap.mmap(-1, client_limits.ROW_BYTES), 0))
        _counts = client_limits.ConnectionCounts(memory, row, _settings.max_connections_per_client)
        gevent.spawn(close_overdue_connections, self)
        super().run()


body_input = client_limits = None  # imported in GeventWorker.run


def pre_fork(server, arbiter_worker):
    """Give the worker about to fork a row of the connection counts no live one uses."""
    free = set(range(COUNT_ROWS)) - {getattr(w, "count_row", None) for w in server.WORKERS.values()}
    arbiter_worker.count_row = min(free) if free else None


worker_class = GeventWorker


class JsonLogger(Logger):
    """gunicorn's own lines (start, workers, signals) in the format of every other process."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter(_settings.log_format))


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
