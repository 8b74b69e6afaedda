"""The engine's pool (models/db.py): a connection idle in it is pinged before
use and replaced if the server closed it; one used within PING_IDLE_S is not."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from models import db
from models.db import create_db_engine

PID = text("SELECT pg_backend_pid()")


def close_from_the_server(engine, pid: int) -> None:
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()


@pytest.fixture
def pooled(database_url, engine):
    """An engine of one pooled connection, and the server side closing it."""
    one = create_db_engine(database_url, pool_size=1)
    with one.connect() as conn:
        pid = conn.execute(PID).scalar_one()
    close_from_the_server(engine, pid)
    yield one, pid
    one.dispose()


def test_an_idle_connection_closed_by_the_server_is_replaced_unseen(pooled, monkeypatch):
    one, pid = pooled
    monkeypatch.setattr(db, "PING_IDLE_S", 0.0)  # every connection in the pool counts as idle
    with one.connect() as conn:
        assert conn.execute(PID).scalar_one() != pid


def test_a_connection_used_just_now_is_not_pinged(pooled):
    # No round trip before use: the closed connection fails its statement, and
    # the pool replaces it for the next.
    one, pid = pooled
    with pytest.raises(OperationalError), one.connect() as conn:
        conn.execute(PID)
    with one.connect() as conn:
        assert conn.execute(PID).scalar_one() != pid
