"""Draining the queue: batches of entries, one transaction each, acknowledged after commit.

These are plain functions of a queue and an engine, so tests can run them
directly; the Celery task in workers/tasks.py only supplies both.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date

import redis
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from models import dead_letters, partitions
from models.store import METER_COLUMNS, VEHICLE_COLUMNS, Columns, StoreResult, store_batch
from readings import rows as row_format
from settings import Settings
from workers import metrics
from workers.queue import Entry, ReadingQueue

log = logging.getLogger(__name__)


@dataclass
class DrainReport:
    batches: int = 0
    readings: int = 0
    stored: int = 0
    duplicates: int = 0
    refused: int = 0

    def add(self, result: StoreResult) -> None:
        self.batches += 1
        self.readings += result.readings
        self.stored += result.stored
        self.duplicates += result.duplicates
        self.refused += result.refused


# Failures that say nothing about the readings: the batch is retried as it is.
UNAVAILABLE = (OperationalError, InterfaceError, SATimeoutError, redis.ConnectionError,
               redis.TimeoutError)


def split_by_kind(rows: list[list]) -> tuple[Columns, Columns]:
    """Queue rows as columns per kind; ValueError for a row no edge wrote."""
    meters, vehicles = row_format.split(rows)
    return Columns.of(METER_COLUMNS, meters), Columns.of(VEHICLE_COLUMNS, vehicles)


def store_rows(engine: Engine, rows: list[list]) -> StoreResult:
    """Store readings in one transaction."""
    meters, vehicles = split_by_kind(rows)
    with engine.begin() as conn:
        return store_batch(conn, meters, vehicles)


# Days this process knows to have history partitions: a batch of known days
# costs no catalog query.
_partition_days: set[date] = set()


def ensure_partitions(engine: Engine, rows: list[list]) -> None:
    """Create the history partitions for the days of these rows, if missing."""
    # A malformed row has no day (None): split_by_kind refuses it.
    days = {row_format.day_of(row) for row in rows} - {None}
    if missing := days - _partition_days:
        partitions.ensure_days(engine, missing)
        _partition_days.update(missing)


def store_entries(engine: Engine, entries: list[Entry]) -> StoreResult:
    """Store the batch in one transaction or, if the database refuses some reading
    in it, store the rest and dead-letter the refused ones (see isolate)."""
    rows = [(entry.id, i, row) for entry in entries for i, row in enumerate(entry.rows)]
    if any(row_format.is_dead_letter_row(row) for _, _, row in rows):
        rows = record_edge_dead_letters(engine, rows)
        if not rows:
            return StoreResult()
    ensure_partitions(engine, [row for _, _, row in rows])
    try:
        return store_rows(engine, [row for _, _, row in rows])
    except UNAVAILABLE:
        raise
    except (DBAPIError, ValueError, TypeError):
        log.warning("a batch was refused; isolating the refused readings")
    result, letters = isolate(engine, rows)
    if letters:
        with engine.begin() as conn:
            dead_letters.record(conn, letters)
        log.warning("dead-lettered %d readings", len(letters))
    return result


def record_edge_dead_letters(engine: Engine, rows: list[tuple[str, int, list]]) -> list:
    """Keep the dead-letter rows an edge queued (see workers.queue.dead_letter_row);
    returns the other rows."""
    letters: dict[str, list] = {}
    readings = []
    for entry_id, position, row in rows:
        if row_format.is_dead_letter_row(row):
            letters.setdefault(row[1], []).append((entry_id, position, row, row[2]))
        else:
            readings.append((entry_id, position, row))
    with engine.begin() as conn:
        for source, batch in letters.items():
            dead_letters.record(conn, batch, source)
    return readings


def isolate(engine: Engine, rows: list[tuple[str, int, list]]) -> tuple[StoreResult, list]:
    """Bisect the rows until each refused one stands alone; store all the others."""
    try:
        return store_rows(engine, [row for _, _, row in rows]), []
    except UNAVAILABLE:
        raise
    except (DBAPIError, ValueError, TypeError) as exc:
        if len(rows) == 1:
            entry_id, position, row = rows[0]
            return StoreResult(readings=1, refused=1), [(entry_id, position, row, refusal(exc))]
    half = len(rows) // 2
    (first, first_letters), (second, second_letters) = (
        isolate(engine, rows[:half]), isolate(engine, rows[half:])
    )
    first.merge(second)
    return first, first_letters + second_letters


def refusal(exc: Exception) -> str:
    """Why a reading was refused, named by error class and constraint: never the
    database's own text, which may quote data and reaches operators' screens."""
    orig = getattr(exc, "orig", None)
    if orig is None:
        return f"malformed queue row ({type(exc).__name__})"
    reason = f"refused by the database: {type(orig).__name__} ({orig.sqlstate})"
    diag = orig.diag
    for label, value in (("constraint", diag.constraint_name), ("column", diag.column_name)):
        if value:
            reason += f", {label} {value}"
    return reason


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
        started = time.perf_counter()
        result = store_entries(engine, entries)
        queue.ack(entries)
        record_metrics(result, time.perf_counter() - started)
        report.add(result)
    return report


def record_metrics(result: StoreResult, seconds: float) -> None:
    metrics.BATCHES.inc()
    metrics.READINGS.inc(result.readings)
    metrics.ROWS_WRITTEN.inc(result.stored)
    metrics.DUPLICATES.inc(result.duplicates)
    metrics.DEAD_LETTERS.inc(result.refused)
    metrics.BATCH_SECONDS.observe(seconds)
