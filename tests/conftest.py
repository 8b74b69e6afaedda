"""Fixtures: a fresh PostgreSQL database per test session (built by the real
migrations), a Redis key prefix of its own per test, and real Celery workers
started as subprocesses where a test needs one.

TEST_DATABASE_URL (default: DATABASE_URL, else postgresql://localhost/energy)
names the server; its database part is replaced by a throwaway one.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql
from sqlalchemy import Engine, make_url, text

import settings as settings_module
from models.db import create_db_engine
from tests.processes import ROOT, ChildProcess
from web import create_app
from workers.drain import DrainReport, drain
from workers.queue import ReadingQueue

# Imported by fixtures below as well as named in pytest_plugins: rewrite its asserts either way.
pytest.register_assert_rewrite("tests.servers")

TABLES = ("meter_readings", "vehicle_readings", "live_meters", "live_vehicles", "meter_links",
          "meter_15min", "vehicle_15min", "meter_hourly", "vehicle_hourly", "meter_6h", "vehicle_6h",
          "meter_daily", "vehicle_daily",
          "dead_letters", "alerts", "gateway_devices", "devices", "gateways",
          "charging_sessions", "session_marks")
INGEST = {"Authorization": "Bearer test-ingest"}
OPERATOR = {"Authorization": "Bearer test-operator"}


def wait_for(condition: Callable[[], object], timeout_s: float = 30, what: str = "condition"):
    """Poll until condition() is truthy; return its value or fail the test."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def _server_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL") or (
        settings_module.Settings.database_url
    )


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A new database with every migration applied, dropped after the session."""
    server = psycopg.conninfo.conninfo_to_dict(_server_url())
    name = f"energy_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg.conninfo.make_conninfo(**{**server, "dbname": "postgres"})
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(_server_url()).set(database=name).render_as_string(hide_password=False)
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT, env={**os.environ, "DATABASE_URL": url}, check=True, capture_output=True,
    )
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL") or (
        settings_module.Settings.redis_url
    )


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = create_db_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def settings(database_url: str, redis_url: str, engine: Engine) -> Iterator[settings_module.Settings]:
    """Settings of one test: its own Redis prefix, short batch waits, test tokens.

    Afterwards the test's Redis keys are deleted and every table emptied.
    """
    s = dataclasses.replace(
        settings_module.load({"INGEST_TOKENS": "test-ingest", "OPERATOR_TOKENS": "test-operator"}),
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=f"test-{uuid.uuid4().hex[:12]}",
        batch_max_wait_ms=20,
        drain_interval_s=0.2,
        claim_idle_s=2,
    )
    yield s
    client = redis.Redis.from_url(s.redis_url)
    keys = list(client.scan_iter(match=f"{s.redis_prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)}"))
    set_watermark(engine, None)


@pytest.fixture
def app(settings):
    application = create_app({"TESTING": True, "SETTINGS": settings})
    yield application
    application.extensions["engine"].dispose()
    application.extensions["queue"].close()
    application.extensions["group_commit"].close()
    application.extensions["credentials"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def queue(app) -> ReadingQueue:
    return app.extensions["queue"]


@pytest.fixture
def drain_all(queue, engine, settings) -> Callable[[], DrainReport]:
    """Drain everything queued, in this process, as a worker would."""
    # Nothing more will arrive while it runs: no point listening for long.
    impatient = dataclasses.replace(settings, drain_interval_s=0.01)

    def run() -> DrainReport:
        return drain(queue, engine, "test-drainer", impatient, budget_s=5)

    return run


def set_watermark(engine: Engine, until: datetime | None) -> None:
    """Move the rollup watermark (None: to the current hour, where the migration puts
    it), with no hour half rolled up, every hourly rollup kept and no session stored."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM charging_sessions"))
        conn.execute(text("DELETE FROM session_marks"))
        conn.execute(text("UPDATE rollup_watermark SET rolled_up_until ="
                          " coalesce(:until, date_trunc('hour', now(), 'UTC')),"
                          " rolling_device = NULL, hours_kept_since = NULL,"
                          " sessions_from = coalesce(:until, date_trunc('hour', now(), 'UTC'))"),
                     {"until": until})


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


