"""Scenario 4, ingest to queryable: at a steady 10,000 readings/s (100 requests/s of
100 readings), how long until a reading shows in live state (bench/load/steady.py)."""

from __future__ import annotations

from bench.config import log
from bench.load.steady import SteadyIngest
from bench.scenario import Figure, Scenario
from bench.stats import median_of

RATE = 10_000  # readings/s
PER_REQUEST = 100


class IngestToQueryable(Scenario):
    number = 4
    worker = True
    sizes = {"s4_s": (30, 6)}
    table = (
        Figure("s4_p50_ms", "4 ingest-to-queryable at 10,000 readings/s: p50", "ms"),
        Figure("s4_p99_ms", "4   p99", "ms", ("<=", 1000)),
        Figure("s4_rate", "4   rate achieved (the client's schedule kept?)", "readings/s"),
    )

    def prepare(self) -> None:
        log(f"scenario 4: ingest-to-queryable at a steady 10,000 readings/s (100 req/s x 100 "
            f"readings, one probe each), {self.size('s4_s'):g} s x {self.bench.runs}")

    def before_run(self) -> None:
        self.bench.drain_or_flush()

    def run(self, i: int) -> dict:
        self.bench.cpu.start()
        r = SteadyIngest(self.bench.stack.port, f"s4r{i}", RATE, PER_REQUEST, self.size("s4_s")).run()
        r["cpu_pct"] = self.bench.cpu.stop()
        log(f"  run {i + 1}: {r['sent_readings_per_s']:,.0f} readings/s sent "
            f"(max lag behind schedule {r['max_send_lag_ms']:.0f} ms), probes "
            f"{r['probes_seen']}/{r['probes']} visible: p50 {r['p50_ms']:.0f} ms, "
            f"p99 {r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms; POST p99 "
            f"{r['post_p99_ms']:.0f} ms; CPU {r['cpu_pct']}")
        return r

    def summarize(self, runs: list[dict]) -> dict[str, object]:
        return {"s4_p50_ms": round(median_of(runs, "p50_ms"), 1),
                "s4_p99_ms": round(median_of(runs, "p99_ms"), 1),
                "s4_rate": round(median_of(runs, "sent_readings_per_s"))}


SCENARIO = IngestToQueryable
