"""Hourly rollups per device, and BRIN indexes on history time for fleet-wide ranges.

Fleet queries read one rollup row per device-hour instead of sixty readings;
the BRIN indexes serve the partial hours at a window's edges. Existing history
is rolled up here.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "meter_hourly",
        sa.Column("meter_id", sa.Text(), nullable=False),
        sa.Column("hour", TS, nullable=False),
        sa.Column("kwh_consumed_ac", sa.Double(), nullable=False),
        sa.Column("readings", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("meter_id", "hour", name=op.f("pk_meter_hourly")),
    )
    op.create_table(
        "vehicle_hourly",
        sa.Column("vehicle_id", sa.Text(), nullable=False),
        sa.Column("hour", TS, nullable=False),
        sa.Column("kwh_delivered_dc", sa.Double(), nullable=False),
        sa.Column("battery_temp_sum", sa.Double(), nullable=False),
        sa.Column("battery_temp_max", sa.Double(), nullable=False),
        sa.Column("readings", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("vehicle_id", "hour", name=op.f("pk_vehicle_hourly")),
    )
    op.create_index("ix_meter_readings_ts", "meter_readings", ["ts"], postgresql_using="brin")
    op.create_index("ix_vehicle_readings_ts", "vehicle_readings", ["ts"], postgresql_using="brin")
    op.execute("""
        INSERT INTO meter_hourly
        SELECT meter_id, date_trunc('hour', ts, 'UTC'), sum(kwh_consumed_ac), count(*)
        FROM meter_readings GROUP BY 1, 2
    """)
    op.execute("""
        INSERT INTO vehicle_hourly
        SELECT vehicle_id, date_trunc('hour', ts, 'UTC'), sum(kwh_delivered_dc),
               sum(battery_temp), max(battery_temp), count(*)
        FROM vehicle_readings GROUP BY 1, 2
    """)


def downgrade() -> None:
    op.drop_index("ix_vehicle_readings_ts", table_name="vehicle_readings")
    op.drop_index("ix_meter_readings_ts", table_name="meter_readings")
    op.drop_table("vehicle_hourly")
    op.drop_table("meter_hourly")
