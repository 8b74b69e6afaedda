"""Partition the history tables by day (native range partitions on ts).

Analytics then touch only the partitions of their window, and retention drops
whole partitions. Existing rows are copied into partitions for their days.
The partition DDL is written out here rather than imported, so this migration
stays what it was when later code changes.

Revision ID: 0003
Revises: 0002
"""

from alembic import op
from sqlalchemy import text

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = {"meter_readings": "meter_id", "vehicle_readings": "vehicle_id"}


def _copy_into_new_table(table: str, device: str, partitioned: bool) -> None:
    old = f"{table}_old"
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT pk_{table} TO pk_{old}")
    suffix = " PARTITION BY RANGE (ts)" if partitioned else ""
    op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS){suffix}")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({device}, ts)")
    if partitioned:
        days = op.get_bind().execute(text(
            f"SELECT DISTINCT date_trunc('day', ts AT TIME ZONE 'UTC') FROM {old}"
        )).scalars()
        for day in days:
            op.execute(
                f"CREATE TABLE {table}_p{day:%Y%m%d} PARTITION OF {table} FOR VALUES "
                f"FROM ('{day:%Y-%m-%d} 00:00+00') TO (('{day:%Y-%m-%d} 00:00+00'::timestamptz"
                f" + interval '1 day'))"
            )
    op.execute(f"INSERT INTO {table} SELECT * FROM {old}")
    op.execute(f"DROP TABLE {old} CASCADE")


def upgrade() -> None:
    for table, device in TABLES.items():
        _copy_into_new_table(table, device, partitioned=True)


def downgrade() -> None:
    for table, device in TABLES.items():
        _copy_into_new_table(table, device, partitioned=False)
