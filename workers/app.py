"""The Celery app, built from the settings alone: `python -m workers worker` (or
`celery --app workers.app worker`, without metrics shared across the pool).

The worker runs with an embedded beat that uses RedBeat's lock in Redis, so any
number of worker processes may run and exactly one of them schedules the
periodic drain; if it dies, another takes the lock within `redbeat_lock_timeout`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys

from celery import Celery
from celery.signals import beat_init, setup_logging, worker_init, worker_process_init
from sqlalchemy import Engine

import settings as settings_module
from logconfig import configure_logging
from models.db import create_db_engine
from workers import metrics
from workers.queue import ReadingQueue

log = logging.getLogger(__name__)

settings = settings_module.load()

MAINTENANCE_INTERVAL_S = 3600
# An hour is rolled up within this long after it settles (models/rollups.py).
ROLL_UP_INTERVAL_S = 60


def make_celery(s: settings_module.Settings) -> Celery:
    """A Celery app on the settings' broker, with every key under its prefix.

    The broker is CELERY_BROKER_URL (default REDIS_URL), never the queue's
    Redis Cluster: kombu does not support Redis Cluster."""
    app = Celery("energy", broker=s.broker_url, include=["workers.tasks"])
    app.conf.update(
        broker_transport_options={"global_keyprefix": f"{s.redis_prefix}:celery:"},
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        # Flower builds its views from these events.
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_prefetch_multiplier=1,
        # A pool process per core to drain, and one more for the periodic alert
        # evaluation, roll-ups and history upkeep, which run for seconds on a busy fleet:
        # with a process per core, an evaluation left one drain for 2 cores and
        # ingest-to-queryable p99 went from 0.2 s to 2 s while it ran.
        worker_concurrency=(os.cpu_count() or 1) + 1,
        beat_schedule={
            "drain-queue": {
                "task": "workers.drain",
                "schedule": s.drain_interval_s,
                # A drain that waited this long is stale: a newer one is queued.
                "options": {"expires": s.drain_interval_s * 2},
            },
            "evaluate-alerts": {
                "task": "workers.evaluate_alerts",
                "schedule": s.alert_interval_s,
                "options": {"expires": s.alert_interval_s},
            },
            "roll-up-hours": {
                "task": "workers.roll_up_hours",
                "schedule": ROLL_UP_INTERVAL_S,
                "options": {"expires": ROLL_UP_INTERVAL_S},
            },
            "maintain-history": {
                "task": "workers.maintain_history",
                "schedule": MAINTENANCE_INTERVAL_S,
                "options": {"expires": MAINTENANCE_INTERVAL_S},
            },
        },
        beat_max_loop_interval=1,
        redbeat_redis_url=s.redis_url,
        redbeat_redis_options={"socket_timeout": 10, "socket_connect_timeout": 5},
        redbeat_key_prefix=f"{s.redis_prefix}:redbeat:",
        redbeat_lock_timeout=10,
    )
    return app


app = make_celery(settings)

_engine: Engine | None = None
_queue: ReadingQueue | None = None


@setup_logging.connect
def _json_logs(**_: object) -> None:
    """Our JSON logs instead of Celery's own format (connecting this tells Celery)."""
    configure_logging()


@beat_init.connect
def _end_with_the_worker(**_: object) -> None:
    """The embedded beat is a child process: a worker killed with SIGKILL would
    leave it running, holding the RedBeat lock. Linux can end it with its parent."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@worker_init.connect
def _serve_metrics(**_: object) -> None:
    metrics.serve(int(os.environ.get("WORKER_METRICS_PORT", "9808")))


@worker_process_init.connect
def _forget_inherited_connections(**_: object) -> None:
    """A forked pool process must open its own connections, never share its parent's."""
    global _engine, _queue
    if _engine is not None:
        _engine.dispose(close=False)
    _engine = _queue = None


def engine() -> Engine:
    """This process's database engine."""
    global _engine
    if _engine is None:
        _engine = create_db_engine(settings.database_url, pool_size=2)
    return _engine


def queue() -> ReadingQueue:
    """This process's view of the reading queue."""
    global _queue
    if _queue is None:
        _queue = ReadingQueue.from_settings(settings)
    return _queue


def consumer_name() -> str:
    """Unique per process, so a restarted worker never inherits a dead one's pending list."""
    return f"{socket.gethostname()}:{os.getpid()}"
