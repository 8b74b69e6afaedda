"""Faults injected for real: servers stopped, workers killed, processes told to stop.

Redis and PostgreSQL outages run against throwaway servers of their own
(tests/servers.py); the machine's shared servers are never stopped.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import logging
import os
import re
import signal
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, make_url, text

from models.db import create_db_engine
from tests.conftest import INGEST, OPERATOR, child_pids, closed_by_server, wait_for
from tests.readings import NOW, meter, vehicle
from web import create_app

# The throwaway-server fixtures: postgres_server, redis_server.
pytest_plugins = ["tests.servers"]

# -- helpers -------------------------------------------------------------------


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Feed:
    """Posts batches of distinct readings through a Flask test client and remembers the acknowledged ones."""

    def __init__(self, client, max_batches: int = 10_000) -> None:
        self.client = client
        self.max_batches = max_batches
        self.sent = 0
        self.batches = 0
        self.meters: set[tuple[str, datetime]] = set()
        self.vehicles: set[tuple[str, datetime]] = set()

    def readings(self, n: int) -> list[dict]:
        out = []
        for i in range(self.sent, self.sent + n):
            at = NOW - timedelta(seconds=i)
            out.append(meter(f"M-{i % 37}", at=at) if i % 2 else vehicle(f"V-{i % 41}", at=at))
        self.sent += n
        return out

    def post(self, n: int = 20) -> bool:
        """Post one batch (unless the cap is reached); it must be acknowledged with 202."""
        if self.batches >= self.max_batches:
            return True
        batch = self.readings(n)
        response = self.client.post("/v1/ingest", json=batch, headers=INGEST)
        assert response.status_code == 202, (response.status_code, response.get_data(as_text=True))
        assert response.json == {"accepted": n}
        self.batches += 1
        for r in batch:
            if "meterId" in r:
                self.meters.add((r["meterId"], parse_ts(r["timestamp"])))
            else:
                self.vehicles.add((r["vehicleId"], parse_ts(r["timestamp"])))
        return True

    @property
    def acked(self) -> int:
        return len(self.meters) + len(self.vehicles)


def stored_keys(engine: Engine) -> tuple[list, list]:
    with engine.connect() as conn:
        meters = conn.execute(text("SELECT meter_id, ts FROM meter_readings")).all()
        vehicles = conn.execute(text("SELECT vehicle_id, ts FROM vehicle_readings")).all()
    return [tuple(r) for r in meters], [tuple(r) for r in vehicles]


def stored_total(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT (SELECT count(*) FROM meter_readings) + (SELECT count(*) FROM vehicle_readings)"
        )).scalar_one()


def assert_stored_exactly_once(engine: Engine, feed: Feed) -> None:
    """Every acknowledged reading is in history once, and none was dead-lettered on the way."""
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM dead_letters")).scalar_one() == 0
    meters, vehicles = stored_keys(engine)
    assert len(meters) + len(vehicles) == feed.acked
    assert set(meters) == feed.meters
    assert set(vehicles) == feed.vehicles


def libpq(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def insert_waiting_on_lock(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO vehicle_readings%'"
        )).first())


# -- 1. Redis down ---------------------------------------------------------------


def capture_logs(caplog) -> None:
    """caplog's handler on the root logger again: create_app's logging set-up replaced it."""
    logging.getLogger().addHandler(caplog.handler)


def test_ingest_answers_503_while_redis_is_down_and_recovers_by_itself(settings, redis_server, caplog):
    app = create_app({"TESTING": True, "SETTINGS": dataclasses.replace(settings, redis_url=redis_server.url)})
    capture_logs(caplog)
    try:
        client = app.test_client()
        feed = Feed(client)
        assert feed.post()
        assert client.get("/readyz").status_code == 200

        redis_server.stop()
        for _ in range(3):
            started = time.monotonic()
            response = client.post("/v1/ingest", json=feed.readings(5), headers=INGEST)
            assert response.status_code == 503, response.get_data(as_text=True)
            assert int(response.headers["Retry-After"]) > 0
            assert "error" in response.json
            assert time.monotonic() - started < 5  # answered at once, not after a long hang
        refusals = [r for r in caplog.records if r.getMessage().startswith("queue unavailable")]
        assert len(refusals) == 3
        assert all(r.exc_info is None and "\n" not in r.getMessage() for r in refusals)  # one line each
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json == {"postgres": "ok", "redis": "unavailable"}
        assert client.get("/healthz").status_code == 200

        redis_server.start()  # same port, same app object
        wait_for(lambda: client.get("/readyz").status_code == 200, 15, "/readyz to recover")
        for _ in range(3):
            assert feed.post()  # 202 every time, no stale connection answering 503
    finally:
        app.extensions["engine"].dispose()
        app.extensions["queue"].close()


# -- 2. PostgreSQL down while readings keep arriving ---------------------------

OUTAGE_MIN_S = 8  # observe the worker against the dead database at least this long
OUTAGE_MAX_S = 15
UNAVAILABLE_WARNING = re.compile(r"database unavailable", re.IGNORECASE)


def test_worker_rides_out_a_postgres_outage_and_loses_nothing(settings, postgres_server, worker_factory):
    database_url = postgres_server.create_database("energy")
    postgres_server.migrate(database_url)
    s = dataclasses.replace(settings, database_url=database_url)
    app = create_app({"TESTING": True, "SETTINGS": s})
    db = create_db_engine(database_url)
    try:
        client, queue, feed = app.test_client(), app.extensions["queue"], Feed(app.test_client())
        concurrency = 2
        worker = worker_factory(concurrency, database_url=database_url)
        for _ in range(5):
            feed.post(40)
        wait_for(lambda: queue.backlog() == 0 and stored_total(db) == feed.acked, 60, "the first readings")

        log_offset = len(worker.log())
        postgres_server.stop("fast")
        outage_started = time.monotonic()
        assert client.get("/readyz").json == {"postgres": "unavailable", "redis": "ok"}
        acked_before_outage = feed.acked
        last_post = 0.0

        def observe() -> bool:
            nonlocal last_post
            assert worker.proc.poll() is None, "the worker died while the database was down"
            if time.monotonic() - last_post >= 0.2:  # readings keep arriving, 5 requests a second
                feed.post(20)
                last_post = time.monotonic()
            elapsed = time.monotonic() - outage_started
            warnings = len(UNAVAILABLE_WARNING.findall(worker.log()[log_offset:]))
            return (warnings >= 2 and elapsed >= OUTAGE_MIN_S) or elapsed >= OUTAGE_MAX_S

        wait_for(observe, OUTAGE_MAX_S + 10, "the worker to back off against the dead database")
        window_s = time.monotonic() - outage_started
        outage_log = worker.log()[log_offset:]
        warnings = len(UNAVAILABLE_WARNING.findall(outage_log))
        # Nothing is acknowledged while nothing can be stored: every reading of the outage is queued.
        assert queue.backlog() == feed.acked - acked_before_outage

        postgres_server.start()  # same port, same data
        wait_for(lambda: queue.backlog() == 0, 90, "the backlog to drain after PostgreSQL returned")
        assert worker.proc.poll() is None, "the same worker drains the backlog"
        assert_stored_exactly_once(db, feed)
        assert client.get("/readyz").status_code == 200

        # The backoff (checked last, so that the recovery above is reported first).
        assert "exited with" not in outage_log, "a pool process died (crash loop):\n" + outage_log[-3000:]
        assert warnings >= 1, (
            "the worker never logged 'database unavailable' while PostgreSQL was down:\n" + outage_log[-3000:]
        )
        assert warnings < window_s * concurrency, (
            f"{warnings} 'database unavailable' warnings in {window_s:.1f} s from {concurrency} processes:"
            " the worker retries at 1/s/process or more instead of backing off"
        )
    finally:
        db.dispose()
        app.extensions["engine"].dispose()
        app.extensions["queue"].close()


# -- 3. Workers killed with SIGKILL under sustained load -------------------------


def test_workers_killed_under_sustained_load_lose_and_double_nothing(client, queue, engine, worker_factory):
    feed = Feed(client, max_batches=1200)  # posting stops there, whatever the timing
    workers = [worker_factory(concurrency=1), worker_factory(concurrency=1)]
    # (which workers die, batches posted between seeing progress and the kill)
    plan = [((0,), 0), ((1,), 7), ((0, 1), 15)]
    for victims, extra in plan:
        before = stored_total(engine)
        wait_for(lambda before=before: feed.post() and stored_total(engine) > before, 40,
                 "readings stored since the last kill")
        for _ in range(extra):
            feed.post()
        for i in victims:
            workers[i].kill()
        feed.post()  # arrives while they are dead
        for i in victims:
            workers[i] = worker_factory(concurrency=1)
    feed.post()
    wait_for(lambda: queue.backlog() == 0, 60, "the survivors to drain the backlog")
    assert_stored_exactly_once(engine, feed)
    assert feed.batches > len(plan) * 3


# -- 4. Graceful shutdown ----------------------------------------------------------


def test_sigterm_mid_batch_finishes_or_returns_the_batch(client, queue, engine, settings, worker_factory):
    feed = Feed(client)
    for _ in range(5):
        feed.post(200)
    with psycopg.connect(libpq(settings.database_url)) as blocker:
        # Hold the history table so that the worker's batch stops inside its transaction.
        blocker.execute("LOCK TABLE vehicle_readings IN EXCLUSIVE MODE")
        worker = worker_factory(concurrency=1)
        wait_for(lambda: insert_waiting_on_lock(engine), 30, "the worker to block mid-batch")
        os.kill(worker.proc.pid, signal.SIGTERM)  # the main process only, as a process manager does
        wait_for(lambda: "Warm shutdown" in worker.log(), 10, "the worker to start its warm shutdown")
        assert queue.backlog() == feed.acked
        blocker.rollback()
    try:
        worker.proc.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker did not exit within 30 s of SIGTERM:\n" + worker.log()[-3000:])
    assert worker.proc.returncode == 0, worker.log()[-3000:]
    assert "WorkerLostError" not in worker.log()
    if queue.backlog():  # it returned its batch rather than finishing it: another worker must store it
        worker_factory()
        wait_for(lambda: queue.backlog() == 0, 60, "another worker to store the returned batch")
    assert_stored_exactly_once(engine, feed)


def _accepted_by_a_worker(master_pid: int, server_port: int, client_port: int) -> bool:
    """Whether a gunicorn worker holds the server end of our connection (it has accept()ed it)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if (int(local.rsplit(":", 1)[1], 16) == server_port
                    and int(remote.rsplit(":", 1)[1], 16) == client_port and inode != "0"):
                inodes.add(f"socket:[{inode}]")
    for pid in child_pids(master_pid):
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in inodes:
                    return True
            except OSError:
                continue
    return False


