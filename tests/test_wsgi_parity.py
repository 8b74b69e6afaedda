"""WsgiIngest answers POST /v1/ingest exactly as Flask would without it.

WsgiIngest (web/server/wsgi_ingest.py) redoes, outside Flask, what Flask's
hooks do for ingest: the token check, the request id, the metrics. Each request
of a corpus (valid, invalid, every status) goes once through the app as
deployed and once through the bare Flask app behind it; status, body, headers
(the request id aside), the metrics counted and the readings queued must agree.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from werkzeug.test import Client

from tests.conftest import INGEST, OPERATOR
from tests.readings import NOW, iso, meter, vehicle
from web import create_app
from web.server.wsgi_ingest import WsgiIngest

JSON = "application/json"
SMALL = {"max_batch": 3, "max_body_bytes": 4096}


def body(value: object) -> bytes:
    return json.dumps(value).encode()


# (id, method, body, headers, content type, settings changed for the case)
CORPUS = [
    ("202 one meter", "POST", body(meter()), INGEST, JSON, {}),
    ("202 one vehicle", "POST", body(vehicle(type="vehicle")), INGEST, JSON, {}),
    ("202 array", "POST", body([meter("M-1"), vehicle("V-1"), meter("M-2")]), INGEST, JSON, {}),
    ("202 charset", "POST", body(meter()), INGEST, "application/json; charset=utf-8", {}),
    ("202 own request id", "POST", body(meter()), {**INGEST, "X-Request-ID": "req-42"}, JSON, {}),
    ("202 unsafe request id", "POST", body(meter()), {**INGEST, "X-Request-ID": "a b;c"}, JSON, {}),
    ("202 bearer in lower case", "POST", body(meter()),
     {"Authorization": INGEST["Authorization"].replace("Bearer", "bearer")}, JSON, {}),
    ("400 not json", "POST", b'{"meterId": ', INGEST, JSON, {}),
    ("400 not utf-8", "POST", b'{"meterId": "\xff"}', INGEST, JSON, {}),
    ("400 NaN", "POST", b'{"meterId": "M-1", "voltage": NaN}', INGEST, JSON, {}),
    ("400 too deep", "POST", b"[" * 65 + b"]" * 65, INGEST, JSON, {}),
    ("401 no token", "POST", body(meter()), {}, JSON, {}),
    ("401 unknown token", "POST", body(meter()), {"Authorization": "Bearer nobody"}, JSON, {}),
    ("401 basic", "POST", body(meter()), {"Authorization": "Basic dXNlcjpwdw=="}, JSON, {}),
    ("403 operator token", "POST", body(meter()), OPERATOR, JSON, {}),
    ("405 get", "GET", b"", INGEST, None, {}),
    ("413 body", "POST", body([meter()] * 60), INGEST, JSON, SMALL),
    ("413 readings", "POST", body([meter()] * 4), INGEST, JSON, SMALL),
    ("415 text", "POST", body(meter()), INGEST, "text/plain", {}),
    ("415 none", "POST", body(meter()), INGEST, None, {}),
    ("422 empty array", "POST", b"[]", INGEST, JSON, {}),
    ("422 scalar", "POST", b"7", INGEST, JSON, {}),
    ("422 bad reading", "POST", body({**meter(), "voltage": -1}), INGEST, JSON, {}),
    ("422 one bad of many", "POST", body([meter(), vehicle(soc=101)]), INGEST, JSON, {}),
    ("422 future", "POST", body(meter(timestamp=iso(NOW.replace(year=NOW.year + 1)))), INGEST, JSON, {}),
    ("422 unknown field", "POST", body(vehicle(colour="red")), INGEST, JSON, {}),
    ("503 queue full", "POST", body(meter()), INGEST, JSON, {"max_backlog": 0}),
    ("503 redis down", "POST", body(meter()), INGEST, JSON, {"redis_url": "unused port"}),
]


def counted() -> dict[tuple, float]:
    """Every count of the app's metrics (histograms by count: durations differ)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in REGISTRY.collect() if metric.name.startswith("energy_")
            for s in metric.samples if s.name.endswith(("_total", "_count"))}


