"""Slow and hostile clients against the web process (real gunicorn processes):
deadlines for headers and bodies, framing, and a fair share of connections."""

from __future__ import annotations

import json
import resource
import socket
import time

import pytest

from tests.conftest import wait_for
from tests.readings import vehicle

TOKEN = "test-ingest"
FLOOD_CONNECTIONS = 4_000


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    conn = socket.socket()
    conn.settimeout(15)
    conn.bind((source, 0))
    conn.connect(("127.0.0.1", port))
    return conn


def read_response(conn: socket.socket, close_within_s: float = 1) -> tuple[int, dict, dict, bool]:
    """(status, headers, JSON body, whether the server then closed the connection
    within `close_within_s`: a close follows the response at once, while
    keep-alive lasts 5 s)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"closed without a response, after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        body += conn.recv(65536)
    if not close_within_s:
        return int(lines[0].split()[1]), headers, json.loads(body), False
    conn.settimeout(close_within_s)
    try:
        closed = conn.recv(1) == b""
    except TimeoutError:
        closed = False
    except ConnectionResetError:
        closed = True
    conn.settimeout(15)
    return int(lines[0].split()[1]), headers, json.loads(body), closed


def post_head(length: int | None = None, token: str = TOKEN, extra: str = "") -> bytes:
    framing = f"Content-Length: {length}\r\n" if length is not None else ""
    return (f"POST /v1/ingest HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\n{framing}{extra}\r\n").encode()


@pytest.fixture
def edge(gunicorn_factory):
    """The web process with deadlines short enough to test."""
    return gunicorn_factory(HEADER_TIMEOUT_S="2", BODY_TIMEOUT_S="2", MAX_BODY_BYTES="1000",
                            MAX_CONNECTIONS_PER_CLIENT="3", TRUSTED_PROXIES="127.0.0.3")


def test_headers_that_stall_get_408_and_a_close_within_the_header_timeout(edge):
    conn = connect(edge.port)
    conn.sendall(b"POST /v1/ingest HTTP/1.1\r\nHost: a\r\n")
    started = time.monotonic()
    status, headers, body, closed = read_response(conn)
    elapsed = time.monotonic() - started
    assert status == 408 and "error" in body and closed
    assert headers["connection"] == "close"
    assert 1.5 <= elapsed <= 2 + 2


def test_a_body_that_stalls_gets_408_and_a_close_within_the_body_timeout(edge):
    conn = connect(edge.port)
    conn.sendall(post_head(length=1000) + b'{"vehicleI')
    started = time.monotonic()
    status, headers, body, closed = read_response(conn)
    elapsed = time.monotonic() - started
    assert status == 408 and "progress" in body["error"] and closed
    assert 1.5 <= elapsed <= 2 + 2


def test_a_body_that_keeps_coming_is_not_cut_off(edge):
    payload = json.dumps(vehicle("V-slow")).encode()
    conn = connect(edge.port)
    conn.sendall(post_head(length=len(payload)))
    for start in range(0, len(payload), len(payload) // 4 + 1):  # over 3 s: more than the timeout
        time.sleep(0.75)
        conn.sendall(payload[start:start + len(payload) // 4 + 1])
    status, _, body, closed = read_response(conn)
    assert (status, body, closed) == (202, {"accepted": 1}, False)


def test_a_refusal_before_the_body_is_read_closes_the_connection_at_once(edge):
    conn = connect(edge.port)
    conn.sendall(post_head(length=1000, token="wrong"))  # no body follows
    started = time.monotonic()
    status, headers, _, closed = read_response(conn)
    assert status == 401 and headers["connection"] == "close" and closed
    assert time.monotonic() - started < 1.5  # not waiting for the announced body


def test_a_chunked_body_over_the_limit_gets_413_without_being_read_further(edge):
    conn = connect(edge.port)
    # A chunk of a mebibyte announced, 2,000 bytes sent: the answer must not
    # wait for the rest (it would be a 408 after the body timeout).
    conn.sendall(post_head(extra="Transfer-Encoding: chunked\r\n") + b"100000\r\n[" + b" " * 2000)
    started = time.monotonic()
    status, headers, body, closed = read_response(conn)
    assert status == 413 and "1000" in body["error"] and closed
    assert time.monotonic() - started < 1.5


def test_a_chunked_body_under_the_limit_is_accepted(edge):
    payload = json.dumps(vehicle("V-chunked")).encode()
    conn = connect(edge.port)
    conn.sendall(post_head(extra="Transfer-Encoding: chunked\r\n")
                 + b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n")
    status, _, body, closed = read_response(conn)
    assert (status, body, closed) == (202, {"accepted": 1}, False)


@pytest.mark.parametrize("framing", [
    "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
    "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n",
    "Transfer-Encoding: gzip\r\n",
    "Transfer-Encoding: gzip, chunked\r\n",
])
def test_ambiguous_framing_gets_400_and_a_close(edge, framing):
    conn = connect(edge.port)
    conn.sendall(post_head(extra=framing) + b"0\r\n\r\n")
    status, headers, body, closed = read_response(conn)
    assert status == 400 and "error" in body and closed


def test_a_request_line_over_8192_bytes_gets_414_as_json(edge):
    conn = connect(edge.port)
    conn.sendall(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
    status, _, body, closed = read_response(conn)
    assert status == 414 and "error" in body and closed


def open_connections(port: int, source: str, count: int, request: bytes = b"GET /healthz HTTP/1.1\r\n"
                     ) -> list[socket.socket]:
    conns = []
    for _ in range(count):
        conn = connect(port, source)
        conn.sendall(request)  # and stall, in the middle of the headers
        conns.append(conn)
    return conns


def refused(conn: socket.socket) -> bool:
    conn.settimeout(5)
    data = conn.recv(4096)
    return data.startswith(b"HTTP/1.1 429 ")


def test_a_client_over_its_share_of_connections_is_refused_at_once(edge):
    held = open_connections(edge.port, "127.0.0.2", 3)
    extra = connect(edge.port, "127.0.0.2")
    assert refused(extra)
    other = open_connections(edge.port, "127.0.0.4", 1)[0]  # another address still gets in
    other.sendall(b"\r\n")
    assert read_response(other)[0] == 200
    held[0].close()
    wait_for(lambda: not refused_now(edge.port, "127.0.0.2"), 10, "a freed connection to be counted")


def refused_now(port: int, source: str) -> bool:
    conn = connect(port, source)
    conn.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
    return refused(conn)


def test_a_trusted_proxy_is_not_capped_and_names_the_client(edge):
    # Four connections from the proxy, three requests for 10.1.1.1 holding one each
    # (a stalled body): the fourth request for 10.1.1.1 is over its share.
    stalled = post_head(length=100, extra="X-Forwarded-For: 203.0.113.9, 10.1.1.1\r\n")
    held = [connect(edge.port, "127.0.0.3") for _ in range(4)]
    for conn in held[:3]:
        conn.sendall(stalled)

    def client_at_its_share() -> bool:
        # The three are counted once their headers are read: a probe from the proxy
        # for the same client is refused from then on (and counts only while open).
        probe = connect(edge.port, "127.0.0.3")
        probe.sendall(b"GET /healthz HTTP/1.1\r\nX-Forwarded-For: 10.1.1.1\r\n\r\n")
        status, _, _, _ = read_response(probe)
        probe.close()
        return status == 429

    wait_for(client_at_its_share, 10, "the three stalled requests for 10.1.1.1 to be counted")
    held[3].sendall(stalled)
    status, _, body, closed = read_response(held[3])
    assert status == 429 and closed
    # X-Forwarded-For from a peer that is not trusted names nobody: that peer is counted.
    spoofed = [connect(edge.port, "127.0.0.5") for _ in range(4)]
    for n, conn in enumerate(spoofed):
        conn.sendall(f"GET /healthz HTTP/1.1\r\nX-Forwarded-For: 10.9.9.{n}\r\n".encode())
    assert refused(spoofed[3])


def raise_open_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def timed(call) -> tuple[float, object]:
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


def test_a_flood_of_stalled_connections_from_one_address_leaves_others_served(gunicorn_factory):
    # The test holds 4,000 sockets and the web processes one each of those they
    # keep: raise the open-file limit (inherited by gunicorn) above both.
    raise_open_file_limit(FLOOD_CONNECTIONS + 2_000)
    web = gunicorn_factory(WEB_CONCURRENCY="2", WEB_CONNECTIONS="1000")
    flood = open_connections(web.port, "127.0.0.2", FLOOD_CONNECTIONS)
    try:
        payload = json.dumps(vehicle("V-flood")).encode()
        conn = connect(web.port)

        def ask(request: bytes) -> tuple[int, dict]:
            conn.sendall(request)
            status, _, body, _ = read_response(conn, close_within_s=0)
            return status, body

        for request, want in [
            (b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", 200),
            (post_head(length=len(payload)) + payload, 202),
            (b"GET /v1/analytics/performance/V-none HTTP/1.1\r\nHost: a\r\n"
             b"Authorization: Bearer test-operator\r\n\r\n", 404),
        ]:
            elapsed, (status, body) = timed(lambda r=request: ask(r))
            assert status == want, body
            assert elapsed < 1.0, f"{request[:30]!r} took {elapsed:.2f} s"
        # Most of the flood was refused at once; at most its share is held.
        still_open = sum(1 for c in flood if not refused_or_closed(c))
        assert still_open <= 256 + 2
    finally:
        for c in flood:
            c.close()


def refused_or_closed(conn: socket.socket) -> bool:
    conn.settimeout(0)
    try:
        data = conn.recv(4096)
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    return data == b"" or data.startswith(b"HTTP/1.1 429 ")