class WorkerProcess(ChildProcess):
    """A real `celery worker` (with its embedded beat) in its own process group."""

    def __init__(self, settings: settings_module.Settings, log_path: Path) -> None:
        super().__init__({
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "REDIS_PREFIX": settings.redis_prefix,
            "INGEST_TOKENS": ",".join(settings.ingest_tokens),
            "OPERATOR_TOKENS": ",".join(settings.operator_tokens),
            "CLAIM_IDLE_S": str(settings.claim_idle_s),
            "DRAIN_INTERVAL_S": str(settings.drain_interval_s),
            "BATCH_MAX_WAIT_MS": str(settings.batch_max_wait_ms),
            "ALERT_INTERVAL_S": str(settings.alert_interval_s),
            "QUEUE_SHARDS": str(settings.queue_shards),
            "QUEUE_REDIS_URL": settings.queue_url,
        }, log_path)

    def start(self, concurrency: int = 2) -> WorkerProcess:
        self.spawn("workers", "worker", "--beat", "--scheduler", "workers.beat.Scheduler",
                   "--loglevel", "INFO", "--concurrency", str(concurrency),
                   "--hostname", f"test-{uuid.uuid4().hex[:6]}@%h")
        return self


@pytest.fixture
def worker_factory(settings, tmp_path) -> Iterator[Callable[[], WorkerProcess]]:
    """Start real Celery workers on this test's database and queue; all stopped after."""
    started: list[WorkerProcess] = []

    def start(concurrency: int = 2, **changes) -> WorkerProcess:
        """A worker with this test's settings, with `changes` (Settings fields) applied."""
        s = dataclasses.replace(settings, **changes)
        w = WorkerProcess(s, tmp_path / f"worker-{len(started)}.log").start(concurrency)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def unused_tcp_port() -> int:
    """A local port nothing listens on (for a service that is down)."""
    from tests.servers import spare_port  # imported here: tests.servers imports this module

    return spare_port()


# -- the web process under gunicorn, as the Procfile runs it ------------------------


def http_status(port: int, path: str) -> int | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", path)
        status = conn.getresponse().status
        conn.close()
        return status
    except OSError:
        return None


@dataclasses.dataclass
class Gunicorn:
    proc: subprocess.Popen
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def gunicorn_factory(settings, tmp_path) -> Iterator[Callable[..., Gunicorn]]:
    """Start the web process as the Procfile runs it, with extra environment
    variables, each on a port of its own; all are killed afterwards."""
    started: list[subprocess.Popen] = []

    def start(**extra_env: str) -> Gunicorn:
        from tests.servers import spare_port

        port = spare_port()
        env = {
            **os.environ, "PORT": str(port), "WEB_CONCURRENCY": "2",
            "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
            "REDIS_PREFIX": settings.redis_prefix, "INGEST_TOKENS": ",".join(settings.ingest_tokens),
            "OPERATOR_TOKENS": ",".join(settings.operator_tokens),
            "QUEUE_SHARDS": str(settings.queue_shards), "QUEUE_REDIS_URL": settings.queue_url, **extra_env,
        }
        log_path = tmp_path / f"gunicorn-{port}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--config", "web/server/gunicorn_conf.py",
                 "web:create_app()"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        started.append(proc)
        # A minute: on a loaded machine, importing the app takes tens of seconds.
        wait_for(lambda: http_status(port, "/healthz") == 200, 60, "gunicorn to answer")
        return Gunicorn(proc, port, log_path)

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def gunicorn(gunicorn_factory) -> Gunicorn:
    """The web process as the Procfile runs it, answering on a port of its own."""
    return gunicorn_factory()


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (gunicorn's workers, for one)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def closed_by_server(conn: http.client.HTTPConnection, within_s: float) -> bool:
    """Whether the server closes this idle connection within `within_s` seconds."""
    conn.sock.settimeout(within_s)
    try:
        return conn.sock.recv(1) == b""
    except TimeoutError:
        return False
