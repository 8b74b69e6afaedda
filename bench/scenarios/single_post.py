"""Scenario 1: single-reading POST /v1/ingest with wrk, 64 connections, worker stopped:
requests per second and their latency, acceptance only."""

from __future__ import annotations

from bench.config import log
from bench.scenario import Acceptance, Figure, wrk_run
from bench.stats import median_of


class SinglePost(Acceptance):
    number = 1
    sizes = {"s1_s": (30, 5)}
    table = (
        Figure("s1_req_per_s", "1 single-reading POST, 64 clients: throughput", "req/s", (">=", 4000)),
        Figure("s1_p50_ms", "1   latency p50", "ms"),
        Figure("s1_p99_ms", "1   latency p99", "ms"),
    )

    def prepare(self) -> None:
        log("scenario 1: single-reading POST /v1/ingest, 64 connections (wrk -t2 -c64), "
            f"{self.size('s1_s'):g} s x {self.bench.runs} (worker stopped: acceptance only)")
        self.bench.fresh_queue()
        self.bench.ingest_wrk("w1", 1, 3, 2, 64)  # warm-up

    def run(self, i: int) -> dict:
        r = self.bench.ingest_wrk(f"s1r{i}", 1, self.size("s1_s"), 2, 64)
        run = wrk_run(r)
        log(f"  run {i + 1}: {run['req_per_s']:,.0f} req/s, p50 {run['p50_ms']:.1f} ms, "
            f"p99 {run['p99_ms']:.1f} ms; wrk {r['cpu_pct_of_threads']} % of its threads; "
            f"CPU {r['cpu_pct']}")
        return run

    def summarize(self, runs: list[dict]) -> dict[str, object]:
        return {"s1_req_per_s": round(median_of(runs, "req_per_s")),
                "s1_p50_ms": round(median_of(runs, "p50_ms"), 2),
                "s1_p99_ms": round(median_of(runs, "p99_ms"), 2)}


SCENARIO = SinglePost
