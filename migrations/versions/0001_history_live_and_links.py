"""History, live-state and meter-link tables.

History is append-only and keyed by (device, instant), which both deduplicates
retried readings and serves every "one device, a time range" query. Live state
holds one row per device. Links carry `since`, so relinking adds a row.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "meter_readings",
        sa.Column("meter_id", sa.Text(), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("kwh_consumed_ac", sa.Double(), nullable=False),
        sa.Column("voltage", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("meter_id", "ts", name=op.f("pk_meter_readings")),
    )
    op.create_table(
        "vehicle_readings",
        sa.Column("vehicle_id", sa.Text(), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("soc", sa.Double(), nullable=False),
        sa.Column("kwh_delivered_dc", sa.Double(), nullable=False),
        sa.Column("battery_temp", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("vehicle_id", "ts", name=op.f("pk_vehicle_readings")),
    )
    op.create_table(
        "live_meters",
        sa.Column("meter_id", sa.Text(), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("kwh_consumed_ac", sa.Double(), nullable=False),
        sa.Column("voltage", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("meter_id", name=op.f("pk_live_meters")),
    )
    op.create_table(
        "live_vehicles",
        sa.Column("vehicle_id", sa.Text(), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("soc", sa.Double(), nullable=False),
        sa.Column("kwh_delivered_dc", sa.Double(), nullable=False),
        sa.Column("battery_temp", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("vehicle_id", name=op.f("pk_live_vehicles")),
    )
    op.create_table(
        "meter_links",
        sa.Column("meter_id", sa.Text(), nullable=False),
        sa.Column("since", TS, nullable=False),
        sa.Column("vehicle_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("meter_id", "since", name=op.f("pk_meter_links")),
    )
    op.create_index(op.f("ix_meter_links_vehicle_id"), "meter_links", ["vehicle_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_meter_links_vehicle_id"), table_name="meter_links")
    for table in ("meter_links", "live_vehicles", "live_meters", "vehicle_readings",
                  "meter_readings"):
        op.drop_table(table)
