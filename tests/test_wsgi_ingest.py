"""WsgiIngest (POST /v1/ingest in front of Flask) and the group commit behind it."""

from __future__ import annotations

import dataclasses
import io
import json
import threading

import pytest
import redis

from tests.conftest import INGEST, OPERATOR, wait_for
from tests.readings import meter, vehicle
from web.server.group_commit import GroupCommit
from web.server.wsgi_ingest import WsgiIngest
from workers.queue import ReadingQueue


def flask_must_not_answer(environ, start_response):
    raise AssertionError("the request reached Flask")


def wsgi_call(wsgi, body: bytes, headers: dict[str, str], content_type="application/json"):
    """Call WsgiIngest directly; returns (status line, headers, body, environ)."""
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/v1/ingest", "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
        **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()},
    }
    answer = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(response_headers)

    payload = b"".join(wsgi(environ, start_response))
    return answer["status"], answer["headers"], payload, environ


def test_the_common_case_never_reaches_flask(app, queue):
    wsgi = WsgiIngest(app, flask_must_not_answer)
    status, headers, payload, _ = wsgi_call(wsgi, json.dumps([meter(), vehicle()]).encode(), INGEST)
    assert status == "202 ACCEPTED"
    assert json.loads(payload) == {"accepted": 2}
    assert headers["Content-Type"] == "application/json" and headers["X-Request-ID"]
    assert queue.backlog() == 2


@pytest.mark.parametrize("body, headers, content_type", [
    (json.dumps(meter()).encode(), {}, "application/json"),                     # no token
    (json.dumps(meter()).encode(), OPERATOR, "application/json"),               # wrong kind of token
    (json.dumps(meter()).encode(), INGEST, "text/plain"),                       # 415
    (b'{"meterId": ', INGEST, "application/json"),                               # 400
    (b"[]", INGEST, "application/json"),                                        # 422, empty
    (json.dumps({**meter(), "voltage": -1}).encode(), INGEST, "application/json"),  # 422
    (b"[" * 65 + b"]" * 65, INGEST, "application/json"),                        # 400, too deep
    (json.dumps([{**meter(), "voltage": [[[1.0]]]}]).encode(), INGEST, "application/json"),  # 422
])
def test_anything_else_goes_to_flask_with_its_body(app, queue, body, headers, content_type):
    seen = {}

    def flask(environ, start_response):
        seen["body"] = environ["wsgi.input"].read()
        start_response("418 Flask", [])
        return [b""]

    status, *_ = wsgi_call(WsgiIngest(app, flask), body, headers, content_type)
    assert status == "418 Flask"
    assert seen["body"] == body
    assert queue.backlog() == 0


def test_a_full_queue_is_answered_by_wsgi_ingest_with_retry_after(app, queue, settings):
    wsgi = WsgiIngest(app, flask_must_not_answer)
    wsgi.settings = dataclasses.replace(settings, max_backlog=0)
    status, headers, payload, _ = wsgi_call(wsgi, json.dumps(meter()).encode(), INGEST)
    assert status.startswith("503")
    assert int(headers["Retry-After"]) > 0
    assert "error" in json.loads(payload)
    assert queue.backlog() == 0


def run_as_one_wave(group: GroupCommit, threads: list[threading.Thread]) -> None:
    """Start the threads while a call is in flight, so that all of them wait for the next one."""
    with group._call_lock:
        for thread in threads:
            thread.start()
        wait_for(lambda: len(group._pending) == len(threads), 10, "all requests to wait")
    for thread in threads:
        thread.join(10)


def test_requests_waiting_on_a_call_are_queued_together_in_one(settings, queue):
    group = GroupCommit(lambda: ReadingQueue.from_url(settings.redis_url, settings.redis_prefix), 10_000)
    results: list[int] = []
    threads = [threading.Thread(target=lambda i=i: results.append(group.put([["m", f"M-{i}"]], 10**6)))
               for i in range(20)]
    run_as_one_wave(group, threads)
    group.close()
    assert results == [20] * 20  # one call: every request saw the backlog after all 20
    assert queue.redis.xlen(queue.stream) == 1  # 20 readings fit one entry
    assert queue.backlog() == 20


def test_a_group_never_exceeds_its_reading_cap(settings, queue):
    group = GroupCommit(lambda: ReadingQueue.from_url(settings.redis_url, settings.redis_prefix), 3)
    threads = [threading.Thread(target=group.put, args=([["m", f"M-{i}"]] * 2, 10**6)) for i in range(4)]
    run_as_one_wave(group, threads)
    group.close()
    assert queue.backlog() == 8
    assert queue.redis.xlen(queue.stream) == 4  # 2 + 2 > 3: each request went alone


def test_a_redis_error_fails_every_request_of_the_group(settings, unused_tcp_port):
    group = GroupCommit(
        lambda: ReadingQueue.from_url(f"redis://127.0.0.1:{unused_tcp_port}/0", "nowhere"), 10_000)
    errors: list[BaseException] = []

    def put() -> None:
        try:
            group.put([["m", "M-1"]], 10**6)
        except redis.RedisError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(5)]
    run_as_one_wave(group, threads)
    assert len(errors) == 5
