"""The bench's database and its Redis key prefix: created, emptied, watched, dropped.

The queue's keys are the ones workers/queue.py names (ReadingQueue): the bench
reads the backlog through it and never spells a key out.
"""

from __future__ import annotations

import os
import subprocess
import time

import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench.config import DATABASE_URL, PREFIX, REDIS_URL, ROOT, VENV_BIN, log
from workers.queue import ReadingQueue


def reading_queue() -> ReadingQueue:
    """The queue the stack's web fills and its worker drains."""
    return ReadingQueue.from_url(REDIS_URL, PREFIX)


def flush_prefix(client: redis.Redis) -> int:
    """Delete every key under our prefix, and nothing else."""
    deleted = 0
    batch = []
    for key in client.scan_iter(match=f"{PREFIX}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += client.delete(*batch)
            batch = []
    if batch:
        deleted += client.delete(*batch)
    return deleted


def draining(queue: ReadingQueue) -> bool:
    """Whether a drain reads the queue: its consumer group has a consumer."""
    try:
        groups = queue.redis.xinfo_groups(queue.stream)
    except redis.ResponseError:  # no stream yet
        return False
    return any(g.get("consumers") for g in groups)


def wait_backlog_empty(queue: ReadingQueue, limit_s: float) -> float | None:
    """Seconds until the backlog reached 0, or None if it did not within limit_s."""
    started = time.monotonic()
    while queue.backlog() > 0:
        if time.monotonic() - started > limit_s:
            return None
        time.sleep(0.2)
    return time.monotonic() - started


def history_count(conn: psycopg.Connection) -> int:
    """Readings stored in history (meters and vehicles)."""
    return conn.execute("SELECT (SELECT count(*) FROM meter_readings)"
                        " + (SELECT count(*) FROM vehicle_readings)").fetchone()[0]


def checkpoint() -> None:
    """Write back the dirty pages that earlier runs left, so that a run does not pay
    for its predecessor's writes (after scenario 3, PostgreSQL checkpoints for a while)."""
    try:
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.Error as exc:  # not allowed (pg_checkpoint role missing): measure anyway
        log(f"  CHECKPOINT refused ({exc.sqlstate}): runs may pay for earlier runs' writes")


def admin_conninfo() -> str:
    """The bench's server, database `postgres`: for creating and dropping ours."""
    return make_conninfo(**{**conninfo_to_dict(DATABASE_URL), "dbname": "postgres"})


def db_name() -> str:
    return conninfo_to_dict(DATABASE_URL)["dbname"]


def recreate_database() -> None:
    """Drop the bench database if it is there, create it, apply the migrations."""
    drop_database()
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name())))
    migrate_database()


def keep_database() -> None:
    """Create the bench database unless it is there; apply the migrations."""
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db_name()]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name())))
    migrate_database()


def migrate_database() -> None:
    subprocess.run([str(VENV_BIN / "alembic"), "upgrade", "head"], cwd=ROOT, check=True,
                   env={**os.environ, "DATABASE_URL": DATABASE_URL},
                   capture_output=True)


def drop_database() -> None:
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name())))
