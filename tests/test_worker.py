"""Real Celery workers (subprocesses with their embedded beat) draining the queue."""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from types import SimpleNamespace

import psycopg
import redis
from celery.beat import SchedulingError
from sqlalchemy import make_url, text

from tests.conftest import INGEST, OPERATOR, count, wait_for
from tests.readings import NOW, meter, vehicle
from workers.beat import Scheduler


def post_all(client, readings, size=200):
    for i in range(0, len(readings), size):
        response = client.post("/v1/ingest", json=readings[i:i + size], headers=INGEST)
        assert response.status_code == 202, response.json


def stored_vehicle_keys(engine) -> list[tuple[str, object]]:
    with engine.connect() as conn:
        return conn.execute(text("SELECT vehicle_id, ts FROM vehicle_readings")).all()


def libpq(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def test_worker_drains_readings_into_history_and_live_state(client, queue, engine, worker_factory):
    worker_factory()
    readings = [meter(f"M-{i % 50}", at=NOW - timedelta(minutes=i)) for i in range(300)]
    readings += [vehicle(f"V-{i % 50}", at=NOW - timedelta(minutes=i)) for i in range(300)]
    post_all(client, readings)
    wait_for(lambda: queue.backlog() == 0, 30, "the backlog to drain")
    assert count(engine, "meter_readings") == count(engine, "vehicle_readings") == 300
    assert count(engine, "live_meters") == count(engine, "live_vehicles") == 50
    live = client.get("/v1/live/vehicles/V-0", headers=OPERATOR).json
    assert live["timestamp"] == readings[300]["timestamp"]  # V-0's newest is i=0


def test_worker_killed_mid_batch_loses_nothing_and_doubles_nothing(
    client, queue, engine, settings, worker_factory
):
    readings = [vehicle(f"V-{i % 40}", at=NOW - timedelta(seconds=i)) for i in range(1200)]
    with psycopg.connect(libpq(settings.database_url)) as blocker:
        # Hold the history table so the worker's batch stops inside its transaction.
        blocker.execute("LOCK TABLE vehicle_readings IN EXCLUSIVE MODE")
        first = worker_factory(concurrency=1)
        post_all(client, readings)
        wait_for(lambda: _insert_waiting_on_lock(engine), 30, "the worker to block mid-batch")
        first.kill()
        assert queue.backlog() == len(readings)  # nothing was acknowledged
        blocker.rollback()
    worker_factory()
    wait_for(lambda: queue.backlog() == 0, 60, "a new worker to store the dead worker's batch")
    keys = stored_vehicle_keys(engine)
    assert len(keys) == len(set(keys)) == len(readings)
    assert count(engine, "live_vehicles") == 40


def test_two_workers_share_one_queue_without_loss(client, queue, engine, worker_factory):
    worker_factory(concurrency=1)
    worker_factory(concurrency=1)
    readings = [meter(f"M-{i % 100}", at=NOW - timedelta(seconds=i)) for i in range(5000)]
    post_all(client, readings, size=500)
    wait_for(lambda: queue.backlog() == 0, 60, "two workers to drain the backlog")
    assert count(engine, "meter_readings") == 5000
    assert count(engine, "live_meters") == 100


def _insert_waiting_on_lock(engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE '%INSERT INTO vehicle_readings%'"
        )).first())


def test_worker_killed_alone_leaves_no_process_behind(worker_factory, queue, settings):
    """SIGKILL to the worker's main process only (a supervisor's kill -9): its pool
    and its embedded beat, which holds the RedBeat lock, must not live on."""
    worker = worker_factory()
    wait_for(lambda: queue.redis.exists(f"{settings.redis_prefix}:redbeat::lock"),
             30, "the embedded beat to take its lock")
    group = os.getpgid(worker.proc.pid)
    os.kill(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(10)

    def group_gone() -> bool:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(group_gone, 20, "the worker's children to exit")


def _failing_send(error: Exception):
    def apply_async(entry, producer=None, advance=True):
        try:
            raise error
        except Exception as exc:
            raise SchedulingError(f"Couldn't apply scheduled task {entry.name}: {exc}") from exc
    return apply_async


def test_beat_logs_a_broker_outage_as_one_line_and_other_errors_with_their_traceback(caplog):
    scheduler = Scheduler.__new__(Scheduler)  # apply_entry needs nothing of __init__
    entry = SimpleNamespace(name="drain", task="workers.tasks.drain")

    scheduler.apply_async = _failing_send(redis.ConnectionError("Connection closed by server."))
    scheduler.apply_entry(entry)
    scheduler.apply_async = _failing_send(ValueError("a bug"))
    scheduler.apply_entry(entry)

    outage, bug = [r for r in caplog.records if r.name == "workers.beat"]
    assert outage.levelname == "WARNING" and outage.exc_info is None
    assert outage.getMessage() == ("beat: could not send workers.tasks.drain"
                                   " (ConnectionError: Connection closed by server.)")
    assert bug.levelname == "ERROR" and bug.exc_info is not None
