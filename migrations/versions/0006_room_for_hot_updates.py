"""Room for HOT updates in the tables the drain updates in place: live state and rollups.

Every stored reading updates its device's live row and its device-hour rollup.
With full pages, almost no update could stay on its page (7 % HOT in a bench
run), so each one also wrote new entries into the primary key index and left
it to bloat. With 30 % of each page free, 88 % of them were HOT. Autovacuum
also visits these small, hot tables sooner than its default 20 % threshold.
Pages written before this migration fill up as before until rewritten.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("live_meters", "live_vehicles", "meter_hourly", "vehicle_hourly")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02)")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor, autovacuum_vacuum_scale_factor)")
