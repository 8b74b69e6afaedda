"""Daily partitions of the history tables: made ahead of time, dropped by retention.

Partition `meter_readings_p20261123` holds [2026-11-23 00:00Z, 2026-11-24 00:00Z).
Workers create the partitions a batch needs before storing it (late readings
from an older day, a backfill) and a beat task creates the coming days' ahead of
time, so the web never waits on DDL. Retention drops whole partitions: no
DELETE scans, no bloat.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError, ProgrammingError

from models.rollups import KINDS, UNITS
from models.session_store import forget_sessions_before

log = logging.getLogger(__name__)

HISTORY_TABLES = ("meter_readings", "vehicle_readings")
PARTITION_NAME = re.compile(r"(?P<table>\w+)_p(?P<day>\d{8})")

LIST = text(
    """
    SELECT child.relname FROM pg_inherits
    JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
    JOIN pg_class child ON child.oid = pg_inherits.inhrelid
    WHERE parent.relname = :table
    """
)


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def create_partition(conn: Connection, table: str, day: date) -> None:
    """Create the day's partition of `table` unless it exists."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    conn.execute(text(
        f"CREATE TABLE IF NOT EXISTS {partition_name(table, day)} PARTITION OF {table} "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{(start + timedelta(days=1)).isoformat()}')"
    ))


def ensure_days(engine: Engine, days: set[date]) -> None:
    """Make sure every history table has a partition for each day."""
    with engine.connect() as conn:
        existing = {table: set(partitions(conn, table)) for table in HISTORY_TABLES}
    for day in sorted(days):
        for table in HISTORY_TABLES:
            if day in existing[table]:
                continue
            try:
                with engine.begin() as conn:
                    create_partition(conn, table, day)
            except (IntegrityError, ProgrammingError):
                # Another worker created it between our check and our CREATE.
                log.info("partition %s appeared concurrently", partition_name(table, day))


def partitions(conn: Connection, table: str) -> dict[date, str]:
    """The table's daily partitions by day."""
    found = {}
    for (name,) in conn.execute(LIST, {"table": table}):
        match = PARTITION_NAME.fullmatch(name)
        if match and match["table"] == table:
            found[datetime.strptime(match["day"], "%Y%m%d").date()] = name
    return found


def drop_before(engine: Engine, cutoff: date) -> list[str]:
    """Drop every partition that holds only days before `cutoff`, and the
    rollups and stored sessions of those days; returns the partitions' names."""
    dropped = []
    with engine.begin() as conn:
        midnight = datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=UTC)
        for kind in KINDS:
            for unit, (column, _, _) in UNITS.items():
                conn.execute(text(f"DELETE FROM {kind}_{unit} WHERE {column} < :cutoff"),
                             {"cutoff": midnight})
        forget_sessions_before(conn, midnight)
        for table in HISTORY_TABLES:
            for day, name in sorted(partitions(conn, table).items()):
                if day < cutoff:
                    conn.execute(text(f"DROP TABLE {name}"))
                    dropped.append(name)
    return dropped
