"""The engine factory and declarative base that web, workers and Alembic share.

There is one engine per process. Workers fork after start-up, so each child
disposes what it inherited (see workers/app.py) rather than sharing sockets.
"""

from __future__ import annotations

import functools
import time

import psycopg
from psycopg import _queries
from sqlalchemy import Connection, Engine, MetaData, TextClause, create_engine, event
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase

# Stable constraint names, so that Alembic's autogenerate and `alembic check`
# compare like with like.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def sqlalchemy_url(database_url: str) -> URL:
    """Turn any libpq URI (postgres://, postgresql://) into one for psycopg 3."""
    url = make_url(database_url)
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    return url


# A connection back in the pool for less than this is taken as alive, without
# pre-ping's round trip: a third of a per-vehicle call's time under gevent
# (0.5 of 3.3 ms). One the server closed within that second fails its request
# (a read answers 503, a drain retries), and the pool then replaces them all.
PING_IDLE_S = 1.0


def create_db_engine(database_url: str, pool_size: int = 5) -> Engine:
    """An engine whose pool survives a database restart.

    A connection idle in the pool for PING_IDLE_S or more is pinged before use,
    and replaced if the server closed it; the connect timeout keeps a dead
    server from holding a request for minutes. JIT is off: every statement here
    reads index ranges, which compiling never repays, and a misestimate (the
    one-row watermark taken for 800 rows) made PostgreSQL compile a 1 ms
    statement for 220 ms under the rollup lock. Parallel query is off too: a
    fleet-wide aggregate groups by device, so every worker builds a hash table
    of the whole fleet and the leader merges them again (a day of the fleet: 93
    ms with two workers, 81 ms without); cores go to concurrent requests instead.
    """
    engine = create_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=5,
        connect_args={"connect_timeout": 5, "options": "-c jit=off -c max_parallel_workers_per_gather=0"},
    )
    event.listen(engine, "connect", _used)
    event.listen(engine, "checkin", _used)
    event.listen(engine, "checkout", functools.partial(_ping_if_idle, engine.dialect))
    return engine


def _used(dbapi_connection, record) -> None:
    record.info["used_at"] = time.monotonic()


def _ping_if_idle(dialect, dbapi_connection, record, proxy) -> None:
    if time.monotonic() - record.info.get("used_at", float("-inf")) < PING_IDLE_S:
        return
    try:
        dialect.do_ping(dbapi_connection)
    except dialect.loaded_dbapi.Error as exc:  # the pool connects afresh
        raise DisconnectionError(str(exc)) from exc


# psycopg converts a query's %(name)s placeholders with a regular expression on
# every call, and caches the result only for queries of up to 4 KB: the composed
# analytics queries are 4-7 KB, and converting one took 1.3 ms of each call.
_queries.MAX_CACHED_STATEMENT_LENGTH = 16_384


_PSYCOPG = PGDialect_psycopg()


@functools.cache
def _psycopg_query(statement: TextClause) -> str:
    """The statement as psycopg takes it (%(name)s placeholders), compiled once:
    compiling took 0.7 ms a call."""
    return str(statement.compile(dialect=_PSYCOPG))


def execute_prepared(conn: Connection, statement: TextClause, params: dict) -> psycopg.Cursor:
    """Run `statement` as a prepared statement of the connection (psycopg's cache),
    from its first call on.

    For the per-vehicle reads: parsing and analysing their composed query
    (models/figures.py) took 4.5 ms of a 9.4 ms call, once per call; prepared,
    the server does that once per connection and only plans each call (with its
    parameters: a generic plan, without the partitions pruned at planning, took
    150 ms with a year of daily partitions)."""
    driver = conn.connection.driver_connection
    return driver.execute(_psycopg_query(statement), params, prepare=True)


def read_connection(engine: Engine) -> Connection:
    """A connection for reads of one statement each, in autocommit.

    A single statement sees one snapshot anyway, and the BEGIN and ROLLBACK
    around it took longer than the per-vehicle query itself (2 ms against 1.3)."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")
