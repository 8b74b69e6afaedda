"""History upkeep: partitions made ahead of time, retention by dropping them, and
the retention of hourly rollups (ROLLUP_HOURLY_RETENTION_DAYS)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine

from models import partitions
from models.roll_up import drop_hours_before
from settings import Settings

log = logging.getLogger(__name__)

DAYS_AHEAD = 2


def maintain_history(engine: Engine, settings: Settings, today: date) -> dict:
    """Create the partitions of yesterday to DAYS_AHEAD days ahead; drop whole
    partitions older than RETENTION_DAYS (a partition goes once all of it is),
    and hourly rollups of days older than ROLLUP_HOURLY_RETENTION_DAYS."""
    partitions.ensure_days(engine, {today + timedelta(days=n) for n in range(-1, DAYS_AHEAD + 1)})
    dropped: list[str] = []
    if settings.retention_days:
        dropped = partitions.drop_before(engine, today - timedelta(days=settings.retention_days))
        if dropped:
            log.info("retention dropped %d partitions: %s", len(dropped), ", ".join(dropped))
    report: dict = {"dropped": dropped}
    if settings.rollup_hourly_retention_days:
        cutoff = today - timedelta(days=settings.rollup_hourly_retention_days)
        report["hourly_rollups_deleted"] = drop_hours_before(
            engine, datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=UTC))
    return report
