"""A corpus of malformed and hostile requests: each gets its contract status and a
JSON error that leaks no stack trace or SQL, and no table changes by a row."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from tests.conftest import INGEST, OPERATOR, TABLES
from tests.readings import NOW, iso, meter, vehicle

J = "application/json"
SQLI = "M-1'; DROP TABLE meter_readings;--"


def reading_bytes(**overrides) -> bytes:
    return json.dumps({**meter(), **overrides}).encode()


CORPUS = [
    # (name, method, path, headers, body, content type, status)
    ("no token", "POST", "/v1/ingest", {}, reading_bytes(), J, 401),
    ("basic auth", "POST", "/v1/ingest", {"Authorization": "Basic YTpi"}, reading_bytes(), J, 401),
    ("token with sql", "POST", "/v1/ingest", {"Authorization": f"Bearer {SQLI}"}, b"{}", J, 401),
    ("huge token", "GET", "/v1/live/meters/M-1", {"Authorization": "Bearer " + "x" * 8000}, None, None, 401),
    ("operator ingests", "POST", "/v1/ingest", OPERATOR, reading_bytes(), J, 403),
    ("ingest reads", "GET", "/v1/analytics/performance/V-1", INGEST, None, None, 403),
    ("ingest links", "PUT", "/v1/meters/M-1/vehicle", INGEST, b'{"vehicleId":"V-1"}', J, 403),
    ("no content type", "POST", "/v1/ingest", INGEST, reading_bytes(), None, 415),
    ("xml", "POST", "/v1/ingest", INGEST, b"<reading/>", "application/xml", 415),
    ("form", "POST", "/v1/ingest", INGEST, b"meterId=M-1", "application/x-www-form-urlencoded", 415),
    ("broken json", "POST", "/v1/ingest", INGEST, b'{"meterId": ', J, 400),
    ("single quotes", "POST", "/v1/ingest", INGEST, b"{'meterId': 'M-1'}", J, 400),
    ("NaN literal", "POST", "/v1/ingest", INGEST, reading_bytes().replace(b"230", b"NaN"), J, 400),
    ("Infinity literal", "POST", "/v1/ingest", INGEST, reading_bytes().replace(b"230", b"Infinity"), J, 400),
    ("invalid utf-8", "POST", "/v1/ingest", INGEST, b'{"meterId": "\xc3\x28"}', J, 400),
    ("utf-16", "POST", "/v1/ingest", INGEST, reading_bytes().decode().encode("utf-16"), J, 400),
    ("deep nesting", "POST", "/v1/ingest", INGEST, b"[" * 5000 + b"]" * 5000, J, 400),
    ("deep object", "POST", "/v1/ingest", INGEST, b'{"a":' * 70 + b"1" + b"}" * 70, J, 400),
    ("nul bytes", "POST", "/v1/ingest", INGEST, b"\x00\x00\x00", J, 400),
    ("empty array", "POST", "/v1/ingest", INGEST, b"[]", J, 422),
    ("null", "POST", "/v1/ingest", INGEST, b"null", J, 422),
    ("number", "POST", "/v1/ingest", INGEST, b"42", J, 422),
    ("array of arrays", "POST", "/v1/ingest", INGEST, b"[[1,2]]", J, 422),
    ("string voltage", "POST", "/v1/ingest", INGEST, reading_bytes(voltage="230"), J, 422),
    ("bool voltage", "POST", "/v1/ingest", INGEST, reading_bytes(voltage=True), J, 422),
    ("null voltage", "POST", "/v1/ingest", INGEST, reading_bytes(voltage=None), J, 422),
    ("nested voltage", "POST", "/v1/ingest", INGEST, reading_bytes(voltage={"$gt": 0}), J, 422),
    ("1e309", "POST", "/v1/ingest", INGEST, reading_bytes().replace(b"230", b"1e309"), J, 422),
    ("-1e309 energy", "POST", "/v1/ingest", INGEST, reading_bytes().replace(b"14.6", b"-1e309"), J, 422),
    ("negative energy", "POST", "/v1/ingest", INGEST, reading_bytes(kwhConsumedAc=-1), J, 422),
    ("soc 101", "POST", "/v1/ingest", INGEST, json.dumps(vehicle(soc=101)).encode(), J, 422),
    ("temp 1000", "POST", "/v1/ingest", INGEST, json.dumps(vehicle(temp=1000)).encode(), J, 422),
    ("naive timestamp", "POST", "/v1/ingest", INGEST, reading_bytes(timestamp="2026-02-10T00:55:12"), J, 422),
    ("far future", "POST", "/v1/ingest", INGEST, reading_bytes(timestamp="2999-01-01T00:00:00Z"), J, 422),
    ("year 0", "POST", "/v1/ingest", INGEST, reading_bytes(timestamp="0000-01-01T00:00:00Z"), J, 422),
    ("offset 25h", "POST", "/v1/ingest", INGEST, reading_bytes(timestamp="2026-01-01T00:00:00+25:00"), J, 422),
    ("leap second", "POST", "/v1/ingest", INGEST, reading_bytes(timestamp="2016-12-31T23:59:60Z"), J, 422),
    ("oversized id", "POST", "/v1/ingest", INGEST, reading_bytes(meterId="M" * 10_000), J, 422),
    ("sql in id", "POST", "/v1/ingest", INGEST, reading_bytes(meterId=SQLI), J, 422),
    ("control chars in id", "POST", "/v1/ingest", INGEST, reading_bytes(meterId="M-1\x00\x1b[31m"), J, 422),
    ("unicode id", "POST", "/v1/ingest", INGEST, reading_bytes(meterId="М-1"), J, 422),
    ("both ids", "POST", "/v1/ingest", INGEST, reading_bytes(vehicleId="V-1"), J, 422),
    ("proto pollution", "POST", "/v1/ingest", INGEST, reading_bytes(__proto__={"admin": True}), J, 422),
    ("one bad in many", "POST", "/v1/ingest", INGEST,
     json.dumps([meter(f"M-{i}") for i in range(500)] + [meter(voltage=-1)]).encode(), J, 422),
    ("huge array", "POST", "/v1/ingest", INGEST, json.dumps([meter()] * 10_001).encode(), J, 413),
    ("huge body", "POST", "/v1/ingest", INGEST, b'{"pad": "' + b"x" * 9_000_000 + b'"}', J, 413),
    ("window sql", "GET", f"/v1/analytics/performance/V-1?from={SQLI}", OPERATOR, None, None, 400),
    ("window naive", "GET", "/v1/analytics/performance/V-1?from=2026-01-01T00:00:00", OPERATOR, None, None, 400),
    ("window reversed", "GET",
     f"/v1/analytics/performance/V-1?from={iso(NOW)}&to=2020-01-01T00:00:00Z", OPERATOR, None, None, 400),
    ("vehicle id sql", "GET", "/v1/analytics/performance/V-1%27%3B%20DROP%20TABLE%20x", OPERATOR, None, None, 404),
    ("live id traversal", "GET", "/v1/live/meters/..%2F..%2Fetc%2Fpasswd", OPERATOR, None, None, 404),
    ("link bad body", "PUT", "/v1/meters/M-1/vehicle", OPERATOR, b'{"vehicleId": ["V-1"]}', J, 422),
    ("link sql vehicle", "PUT", "/v1/meters/M-1/vehicle", OPERATOR, json.dumps({"vehicleId": SQLI}).encode(), J, 422),
    ("link broken json", "PUT", "/v1/meters/M-1/vehicle", OPERATOR, b"{", J, 400),
    ("link sql meter", "PUT", "/v1/meters/M'%3B--/vehicle", OPERATOR, b'{"vehicleId":"V-1"}', J, 422),
    ("redrive junk", "POST", "/v1/dead-letters/redrive", OPERATOR, b'{"ids": "all"}', J, 422),
    ("dead letters bad page", "GET", "/v1/dead-letters?after=abc", OPERATOR, None, None, 400),
    ("method", "DELETE", "/v1/ingest", INGEST, None, None, 405),
]

LEAKS = ("Traceback", "File \"", "psycopg", "sqlalchemy", "SELECT ", "INSERT ", "postgres", "redis.")


def row_counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("name, method, path, headers, body, content_type, status", CORPUS,
                         ids=[c[0] for c in CORPUS])
def test_hostile_request_gets_its_status_and_changes_nothing(
    client, queue, engine, drain_all, name, method, path, headers, body, content_type, status
):
    client.post("/v1/ingest", json=[meter("M-0"), vehicle("V-0")], headers=INGEST)
    drain_all()
    before = row_counts(engine)
    response = client.open(path, method=method, headers=headers, data=body, content_type=content_type)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.is_json
    payload = response.json
    assert set(payload) <= {"error", "errors"} and payload
    text_body = response.get_data(as_text=True)
    assert not any(leak in text_body for leak in LEAKS), text_body[:500]
    assert queue.backlog() == 0
    drain_all()
    assert row_counts(engine) == before
