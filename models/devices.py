"""The device registry: devices and gateways with their token hashes, and which
devices each gateway may post for.

Only a token's SHA-256 hash is stored (credentials/tokens.py says why that is
enough). Every change bumps `credential_version` in its own transaction, so the
web processes' caches (credentials/cache.py) can tell they are stale with one
tiny query, even when the Redis message that tells them at once is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Connection,
    Engine,
    ForeignKey,
    LargeBinary,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base, read_connection

KINDS = ("meter", "vehicle")


class _Credential:
    """Columns that devices and gateways share: the token hashes and the state."""

    token_hash: Mapped[bytes] = mapped_column(LargeBinary)
    # After a rotation the old token keeps working until previous_valid_until.
    previous_token_hash: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    previous_valid_until: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True),
                                                                  nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True),
                                                 server_default=text("now()"))


class Device(_Credential, Base):
    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("token_hash"),
                      CheckConstraint("kind IN ('meter', 'vehicle')", name="kind"))

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)


class Gateway(_Credential, Base):
    __tablename__ = "gateways"
    __table_args__ = (UniqueConstraint("token_hash"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)


class GatewayDevice(Base):
    __tablename__ = "gateway_devices"

    gateway_id: Mapped[str] = mapped_column(
        Text, ForeignKey("gateways.id", ondelete="CASCADE"), primary_key=True)
    device_id: Mapped[str] = mapped_column(
        Text, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True, index=True)


class CredentialVersion(Base):
    """One row: bumped by every change to devices, gateways or their attachments."""

    __tablename__ = "credential_version"
    __table_args__ = (CheckConstraint("one", name="one_row"),)

    one: Mapped[bool] = mapped_column(Boolean, primary_key=True, server_default=text("true"))
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class AlreadyExists(Exception):
    """Some of the ids are registered already; `ids` names them."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"{len(ids)} ids are registered already")
        self.ids = ids


@dataclass(frozen=True)
class DeviceInfo:
    id: str
    kind: str
    created_at: datetime
    disabled: bool
    last_seen: datetime | None


@dataclass(frozen=True)
class GatewayInfo:
    id: str
    disabled: bool
    created_at: datetime
    devices: list[str]


BUMP = text("UPDATE credential_version SET version = version + 1")
VERSION = text("SELECT version FROM credential_version")
# The newest reading's timestamp, from live state, is when a device was last seen.
DEVICE_COLUMNS = """
    d.id, d.kind, d.created_at, d.disabled,
    CASE d.kind WHEN 'meter' THEN (SELECT ts FROM live_meters WHERE meter_id = d.id)
                ELSE (SELECT ts FROM live_vehicles WHERE vehicle_id = d.id) END AS last_seen
"""
GET_DEVICE = text(f"SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.id = :id")
LIST_DEVICES = text(
    f"""
    SELECT {DEVICE_COLUMNS} FROM devices d
    WHERE (CAST(:kind AS text) IS NULL OR d.kind = :kind)
      AND starts_with(d.id, :prefix)
    ORDER BY d.id LIMIT :limit OFFSET :offset
    """
)
INSERT_DEVICES = text(
    """
    INSERT INTO devices (id, kind, token_hash)
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:kinds AS text[]), CAST(:hashes AS bytea[]))
    ON CONFLICT (id) DO NOTHING RETURNING id
    """
)
# A grace of 0 s forgets the old hash at once; otherwise it works until then.
ROTATE = """
    UPDATE {table} SET token_hash = :hash,
        previous_token_hash = CASE WHEN :grace_s > 0 THEN token_hash END,
        previous_valid_until = CASE WHEN :grace_s > 0
                                    THEN now() + make_interval(secs => :grace_s) END
    WHERE id = :id RETURNING id
"""
SET_DISABLED = "UPDATE {table} SET disabled = :disabled WHERE id = :id RETURNING id"
TABLES = ("devices", "gateways")
INSERT_GATEWAY = text(
    "INSERT INTO gateways (id, token_hash) VALUES (:id, :hash) ON CONFLICT (id) DO NOTHING RETURNING id")
GET_GATEWAY = text(
    """
    SELECT g.id, g.disabled, g.created_at,
           ARRAY(SELECT device_id FROM gateway_devices WHERE gateway_id = g.id ORDER BY device_id)
               AS devices
    FROM gateways g WHERE g.id = :id
    """
)
ATTACH = text(
    """
    INSERT INTO gateway_devices (gateway_id, device_id) VALUES (:gateway_id, :device_id)
    ON CONFLICT DO NOTHING
    """
)
DETACH = text("DELETE FROM gateway_devices WHERE gateway_id = :gateway_id AND device_id = :device_id")
# What a web process caches: every hash that opens something, with what it opens.
LOAD_DEVICES = text(
    "SELECT id, kind, disabled, token_hash, previous_token_hash, previous_valid_until FROM devices")
