"""Dead letters say where they come from: the database (a refused reading) or MQTT.

The MQTT bridge keeps the messages it cannot turn into readings (not JSON,
invalid, topic and payload disagreeing, too large) as dead letters, so that
operators see them beside the readings the database refused. Only the
database's can be re-driven: a bad message needs its device to send it again.
Existing rows are all the database's.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("source", sa.Text(), server_default="database",
                                            nullable=False))
    op.create_check_constraint("source", "dead_letters", "source IN ('database', 'mqtt')")


def downgrade() -> None:
    op.execute("DELETE FROM dead_letters WHERE source <> 'database'")
    op.drop_constraint(op.f("ck_dead_letters_source"), "dead_letters", type_="check")
    op.drop_column("dead_letters", "source")
