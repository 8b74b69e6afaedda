"""Alert history: when each vehicle alert opened and cleared, with its figures.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("vehicle_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("figures", JSONB(), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("evaluated_at", TS, nullable=False),
        sa.Column("cleared_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_cleared_at"), "alerts", ["cleared_at"])
    op.create_index("uq_alerts_open", "alerts", ["vehicle_id", "kind"], unique=True,
                    postgresql_where=sa.text("cleared_at IS NULL"))


def downgrade() -> None:
    op.drop_table("alerts")
