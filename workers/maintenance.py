"""History upkeep: partitions made ahead of time, and retention by dropping them."""

from __future__ import annotations

import logging
from datetime import date, timedelta

from sqlalchemy import Engine

from models import partitions
from settings import Settings

log = logging.getLogger(__name__)

DAYS_AHEAD = 2


def maintain_history(engine: Engine, settings: Settings, today: date) -> dict:
    """Create the partitions of yesterday to DAYS_AHEAD days ahead; drop whole
    partitions older than RETENTION_DAYS (a partition goes once all of it is)."""
    partitions.ensure_days(engine, {today + timedelta(days=n) for n in range(-1, DAYS_AHEAD + 1)})
    dropped: list[str] = []
    if settings.retention_days:
        dropped = partitions.drop_before(engine, today - timedelta(days=settings.retention_days))
        if dropped:
            log.info("retention dropped %d partitions: %s", len(dropped), ", ".join(dropped))
    return {"dropped": dropped}