def test_sigterm_to_gunicorn_finishes_the_request_in_flight(gunicorn, queue):
    proc, port = gunicorn.proc, gunicorn.port
    readings = Feed(None).readings(10_000)
    body = json.dumps(readings).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.putrequest("POST", "/v1/ingest")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Authorization", INGEST["Authorization"])
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    first = 64 * 1024
    conn.send(body[:first])
    client_port = conn.sock.getsockname()[1]
    wait_for(lambda: _accepted_by_a_worker(proc.pid, port, client_port), 10,
             "a gunicorn worker to accept the request")

    os.kill(proc.pid, signal.SIGTERM)
    wait_for(lambda: "Handling signal: term" in gunicorn.log(), 10, "gunicorn to handle SIGTERM")
    for i in range(first, len(body), 64 * 1024):  # the rest of the body, after shutdown began
        conn.send(body[i:i + 64 * 1024])
    response = conn.getresponse()
    answer = response.read()
    assert response.status == 202, answer
    assert json.loads(answer) == {"accepted": 10_000}
    assert queue.backlog() == 10_000
    # The connection stays open (keep-alive) and idle: a worker shutting down
    # closes it at once rather than wait for it (up to the graceful timeout, 30 s).
    answered = time.monotonic()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail("gunicorn did not exit soon after SIGTERM:\n" + gunicorn.log())
    assert proc.returncode == 0, gunicorn.log()
    assert closed_by_server(conn, 1)
    assert time.monotonic() - answered < 4, "an idle connection held up the exit"