LOAD_GATEWAYS = text(
    """
    SELECT g.id, g.disabled, g.token_hash, g.previous_token_hash, g.previous_valid_until,
           coalesce(array_agg(a.device_id) FILTER (WHERE a.device_id IS NOT NULL), '{}')
    FROM gateways g LEFT JOIN gateway_devices a ON a.gateway_id = g.id
    GROUP BY g.id
    """
)


def create_devices(engine: Engine, devices: list[tuple[str, str, bytes]]) -> None:
    """Register (id, kind, token hash) triples, all or none; AlreadyExists names taken ids."""
    with engine.begin() as conn:
        created = conn.execute(INSERT_DEVICES, {
            "ids": [d[0] for d in devices], "kinds": [d[1] for d in devices],
            "hashes": [d[2] for d in devices]}).scalars().all()
        if len(created) < len(devices):
            conn.rollback()
            fresh = set(created)
            raise AlreadyExists([d[0] for d in devices if d[0] not in fresh])
        conn.execute(BUMP)


def get_device(engine: Engine, device_id: str) -> DeviceInfo | None:
    with read_connection(engine) as conn:
        row = conn.execute(GET_DEVICE, {"id": device_id}).first()
    return DeviceInfo(*row) if row else None


def list_devices(engine: Engine, kind: str | None, prefix: str, limit: int,
                 offset: int) -> list[DeviceInfo]:
    """A page of devices in id order, of one kind or both, whose ids start with `prefix`."""
    with read_connection(engine) as conn:
        rows = conn.execute(LIST_DEVICES, {"kind": kind, "prefix": prefix, "limit": limit,
                                           "offset": offset})
        return [DeviceInfo(*row) for row in rows]


def rotate_token(engine: Engine, table: str, owner_id: str, token_hash: bytes,
                 grace_s: int) -> bool:
    """Give a device or gateway a new token hash; False if there is no such one."""
    assert table in TABLES
    with engine.begin() as conn:
        found = conn.execute(text(ROTATE.format(table=table)), {
            "id": owner_id, "hash": token_hash, "grace_s": grace_s}).first()
        if found:
            conn.execute(BUMP)
    return found is not None


def set_disabled(engine: Engine, table: str, owner_id: str, disabled: bool) -> bool:
    """Disable or enable a device or gateway; False if there is no such one."""
    assert table in TABLES
    with engine.begin() as conn:
        found = conn.execute(text(SET_DISABLED.format(table=table)),
                             {"id": owner_id, "disabled": disabled}).first()
        if found:
            conn.execute(BUMP)
    return found is not None


def create_gateway(engine: Engine, gateway_id: str, token_hash: bytes) -> bool:
    """Register a gateway; False if the id is taken."""
    with engine.begin() as conn:
        created = conn.execute(INSERT_GATEWAY, {"id": gateway_id, "hash": token_hash}).first()
        if created:
            conn.execute(BUMP)
    return created is not None


def get_gateway(engine: Engine, gateway_id: str) -> GatewayInfo | None:
    """The gateway with the ids of its devices, or None."""
    with read_connection(engine) as conn:
        row = conn.execute(GET_GATEWAY, {"id": gateway_id}).first()
    return GatewayInfo(row.id, row.disabled, row.created_at, list(row.devices)) if row else None


def attach(engine: Engine, gateway_id: str, device_id: str) -> bool:
    """Let the gateway post for the device (again: no change); False if either is unknown."""
    try:
        with engine.begin() as conn:
            conn.execute(ATTACH, {"gateway_id": gateway_id, "device_id": device_id})
            conn.execute(BUMP)
    except IntegrityError:  # a foreign key: no such gateway or device
        return False
    return True


def detach(engine: Engine, gateway_id: str, device_id: str) -> bool:
    """Stop the gateway posting for the device; False if it was not attached."""
    with engine.begin() as conn:
        gone = conn.execute(DETACH, {"gateway_id": gateway_id, "device_id": device_id}).rowcount
        if gone:
            conn.execute(BUMP)
    return bool(gone)


def credential_version(conn: Connection) -> int:
    return conn.execute(VERSION).scalar_one()


def load_credentials(engine: Engine) -> tuple[int, list, list]:
    """(version, device rows, gateway rows) read from one snapshot, for a cache to build on."""
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        version = credential_version(conn)
        devices = conn.execute(LOAD_DEVICES).all()
        gateways = conn.execute(LOAD_GATEWAYS).all()
    return version, devices, gateways
