"""Which vehicle a meter feeds, and since when.

A link is never rewritten by a later one: relinking adds a row with a later
`since`, so readings keep counting for the vehicle linked at their own time.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Engine, Text, text
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base, read_connection
from models.rollups import WATERMARK_FOR_DRAIN
from models.session_store import MARK_RELINKS


class MeterLink(Base):
    __tablename__ = "meter_links"

    meter_id: Mapped[str] = mapped_column(Text, primary_key=True)
    since: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), primary_key=True)
    vehicle_id: Mapped[str] = mapped_column(Text, index=True)


PUT_LINKS = text(
    """
    INSERT INTO meter_links (meter_id, since, vehicle_id)
    SELECT meter_id, :since, vehicle_id
    FROM unnest(CAST(:meter_ids AS text[]), CAST(:vehicle_ids AS text[])) AS l(meter_id, vehicle_id)
    ON CONFLICT (meter_id, since) DO UPDATE SET vehicle_id = excluded.vehicle_id
    """
)

LIST_LINKS = text(
    """
    SELECT vehicle_id, since FROM meter_links
    WHERE meter_id = :meter_id ORDER BY since DESC
    """
)


def put_link(engine: Engine, meter_id: str, vehicle_id: str, since: datetime) -> None:
    """Link the meter to the vehicle from `since` on; the same `since` replaces."""
    with engine.begin() as conn:
        put_links(conn, {meter_id: vehicle_id}, since)


def put_links(conn: Connection, vehicle_of: dict[str, str], since: datetime) -> None:
    """Link each meter to its vehicle from `since` on, in the caller's transaction;
    marks the stored sessions the links may change (models/session_store.py)."""
    params = {"since": since, "meter_ids": list(vehicle_of), "vehicle_ids": list(vehicle_of.values())}
    conn.exec_driver_sql(WATERMARK_FOR_DRAIN)
    conn.execute(MARK_RELINKS, params)
    conn.execute(PUT_LINKS, params)


def list_links(engine: Engine, meter_id: str) -> list[tuple[str, datetime]]:
    """The meter's links, latest `since` first."""
    with read_connection(engine) as conn:
        return [tuple(row) for row in conn.execute(LIST_LINKS, {"meter_id": meter_id})]
