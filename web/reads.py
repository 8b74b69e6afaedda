"""The one place a read endpoint gets its engine: `read_engine()`.

The analytics, fleet, series, sessions and live endpoints call it instead of
using the primary's engine, so that ANALYTICS_DATABASE_URL moves all of them
onto a replica (models/replica.py says when they fall back to the primary).
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import Engine


def read_engine() -> Engine:
    """The engine for this request's reads: the replica while it keeps up, else the primary."""
    return current_app.extensions["read_engines"].for_reads()
