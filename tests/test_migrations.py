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
