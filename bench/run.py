#!/usr/bin/env python3
"""`make bench`: start the stack on a benchmark database, run the scenarios, report.

    .venv/bin/python bench/run.py [--quick] [--runs N] [--scenarios 1,2,...] [--keep-db]

Creates a fresh database `energy_bench` on the local PostgreSQL (dropped again at
the end unless --keep-db), uses the Redis key prefix `bench` (only those keys are
ever deleted), starts gunicorn (the Procfile's `web`) and, where a scenario needs
it, the Celery worker (the Procfile's `worker`) as subprocesses in their own
process groups, runs the scenarios, stops everything (also on Ctrl-C or an
error), prints a table and writes bench/results.json. See bench/README.md.

This module is the command line; the parts are beside it: the stack (stack.py,
services.py), the load clients (load/), the run loop (runner.py), one module per
scenario (scenarios/), the report (report.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Imports are from the repository's root (bench.*, workers.*), not this folder.
sys.path[0] = str(ROOT)

from bench.config import LOGS, REDIS_URL, RESULTS, log  # noqa: E402
from bench.cpu import QUIET_PCT  # noqa: E402
from bench.load.wrk import ensure_wrk  # noqa: E402
from bench.report import machine_info, print_table, table, write_results  # noqa: E402
from bench.runner import Bench  # noqa: E402
from bench.scenario import Scenario  # noqa: E402
from bench.scenarios import registered  # noqa: E402
from bench.services import admin_conninfo, drop_database, flush_prefix  # noqa: E402


def parse_args(scenarios: list[type[Scenario]], argv: list[str] | None = None) -> argparse.Namespace:
    numbers = [cls.number for cls in scenarios if not cls.always]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: short durations, a 300-vehicle backfill, 1 run")
    p.add_argument("--runs", type=int, default=None, help="runs per scenario (default 3; 1 with --quick)")
    p.add_argument("--scenarios", default=",".join(map(str, numbers)),
                   help="comma-separated, e.g. 1,2 (default: all)")
    p.add_argument("--web-concurrency", type=int, default=None,
                   help="gunicorn workers (default: web/server/gunicorn_conf.py's cores + 1, gevent)")
    p.add_argument("--worker-concurrency", type=int, default=None,
                   help="Celery pool processes (default: workers/app.py's cores + 1)")
    p.add_argument("--quiet-wait", type=float, default=60,
                   help="before each run, wait up to this many seconds for other processes to "
                        f"use under {QUIET_PCT} %% of a core (0: never wait)")
    p.add_argument("--long-days", type=int, default=None,
                   help="scenario 10: days of history to load (default 30; 2 with --quick)")
    p.add_argument("--long-devices", type=int, default=None,
                   help="scenario 10: vehicles, and as many meters (default 2000; 40 with --quick)")
    p.add_argument("--keep-db", action="store_true", help="keep the energy_bench database afterwards")
    p.add_argument("--reuse-db", action="store_true",
                   help="use the database a --keep-db run left (migrated, not recreated); scenario 10 "
                        "then loads only if its days are not there yet (implies --keep-db)")
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.keep_db = args.keep_db or args.reuse_db
    if any(n is not None and n < 1 for n in (args.long_days, args.long_devices)):
        p.error("--long-days and --long-devices take a number of at least 1")
    # Sizes given as options replace the declared ones (bench.runner.sizes_of).
    args.sizes = {name: value for name, value in (("long_days", args.long_days),
                                                  ("long_devices", args.long_devices))
                  if value is not None}
    try:
        args.scenarios = {int(x) for x in args.scenarios.split(",") if x.strip()}
    except ValueError:
        p.error("--scenarios takes numbers, e.g. 1,2,5")
    if not args.scenarios <= set(numbers):
        p.error(f"scenarios are {', '.join(map(str, numbers))}")
    return args


def prepare_machine() -> str:
    """wrk installed, PostgreSQL and Redis answering, old logs gone; returns wrk's version."""
    wrk_version = ensure_wrk()
    subprocess.run([sys.executable, str(ROOT / "scripts" / "ensure_services.py"), "--no-env-file",
                    "--quiet"], check=True, env={**os.environ,
                                                 "DATABASE_URL": admin_conninfo(),
                                                 "REDIS_URL": REDIS_URL})
    LOGS.mkdir(exist_ok=True)
    for old in LOGS.glob("*.log"):
        old.unlink()
    return wrk_version


def interrupted(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    scenarios = registered()
    args = parse_args(scenarios, argv)
    wrk_version = prepare_machine()
    bench = Bench(args, scenarios)
    signal.signal(signal.SIGTERM, interrupted)
    started = datetime.now(UTC)
    machine = machine_info(wrk_version)
    if machine["load_average_at_start"][0] > 0.5:
        log(f"note: load average {machine['load_average_at_start'][0]:.2f} at start: something else "
            "is using the CPU, and the figures will show it")
    failed = None
    try:
        bench.run()
    except KeyboardInterrupt:
        failed = "interrupted"
        log("interrupted: stopping")
    except Exception as exc:  # report what we have, then fail
        failed = f"{type(exc).__name__}: {exc}"
        log(f"failed: {failed}")
    finally:
        bench.stack.stop()
        try:
            flush_prefix(bench.queue.redis)
            if not args.keep_db:
                drop_database()
        except Exception as exc:  # noqa: BLE001 - cleanup must go on
            log(f"cleanup: {exc}")
    rows = table(scenarios, bench.figures)
    print_table(rows, bench.details)
    write_results(args.output, args, bench, scenarios, rows, started, machine, failed)
    log(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    if failed:
        print(f"bench failed: {failed} (logs in {LOGS.relative_to(ROOT)}/)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
