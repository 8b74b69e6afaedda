"""Daily rollups per device and UTC day; hourly rollups read by time; the watermark
learns device ranges and hourly retention.

Long windows (weeks, months) read one row per device-day instead of 24 hourly
ones. Days before the watermark's midnight are rolled up here from the hourly
rollups, which are complete before the watermark. The watermark row gains
`rolling_device` (roll-ups now go through an hour in device ranges, so that a
drain never waits for a whole hour's aggregation) and `hours_kept_since`
(hourly rollups may be kept less long than daily ones). Indexes on the hour
and the day serve fleet-wide reads of a time range.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TS = TIMESTAMP(timezone=True)
WATERMARK_DAY = "(SELECT date_trunc('day', rolled_up_until, 'UTC') FROM rollup_watermark)"


def upgrade() -> None:
    op.create_table(
        "meter_daily",
        sa.Column("meter_id", sa.Text(), nullable=False),
        sa.Column("day", TS, nullable=False),
        sa.Column("kwh_consumed_ac", sa.Double(), nullable=False),
        sa.Column("readings", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("meter_id", "day", name=op.f("pk_meter_daily")),
    )
    op.create_table(
        "vehicle_daily",
        sa.Column("vehicle_id", sa.Text(), nullable=False),
        sa.Column("day", TS, nullable=False),
        sa.Column("kwh_delivered_dc", sa.Double(), nullable=False),
        sa.Column("battery_temp_sum", sa.Double(), nullable=False),
        sa.Column("battery_temp_max", sa.Double(), nullable=False),
        sa.Column("readings", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("vehicle_id", "day", name=op.f("pk_vehicle_daily")),
    )
    op.add_column("rollup_watermark", sa.Column("rolling_device", sa.Text(), nullable=True))
    op.add_column("rollup_watermark", sa.Column("hours_kept_since", TS, nullable=True))
    op.execute(f"""
        INSERT INTO meter_daily
        SELECT meter_id, date_trunc('day', hour, 'UTC'), sum(kwh_consumed_ac), sum(readings)
        FROM meter_hourly WHERE hour < {WATERMARK_DAY} GROUP BY 1, 2""")
    op.execute(f"""
        INSERT INTO vehicle_daily
        SELECT vehicle_id, date_trunc('day', hour, 'UTC'), sum(kwh_delivered_dc),
               sum(battery_temp_sum), max(battery_temp_max), sum(readings)
        FROM vehicle_hourly WHERE hour < {WATERMARK_DAY} GROUP BY 1, 2""")
    # Time first, for fleet-wide ranges and retention; the device id too, so that
    # every index of these tables holds it (Citus: docs/scaling.md).
    for table, column, device in (("meter_hourly", "hour", "meter_id"),
                                  ("vehicle_hourly", "hour", "vehicle_id"),
                                  ("meter_daily", "day", "meter_id"),
                                  ("vehicle_daily", "day", "vehicle_id")):
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column, device])


def downgrade() -> None:
    # Hours in the middle of a device-range roll-up: the older code rolls them up again.
    op.execute("""UPDATE rollup_watermark SET rolling_device = NULL""")
    op.drop_column("rollup_watermark", "hours_kept_since")
    op.drop_column("rollup_watermark", "rolling_device")
    op.drop_index(op.f("ix_vehicle_hourly_hour"), table_name="vehicle_hourly")
    op.drop_index(op.f("ix_meter_hourly_hour"), table_name="meter_hourly")
    op.drop_table("vehicle_daily")
    op.drop_table("meter_daily")
