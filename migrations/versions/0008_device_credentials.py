"""Device credentials: per-device and per-gateway tokens, stored as SHA-256 hashes.

Until now any ingest token could write any device's readings. Each device (and
each gateway, which posts for the devices attached to it) gets a token of its
own; only the token's hash is stored. `credential_version` is bumped in the same
transaction as every change, so that each web process can tell, with one tiny
query, that its cache of credentials is stale (see credentials/cache.py).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _credential_columns() -> list[sa.Column]:
    return [
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("previous_token_hash", sa.LargeBinary(), nullable=True),
        sa.Column("previous_valid_until", TIMESTAMP(timezone=True), nullable=True),
        sa.Column("disabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", TIMESTAMP(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        *_credential_columns(),
        sa.CheckConstraint("kind IN ('meter', 'vehicle')", name=op.f("ck_devices_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_devices_token_hash")),
    )
    op.create_table(
        "gateways",
        sa.Column("id", sa.Text(), nullable=False),
        *_credential_columns(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateways")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_gateways_token_hash")),
    )
    op.create_table(
        "gateway_devices",
        sa.Column("gateway_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["gateway_id"], ["gateways.id"], ondelete="CASCADE",
                                name=op.f("fk_gateway_devices_gateway_id_gateways")),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE",
                                name=op.f("fk_gateway_devices_device_id_devices")),
        sa.PrimaryKeyConstraint("gateway_id", "device_id", name=op.f("pk_gateway_devices")),
    )
    op.create_index(op.f("ix_gateway_devices_device_id"), "gateway_devices", ["device_id"])
    op.create_table(
        "credential_version",
        sa.Column("one", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("one", name=op.f("ck_credential_version_one_row")),
        sa.PrimaryKeyConstraint("one", name=op.f("pk_credential_version")),
    )
    op.execute("INSERT INTO credential_version DEFAULT VALUES")


def downgrade() -> None:
    op.drop_table("credential_version")
    op.drop_table("gateway_devices")
    op.drop_table("gateways")
    op.drop_table("devices")
