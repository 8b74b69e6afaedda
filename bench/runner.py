"""The shared run loop, and what every scenario works with.

Bench holds the stack, the queue, the CPU meter, the sizes and the results so
far; it runs the chosen scenarios in number order (see bench/scenario.py for
what it calls on each) and offers them the steps they share: an empty queue,
a quiet machine, wrk posting readings, the backfilled day, the long windows' days.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bench import backfill, long_backfill
from bench.backfill import Day
from bench.config import DATABASE_URL, INGEST_TOKEN, PREFIX, REDIS_URL, log
from bench.cpu import QUIET_PCT, CpuMeter, foreign
from bench.load.wrk import run_wrk
from bench.long_backfill import Window
from bench.report import wrk_cpu_most
from bench.scenario import Scenario
from bench.services import (
    checkpoint,
    db_name,
    flush_prefix,
    keep_database,
    reading_queue,
    recreate_database,
    wait_backlog_empty,
)
from bench.stack import Stack

# The longest wait for the worker to empty the backlog (full, --quick).
RUNNER_SIZES = {"s3_drain_wait_s": (240, 60)}


def sizes_of(scenarios: list[type[Scenario]], quick: bool) -> dict[str, float]:
    """Every size the scenarios, the runner and the backfill take, full or --quick."""
    declared = [size for cls in scenarios for size in cls.sizes.items()]
    declared += [*RUNNER_SIZES.items(), *backfill.SIZES.items(), *long_backfill.SIZES.items()]
    return {name: values[1 if quick else 0] for name, values in declared}


class Bench:
    def __init__(self, args: argparse.Namespace, scenarios: list[type[Scenario]]) -> None:
        self.args = args
        self.runs = args.runs
        self.sizes = sizes_of(scenarios, args.quick)
        self.sizes.update(getattr(args, "sizes", {}))  # sizes given as options (--long-days)
        self.chosen = [cls for cls in scenarios if cls.always or cls.number in args.scenarios]
        self.stack = Stack(args.web_concurrency, args.worker_concurrency)
        self.queue = reading_queue()
        self.cpu = CpuMeter(self.stack, db_name())
        self.figures: dict[str, object] = {}
        self.details: dict[str, object] = {}
        self._day: Day | None = None
        self._window: Window | None = None

    # -- the run loop ----------------------------------------------------------------

    def run(self) -> None:
        """Create the database, start web, run the chosen scenarios."""
        try:
            kept = "kept, migrated" if self.args.reuse_db else "dropped and created"
            log(f"database {DATABASE_URL} ({kept}), Redis {REDIS_URL} prefix '{PREFIX}:'")
            if self.args.reuse_db:
                keep_database()
            else:
                recreate_database()
            self.fresh_queue()
            self.stack.start_web()
            for cls in self.chosen:
                self.use_worker(cls.worker)
                self.measure(cls(self))
            self.use_worker(False)
        finally:
            self.figures.update(wrk_cpu_most(self.details))

    def measure(self, scenario: Scenario) -> None:
        scenario.prepare()
        runs = []
        try:
            for i in range(self.runs if scenario.repeated else 1):
                scenario.before_run()
                if scenario.timed:
                    self.wait_quiet()
                runs.append(scenario.run(i))
        finally:
            scenario.cleanup()
        scenario.record(runs)

    def use_worker(self, running: bool) -> None:
        """Start the worker on an empty queue, or stop it once it has drained the backlog."""
        if running and self.stack.worker is None:
            self.fresh_queue()
            self.stack.start_worker(self.queue)
        elif not running and self.stack.worker is not None:
            wait_backlog_empty(self.queue, self.sizes["s3_drain_wait_s"])
            self.stack.stop_worker()
            self.fresh_queue()

    # -- steps the scenarios share -----------------------------------------------------

    def fresh_queue(self) -> None:
        """Delete every key under the bench prefix: the queue starts empty."""
        flush_prefix(self.queue.redis)

    def drain_or_flush(self) -> None:
        """Wait for the worker to empty the backlog; if it does not in time, flush the
        queue and restart the worker, so that a run starts on an empty queue."""
        if wait_backlog_empty(self.queue, self.sizes["s3_drain_wait_s"]) is None:
            log("  the backlog did not empty before the run: flushing it")
            self.stack.stop_worker()
            self.fresh_queue()
            self.stack.start_worker(self.queue)

    def wait_quiet(self) -> None:
        """Before a measured run: flush what earlier runs wrote (CHECKPOINT), then wait
        (up to --quiet-wait s) until processes that are not ours use less than
        QUIET_PCT of a core, so another job's burst does not count."""
        checkpoint()
        deadline = time.monotonic() + self.args.quiet_wait
        said = False
        while self.args.quiet_wait > 0:
            self.cpu.start()
            time.sleep(1)
            busy = foreign(self.cpu.stop())
            if busy < QUIET_PCT:
                return
            if time.monotonic() > deadline:
                log(f"  other processes still use {busy:.0f} % of a core: measuring anyway")
                return
            if not said:
                log(f"  other processes use {busy:.0f} % of a core: waiting up to "
                    f"{self.args.quiet_wait:g} s for them to quiet down")
                said = True

    def ingest_wrk(self, prefix: str, per: int, duration: float, threads: int, conns: int,
                   after: Callable[[dict], None] | None = None, stamped_from_s: int = 600,
                   url: str | None = None) -> dict:
        """wrk POSTing `per` readings a request, stamped from `stamped_from_s` ago
        on (a second per round of devices: at full speed the stamps run ahead of
        the clock), to the stack's web or the one at `url`; `after` is called the
        moment wrk ends. Adds the CPU use by component (`cpu_pct`) and the
        readings accepted."""
        base = int(time.time()) - stamped_from_s
        result = self.wrk_with_cpu(["-s", "bench/wrk/ingest.lua", url or self.stack.url, "--",
                                    INGEST_TOKEN, prefix, str(per), str(base)],
                                   duration, threads, conns, after)
        result["readings"] = result["ok"] * per
        return result

    def wrk_with_cpu(self, args: list[str], duration: float, threads: int, conns: int,
                     after: Callable[[dict], None] | None = None) -> dict:
        """wrk with `args` (script, URL, script arguments); `after` is called the moment
        it ends. Adds the CPU use by component meanwhile (`cpu_pct`)."""
        self.cpu.start()
        result = run_wrk(args, duration, threads, conns)
        if after:
            after(result)
        result["cpu_pct"] = self.cpu.stop()
        return result

    def backfilled_day(self) -> Day:
        """The day of history the simulator loads, on the first call."""
        if self._day is None:
            self._day, self.details["backfill"] = backfill.load_day(self.sizes, self.cpu, self.stack.env)
        return self._day

    def long_window(self) -> Window:
        """The days of history (and the synthetic year) of the long windows, on the first call."""
        if self._window is None:
            self._window, self.details["long_backfill"] = long_backfill.load_window(
                self.sizes, self.cpu, reuse=self.args.reuse_db)
        return self._window
