"""Alerts: when a vehicle's condition opened and when it cleared (the alert history).

At most one alert of a kind is open per vehicle (a partial unique index), so
two evaluations racing cannot open it twice.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import BigInteger, Connection, Engine, Index, Text, text
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base, read_connection

TS = TIMESTAMP(timezone=True)


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        Index("uq_alerts_open", "vehicle_id", "kind", unique=True,
              postgresql_where=text("cleared_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    vehicle_id: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    figures: Mapped[dict] = mapped_column(JSONB)
    opened_at: Mapped[datetime] = mapped_column(TS)
    evaluated_at: Mapped[datetime] = mapped_column(TS)
    cleared_at: Mapped[datetime | None] = mapped_column(TS, index=True)


# One evaluation at a time, whichever worker runs it.
LOCK = text("SELECT pg_advisory_xact_lock(hashtext('alerts evaluation'))")
OPEN = text("SELECT id, vehicle_id, kind FROM alerts WHERE cleared_at IS NULL")
OPEN_ALERT = text("""
    INSERT INTO alerts (vehicle_id, kind, reason, figures, opened_at, evaluated_at)
    VALUES (:vehicle_id, :kind, :reason, CAST(:figures AS jsonb), :now, :now)
""")
REFRESH = text("""
    UPDATE alerts SET reason = :reason, figures = CAST(:figures AS jsonb), evaluated_at = :now
    WHERE id = :id
""")
CLEAR = text("UPDATE alerts SET cleared_at = :now, evaluated_at = :now WHERE id = :id")
LIST = text("""
    SELECT id, vehicle_id, kind, reason, figures, opened_at, evaluated_at, cleared_at FROM alerts
    WHERE (:all OR cleared_at IS NULL) ORDER BY opened_at DESC, id DESC LIMIT :limit
""")


def reconcile(conn: Connection, wanted: dict[tuple[str, str], tuple[str, dict]],
              now: datetime) -> tuple[int, int]:
    """Make the open alerts match `wanted` ((vehicle, kind) -> (reason, figures)):
    open the new ones, refresh the figures of those still on, clear the rest.
    Returns (opened, cleared)."""
    conn.execute(LOCK)
    current = {(row.vehicle_id, row.kind): row.id for row in conn.execute(OPEN)}
    for key, alert_id in current.items():
        if key in wanted:
            reason, figures = wanted[key]
            conn.execute(REFRESH, {"id": alert_id, "reason": reason,
                                   "figures": json.dumps(figures), "now": now})
        else:
            conn.execute(CLEAR, {"id": alert_id, "now": now})
    new = [key for key in wanted if key not in current]
    for vehicle_id, kind in new:
        reason, figures = wanted[(vehicle_id, kind)]
        conn.execute(OPEN_ALERT, {"vehicle_id": vehicle_id, "kind": kind, "reason": reason,
                                  "figures": json.dumps(figures), "now": now})
    return len(new), len(set(current) - set(wanted))


def list_alerts(engine: Engine, include_cleared: bool, limit: int) -> list:
    with read_connection(engine) as conn:
        return conn.execute(LIST, {"all": include_cleared, "limit": limit}).all()
