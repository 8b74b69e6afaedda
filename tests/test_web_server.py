"""The web process's HTTP server (gunicorn with the worker in web/server/gunicorn_conf.py)."""

from __future__ import annotations

import http.client
import socket
import time

import pytest

from tests.conftest import closed_by_server
from web.server import gunicorn_conf


def test_gunicorn_closes_a_connection_left_idle_for_keepalive(gunicorn):
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn.port, timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().read()
    assert not closed_by_server(conn, gunicorn_conf.keepalive - 2)  # still open: may be reused
    conn.request("HEAD", "/healthz")  # a response without a body still ends its headers
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b""
    started = time.monotonic()
    assert closed_by_server(conn, gunicorn_conf.keepalive + 5)
    assert time.monotonic() - started >= gunicorn_conf.keepalive - 1


def raw_request(port: int, request: bytes) -> bytes:
    """The status line the server answers a request sent byte for byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        return conn.recv(4096).split(b"\r\n", 1)[0]


@pytest.mark.parametrize("headers, status", [
    (b"Host: a\r\nX-Request-ID: r1\r\n", b"HTTP/1.1 200 OK"),
    (b"", b"HTTP/1.1 200 OK"),  # no header at all
    (b"Host: a\r\n folded: line\r\n", b"HTTP/1.1 400 Bad Request"),  # obsolete line folding
    (b"Content-Length : 0\r\n", b"HTTP/1.1 400 Bad Request"),  # space before the colon
    (b"No colon here\r\n", b"HTTP/1.1 400 Bad Request"),
    (b"X: " + b"a" * 70_000 + b"\r\n", b"HTTP/1.1 400 Bad Request"),  # a line over 65,536 bytes
    (b"".join(b"X-%d: 1\r\n" % i for i in range(120)), b"HTTP/1.1 400 Bad Request"),  # > 100 lines
])
def test_request_headers_are_parsed_strictly(gunicorn, headers, status):
    assert raw_request(gunicorn.port, b"GET /healthz HTTP/1.1\r\n" + headers + b"\r\n") == status


def test_headers_reach_the_app_and_one_connection_serves_many_requests(gunicorn):
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn.port, timeout=10)
    for n in range(3):
        conn.request("GET", "/healthz", headers={"X-Request-ID": f"probe-{n}"})
        response = conn.getresponse()
        assert response.status == 200 and response.read()
        assert response.getheader("X-Request-ID") == f"probe-{n}"


HEADER_BLOCKS = [  # (block, parsed fields or None for a refusal)
    (b"Host: a\r\nX-Request-ID: r1\r\n\r\n", [(b"Host", b"a"), (b"X-Request-ID", b"r1")]),
    (b"\r\n", []),
    (b"A:  b c  \r\n\r\n", [(b"A", b"b c")]),
    (b"A:b\r\n\r\n", [(b"A", b"b")]),
    (b"A: b\tc\r\n\r\n", [(b"A", b"b\tc")]),
    (b"A: \xff\r\n\r\n", [(b"A", b"\xff")]),
    (b"A: \r\n\r\n", [(b"A", b"")]),
    (b"Host: a\r\n folded: line\r\n\r\n", None),
    (b"A : b\r\n\r\n", None),
    (b"A: b\n\n", None),
    (b"No colon here\r\n\r\n", None),
    (b":b\r\n\r\n", None),
    (b"A: b\x00c\r\n\r\n", None),
    (b"A: b\rc\r\n\r\n", None),
    (b"A: b\x7f\r\n\r\n", None),
    (b"A\x01: b\r\n\r\n", None),
    (b"A: b\r\n", None),  # no empty line
]


def _parsed(parse, block: bytes):
    try:
        return parse(block)
    except Exception:  # h1c's IncompleteError is not a ValueError
        return None


# The server uses gunicorn_h1c where it could be built, else the Python parser:
# both must answer the same, so the tests above hold with either.
@pytest.mark.parametrize("block, expected", HEADER_BLOCKS)
def test_the_python_header_parser_is_strict(block, expected):
    assert _parsed(gunicorn_conf.parse_headers, block) == expected


@pytest.mark.parametrize("block, expected", HEADER_BLOCKS)
def test_the_optional_c_header_parser_answers_the_same(block, expected):
    h1c = pytest.importorskip("gunicorn_h1c", reason="the optional C parser is not installed")
    assert _parsed(h1c.parse_headers, block) == expected
