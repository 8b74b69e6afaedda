"""Dead letters: readings the database refused for a reason validation missed,
and MQTT messages the bridge could not turn into readings.

They are kept with the reason (an error class, never the database's text), so
that operators can list them, fix the cause, and re-drive the database's into
the queue. (entry_id, position) makes recording idempotent when a batch is
retried. `source` says which kind a letter is: "database" (its row is a queue
row) or "mqtt" (its row is readings.rows.dead_letter_row's).
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Connection,
    Engine,
    Integer,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base, read_connection


class DeadLetter(Base):
    __tablename__ = "dead_letters"

    __table_args__ = (UniqueConstraint("entry_id", "position"),
                      CheckConstraint("source IN ('database', 'mqtt')", name="source"))

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer)
    row: Mapped[list] = mapped_column(JSONB)
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text, server_default="database")
    failed_at: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), server_default=text("now()")
    )


RECORD = text(
    """
    INSERT INTO dead_letters (entry_id, position, row, reason, source)
    SELECT *, :source FROM unnest(CAST(:entry_id AS text[]), CAST(:position AS int[]),
                                  CAST(:row AS jsonb[]), CAST(:reason AS text[]))
    ON CONFLICT (entry_id, position) DO NOTHING
    """
)

LIST = text(
    "SELECT id, row, reason, failed_at, source FROM dead_letters WHERE id > :after"
    " ORDER BY id LIMIT :limit"
)

# Only the database's letters hold queue rows that can be queued again.
TAKE = text("SELECT id, row FROM dead_letters WHERE id = ANY(:ids) AND source = 'database'"
            " ORDER BY id FOR UPDATE")
TAKE_ALL = text("SELECT id, row FROM dead_letters WHERE source = 'database'"
                " ORDER BY id LIMIT :limit FOR UPDATE")
DELETE = text("DELETE FROM dead_letters WHERE id = ANY(:ids)")


def record(conn: Connection, letters: list[tuple[str, int, object, str]],
           source: str = "database") -> None:
    """Keep (entry id, position, row, reason) tuples; repeats are ignored."""
    columns = list(zip(*letters, strict=True))
    conn.execute(RECORD, {
        "entry_id": list(columns[0]), "position": list(columns[1]),
        "row": [json.dumps(r) for r in columns[2]], "reason": list(columns[3]), "source": source,
    })


def list_dead_letters(engine: Engine, after: int, limit: int) -> list:
    with read_connection(engine) as conn:
        return conn.execute(LIST, {"after": after, "limit": limit}).all()


def count_dead_letters(engine: Engine) -> int:
    with read_connection(engine) as conn:
        return conn.execute(text("SELECT count(*) FROM dead_letters")).scalar_one()


def take(conn: Connection, ids: list[int] | None, limit: int) -> list:
    """Lock the chosen dead letters (or the oldest `limit`) for re-driving."""
    if ids is None:
        return conn.execute(TAKE_ALL, {"limit": limit}).all()
    return conn.execute(TAKE, {"ids": ids}).all()


def delete(conn: Connection, ids: list[int]) -> None:
    conn.execute(DELETE, {"ids": ids})
