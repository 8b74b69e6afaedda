"""The report: the table printed at the end, and bench/results.json.

The table's rows and targets come from the scenarios (Scenario.table), in their
order; a row shows only when its figure was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import redis

from bench.config import REDIS_URL
from bench.cpu import QUIET_PCT, foreign
from bench.scenario import Figure, Scenario
from bench.services import admin_conninfo

if TYPE_CHECKING:
    from bench.runner import Bench


def targets(scenarios: list[type[Scenario]]) -> dict[str, tuple[str, object]]:
    """The issue's targets: figure key -> (comparison, value)."""
    return {f.key: f.target for cls in scenarios for f in cls.table if f.target is not None}


def met(figure: Figure, value) -> bool | None:
    if figure.target is None or value is None:
        return None
    op, target = figure.target
    if op == ">=":
        return value >= target
    if op == "<=":
        return value <= target
    return value == target


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and abs(value) < 100:
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def wrk_cpu_most(details: dict) -> dict[str, float]:
    """The figure `client_wrk_cpu_max_pct`: the most of its threads' CPU wrk used in any
    run (near 100 %, wrk would be the limit)."""
    values = [run["wrk_cpu_pct_of_threads"] for key, runs in details.items()
              if key.endswith("_runs") for run in runs if "wrk_cpu_pct_of_threads" in run]
    ceiling = details.get("client_ceiling", {}).get("wrk_cpu_pct_of_its_threads")
    values += [ceiling] if ceiling is not None else []
    return {"client_wrk_cpu_max_pct": max(values)} if values else {}


def contention(details: dict) -> dict[str, float]:
    """Per scenario, the most CPU (% of a core) that processes not ours used during a run."""
    out = {}
    for key, runs in details.items():
        if not key.endswith("_runs"):
            continue
        cpus = [value for run in runs for k, value in run.items() if k.endswith("cpu_pct")]
        if cpus:
            out[key.removesuffix("_runs")] = max(foreign(c) for c in cpus)
    return out


def table(scenarios: list[type[Scenario]], figures: dict) -> list[dict]:
    """The table's rows: each measured figure with its unit, target and whether it met it."""
    rows = []
    for figure in (f for cls in scenarios for f in cls.table):
        if figure.key not in figures:
            continue
        value = figures[figure.key]
        target = figure.target
        rows.append({"figure": figure.key, "label": figure.label, "value": value, "unit": figure.unit,
                     "target": None if target is None else f"{target[0]} {fmt(target[1])}",
                     "met": met(figure, value)})
    return rows


def print_table(rows: list[dict], details: dict) -> None:
    width = max(len(r["label"]) for r in rows) if rows else 10
    print()
    print(f"{'scenario / figure':<{width}}  {'median':>12}  {'unit':<10}  {'target':<12}  met?")
    print("-" * (width + 48))
    for r in rows:
        print(f"{r['label']:<{width}}  {fmt(r['value']):>12}  {r['unit']:<10}  "
              f"{r['target'] or '':<12}  {'' if r['met'] is None else ('yes' if r['met'] else 'NO')}")
    print()
    busy = contention(details)
    if busy:
        print("CPU used by processes outside the benchmark during the runs (most in any run, % of "
              "one core): " + ", ".join(f"{k} {v:.0f}" for k, v in busy.items()))
        if max(busy.values()) > QUIET_PCT:
            print("  WARNING: the machine was shared during some runs; their figures are low.")
        print()


def machine_info(wrk_version: str) -> dict:
    """The machine, PostgreSQL, Redis and load clients the figures were taken on."""
    cpu_model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                      .splitlines() if ln.startswith("model name")), platform.processor())
    with psycopg.connect(admin_conninfo()) as conn:
        pg = conn.execute("SELECT version()").fetchone()[0]
        pg_settings = dict(conn.execute(
            "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN "
            "('shared_buffers', 'synchronous_commit', 'max_wal_size', 'work_mem', 'fsync')").fetchall())
    info = redis.Redis.from_url(REDIS_URL).info()
    return {
        "nproc": os.cpu_count(), "cpu_model": cpu_model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "postgresql": pg, "postgresql_settings": pg_settings,
        "redis": info.get("redis_version"),
        "redis_persistence": {"appendonly": info.get("aof_enabled"),
                              "rdb_changes_since_save": info.get("rdb_changes_since_last_save")},
        "python": platform.python_version(), "load_client": f"{wrk_version} (scenarios 1, 2, 3, 5, 7, 18); "
        "Python http.client, 32 threads, + psycopg poller (scenario 4); paho-mqtt, 2 processes "
        "(scenario 8); Python http.client, one kept-alive connection (scenarios 9, 10)",
        "load_average_at_start": os.getloadavg(),
    }


def write_results(path: Path, args: argparse.Namespace, bench: Bench, scenarios: list[type[Scenario]],
                  rows: list[dict], started: datetime, machine: dict, failed: str | None) -> None:
    """bench/results.json: the figures, per-run values, targets, setup and machine."""
    results = {
        "timestamp": started.isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "runs": args.runs, "scenarios": sorted(args.scenarios),
        "figures_are": f"medians of {args.runs} run(s); the backfill loads once",
        "failed": failed,
        "machine": machine,
        "setup": {
            "web": "gunicorn --config web/server/gunicorn_conf.py 'web:create_app()', gevent workers, "
                   f"WEB_CONCURRENCY={args.web_concurrency or 'default (cores + 1)'}",
            "worker": "celery worker --beat (Procfile), concurrency "
                      f"{args.worker_concurrency or 'default (cores + 1)'}; stopped in "
                      "scenarios 1, 2, 7 (acceptance only) and 5, 9, 10 (nothing to drain)",
            "env": {k: bench.stack.env[k] for k in ("DATABASE_URL", "REDIS_PREFIX", "MAX_BACKLOG")},
            "sizes": bench.sizes,
        },
        "table": rows,
        "foreign_cpu_pct_max": contention(bench.details),
        "figures": bench.figures,
        "targets": {k: f"{op} {v}" for k, (op, v) in targets(scenarios).items()},
        "details": bench.details,
    }
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