@dataclasses.dataclass
class Answer:
    status: str
    body: bytes
    headers: list[tuple[str, str]]
    request_id: str
    counted: dict[tuple, float]
    queued: int


def answer(wsgi, app, method: str, data: bytes, headers: dict, content_type: str | None) -> Answer:
    queue = app.extensions["queue"]
    before_counts, before_queued = counted(), safe_backlog(queue)
    response = Client(wsgi).open("/v1/ingest", method=method, data=data, headers=headers,
                                 content_type=content_type)
    after = counted()
    delta = {key: value - before_counts.get(key, 0) for key, value in after.items()
             if value != before_counts.get(key, 0)}
    return Answer(
        status=response.status, body=response.get_data(),
        headers=sorted((k.lower(), v) for k, v in response.headers if k.lower() != "x-request-id"),
        request_id=response.headers.get("X-Request-ID", ""), counted=delta,
        queued=safe_backlog(queue) - before_queued)


def safe_backlog(queue) -> int:
    try:
        return queue.backlog()
    except Exception:  # the case with Redis down
        return 0


def same(with_it: Answer, without: Answer) -> None:
    for name in ("status", "body", "headers", "counted", "queued"):
        assert getattr(with_it, name) == getattr(without, name), name


@pytest.fixture
def make_app(settings, unused_tcp_port) -> Iterator:
    apps = []

    def make(**changes):
        if changes.get("redis_url") == "unused port":
            changes["redis_url"] = f"redis://127.0.0.1:{unused_tcp_port}/0"
        app = create_app({"TESTING": True, "SETTINGS": dataclasses.replace(settings, **changes)})
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["engine"].dispose()
        app.extensions["queue"].close()
        app.extensions["group_commit"].close()


@pytest.mark.parametrize("case", CORPUS, ids=[case[0] for case in CORPUS])
def test_wsgi_ingest_answers_as_flask_does(make_app, case):
    _, method, data, headers, content_type, changes = case
    app = make_app(**changes)
    deployed = app.wsgi_app
    assert isinstance(deployed, WsgiIngest)
    with_it = answer(deployed, app, method, data, headers, content_type)
    without = answer(deployed.flask_wsgi, app, method, data, headers, content_type)
    same(with_it, without)
    # The request id is the client's when it is safe to log, else a fresh one each time.
    sent = headers.get("X-Request-ID")
    if sent == "req-42":
        assert with_it.request_id == without.request_id == sent
    else:
        assert with_it.request_id and without.request_id and with_it.request_id != without.request_id
    # And the corpus is what it says: the status of its name, counted.
    status = case[0][:3]
    assert with_it.status.startswith(status)
    assert with_it.counted[("energy_http_requests_total", (
        ("endpoint", "/v1/ingest" if method == "POST" else "unmatched"),
        ("method", method), ("status", status)))] == 1


def test_an_unexpected_error_is_answered_alike(make_app, monkeypatch):
    app = make_app()

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.extensions["group_commit"], "put", broken)
    deployed = app.wsgi_app
    with_it = answer(deployed, app, "POST", body(meter()), INGEST, JSON)
    without = answer(deployed.flask_wsgi, app, "POST", body(meter()), INGEST, JSON)
    assert with_it.status == "500 INTERNAL SERVER ERROR"
    same(with_it, without)


def hooks(app) -> dict[str, list[str]]:
    """The request hooks Flask runs for POST /v1/ingest, by name."""
    found = {}
    for kind in ("url_value_preprocessors", "before_request_funcs", "after_request_funcs",
                 "teardown_request_funcs"):
        registry = getattr(app, kind)
        found[kind] = [f.__qualname__ for key in (None, "ingest") for f in registry.get(key, [])]
    return found


def test_wsgi_ingest_knows_every_request_hook_of_the_app(app):
    # WsgiIngest does what these hooks do, by hand: the token check of require(),
    # the request id and metrics of observability. A hook added later would be
    # skipped for most ingest traffic: make WsgiIngest do the same (or decline
    # the requests it concerns), then add it here.
    assert hooks(app) == {
        "url_value_preprocessors": [],
        "before_request_funcs": ["init_observability.<locals>.start_request", "require.<locals>.check"],
        "after_request_funcs": ["init_observability.<locals>.finish_request"],
        "teardown_request_funcs": [],
    }
