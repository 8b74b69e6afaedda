"""Every index of history leads with or includes the device id, ready for Citus.

Citus distributes a table by one column (here the device id) and can enforce a
unique key, or keep an index local to each shard, only when it holds that
column. The primary keys of history, rollups and live state already lead with
the device id; the BRIN indexes on history time did not. They now cover
(ts, device id): a BRIN index answers on any subset of its columns, so
fleet-wide time-range scans use it as before, and its summary of the device
column costs a few bytes per range of pages. docs/scaling.md has the plan;
tests/test_citus_ready.py holds every table of these families to the rule.

Rebuilding a BRIN index reads the table once and takes a SHARE lock (writes
wait, reads go on): seconds per million rows.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = {"meter_readings": "meter_id", "vehicle_readings": "vehicle_id"}


def upgrade() -> None:
    for table, device in TABLES.items():
        op.drop_index(f"ix_{table}_ts", table_name=table)
        op.create_index(f"ix_{table}_ts", table, ["ts", device], postgresql_using="brin")


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_ts", table_name=table)
        op.create_index(f"ix_{table}_ts", table, ["ts"], postgresql_using="brin")
