"""Where the bench runs: its database, Redis prefix, tokens and files, and its log line.

Every other bench module takes these from here; the stack's processes get them
through their environment (bench/stack.py).
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_BIN = Path(sys.executable).parent
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://127.0.0.1/energy_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = "bench"  # the Redis key prefix: only keys under it are ever deleted
INGEST_TOKEN = "bench-ingest-token"
OPERATOR_TOKEN = "bench-operator-token"
LOGS = BENCH / "logs"
RESULTS = BENCH / "results.json"


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", flush=True)


def iso(value: datetime) -> str:
    """A UTC instant to the second, as the API's query parameters take it."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
