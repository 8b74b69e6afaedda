"""The `release` step: migrations match the models and can be applied twice."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def alembic(database_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alembic", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "DATABASE_URL": database_url})


def test_release_is_safe_to_run_twice(database_url):
    done = alembic(database_url, "upgrade", "head")
    assert done.returncode == 0, done.stderr


def test_models_and_migrations_agree(database_url):
    done = alembic(database_url, "check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_tables_updated_in_place_leave_room_on_each_page(engine):
    from sqlalchemy import text

    with engine.connect() as conn:
        options = dict(conn.execute(text(
            "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(:tables)"),
            {"tables": ["live_meters", "live_vehicles", "meter_hourly", "vehicle_hourly"]}).all())
    assert len(options) == 4
    for table, opts in options.items():
        assert "fillfactor=70" in (opts or []), (table, opts)
