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

import celery.apps.worker
from celery import Celery
from celery.signals import beat_init, setup_logging, worker_init, worker_process_init
from sqlalchemy import Engine

import settings as settings_module
from logconfig import configure_logging
from models.db import create_db_engine
from workers import metrics
from workers.queue import ReadingQueue

log = logging.getLogger(__name__)

settings = settings_module.load_or_exit()

MAINTENANCE_INTERVAL_S = 3600
# An hour is rolled up within this long after it settles (models/rollups.py).
ROLL_UP_INTERVAL_S = 60


def make_celery(s: settings_module.Settings) -> Celery:
    """A Celery app on the settings' broker, with every key under its prefix.

    The broker is CELERY_BROKER_URL (default REDIS_URL), never the queue's
    Redis Cluster: kombu does not support Redis Cluster."""
    app = Celery("energy", broker=s.broker_url, include=["workers.tasks"])
    app.conf.update(
        # No ack emulation: a task message leaves Redis when a worker takes it. The
        # readings' durability is the queue's stream, not Celery's messages (a lost
        # drain task is sent again by beat within a second), and with emulation a
        # consumer that lost Redis reconnected through kombu's restore of unacked
        # messages, which sometimes failed (AttributeError on a closed transport)
        # and stopped the worker for good.
        broker_transport_options={"global_keyprefix": f"{s.redis_prefix}:celery:",
                                  "ack_emulation": False},
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
    configure_logging(log_format=settings.log_format, level=settings.log_level)


def _say_as_a_log_line(msg: str, f: object = None) -> None:
    """What Celery's signal handlers print ("worker: Warm shutdown ..."), as a log line."""
    logging.getLogger("celery.apps.worker").warning(msg.strip())


# Celery prints these straight to the terminal, the one plain-text line left in
# a worker's output; its handlers look the function up in the module at call time.
celery.apps.worker.safe_say = _say_as_a_log_line


def _only_signalled_by_the_worker() -> None:
    """Leave the worker's process group, and end with the worker.

    Process managers signal a whole process group: honcho sends SIGTERM to the
    group on Ctrl-C (and docker to the container), which reached the pool
    processes and the embedded beat along with the worker, so tasks died mid-way
    (WorkerLostError) instead of finishing in a warm shutdown. In a group of its
    own, a child hears only from the worker, which ends it when its work is done.
    For the case where the worker is killed outright (SIGKILL), Linux ends the
    child with it; Celery's pool forks from the worker's main thread (there are
    no pool threads with the Redis broker's event loop), so "its parent" is the
    worker itself.
    """
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@beat_init.connect
def _beat_hears_only_the_worker(**_: object) -> None:
    # A beat left running would also hold the RedBeat lock.
    _only_signalled_by_the_worker()


@worker_init.connect
def _serve_metrics(sender: object, **_: object) -> None:
    metrics.serve(settings.worker_metrics_port, sender.hostname)


@worker_process_init.connect
def _set_up_pool_process(**_: object) -> None:
    """A forked pool process opens its own connections, never shares its parent's."""
    global _engine, _queue
    _only_signalled_by_the_worker()
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
