"""Scenario 2: bulk POST of 1,000-reading arrays with wrk, 16 connections, worker
stopped: readings accepted per second."""

from __future__ import annotations

from bench.config import log
from bench.scenario import Acceptance, Figure, wrk_run
from bench.stats import median_of

PER_REQUEST = 1000


class BulkPost(Acceptance):
    number = 2
    sizes = {"s2_s": (30, 5)}
    table = (
        Figure("s2_readings_per_s", "2 bulk POST (1,000-reading arrays): accepted", "readings/s",
               (">=", 60000)),
    )

    def prepare(self) -> None:
        log("scenario 2: bulk POST of 1,000-reading arrays, 16 connections (wrk -t2 -c16), "
            f"{self.size('s2_s'):g} s x {self.bench.runs} (worker stopped: acceptance only)")
        self.bench.fresh_queue()
        self.bench.ingest_wrk("w2", PER_REQUEST, 3, 2, 16)  # warm-up

    def run(self, i: int) -> dict:
        r = self.bench.ingest_wrk(f"s2r{i}", PER_REQUEST, self.size("s2_s"), 2, 16)
        run = {"readings_per_s": r["readings"] / r["seconds"], **wrk_run(r)}
        log(f"  run {i + 1}: {run['readings_per_s']:,.0f} readings/s "
            f"({run['req_per_s']:.1f} req/s, p50 {run['p50_ms']:.0f} ms, "
            f"p99 {run['p99_ms']:.0f} ms); wrk {r['cpu_pct_of_threads']} % of its threads; "
            f"CPU {r['cpu_pct']}")
        return run

    def summarize(self, runs: list[dict]) -> dict[str, object]:
        return {"s2_readings_per_s": round(median_of(runs, "readings_per_s"))}


SCENARIO = BulkPost
