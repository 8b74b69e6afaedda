"""15-minute rollups, for fleet-wide reads of a window's edges.

A fleet-wide window cut inside hours read both edges' partial hours from every
device's history: 2 x 30 minutes of readings per device for a day cut at :30,
1.2 million readings at 20,000 devices. `meter_15min` and `vehicle_15min` hold
the same sums as the hourly rollups per device and 15 minutes, made with each
hour's roll-up and kept exact for late readings like the hourly ones. The
rolled-up hours that are kept are rolled up here, with the watermark locked so
that no drain's late reading is missed meanwhile.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TS = TIMESTAMP(timezone=True)
QUARTER = "date_bin(interval '15 minutes', ts, timestamptz '2000-01-01 00:00:00+00')"
# The readings of the rolled-up device-hours that are kept (models/rollups.py):
# the hours before the watermark, and the devices of its own hour before
# rolling_device.
ROLLED_UP = """
    (ts < m.rolled_up_until
     OR (ts < m.rolled_up_until + interval '1 hour' AND {device} < m.rolling_device))
    AND (m.hours_kept_since IS NULL OR ts >= m.hours_kept_since)"""


def upgrade() -> None:
    op.create_table(
        "meter_15min",
        sa.Column("meter_id", sa.Text(), nullable=False),
        sa.Column("bucket", TS, nullable=False),
        sa.Column("kwh_consumed_ac", sa.Double(), nullable=False),
        sa.Column("readings", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("meter_id", "bucket", name=op.f("pk_meter_15min")),
    )
    op.create_table(
        "vehicle_15min",
        sa.Column("vehicle_id", sa.Text(), nullable=False),
        sa.Column("bucket", TS, nullable=False),
        sa.Column("kwh_delivered_dc", sa.Double(), nullable=False),
        sa.Column("battery_temp_sum", sa.Double(), nullable=False),
        sa.Column("battery_temp_max", sa.Double(), nullable=False),
        sa.Column("readings", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("vehicle_id", "bucket", name=op.f("pk_vehicle_15min")),
    )
    # Time first, for the fleet's reads; the device id too (Citus: docs/scaling.md).
    for table, device in (("meter_15min", "meter_id"), ("vehicle_15min", "vehicle_id")):
        op.create_index(op.f(f"ix_{table}_bucket"), table, ["bucket", device])
    op.execute("SELECT 1 FROM rollup_watermark FOR UPDATE")
    op.execute(f"""
        INSERT INTO meter_15min
        SELECT meter_id, {QUARTER}, sum(kwh_consumed_ac), count(*) FROM meter_readings, rollup_watermark m
        WHERE {ROLLED_UP.format(device="meter_id")} GROUP BY 1, 2 ORDER BY 2, 1""")
    op.execute(f"""
        INSERT INTO vehicle_15min
        SELECT vehicle_id, {QUARTER}, sum(kwh_delivered_dc), sum(battery_temp), max(battery_temp), count(*)
        FROM vehicle_readings, rollup_watermark m
        WHERE {ROLLED_UP.format(device="vehicle_id")} GROUP BY 1, 2 ORDER BY 2, 1""")


def downgrade() -> None:
    op.drop_table("vehicle_15min")
    op.drop_table("meter_15min")
