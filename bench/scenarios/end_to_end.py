"""Scenario 3, end to end: wrk posts 1,000-reading arrays at full speed while the
worker drains them into history. Readings drained per second, and whether the
backlog stays bounded.

History rows are counted when wrk starts and the moment it ends: a count(*) sees
what was committed when it began, so the drained rows between the two counts are
exact, whatever the counts themselves take.
"""

from __future__ import annotations

import threading
import time

import psycopg

from bench.config import DATABASE_URL, log
from bench.cpu import us_per
from bench.scenario import Figure, Scenario
from bench.services import history_count, wait_backlog_empty
from bench.stats import median_of
from workers.queue import ReadingQueue

PER_REQUEST = 1000
CONNECTIONS = 16
VISIBLE_S = 5  # the contract's visibility promise: a bounded backlog drains within it


class BacklogSampler:
    """The backlog once a second, in a thread, while the `with` block runs."""

    def __init__(self, queue: ReadingQueue) -> None:
        self.queue = queue
        self.samples: list[tuple[float, int]] = []  # (seconds since start, backlog)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(1.0):
            self.samples.append((round(time.monotonic() - t0, 1), self.queue.backlog()))

    def __enter__(self) -> BacklogSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def growth_per_s(self, seconds: float) -> float:
        """How fast the backlog grew over the second half of a run of `seconds`."""
        half = [b for t, b in self.samples if t >= seconds / 2]
        return (half[-1] - half[0]) / (seconds / 2) if len(half) > 1 else 0.0


class EndToEnd(Scenario):
    number = 3
    worker = True
    sizes = {"s3_s": (60, 10)}
    table = (
        Figure("s3_drained_per_s", "3 end to end: drained into history", "readings/s", (">=", 50000)),
        Figure("s3_accepted_per_s", "3   accepted meanwhile", "readings/s"),
        Figure("s3_backlog_end", "3   backlog at the end", "readings"),
        Figure("s3_backlog_bounded", "3   backlog bounded (end <= 5 s of drain)", "", ("==", True)),
    )

    def prepare(self) -> None:
        log(f"scenario 3: end to end, 1,000-reading arrays at full speed (wrk -t2 -c16) for "
            f"{self.size('s3_s'):g} s while the worker drains, x {self.bench.runs}")
        self.conn = psycopg.connect(DATABASE_URL, autocommit=True)

    def cleanup(self) -> None:
        self.conn.close()

    def before_run(self) -> None:
        self.bench.drain_or_flush()

    def run(self, i: int) -> dict:
        queue = self.bench.queue
        t0 = time.monotonic()
        rows0 = history_count(self.conn)
        end: dict = {}

        def at_end(_result: dict) -> None:
            end.update(backlog=queue.backlog(), t=time.monotonic(), rows=history_count(self.conn))

        with BacklogSampler(queue) as sampler:
            # Current readings, as a live fleet sends: stamped 10 minutes back,
            # a run in the first minutes of an hour would send only late
            # readings of an hour already rolled up (README: rollups).
            r = self.bench.ingest_wrk(f"s3r{i}", PER_REQUEST, self.size("s3_s"), 2, CONNECTIONS,
                                      after=at_end, stamped_from_s=60)
        rate = (end["rows"] - rows0) / (end["t"] - t0)
        waited = wait_backlog_empty(queue, self.size("s3_drain_wait_s"))
        stored = None if waited is None else history_count(self.conn) - rows0
        run = {"drained_per_s": rate, "accepted_per_s": r["readings"] / r["seconds"],
               # 503s: the queue's limits (MAX_BACKLOG_SECONDS) turning the excess away
               "refused_requests": r["status_errors"],
               "backlog_end": end["backlog"],
               "backlog_max": max([b for _, b in sampler.samples], default=end["backlog"]),
               "backlog_growth_per_s_2nd_half": round(sampler.growth_per_s(r["seconds"])),
               "backlog_bounded": end["backlog"] <= VISIBLE_S * rate,
               "seconds_to_empty_after": None if waited is None else round(waited, 1),
               "rows_stored": stored,
               "readings_accepted": r["readings"], "post_p50_ms": r["p50_us"] / 1000,
               "post_p99_ms": r["p99_us"] / 1000,
               "wrk_cpu_pct_of_threads": r["cpu_pct_of_threads"], "cpu_pct": r["cpu_pct"],
               # Per drained reading, by component (redis included): docs/scaling.md's inputs.
               "cpu_us_per_reading": us_per(r["cpu_pct"], r["seconds"], rate * r["seconds"]),
               "backlog_samples": sampler.samples}
        # wrk does not count the requests in flight when it stops (one per connection).
        run["stored_matches_accepted"] = (
            stored is not None and 0 <= stored - r["readings"] <= CONNECTIONS * PER_REQUEST)
        log_run(i, run)
        return run

    def summarize(self, runs: list[dict]) -> dict[str, object]:
        return {"s3_drained_per_s": round(median_of(runs, "drained_per_s")),
                "s3_accepted_per_s": round(median_of(runs, "accepted_per_s")),
                "s3_backlog_end": round(median_of(runs, "backlog_end")),
                "s3_backlog_bounded": median_of(runs, "backlog_bounded")}


def log_run(i: int, run: dict) -> None:
    stored = run["rows_stored"]
    check = ("" if stored is None else
             f"; stored {stored:,} rows for {run['readings_accepted']:,} counted by wrk"
             + (" (consistent)" if run["stored_matches_accepted"] else " (MISMATCH)"))
    log(f"  run {i + 1}: drained {run['drained_per_s']:,.0f} readings/s while accepting "
        f"{run['accepted_per_s']:,.0f}/s ({run['refused_requests']:,} requests refused "
        f"with 503); backlog at end {run['backlog_end']:,} "
        f"(max {run['backlog_max']:,}, 2nd-half growth {run['backlog_growth_per_s_2nd_half']:,.0f}/s), "
        f"emptied {run['seconds_to_empty_after']} s after{check}; CPU {run['cpu_pct']}")


SCENARIO = EndToEnd
