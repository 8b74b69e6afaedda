"""The rollup watermark: hours before it are rolled up, later ones are read from history.

The drain used to upsert a reading's device-hour rollup with every reading, the
largest part of PostgreSQL's work per reading. Now a beat task rolls each hour
up once it has closed and moves the watermark past it; the drain upserts
rollups only for late readings, of hours already rolled up. Until this
migration the drain kept every hour's rollups, so all hours before the current
one are complete: the watermark starts at the current hour.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollup_watermark",
        sa.Column("one", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("rolled_up_until", TIMESTAMP(timezone=True), nullable=False),
        sa.CheckConstraint("one", name=op.f("ck_rollup_watermark_one_row")),
        sa.PrimaryKeyConstraint("one", name=op.f("pk_rollup_watermark")),
    )
    op.execute("INSERT INTO rollup_watermark (rolled_up_until) VALUES (date_trunc('hour', now(), 'UTC'))")


def downgrade() -> None:
    # The drain before this migration expects every hour rolled up: roll up the rest.
    since = "(SELECT rolled_up_until FROM rollup_watermark)"
    op.execute(f"DELETE FROM meter_hourly WHERE hour >= {since}")
    op.execute(f"DELETE FROM vehicle_hourly WHERE hour >= {since}")
    op.execute(f"""
        INSERT INTO meter_hourly (meter_id, hour, kwh_consumed_ac, readings)
        SELECT meter_id, date_trunc('hour', ts, 'UTC'), sum(kwh_consumed_ac), count(*)
        FROM meter_readings WHERE ts >= {since} GROUP BY 1, 2""")
    op.execute(f"""
        INSERT INTO vehicle_hourly
            (vehicle_id, hour, kwh_delivered_dc, battery_temp_sum, battery_temp_max, readings)
        SELECT vehicle_id, date_trunc('hour', ts, 'UTC'), sum(kwh_delivered_dc), sum(battery_temp),
               max(battery_temp), count(*)
        FROM vehicle_readings WHERE ts >= {since} GROUP BY 1, 2""")
    op.drop_table("rollup_watermark")
