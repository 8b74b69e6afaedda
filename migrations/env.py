"""Alembic environment: the same DATABASE_URL and metadata as the application."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from models import alerts, dead_letters, devices, links, live, readings, rollups  # noqa: F401
from models.db import Base, sqlalchemy_url
from models.partitions import PARTITION_NAME
from settings import load_or_exit

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def include_name(name, type_, parent_names) -> bool:
    """Daily history partitions are made at run time, not by migrations."""
    return not (type_ == "table" and PARTITION_NAME.fullmatch(name or ""))


def run_migrations_online() -> None:
    """Apply migrations over one connection, in one transaction."""
    url = load_or_exit().database_url
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=Base.metadata, include_name=include_name
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
