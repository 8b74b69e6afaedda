"""Which vehicle a meter feeds, and since when.

A link is never rewritten by a later one: relinking adds a row with a later
`since`, so readings keep counting for the vehicle linked at their own time.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, Text, text
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base, read_connection


class MeterLink(Base):
    __tablename__ = "meter_links"

    meter_id: Mapped[str] = mapped_column(Text, primary_key=True)
    since: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True), primary_key=True)
    vehicle_id: Mapped[str] = mapped_column(Text, index=True)


PUT_LINK = text(
    """
    INSERT INTO meter_links (meter_id, since, vehicle_id)
    VALUES (:meter_id, :since, :vehicle_id)
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
        conn.execute(PUT_LINK, {"meter_id": meter_id, "vehicle_id": vehicle_id, "since": since})


def list_links(engine: Engine, meter_id: str) -> list[tuple[str, datetime]]:
    """The meter's links, latest `since` first."""
    with read_connection(engine) as conn:
        return [tuple(row) for row in conn.execute(LIST_LINKS, {"meter_id": meter_id})]
