"""Stored charging sessions, kept up to date as hours close.

Finding sessions in raw history costs about 10 s per 1,000 vehicle-days, too slow
for the fleet's worst sessions of a day. `charging_sessions` holds every vehicle's
sessions of the window [sessions_from, its rolled-up hour), computed by the same
query as a live window (models/sessions.py) and extended with each device range
of the hourly roll-up (models/roll_up.py). `session_marks` names the vehicles
whose stored sessions from `since` on may be stale (a late reading, a late
relink): they are read live until the next roll-up recomputes them.
`rollup_watermark.sessions_from` is where the stored sessions begin (none are
stored yet: the current watermark) and `sessions_gap` the gap they were found
with; a query with another gap is answered live.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, INTERVAL, TIMESTAMP

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TS = TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "charging_sessions",
        sa.Column("vehicle_id", sa.Text(), nullable=False),
        sa.Column("start", TS, nullable=False),
        sa.Column("end", TS, nullable=False),
        sa.Column("ac", sa.Double(), nullable=False),
        sa.Column("dc", sa.Double(), nullable=False),
        sa.Column("soc_start", sa.Double()),
        sa.Column("soc_end", sa.Double()),
        sa.Column("avg_temp", sa.Double()),
        sa.Column("max_temp", sa.Double()),
        sa.Column("meter_ids", ARRAY(sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("vehicle_id", "start", name=op.f("pk_charging_sessions")),
    )
    # The fleet's sessions of a window; the vehicle id in it for Citus.
    op.create_index("ix_charging_sessions_start", "charging_sessions", ["start", "vehicle_id"])
    op.create_table(
        "session_marks",
        sa.Column("vehicle_id", sa.Text(), nullable=False),
        sa.Column("since", TS, nullable=False),
        sa.PrimaryKeyConstraint("vehicle_id", name=op.f("pk_session_marks")),
    )
    op.add_column("rollup_watermark", sa.Column("sessions_from", TS))
    op.add_column("rollup_watermark", sa.Column("sessions_gap", INTERVAL(), nullable=False,
                                                server_default=sa.text("interval '15 minutes'")))
    op.execute("UPDATE rollup_watermark SET sessions_from = rolled_up_until")
    op.alter_column("rollup_watermark", "sessions_from", nullable=False)


def downgrade() -> None:
    op.drop_column("rollup_watermark", "sessions_gap")
    op.drop_column("rollup_watermark", "sessions_from")
    op.drop_table("session_marks")
    op.drop_index("ix_charging_sessions_start", table_name="charging_sessions")
    op.drop_table("charging_sessions")
