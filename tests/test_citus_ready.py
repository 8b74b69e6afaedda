"""The schema is ready to distribute with Citus (docs/scaling.md): every unique
key and every index of history, rollups and live state holds the device id.

The families are found by name in the migrated schema, not listed here, so a
table added later (a daily rollup, a new history partition) is held to the rule
without editing this test.
"""

from __future__ import annotations

import re
from datetime import date

from sqlalchemy import text

from models import partitions

# History (and its partitions), rollups of any period, live state.
FAMILY = re.compile(r"^(\w+_readings(_p\d{8})?|\w+_(15min|hourly|6h|daily|weekly|monthly)|live_\w+"
                    r"|charging_sessions|session_marks)$")
DEVICE_COLUMNS = {"meter_id", "vehicle_id", "device_id"}
# A table of one row that holds no device: a Citus reference table, not distributed.
NOT_PER_DEVICE = {"rollup_watermark"}

INDEXES = text("""
    SELECT t.relname, i.relname, ix.indisunique,
           array(SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY k(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
                 ORDER BY k.n)
    FROM pg_index ix
    JOIN pg_class t ON t.oid = ix.indrelid
    JOIN pg_class i ON i.oid = ix.indexrelid
    JOIN pg_namespace ns ON ns.oid = t.relnamespace
    WHERE ns.nspname = current_schema()
""")


def family_indexes(engine) -> list[tuple[str, str, bool, list[str]]]:
    with engine.connect() as conn:
        rows = conn.execute(INDEXES).all()
    return [tuple(r) for r in rows if FAMILY.match(r[0]) and r[0] not in NOT_PER_DEVICE]


def test_every_index_of_history_rollups_and_live_state_holds_the_device_id(engine):
    # A partition made the way the drain makes them: partitions are held to the rule too.
    with engine.begin() as conn:
        partitions.create_partition(conn, "meter_readings", date(2026, 1, 5))
    try:
        indexes = family_indexes(engine)
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE meter_readings_p20260105"))
    tables = {table for table, *_ in indexes}
    # The families as they stand today: the rule is checked over at least these.
    assert {"meter_readings", "vehicle_readings", "meter_hourly", "vehicle_hourly",
            "live_meters", "live_vehicles", "meter_readings_p20260105"} <= tables
    offenders = [(table, index, columns) for table, index, _, columns in indexes
                 if not DEVICE_COLUMNS & set(columns)]
    assert offenders == []


def test_every_unique_key_of_these_families_leads_with_the_device_id(engine):
    """Citus enforces a unique key only with the distribution column in it; leading
    with it also makes the key the index of "one device, a time range"."""
    uniques = [(table, index, columns) for table, index, unique, columns in family_indexes(engine)
               if unique]
    assert uniques, "no unique keys found: the query or the schema changed"
    offenders = [u for u in uniques if u[2][0] not in DEVICE_COLUMNS]
    assert offenders == []
