"""6-hour rollups, for fleet-wide reads of the hours outside whole days.

A fleet window of a day cut inside hours read 23 hourly rows per device; with
6-hour blocks it reads at most 5 hours and 3 blocks on each side of a midnight.
`meter_6h` and `vehicle_6h` hold the hourly rollups' sums per device and UTC
block (00:00, 06:00, 12:00, 18:00), made with the block's last hour and kept
exact for late readings like the hourly ones. The blocks rolled up and kept
are filled here from the hourly rollups, with the watermark locked so that no
drain's late reading is missed meanwhile.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TS = TIMESTAMP(timezone=True)
BLOCK = "date_bin(interval '6 hours', hour, timestamptz '2000-01-01 00:00:00+00')"
# The blocks whose last hour is rolled up (models/rollups.py): before the
# watermark, or its own hour for the devices before rolling_device.
ROLLED_UP = f"""
    ({BLOCK} + interval '5 hours' < m.rolled_up_until
     OR ({BLOCK} + interval '5 hours' = m.rolled_up_until AND {{device}} < m.rolling_device))"""


def upgrade() -> None:
    for kind, device, sums in (
        ("meter", "meter_id", [sa.Column("kwh_consumed_ac", sa.Double(), nullable=False)]),
        ("vehicle", "vehicle_id", [sa.Column("kwh_delivered_dc", sa.Double(), nullable=False),
                                   sa.Column("battery_temp_sum", sa.Double(), nullable=False),
                                   sa.Column("battery_temp_max", sa.Double(), nullable=False)]),
    ):
        op.create_table(
            f"{kind}_6h",
            sa.Column(device, sa.Text(), nullable=False),
            sa.Column("bucket", TS, nullable=False),
            *sums,
            sa.Column("readings", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint(device, "bucket", name=op.f(f"pk_{kind}_6h")),
        )
        # Time first, for the fleet's reads; the device id too (Citus: docs/scaling.md).
        op.create_index(op.f(f"ix_{kind}_6h_bucket"), f"{kind}_6h", ["bucket", device])
    op.execute("SELECT 1 FROM rollup_watermark FOR UPDATE")
    op.execute(f"""
        INSERT INTO meter_6h
        SELECT meter_id, {BLOCK}, sum(kwh_consumed_ac), sum(readings) FROM meter_hourly, rollup_watermark m
        WHERE {ROLLED_UP.format(device="meter_id")} GROUP BY 1, 2 ORDER BY 2, 1""")
    op.execute(f"""
        INSERT INTO vehicle_6h
        SELECT vehicle_id, {BLOCK}, sum(kwh_delivered_dc), sum(battery_temp_sum), max(battery_temp_max),
               sum(readings)
        FROM vehicle_hourly, rollup_watermark m
        WHERE {ROLLED_UP.format(device="vehicle_id")} GROUP BY 1, 2 ORDER BY 2, 1""")


def downgrade() -> None:
    op.drop_table("vehicle_6h")
    op.drop_table("meter_6h")