# -- 5. Redis stopped under load, with a worker running ----------------------------

REDIS_RECOVERY_S = 60  # every accepted reading stored within this long of Redis returning
LIVE_WITHIN_S = 5


def _post_accepting_503(client, feed: Feed, n: int = 20) -> int:
    """Post one batch; 202 counts it as accepted, 503 (Redis down) does not. The status."""
    batch = feed.readings(n)
    response = client.post("/v1/ingest", json=batch, headers=INGEST)
    assert response.status_code in (202, 503), (response.status_code, response.get_data(as_text=True))
    if response.status_code == 202:
        for r in batch:
            key = (r.get("meterId") or r["vehicleId"], parse_ts(r["timestamp"]))
            (feed.meters if "meterId" in r else feed.vehicles).add(key)
    return response.status_code


def _processes_of(pid: int) -> set[int]:
    return {pid, *child_pids(pid)}


@pytest.mark.parametrize("outage_s", [10, 60])
def test_worker_stores_everything_after_a_redis_outage_without_a_restart(
        settings, durable_redis_server, worker_factory, outage_s):
    redis_server = durable_redis_server
    s = dataclasses.replace(settings, redis_url=redis_server.url)
    app = create_app({"TESTING": True, "SETTINGS": s})
    db = create_db_engine(settings.database_url)
    try:
        client, feed = app.test_client(), Feed(app.test_client())
        worker = worker_factory(2, redis_url=redis_server.url)
        wait_for(lambda: feed.post() and stored_total(db) > 0, 60, "the worker to store readings")
        processes = _processes_of(worker.proc.pid)
        assert len(processes) >= 4, "the worker, its beat and two pool processes"

        redis_server.stop(graceful=True)
        down_until = time.monotonic() + outage_s
        refused = 0
        while time.monotonic() < down_until:  # load continues: every request is refused
            refused += _post_accepting_503(client, feed) == 503
            time.sleep(0.1)
        assert refused > 0
        redis_server.start()  # same port, same append-only file
        back = time.monotonic()
        until = back + 5
        while time.monotonic() < until:  # and the load goes on once it is back
            _post_accepting_503(client, feed)
            time.sleep(0.05)
        assert feed.acked > 0

        wait_for(lambda: stored_total(db) >= feed.acked, back + REDIS_RECOVERY_S - time.monotonic(),
                 f"all {feed.acked} accepted readings to be stored within {REDIS_RECOVERY_S} s"
                 " of Redis returning")
        assert_stored_exactly_once(db, feed)

        late = vehicle("V-9999", at=datetime.now().astimezone())
        assert client.post("/v1/ingest", json=[late], headers=INGEST).status_code == 202
        posted = time.monotonic()
        wait_for(lambda: client.get("/v1/live/vehicles/V-9999", headers=OPERATOR).status_code == 200,
                 LIVE_WITHIN_S, f"a reading posted after the outage to be live within {LIVE_WITHIN_S} s")
        assert time.monotonic() - posted <= LIVE_WITHIN_S
        assert worker.proc.poll() is None
        assert _processes_of(worker.proc.pid) == processes, "the same worker processes throughout"
        tracebacks = [line[:1500] for line in worker.log().splitlines() if "Traceback" in line]
        assert not tracebacks, "\n".join(tracebacks[:3])
    finally:
        db.dispose()
        app.extensions["engine"].dispose()
        app.extensions["queue"].close()


# -- 6. Read endpoints while PostgreSQL is down --------------------------------------


def test_read_endpoints_answer_503_while_postgres_is_down(settings, postgres_server, caplog):
    database_url = postgres_server.create_database("energy")
    postgres_server.migrate(database_url)
    app = create_app({"TESTING": True, "SETTINGS": dataclasses.replace(settings, database_url=database_url)})
    capture_logs(caplog)
    try:
        client = app.test_client()
        window = "from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z"
        paths = ["/v1/live/vehicles/V-201", "/v1/live/meters/M-201",
                 f"/v1/analytics/performance/V-201?{window}",
                 f"/v1/analytics/fleet?{window}"]
        assert [client.get(p, headers=OPERATOR).status_code for p in paths[:2]] == [404, 404]

        postgres_server.stop("fast")
        for path in paths:
            response = client.get(path, headers=OPERATOR)
            assert response.status_code == 503, (path, response.status_code, response.get_data(as_text=True))
            assert int(response.headers["Retry-After"]) > 0
            assert "error" in response.json
        assert any(r.getMessage().startswith("database unavailable") for r in caplog.records)
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert not errors, "an outage is not logged as an error"
    finally:
        app.extensions["engine"].dispose()
        app.extensions["queue"].close()
