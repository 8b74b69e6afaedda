"""Draining the queue: batches of entries, one transaction each, acknowledged after commit.

These are plain functions of a queue and an engine, so tests can run them
directly; the Celery task in workers/tasks.py only supplies both.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy import Engine

from models.store import METER_COLUMNS, VEHICLE_COLUMNS, Columns, StoreResult, store_batch
from settings import Settings
from workers.queue import Entry, ReadingQueue

log = logging.getLogger(__name__)


@dataclass
class DrainReport:
    batches: int = 0
    readings: int = 0
    stored: int = 0
    duplicates: int = 0

    def add(self, result: StoreResult) -> None:
        self.batches += 1
        self.readings += result.readings
        self.stored += result.stored
        self.duplicates += result.duplicates


def split_by_kind(entries: list[Entry]) -> tuple[Columns, Columns]:
    """Queue rows ("m"|"v", device, timestamp, values...) as columns per kind."""
    meters, vehicles = Columns(METER_COLUMNS), Columns(VEHICLE_COLUMNS)
    for entry in entries:
        for kind, *row in entry.rows:
            (meters if kind == "m" else vehicles).append(row)
    return meters, vehicles


def store_entries(engine: Engine, entries: list[Entry]) -> StoreResult:
    """Store the readings of these entries in one transaction."""
    meters, vehicles = split_by_kind(entries)
    with engine.begin() as conn:
        return store_batch(conn, meters, vehicles)


def drain(
    queue: ReadingQueue, engine: Engine, consumer: str, settings: Settings,
    budget_s: float | None = None,
) -> DrainReport:
    """Store batches until the queue is empty or the time budget is spent.

    An exception (the database down, say) leaves the current batch pending
    under this consumer: the next drain in this process retries it first.
    """
    budget_s = settings.drain_task_s if budget_s is None else budget_s
    deadline = time.monotonic() + budget_s
    report = DrainReport()
    queue.ensure_group()
    queue.claim_stale(consumer, settings.claim_idle_s)
    while (left_s := deadline - time.monotonic()) > 0:
        # Listening for up to a beat interval keeps one process always ready, so
        # a reading waits for a batch to fill, not for the next beat.
        entries = queue.take(
            consumer, settings.batch_max_readings, settings.batch_max_wait_ms / 1000,
            idle_wait_s=min(settings.drain_interval_s, left_s),
        )
        if not entries:
            break
        report.add(store_entries(engine, entries))
        queue.ack(entries)
    return report
